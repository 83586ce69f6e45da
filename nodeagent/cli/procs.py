"""Node processes: which pid is which node, is it running or frozen, and what it costs.

Theory of operation
-------------------
A node writes its pid to ``nodes/NAME/pid`` when it starts and removes the file when it exits
cleanly. The file outlives a ``kill -9``, and the kernel reuses pids, so a pid is trusted only after
psutil shows that its command line is ``python -m nodeagent --cluster-dir DIR --node NAME`` for this
very directory and node. Every signal the command sends goes through that check first; nothing is
ever found or killed by a program name.

States follow ``ps``: a process in state "stopped" (SIGSTOP) is *frozen*; a zombie or a vanished
pid is *not running*.
"""

from __future__ import annotations

import contextlib
import enum
import itertools
import os
import signal
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil  # type: ignore[import-untyped, unused-ignore]

from nodeagent.cli.clusterdir import ClusterDir, read_int_file
from nodeagent.errors import WolfpackError

USAGE_SAMPLE_S = 0.25  # cpu_percent over this interval: CPU time is counted in 10 ms ticks, so 4 % steps
MAX_PROCESSES_SCANNED = 100_000  # bound on the process-table walk of scan_node_processes


class ProcessState(enum.StrEnum):
    RUNNING = "running"
    FROZEN = "frozen"  # SIGSTOPped (ps state T)
    NOT_RUNNING = "not running"


@dataclass(frozen=True, slots=True)
class NodeProcess:
    name: str
    pid: int
    state: ProcessState  # RUNNING or FROZEN, never NOT_RUNNING


def _option(argv: Sequence[str], flag: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg == flag and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(flag + "="):
            return arg[len(flag) + 1 :]
    return None


def cmdline_matches(argv: Sequence[str], cwd: str | None, root: Path, name: str) -> bool:
    """Is ``argv`` (run in ``cwd``) the node agent for node ``name`` of cluster directory ``root``?"""
    argv = list(argv)
    is_agent = any(a == "-m" and b == "nodeagent" for a, b in itertools.pairwise(argv))
    is_agent = is_agent or "-mnodeagent" in argv
    node = _option(argv, "--node")
    cluster_dir = _option(argv, "--cluster-dir")
    if not is_agent or node is None or cluster_dir is None or node.upper() != name.upper():
        return False
    path = Path(cluster_dir).expanduser()
    if not path.is_absolute():
        if cwd is None:
            return False
        path = Path(cwd) / path
    return os.path.realpath(path) == os.path.realpath(root)


def _status_of(proc: psutil.Process) -> ProcessState:
    status = proc.status()
    if status in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD):
        return ProcessState.NOT_RUNNING
    if status in (psutil.STATUS_STOPPED, psutil.STATUS_TRACING_STOP):
        return ProcessState.FROZEN
    return ProcessState.RUNNING


def identify(pid: int, cdir: ClusterDir, name: str) -> NodeProcess | None:
    """The node process behind ``pid`` if it really is node ``name`` of ``cdir`` and is alive."""
    try:
        proc = psutil.Process(pid)
        with proc.oneshot():
            state = _status_of(proc)
            if state is ProcessState.NOT_RUNNING:
                return None
            try:
                cwd: str | None = proc.cwd()
            except psutil.Error:
                cwd = None
            if not cmdline_matches(proc.cmdline(), cwd, cdir.root, name):
                return None
    except psutil.Error:
        return None
    return NodeProcess(name=name, pid=pid, state=state)


def find_node_process(cdir: ClusterDir, name: str) -> NodeProcess | None:
    """The running (or frozen) process of node ``name``, from its pid file; None if there is none."""
    pid = read_int_file(cdir.pid_file(name))
    return identify(pid, cdir, name) if pid is not None else None


def stale_pid_note(cdir: ClusterDir, name: str) -> str:
    """Why a node with a pid file is not running, for error messages ("" if there is no pid file)."""
    pid = read_int_file(cdir.pid_file(name))
    if pid is None:
        return ""
    if psutil.pid_exists(pid):
        return f" (its pid file names pid {pid}, which is now another program)"
    return f" (its pid file names pid {pid}, which has exited)"


def scan_node_processes(cdir: ClusterDir, names: Iterable[str]) -> list[NodeProcess]:
    """Every live node process of this cluster directory, pid file or not (used by ``down``).

    Matches the exact command line of ``cmdline_matches``, never a program name: a node that died
    before writing its pid file, or whose pid file was removed, is still found.
    """
    wanted = list(names)
    found: list[NodeProcess] = []
    for count, proc in enumerate(psutil.process_iter()):
        if count >= MAX_PROCESSES_SCANNED:
            break
        with contextlib.suppress(psutil.Error):
            argv = proc.cmdline()
            if "nodeagent" not in argv and "-mnodeagent" not in argv:
                continue
            for name in wanted:
                node = identify(proc.pid, cdir, name)
                if node is not None:
                    found.append(node)
    return found


def process_state(pid: int) -> ProcessState:
    try:
        return _status_of(psutil.Process(pid))
    except psutil.Error:
        return ProcessState.NOT_RUNNING


def send_signal(node: NodeProcess, sig: signal.Signals) -> None:
    try:
        os.kill(node.pid, sig)
    except ProcessLookupError:
        raise WolfpackError(f"{node.name} (pid {node.pid}) exited before it got {sig.name}") from None
    except PermissionError:
        raise WolfpackError(f"not allowed to send {sig.name} to {node.name} (pid {node.pid})") from None


def wait_gone(pid: int, timeout_s: float) -> bool:
    """Wait until ``pid`` has exited (a zombie counts as gone); True if it did within the bound."""
    deadline = time.monotonic() + timeout_s
    while True:
        if process_state(pid) is ProcessState.NOT_RUNNING:
            return True
        if time.monotonic() >= deadline:
            return False
        try:
            # Process.wait reaps our own children and polls others; either way it returns early.
            psutil.Process(pid).wait(timeout=min(0.05, max(0.0, deadline - time.monotonic())))
        except psutil.TimeoutExpired:
            pass
        except psutil.Error:
            return True


def wait_state(pid: int, wanted: ProcessState, timeout_s: float) -> bool:
    """Poll until the process reaches ``wanted`` (after SIGSTOP / SIGCONT); True if it did."""
    deadline = time.monotonic() + timeout_s
    while process_state(pid) is not wanted:
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)
    return True


@dataclass(frozen=True, slots=True)
class Usage:
    cpu_percent: float
    rss_bytes: int


class UsageSampler:
    """CPU and memory of a set of pids, measured over the time the caller spends doing other work.

    psutil's cpu_percent compares two readings; ``start`` takes the first, ``finish`` the second
    (waiting until at least USAGE_SAMPLE_S has passed), so a status query costs no extra sleep when
    the control-socket round trips take that long anyway.
    """

    def __init__(self, pids: Iterable[int]) -> None:
        self._procs: dict[int, psutil.Process] = {}
        self._started = time.monotonic()
        for pid in pids:
            with contextlib.suppress(psutil.Error):
                proc = psutil.Process(pid)
                proc.cpu_percent(None)
                self._procs[pid] = proc

    def finish(self) -> dict[int, Usage]:
        remaining = USAGE_SAMPLE_S - (time.monotonic() - self._started)
        if remaining > 0 and self._procs:
            time.sleep(remaining)
        result: dict[int, Usage] = {}
        for pid, proc in self._procs.items():
            with contextlib.suppress(psutil.Error):
                result[pid] = Usage(
                    cpu_percent=float(proc.cpu_percent(None)), rss_bytes=int(proc.memory_info().rss)
                )
        return result
