"""Starting, stopping, killing, freezing and thawing node processes.

Theory of operation
-------------------
A node is started as ``sys.executable -m nodeagent --cluster-dir DIR --node NAME`` in a session of
its own (so it outlives the command and a Ctrl-C in the terminal does not reach it), with stdin from
/dev/null and stdout and stderr appended to ``nodes/NAME/node.log``. The launcher writes one marker
line into node.log before each start, so that "the last line this start wrote" is easy to find
when a node exits during start-up (exit 2: bad config; exit 3: address in use).

Waiting for a cluster polls every node's control socket (``probe.observe``) until a condition holds
(every node Up in one membership, for ``up``; one node Up, for ``start``), printing progress through
a callback, and fails early if a process the command started has exited. ``up`` kills (SIGKILL)
every process it started when it fails or is interrupted: nothing is left half-started.

Stopping is graceful first: the control request ``stop`` (the node has a hard bound of 3 s of its
own), then SIGTERM if the node does not answer, then SIGKILL after STOP_BOUND_S, reported as such.
Every signal goes to a pid verified by ``procs.identify``.
"""

from __future__ import annotations

import contextlib
import datetime
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from nodeagent.cli.clusterdir import ClusterDir
from nodeagent.cli.probe import NodeObservation, RequestFn, ask, default_request, observe
from nodeagent.cli.procs import (
    NodeProcess,
    ProcessState,
    find_node_process,
    scan_node_processes,
    send_signal,
    stale_pid_note,
    wait_gone,
    wait_state,
)
from nodeagent.config import ClusterConfig
from nodeagent.errors import WolfpackError

STOP_BOUND_S = 5.0  # a graceful stop gets this long; the node's own hard bound is 3 s
KILL_WAIT_S = 3.0  # after SIGKILL, how long until the pid must be gone
SIGNAL_WAIT_S = 2.0  # after SIGSTOP / SIGCONT, how long until ps shows the new state
POLL_S = 0.2  # between two looks at the nodes while waiting
PROGRESS_REPEAT_S = 3.0  # repeat an unchanged progress line this often
LOG_TAIL_BYTES = 8192
MARKER = "--- wolfpack: starting"


def default_timeout_s(config: ClusterConfig) -> float:
    """Generous: twenty join timeouts (a node looks for a cluster that long before forming) + 10 s."""
    return 20 * config.timing.join_timeout_s + 10.0


@dataclass(frozen=True, slots=True)
class ActionResult:
    """What one verb did to one node."""

    node: str
    action: str  # started, stopped, killed, frozen, thawed, not running
    pid: int | None
    seconds: float | None = None
    detail: str = ""

    def text(self) -> str:
        pid = f" (pid {self.pid})" if self.pid is not None else ""
        took = f" in {self.seconds:.2f} s" if self.seconds is not None else ""
        detail = f"; {self.detail}" if self.detail else ""
        return f"{self.node} {self.action}{pid}{took}{detail}"

    def as_json(self) -> dict[str, Any]:
        return {"node": self.node, "action": self.action, "pid": self.pid, "seconds": self.seconds,
                "detail": self.detail}  # fmt: skip


# -- starting ------------------------------------------------------------------------------------------


def spawn(cdir: ClusterDir, name: str) -> subprocess.Popen[bytes]:
    cdir.node_dir(name).mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "nodeagent", "--cluster-dir", str(cdir.root), "--node", name]
    now = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    with cdir.node_log(name).open("ab") as log:
        log.write(f"{MARKER} {name} at {now} ---\n".encode())
        log.flush()
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            close_fds=True,
            cwd=cdir.root,
        )


def last_log_line(cdir: ClusterDir, name: str) -> str:
    """The last non-empty line the latest start of ``name`` wrote to node.log ("" if none)."""
    try:
        with cdir.node_log(name).open("rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - LOG_TAIL_BYTES))
            tail = f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    lines = [ln.strip() for ln in tail.splitlines() if ln.strip()]
    if lines and lines[-1].startswith(MARKER):
        return ""
    return lines[-1] if lines else ""


def kill_started(started: Mapping[str, subprocess.Popen[bytes]]) -> None:
    """SIGKILL and reap the processes this command started (they are our children: no pid check)."""
    for popen in started.values():
        if popen.poll() is None:
            with contextlib.suppress(OSError):
                popen.kill()
    for popen in started.values():
        with contextlib.suppress(subprocess.TimeoutExpired):
            popen.wait(timeout=KILL_WAIT_S)


def _check_started(cdir: ClusterDir, started: Mapping[str, subprocess.Popen[bytes]]) -> None:
    for name, popen in started.items():
        code = popen.poll()
        if code is not None:
            line = last_log_line(cdir, name) or "(node.log is empty)"
            raise WolfpackError(f"{name} exited with code {code} during start-up: {line}")


def node_word(obs: NodeObservation) -> str:
    """How the progress line shows one node."""
    if obs.answer is not None:
        return f"{obs.name} {obs.answer.get('own_state', '?')}"
    if obs.process is ProcessState.FROZEN:
        return f"{obs.name} (frozen)"
    return f"{obs.name} (no answer)"


def cluster_formed(config: ClusterConfig, observations: Sequence[NodeObservation]) -> bool:
    """Every configured node answers Up, with the same epoch and a membership of all of them."""
    all_ids = set(config.node_ids)
    epochs = set()
    for obs in observations:
        a = obs.answer
        if a is None or a.get("own_state") != "Up" or not isinstance(a.get("members"), list):
            return False
        if set(a["members"]) != all_ids:
            return False
        epochs.add(a.get("epoch"))
    return len(epochs) == 1 and len(observations) == len(all_ids)


def node_joined(name: str) -> Callable[[ClusterConfig, Sequence[NodeObservation]], bool]:
    def joined(config: ClusterConfig, observations: Sequence[NodeObservation]) -> bool:
        for obs in observations:
            if obs.name == name and obs.answer is not None:
                members = obs.answer.get("members")
                me = config.node(name).id
                return obs.answer.get("own_state") == "Up" and isinstance(members, list) and me in members
        return False

    return joined


def node_answers(name: str) -> Callable[[ClusterConfig, Sequence[NodeObservation]], bool]:
    def answers(config: ClusterConfig, observations: Sequence[NodeObservation]) -> bool:
        return any(o.name == name and o.answer is not None for o in observations)

    return answers


def wait_for(
    cdir: ClusterDir,
    config: ClusterConfig,
    condition: Callable[[ClusterConfig, Sequence[NodeObservation]], bool],
    started: Mapping[str, subprocess.Popen[bytes]],
    timeout_s: float,
    progress: Callable[[str], None],
    what: str = "the cluster to form",
    request: RequestFn = default_request,
) -> list[NodeObservation]:
    """Poll the nodes until ``condition`` holds; WolfpackError on timeout or a start-up exit."""
    start = time.monotonic()
    deadline = start + timeout_s
    last_line, last_shown = "", 0.0
    while True:
        _check_started(cdir, started)
        observations = observe(cdir, config, request, usage=False)
        if condition(config, observations):
            return observations
        _check_started(cdir, started)  # a node that exited meanwhile says more than a timeout
        line = ", ".join(node_word(o) for o in observations)
        now = time.monotonic()
        if line != last_line or now - last_shown >= PROGRESS_REPEAT_S:
            progress(f"waiting for {what} ({now - start:.1f} s): {line}")
            last_line, last_shown = line, now
        if now >= deadline:
            raise WolfpackError(
                f"gave up waiting for {what} after {timeout_s:g} s: {line} (see wolfpack log)"
            )
        time.sleep(POLL_S)


def require_process(cdir: ClusterDir, config: ClusterConfig, name: str) -> NodeProcess:
    name = config.node(name).name
    proc = find_node_process(cdir, name)
    if proc is None:
        raise WolfpackError(f"{name} is not running{stale_pid_note(cdir, name)}")
    return proc


# -- stopping ------------------------------------------------------------------------------------------


def _stop(cdir: ClusterDir, proc: NodeProcess, request: RequestFn) -> ActionResult:
    notes = []
    start = time.monotonic()
    if proc.state is ProcessState.FROZEN:
        send_signal(proc, signal.SIGCONT)  # a stopped process cannot stop gracefully
        wait_state(proc.pid, ProcessState.RUNNING, SIGNAL_WAIT_S)
        notes.append("was frozen, thawed it first")
    try:
        ask(cdir, proc.name, {"op": "stop"}, request)
    except WolfpackError as e:
        notes.append(f"graceful stop failed ({e}), sent SIGTERM")
        with contextlib.suppress(WolfpackError):
            send_signal(proc, signal.SIGTERM)
    if wait_gone(proc.pid, STOP_BOUND_S):
        return ActionResult(proc.name, "stopped", proc.pid, time.monotonic() - start, "; ".join(notes))
    with contextlib.suppress(WolfpackError):
        send_signal(proc, signal.SIGKILL)
    gone = wait_gone(proc.pid, KILL_WAIT_S)
    notes.append(f"did not exit within {STOP_BOUND_S:g} s, sent SIGKILL")
    if not gone:
        notes.append("STILL RUNNING after SIGKILL")
    return ActionResult(proc.name, "killed", proc.pid, time.monotonic() - start, "; ".join(notes))


def stop_node(
    cdir: ClusterDir, config: ClusterConfig, name: str, request: RequestFn = default_request
) -> ActionResult:
    return _stop(cdir, require_process(cdir, config, name), request)


def down(cdir: ClusterDir, config: ClusterConfig, request: RequestFn = default_request) -> list[ActionResult]:
    """Stop every node of the cluster in parallel; whatever does not stop in time is killed."""
    names = [n.name for n in config.nodes]
    procs: dict[str, list[NodeProcess]] = {name: [] for name in names}
    pids: set[int] = set()
    for name in names:
        proc = find_node_process(cdir, name)
        if proc is not None:
            procs[name].append(proc)
            pids.add(proc.pid)
    for proc in scan_node_processes(cdir, names):  # nodes whose pid file is missing
        if proc.pid not in pids:
            procs[proc.name].append(proc)
            pids.add(proc.pid)
    todo = [p for name in names for p in procs[name]]
    results: dict[int, ActionResult] = {}
    if todo:
        with ThreadPoolExecutor(max_workers=len(todo)) as pool:
            for proc, result in zip(todo, pool.map(lambda p: _stop(cdir, p, request), todo), strict=True):
                results[proc.pid] = result
    out = []
    for name in names:
        if not procs[name]:
            out.append(ActionResult(name, "not running", None))
        out += [results[p.pid] for p in procs[name]]
    return out


# -- signals -------------------------------------------------------------------------------------------


def kill_node(cdir: ClusterDir, config: ClusterConfig, name: str) -> ActionResult:
    proc = require_process(cdir, config, name)
    start = time.monotonic()
    send_signal(proc, signal.SIGKILL)
    if not wait_gone(proc.pid, KILL_WAIT_S):
        raise WolfpackError(f"{proc.name} (pid {proc.pid}) is still there {KILL_WAIT_S:g} s after SIGKILL")
    return ActionResult(proc.name, "killed", proc.pid, time.monotonic() - start, "SIGKILL")


def freeze_node(cdir: ClusterDir, config: ClusterConfig, name: str) -> ActionResult:
    proc = require_process(cdir, config, name)
    if proc.state is ProcessState.FROZEN:
        raise WolfpackError(f"{proc.name} (pid {proc.pid}) is already frozen")
    send_signal(proc, signal.SIGSTOP)
    if not wait_state(proc.pid, ProcessState.FROZEN, SIGNAL_WAIT_S):
        raise WolfpackError(f"{proc.name} (pid {proc.pid}) did not stop after SIGSTOP")
    return ActionResult(proc.name, "frozen", proc.pid, detail="SIGSTOP; wolfpack thaw " + proc.name)


def thaw_node(cdir: ClusterDir, config: ClusterConfig, name: str) -> ActionResult:
    proc = require_process(cdir, config, name)
    if proc.state is not ProcessState.FROZEN:
        raise WolfpackError(f"{proc.name} (pid {proc.pid}) is not frozen")
    send_signal(proc, signal.SIGCONT)
    if not wait_state(proc.pid, ProcessState.RUNNING, SIGNAL_WAIT_S):
        raise WolfpackError(f"{proc.name} (pid {proc.pid}) did not resume after SIGCONT")
    return ActionResult(proc.name, "thawed", proc.pid, detail="SIGCONT")
