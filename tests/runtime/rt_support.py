"""Helpers for the runtime tests: cluster directories, polling, free addresses, a scripted fake core.

A plain module with a unique name (pytest puts this directory on sys.path), so test files can import it.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w
import trio

from nodeagent.cli.clusterdir import claim_free_number
from nodeagent.config import CLUSTER_PORT, ClusterConfig, Net, default_config_dict
from nodeagent.core.effects import DiskResult, Event, Ready
from nodeagent.core.messages import Message, Phase
from nodeagent.core.snapshot import NodeSnapshot, NodeState
from nodeagent.runtime.node import NodeOptions, NodeRuntime, serve_node
from shareddisk import create_disk


def write_cluster(
    cluster_dir: Path,
    *,
    number: int,
    nodes: int,
    speed: float = 10.0,
    quorum_disk_file: bool = True,
    **extra: Any,
) -> ClusterConfig:
    """Write cluster.toml (as ``wolfpack up`` does) and, optionally, the quorum disk image."""
    data = default_config_dict(number=number, key=secrets.token_bytes(32), nodes=nodes, speed=speed, **extra)
    (cluster_dir / "cluster.toml").write_text(tomli_w.dumps(data))
    config = ClusterConfig.from_dict(data)
    if quorum_disk_file:
        (cluster_dir / "disks").mkdir(exist_ok=True)
        create_disk(cluster_dir / "disks" / f"{config.quorum_disk}.img", size_bytes=1 << 20).close()
    return config


async def wait_until(predicate: Callable[[], bool], timeout_s: float, what: str = "condition") -> None:
    """Poll ``predicate`` until true; fail after ``timeout_s``."""
    try:
        with trio.fail_after(timeout_s):
            while not predicate():
                await trio.sleep(0.02)
    except trio.TooSlowError:
        raise AssertionError(f"timed out after {timeout_s} s waiting for {what}") from None


def free_cluster_number(first: int = 240, node_ids: range = range(1, 4)) -> int:
    """A cluster number (240-250) whose node addresses nobody holds right now, claimed."""

    def addresses(number: int) -> list[tuple[str, int]]:
        return [(f"127.{number}.{net}.{node_id}", CLUSTER_PORT) for net in (1, 2) for node_id in node_ids]

    number = claim_free_number(range(first, 251), addresses, Path(__file__))
    if number is None:
        raise RuntimeError("no free cluster number in 240-250")
    return number


@dataclass
class FakeCore:
    """Records every call; each method's Ready comes from ``script`` (or is empty)."""

    calls: list[tuple[str, float, object]] = field(default_factory=list)
    tick_every_s: float | None = None
    epoch: int = 0
    members: tuple[int, ...] = ()
    quorum_owner: int | None = None
    phase: Phase = Phase.JOINING
    start_ready: Ready = field(default_factory=Ready)
    fail_on_tick: bool = False
    stop_exits: bool = True  # False: a core that never finishes stopping

    def _ready(self, now_s: float, ready: Ready | None = None) -> Ready:
        ready = ready or Ready()
        if ready.next_deadline_s is None and self.tick_every_s is not None:
            ready.next_deadline_s = now_s + self.tick_every_s
        return ready

    def start(self, now_s: float) -> Ready:
        self.calls.append(("start", now_s, None))
        return self._ready(now_s, self.start_ready)

    def on_message(self, net: Net, sender: int, incarnation: int, msg: Message, now_s: float) -> Ready:
        self.calls.append(("message", now_s, (net, sender, incarnation, msg)))
        return self._ready(now_s)

    def on_disk_result(self, result: DiskResult, now_s: float) -> Ready:
        self.calls.append(("disk", now_s, result))
        return self._ready(now_s)

    def on_tick(self, now_s: float) -> Ready:
        self.calls.append(("tick", now_s, None))
        if self.fail_on_tick:
            raise RuntimeError("core bug")
        return self._ready(now_s)

    def stop(self, now_s: float) -> Ready:
        self.calls.append(("stop", now_s, None))
        return Ready(events=[Event("service_stopped", None, "stopped")], exit=self.stop_exits)

    def set_paused(self, paused: bool, now_s: float) -> Ready:
        self.calls.append(("paused", now_s, paused))
        return self._ready(now_s)

    def snapshot(self, now_s: float) -> NodeSnapshot:
        return NodeSnapshot(
            node_id=1, name="NODE1", incarnation=1, phase=self.phase.name, own_state=NodeState.JOINING,
            epoch=self.epoch, members=self.members, quorum_owner=self.quorum_owner, holds_quorum=False,
            paused=False, node_states={}, interfaces=(), counters={},
        )  # fmt: skip

    def of(self, kind: str) -> list[tuple[str, float, object]]:
        return [c for c in self.calls if c[0] == kind]


@dataclass
class Killable:
    """A node runtime in a test's nursery that can be stopped like SIGKILL (no graceful stop)."""

    runtime: NodeRuntime
    scope: trio.CancelScope

    def kill(self) -> None:
        """Like SIGKILL: no graceful stop, no Leave; the peers must notice the silence."""
        self.scope.cancel()


async def start_killable(
    nursery: trio.Nursery, cluster_dir: Path, name: str, options: NodeOptions, config: ClusterConfig
) -> Killable:
    scope = trio.CancelScope()

    async def run(*, task_status: trio.TaskStatus[NodeRuntime]) -> None:
        with scope:
            await serve_node(cluster_dir, name, options, config, task_status=task_status)

    runtime: NodeRuntime = await nursery.start(run)
    return Killable(runtime, scope)


def agreed(nodes: list[NodeRuntime], members: tuple[int, ...] | None = None) -> Callable[[], bool]:
    """True when every node is a MEMBER of one epoch, with one quorum owner, and exactly ``members``
    (default: the nodes given)."""
    want = members if members is not None else tuple(sorted(n.node_id for n in nodes))

    def check() -> bool:
        snaps = [n.driver.snapshot() for n in nodes]
        return (
            all(s.phase == "MEMBER" and s.members == want for s in snaps)
            and len({(s.epoch, s.quorum_owner) for s in snaps}) == 1
        )

    return check
