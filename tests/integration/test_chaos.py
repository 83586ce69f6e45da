"""``wolfpack chaos`` on real processes: a few seeds, short schedules, no violation.

Each run starts 3 nodes with EVS1 and a client, applies about 8 s of the seed's faults at speed 10,
heals, waits for the groups and checks the history. Seed 3 kills the owner of every group (a
failover the client sees) and restarts it; seed 10 mixes kills, restarts, freezes and disk path
loss. One run goes through the CLI (``--json``, exit code), one through ``run_chaos``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from nodeagent.chaos.runner import ChaosOptions, run_chaos
from nodeagent.cli.lab import WOLFPACK

pytestmark = pytest.mark.integration

DURATION_S = 8.0


def test_chaos_seed_with_a_failover_has_no_violation() -> None:
    lines: list[str] = []
    root = Path(tempfile.mkdtemp(prefix="wpc", dir="/tmp")) / "lab"
    try:
        report = run_chaos(ChaosOptions(seed=3, duration_s=DURATION_S, directory=root), lines.append)
        assert report.violations == [], "\n".join(
            v.summary + "\n" + "\n".join(v.evidence) for v in report.violations
        )
        assert report.ok
        done = [a["action"] for a in report.actions if a["ok"]]
        assert "kill" in done and "restart" in done
        assert any(f["group"] == "EVS1" for f in report.failovers)  # the owner was killed
        assert report.client["summary"]["answered"] > 0
        assert len(report.client["served_by"]) >= 2  # the client saw the failover
        assert set(report.recovery) == {"Cluster Group", "EVS1"}
        assert all(v is not None and v <= report.bound_s for v in report.recovery.values())
        assert (root / "chaos" / "report.json").is_file() and (root / "disks" / "Q.history.jsonl").is_file()
        assert "steps over" in " ".join(lines)
    finally:
        shutil.rmtree(root.parent, ignore_errors=True)


def test_chaos_cli_json_seed_with_freezes_and_kills() -> None:
    root = Path(tempfile.mkdtemp(prefix="wpc", dir="/tmp")) / "lab"
    try:
        argv = [
            *WOLFPACK,
            "--dir",
            str(root),
            "chaos",
            "--seed",
            "10",
            "--duration-s",
            f"{DURATION_S:g}",
            "--json",
        ]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
        assert proc.stderr.startswith("chaos seed 10 ")
        doc = json.loads(proc.stdout)
        assert proc.returncode == 0, json.dumps(doc["violations"], indent=1)
        assert doc["ok"] is True and doc["seed"] == 10 and doc["violations"] == []
        assert doc["faults_applied"].get("freeze", 0) >= 1 and doc["faults_applied"].get("kill", 0) >= 1
        assert (
            doc["replay"] == "wolfpack simulate --seed 10 --chaos-seed 10 --nodes 3 --duration-s 8 --speed 10"
        )
        assert doc["heal_s"] >= DURATION_S
    finally:
        shutil.rmtree(root.parent, ignore_errors=True)
