"""Drive a cluster of real node processes from Python, through the `wolfpack` CLI.

Used by the integration tests, scripts/demo and scripts/bench. Everything goes through the public
surface: the CLI (as a subprocess), `status --json` and the nodes' events.jsonl. ``close`` runs
`wolfpack down`, then SIGKILLs every pid this lab's nodes ever wrote to their pid files (after
checking with psutil that the pid is still a node of this directory), so nothing is left behind,
pass or fail. Waits poll with a deadline; they never sleep blindly.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

WOLFPACK = [sys.executable, "-m", "nodeagent.cli.main"]


class LabCommandFailed(RuntimeError):
    """A `wolfpack` command run by the lab exited non-zero."""


class Lab:
    def __init__(self, nodes: int = 3, *args: str, directory: Path | None = None) -> None:
        """Create and start a cluster (in a new short temporary directory unless ``directory``)."""
        self.dir = directory or Path(tempfile.mkdtemp(prefix="wpi", dir="/tmp"))
        self.nodes = nodes
        self.pids: set[int] = set()
        self.up_output = self.cli("up", str(self.dir), "--nodes", str(nodes), *args, timeout=120)

    # -- the CLI ---------------------------------------------------------------------------------------
    def cli(self, *args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [*WOLFPACK, *args]
        if args and args[0] not in ("up", "status", "down", "log"):
            cmd += ["--dir", str(self.dir)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        self._collect_pids()
        if check and proc.returncode != 0:
            raise LabCommandFailed(
                f"wolfpack {' '.join(args)} exited {proc.returncode}: {proc.stderr.strip()}"
            )
        return proc

    def status(self) -> dict[str, Any]:
        out = self.cli("status", str(self.dir), "--json", timeout=30).stdout
        result: dict[str, Any] = json.loads(out)
        return result

    def node(self, status: dict[str, Any], name: str) -> dict[str, Any]:
        return next(n for n in status["nodes"] if n["name"] == name)

    def events(self) -> list[dict[str, Any]]:
        out = []
        for path in sorted((self.dir / "nodes").glob("*/events.jsonl")):
            for line in path.read_text().splitlines():
                if line.strip():
                    out.append(json.loads(line))
        out.sort(key=lambda e: e["mono_s"])
        return out

    def events_of(self, kind: str, node: str | None = None, since: float = 0.0) -> list[dict[str, Any]]:
        return [
            e
            for e in self.events()
            if e["kind"] == kind and (node is None or e["node"] == node) and e["mono_s"] >= since
        ]

    def config_timing(self) -> Any:
        from nodeagent.config import load_cluster_file

        return load_cluster_file(self.dir / "cluster.toml").timing

    # -- waiting ---------------------------------------------------------------------------------------
    def wait_for(self, what: str, pred: Callable[[], Any], timeout_s: float = 30.0) -> Any:
        deadline = time.monotonic() + timeout_s
        while True:
            value = pred()
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout_s} s waiting for {what}")
            time.sleep(0.05)

    def wait_status(self, what: str, pred: Callable[[dict[str, Any]], bool], timeout_s: float = 30.0) -> Any:
        return self.wait_for(what, lambda: (lambda s: s if pred(s) else None)(self.status()), timeout_s)

    def states(self, status: dict[str, Any]) -> dict[str, str]:
        return {n["name"]: n["state"] for n in status["nodes"]}

    @staticmethod
    def down(directory: Path) -> None:
        """Stop every node of an existing cluster directory (`wolfpack down`)."""
        subprocess.run([*WOLFPACK, "down", str(directory)], capture_output=True, timeout=60, check=False)

    # -- cleanup ---------------------------------------------------------------------------------------
    def _collect_pids(self) -> None:
        for pidfile in (self.dir / "nodes").glob("*/pid"):
            with contextlib.suppress(OSError, ValueError):
                self.pids.add(int(pidfile.read_text().strip()))

    def close(self) -> None:
        try:
            self.cli("down", str(self.dir), timeout=60, check=False)
        finally:
            self._collect_pids()
            for pid in self.pids:
                try:
                    proc = psutil.Process(pid)
                    if str(self.dir) in " ".join(proc.cmdline()):
                        os.kill(pid, signal.SIGCONT)
                        os.kill(pid, signal.SIGKILL)
                except (psutil.Error, ProcessLookupError):
                    pass
