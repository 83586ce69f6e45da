"""Every shipped scenario passes on real node processes at speed 10; a scenario built to fail says so.

The shipped scenarios run concurrently in a thread pool (each run has its own directory and its own
cluster number, reserved by the runner), so the whole library takes about as long as its slowest
few. The runner tears every cluster down itself, pass or fail; the tests check that nothing of the
failing run is left running.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from nodeagent.cli import scenariocmd
from nodeagent.cli.clusterdir import ClusterDir
from nodeagent.cli.lab import WOLFPACK
from nodeagent.cli.procs import scan_node_processes
from nodeagent.scenario import model, report, runner

pytestmark = pytest.mark.integration

SPEED = 10.0
WORKERS = 3  # 2-core CI: more clusters at once starve each other (false failovers at high speed)

FAILING = """\
description = "built to fail: a live node asserted down"

[cluster]
nodes = 1
speed = 20

[[step]]
action = "assert"
condition = "quorum_owner"
node = "NODE1"

[[step]]
action = "assert"
condition = "node_down"
node = "NODE1"

[[step]]
action = "sleep"
seconds = 1
"""


def _run(name: str, path: Path) -> report.ScenarioReport:
    return runner.run_scenario(model.load_file(path), speed=SPEED)


def test_every_shipped_scenario_passes_at_speed_10() -> None:
    shipped = scenariocmd.library()
    assert len(shipped) >= 10
    start = time.monotonic()
    # The longest first, so that the pool does not end on one long run alone.
    order = sorted(shipped, key=lambda n: -len(model.load_file(shipped[n]).steps))
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        results = dict(zip(order, pool.map(lambda n: _run(n, shipped[n]), order), strict=True))
    failed = {name: report.render(r) for name, r in results.items() if not r.passed}
    assert not failed, "\n\n".join(failed.values())
    for name, r in results.items():
        for run in r.runs:
            assert all(s.status == report.PASS and s.seconds is not None for s in run.steps), name
            assert not Path(run.dir).exists(), f"{name}: a temporary directory of a passed run is left"
    both = results["exchange-2000-vs-2003"].runs
    assert [r.variant for r in both] == ["exchange 2000", "exchange 2003"]
    assert time.monotonic() - start < 150, "the scenario library took too long"


def test_a_failing_scenario_reports_fail_and_exits_1() -> None:
    work = Path(tempfile.mkdtemp(prefix="wpf", dir="/tmp"))
    try:
        path = work / "fails.toml"
        path.write_text(FAILING)
        run_dir = work / "c"
        proc = subprocess.run(
            [*WOLFPACK, "scenario", "run", str(path), "--json", "--dir", str(run_dir)],
            capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        assert proc.returncode == 1, proc.stderr
        doc = json.loads(proc.stdout)
        assert doc["scenario"] == "fails" and doc["passed"] is False
        steps = doc["runs"][0]["steps"]
        assert [s["status"] for s in steps] == ["PASS", "FAIL", "SKIP"]
        assert "NODE1 is Up" in steps[1]["detail"]
        assert "step 2" in proc.stderr and "FAIL" in proc.stderr
        # Torn down: no node process of the run's directory is left, and the directory is kept.
        assert (run_dir / "cluster.toml").exists()
        assert scan_node_processes(ClusterDir(run_dir), ["NODE1"]) == []

        text = subprocess.run(
            [*WOLFPACK, "scenario", "run", str(path)], capture_output=True, text=True, timeout=120,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
        assert text.returncode == 1
        assert "FAIL" in text.stdout and "=> FAIL" in text.stdout
    finally:
        shutil.rmtree(work, ignore_errors=True)
