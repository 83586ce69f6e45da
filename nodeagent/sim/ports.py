"""What the simulator drives: a core and a shared disk, as protocols with the real ones as defaults.

Theory of operation
-------------------
The simulation talks to a node's cluster service only through ``SimCore`` (the NodeCore contract of
core/node.py) and to a shared disk only through ``SimDisk`` (apply one core ``DiskOp`` as an initiator,
and tell who holds the reservation, for the invariant checker). The defaults are the real thing:
``NodeCore`` and ``shareddisk.MemoryDisk`` driven through ``nodeagent.diskops.apply_disk_op``, the very
function the runtime uses, so the simulator exercises the same disk semantics as the lab. Tests of the
simulator itself may plug in small fakes; nothing else should.

The default factories import lazily so that importing the simulator costs nothing until a run starts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from nodeagent.config import ClusterConfig, Net
from nodeagent.core.effects import DiskOp, DiskResult, Ready
from nodeagent.core.messages import Message, Phase


class SimCore(Protocol):
    @property
    def phase(self) -> Phase: ...
    @property
    def epoch(self) -> int: ...
    @property
    def members(self) -> tuple[int, ...]: ...
    @property
    def quorum_owner(self) -> int | None: ...

    def start(self, now_s: float, /) -> Ready: ...
    def on_message(self, net: Net, sender: int, incarnation: int, msg: Message, now_s: float, /) -> Ready: ...
    def on_disk_result(self, result: DiskResult, now_s: float, /) -> Ready: ...
    def on_tick(self, now_s: float, /) -> Ready: ...
    def stop(self, now_s: float, /) -> Ready: ...
    def holds_quorum(self, now_s: float, /) -> bool: ...


# (config, node_id, incarnation, known_epoch) -> a started-to-be core
CoreFactory = Callable[[ClusterConfig, int, int, int], SimCore]


class SimDisk(Protocol):
    def apply(self, initiator: str, op: DiskOp, /) -> DiskResult: ...
    def holder(self) -> str | None: ...


DiskFactory = Callable[[str], SimDisk]


def node_core_factory(config: ClusterConfig, node_id: int, incarnation: int, known_epoch: int) -> SimCore:
    from nodeagent.core.node import NodeCore

    return NodeCore(config, node_id, incarnation, known_epoch=known_epoch)


class MemorySimDisk:
    """``shareddisk.MemoryDisk`` behind ``apply_disk_op``: the runtime's disk path, minus the file."""

    def __init__(self, name: str) -> None:
        from shareddisk import MemoryDisk

        self._disk = MemoryDisk(name)

    def apply(self, initiator: str, op: DiskOp, /) -> DiskResult:
        from nodeagent.diskops import apply_disk_op

        return apply_disk_op(self._disk, initiator, op)

    def holder(self) -> str | None:
        return self._disk.read_reservation().holder
