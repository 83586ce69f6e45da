"""Asking the nodes: control-socket requests and one observation of every node at once.

Theory of operation
-------------------
The control socket (CONTRACT.md, "Control socket protocol") is the operator's out-of-band console:
network faults do not touch it, so it answers while a node is cut off. A frozen (SIGSTOPped) process
accepts the connection in the kernel but never answers, so a frozen node is not asked at all.

``observe`` looks at every configured node in parallel threads: the process (pid file, verified with
psutil), the answer to ``{"op": "status"}`` within a short timeout, and CPU and memory over the same
interval. It returns raw observations; ``status.compose`` (pure) turns them into the cluster picture.

The request function is injected (``RequestFn``) so that tests can run everything without sockets;
the real one is ``nodeagent.runtime.control_client.request``.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nodeagent.cli.clusterdir import ClusterDir, read_int_file
from nodeagent.cli.procs import NodeProcess, ProcessState, UsageSampler, find_node_process, identify
from nodeagent.config import ClusterConfig
from nodeagent.errors import NodeUnreachable, WolfpackError

RequestFn = Callable[[Path, dict[str, Any], float], dict[str, Any]]

STATUS_TIMEOUT_S = 0.5  # per node; a node slower than this is reported as "no answer"
COMMAND_TIMEOUT_S = 2.0  # fault and stop requests


def default_request(sock_path: Path, obj: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    from nodeagent.runtime.control_client import request

    return request(sock_path, obj, timeout_s)


class ControlState(enum.StrEnum):
    OK = "ok"
    NO_ANSWER = "no answer"  # running (or frozen) but silent
    NOT_RUNNING = "not running"


@dataclass(frozen=True, slots=True)
class NodeObservation:
    """What the command saw of one node, before any interpretation."""

    name: str
    process: ProcessState
    pid: int | None
    control: ControlState
    answer: dict[str, Any] | None  # the "node" object of a status answer
    incarnation: int | None  # from nodes/NAME/incarnation when the node does not answer
    cpu_percent: float | None = None
    rss_bytes: int | None = None
    error: str | None = None  # why the control socket gave no answer


def why_silent(cdir: ClusterDir, name: str) -> str:
    node = find_node_process(cdir, name)
    if node is None:
        return "not running"
    if node.state is ProcessState.FROZEN:
        return f"frozen, pid {node.pid}"
    return f"running as pid {node.pid} but not answering"


def ask(
    cdir: ClusterDir,
    name: str,
    obj: dict[str, Any],
    request: RequestFn = default_request,
    timeout_s: float = COMMAND_TIMEOUT_S,
) -> dict[str, Any]:
    """One control request to node ``name``; a one-line WolfpackError unless the node says ok."""
    try:
        answer = request(cdir.control_sock(name), obj, timeout_s)
    except NodeUnreachable:
        raise NodeUnreachable(
            f"{name} does not answer its control socket ({why_silent(cdir, name)})"
        ) from None
    except OSError as e:
        raise NodeUnreachable(f"{name} does not answer its control socket ({e.strerror or e})") from None
    if not isinstance(answer, dict) or answer.get("ok") is not True:
        error = answer.get("error", "no reason given") if isinstance(answer, dict) else "malformed answer"
        raise WolfpackError(f"{name} refused {obj.get('op')!r}: {error}")
    return answer


def _observe_one(
    cdir: ClusterDir, name: str, request: RequestFn, timeout_s: float
) -> tuple[NodeProcess | None, dict[str, Any] | None, str | None]:
    proc = find_node_process(cdir, name)
    if proc is not None and proc.state is ProcessState.FROZEN:
        return proc, None, "frozen"
    try:
        answer = request(cdir.control_sock(name), {"op": "status"}, timeout_s)
    except (WolfpackError, OSError) as e:
        return proc, None, str(e) or type(e).__name__
    node = answer.get("node") if isinstance(answer, dict) and answer.get("ok") is True else None
    if not isinstance(node, dict):
        return proc, None, f"unexpected answer: {answer!r}"[:200]
    if proc is None and isinstance(node.get("pid"), int):
        # Started but has not written its pid file yet: trust the pid it reports, once verified.
        proc = identify(node["pid"], cdir, name)
    return proc, node, None


def observe(
    cdir: ClusterDir,
    config: ClusterConfig,
    request: RequestFn = default_request,
    timeout_s: float = STATUS_TIMEOUT_S,
    usage: bool = True,
) -> list[NodeObservation]:
    """Observe every configured node in parallel; in config order."""
    names = [n.name for n in config.nodes]
    first_look = {name: find_node_process(cdir, name) for name in names}
    sampler = UsageSampler(p.pid for p in first_look.values() if p is not None) if usage else None
    with ThreadPoolExecutor(max_workers=len(names)) as pool:
        futures = {name: pool.submit(_observe_one, cdir, name, request, timeout_s) for name in names}
        results = {name: f.result() for name, f in futures.items()}
    usages = sampler.finish() if sampler is not None else {}

    observations = []
    for name in names:
        proc, answer, error = results[name]
        process = proc.state if proc is not None else ProcessState.NOT_RUNNING
        if answer is not None:
            control = ControlState.OK
        elif proc is None:
            control = ControlState.NOT_RUNNING
        else:
            control = ControlState.NO_ANSWER
        incarnation = answer.get("incarnation") if answer is not None else None
        if not isinstance(incarnation, int):
            incarnation = read_int_file(cdir.incarnation_file(name))
        use = usages.get(proc.pid) if proc is not None else None
        observations.append(
            NodeObservation(
                name=name,
                process=process,
                pid=proc.pid if proc is not None else None,
                control=control,
                answer=answer,
                incarnation=incarnation,
                cpu_percent=use.cpu_percent if use is not None else None,
                rss_bytes=use.rss_bytes if use is not None else None,
                error=None if answer is not None else error,
            )
        )
    return observations
