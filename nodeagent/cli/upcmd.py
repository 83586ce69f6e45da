"""``wolfpack up`` and ``wolfpack start``: bring nodes up and wait until the cluster has them.

Theory of operation
-------------------
``up`` either creates the cluster directory (everything validated first, see ``clusterdir``) or
reuses the one that is there (flags that contradict its cluster.toml are refused), then starts every
node whose process is not running and waits until every node reports Up in one membership. A frozen
node is refused up front: it would never answer. If the wait fails (timeout, a node exiting during
start-up, Ctrl-C), every process this command started is killed: ``up`` leaves nothing half-started;
nodes that were already running are left alone.

``start NODE`` starts one node and waits until it is Up in the cluster's membership (or, with
``wait=False``, only until it answers its control socket). A node that exits during start-up is
reported with the last line of its node.log. A node that is still alive when the wait times out is
left running: joining is what a starting MSCS node keeps doing until it finds the cluster.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from nodeagent.cli import clusterdir, launcher
from nodeagent.cli.clusterdir import ClusterDir, UpOptions
from nodeagent.cli.probe import RequestFn, default_request
from nodeagent.cli.procs import ProcessState, find_node_process
from nodeagent.config import ClusterConfig, QuorumType
from nodeagent.errors import WolfpackError

Progress = Callable[[str], None]
Spawn = Callable[[ClusterDir, str], "subprocess.Popen[bytes]"]


@dataclass(frozen=True, slots=True)
class UpResult:
    cdir: ClusterDir
    config: ClusterConfig
    created: bool
    started: tuple[str, ...]  # nodes this command started
    already_running: tuple[str, ...]


def prepare(
    root: Path, opts: UpOptions, make_disk: Callable[[Path], None] | None = None
) -> tuple[ClusterDir, ClusterConfig, bool]:
    """The cluster directory, created if needed; returns (dir, config, created)."""
    cdir = ClusterDir(root)
    if cdir.cluster_file.exists():
        cdir, config = clusterdir.open_cluster(root)
        clusterdir.check_matches(cdir, config, opts)
        # cluster.toml is editable: a node or a disk quorum added by hand needs its folder / disk.
        for node in config.nodes:
            cdir.node_dir(node.name).mkdir(parents=True, exist_ok=True)
        disk = cdir.disk_path(config.quorum_disk)
        if config.quorum is QuorumType.DISK and not disk.exists():
            cdir.disks_dir.mkdir(exist_ok=True)
            (make_disk or clusterdir.make_quorum_disk)(disk)
        return cdir, config, False
    if make_disk is None:
        cdir, config = clusterdir.create_cluster(root, opts)
    else:
        cdir, config = clusterdir.create_cluster(root, opts, make_disk=make_disk)
    return cdir, config, True


def up(
    root: Path,
    opts: UpOptions,
    timeout_s: float | None,
    progress: Progress,
    request: RequestFn = default_request,
    spawn: Spawn = launcher.spawn,
    make_disk: Callable[[Path], None] | None = None,
) -> UpResult:
    cdir, config, created = prepare(root, opts, make_disk)
    running: list[str] = []
    to_start: list[str] = []
    for node in config.nodes:
        proc = find_node_process(cdir, node.name)
        if proc is None:
            to_start.append(node.name)
        elif proc.state is ProcessState.FROZEN:
            raise WolfpackError(f"{node.name} (pid {proc.pid}) is frozen; run: wolfpack thaw {node.name}")
        else:
            running.append(node.name)
    timeout = timeout_s if timeout_s is not None else launcher.default_timeout_s(config)
    started: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for name in to_start:
            started[name] = spawn(cdir, name)
        if started:
            progress(f"started {', '.join(f'{n} (pid {p.pid})' for n, p in started.items())}")
        launcher.wait_for(cdir, config, launcher.cluster_formed, started, timeout, progress, request=request)
    except BaseException:
        launcher.kill_started(started)
        if started:
            progress(f"killed the nodes this command started: {', '.join(started)}")
        raise
    return UpResult(cdir, config, created, tuple(started), tuple(running))


def start(
    cdir: ClusterDir,
    config: ClusterConfig,
    name: str,
    timeout_s: float | None,
    progress: Progress,
    wait: bool = True,
    request: RequestFn = default_request,
    spawn: Spawn = launcher.spawn,
) -> launcher.ActionResult:
    name = config.node(name).name
    proc = find_node_process(cdir, name)
    if proc is not None:
        if proc.state is ProcessState.FROZEN:
            raise WolfpackError(
                f"{name} is already running (pid {proc.pid}) but frozen; run: wolfpack thaw {name}"
            )
        raise WolfpackError(f"{name} is already running (pid {proc.pid})")
    timeout = timeout_s if timeout_s is not None else launcher.default_timeout_s(config)
    popen = spawn(cdir, name)
    progress(f"started {name} (pid {popen.pid})")
    condition = launcher.node_joined(name) if wait else launcher.node_answers(name)
    what = f"{name} to join the cluster" if wait else f"{name} to answer its control socket"
    try:
        launcher.wait_for(cdir, config, condition, {name: popen}, timeout, progress, what, request)
    except WolfpackError as e:
        if popen.poll() is None:
            raise WolfpackError(f"{e}; {name} is still running (pid {popen.pid}) and keeps trying") from None
        raise
    detail = "Up in the cluster" if wait else "answers its control socket"
    return launcher.ActionResult(name, "started", popen.pid, detail=detail)
