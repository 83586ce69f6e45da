"""What an operator, a test or the fault schedule does to the simulated cluster.

Theory of operation
-------------------
Process faults (start, restart, kill, freeze, thaw, the operator's graceful stop), network faults
(partition, isolate, cut, degrade, heal) and ``apply``, which carries out one scheduled
``FaultAction``. Each one changes the simulated processes or network, writes one trace line, and
runs the invariant checker. They are the public surface tests drive step by step; the event loop
that runs the cores is the ``Simulation`` itself (simulation.py), which this mixin is part of.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from nodeagent.config import Net
from nodeagent.sim import network as netmod
from nodeagent.sim.faults import NETWORK_KINDS, ActionKind, FaultAction, network_fault
from nodeagent.sim.process import (
    ProcState,
    Queued,
    QueuedAdmin,
    QueuedCompletion,
    QueuedDatagram,
    QueuedDiskResult,
    SimNode,
)
from nodeagent.sim.trace import action_line

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from nodeagent.config import ClusterConfig
    from nodeagent.core.effects import Ready
    from nodeagent.sim.network import Network
    from nodeagent.sim.ports import SimCore
    from nodeagent.sim.resources import Completion

NodeRef = str | int


class Operations:
    # -- what the Simulation provides (simulation.py) --------------------------------------------------
    config: ClusterConfig
    network: Network
    _fault_refs: dict[int, int]

    @property
    def now(self) -> float:
        raise NotImplementedError

    def node(self, node: NodeRef) -> SimNode:
        raise NotImplementedError

    def node_id(self, node: NodeRef) -> int:
        raise NotImplementedError

    def _boot(self, n: SimNode, verb: str) -> None:
        raise NotImplementedError

    def _call(self, n: SimNode, what: str, fn: Callable[[SimCore], Ready]) -> None:
        raise NotImplementedError

    def _check(self, stepped: SimNode | None = None) -> None:
        raise NotImplementedError

    def _die(self, n: SimNode) -> None:
        raise NotImplementedError

    def _complete(self, n: SimNode, c: Completion) -> None:
        raise NotImplementedError

    def _admin_call(self, n: SimNode, request_id: int, cmd: str, args: dict[str, Any]) -> None:
        raise NotImplementedError

    def _trace(self, text: str) -> None:
        raise NotImplementedError

    def _count(self, key: str) -> None:
        raise NotImplementedError

    # -- process faults ------------------------------------------------------------------------------
    def start(self, node: NodeRef) -> None:
        n = self.node(node)
        if n.alive:
            return
        self._boot(n, "start" if n.incarnation == 0 else "restart")

    def restart(self, node: NodeRef) -> None:
        n = self.node(node)
        if n.alive:
            self.kill(node)
        self._boot(n, "restart")

    def kill(self, node: NodeRef) -> None:
        n = self.node(node)
        if not n.alive:
            return
        self._count("fault_kill")
        self._die(n)
        self._trace(action_line(self.now, f"kill {n.name}"))
        self._check()

    def freeze(self, node: NodeRef) -> None:
        n = self.node(node)
        if n.state is not ProcState.RUNNING:
            return
        self._count("fault_freeze")
        n.freeze()
        self._trace(action_line(self.now, f"freeze {n.name}"))
        self._check()

    def thaw(self, node: NodeRef) -> None:
        n = self.node(node)
        if n.state is not ProcState.FROZEN:
            return
        dropped = n.frozen_drops
        n.frozen_drops = 0
        items = n.thaw()
        self._trace(action_line(self.now, f"thaw {n.name} queued={len(items)} dropped={dropped}"))
        for item in items:
            if n.core is None:
                break  # the core crashed (or exited) on an earlier item
            self._feed(n, item)
        # Checked after the inbox is fed, at the same instant: the thawed process runs what waited for it
        # (its first call finds an expired lease) before anything else happens.
        self._check()

    def _feed(self, n: SimNode, item: Queued) -> None:
        """One input that waited while the process was frozen, processed at thaw time."""
        if isinstance(item, QueuedDatagram):
            self.network.stats.delivered += 1
            self._call(
                n,
                "on_message",
                lambda c: c.on_message(item.net, item.src, item.src_incarnation, item.msg, self.now),
            )
        elif isinstance(item, QueuedDiskResult):
            self._call(n, "on_disk_result", lambda c: c.on_disk_result(item.result, self.now))
        elif isinstance(item, QueuedCompletion):
            self._complete(n, item.completion)
        elif isinstance(item, QueuedAdmin):
            self._admin_call(n, item.request_id, item.cmd, item.args)
        elif n.deadline is not None and n.deadline <= self.now:
            self._call(n, "on_tick", lambda c: c.on_tick(self.now))

    def stop(self, node: NodeRef) -> None:
        """The operator's graceful stop (``cluster node /stop``): the core winds down, the process exits."""
        n = self.node(node)
        if n.state is not ProcState.RUNNING:
            return
        self._trace(action_line(self.now, f"stop {n.name}"))
        self._call(n, "stop", lambda c: c.stop(self.now))

    # -- network faults ------------------------------------------------------------------------------
    def add_fault(self, fault: netmod.NetFault) -> int:
        fid = self.network.add(fault)
        self._count(f"fault_{fault.kind.value}")
        self._trace(action_line(self.now, f"fault {fid} {fault.kind.value} {fault.description}"))
        self._check()
        return fid

    def partition(self, sides: Sequence[Iterable[NodeRef]]) -> int:
        return self.add_fault(netmod.partition(self.config, [[self.node_id(x) for x in s] for s in sides]))

    def isolate(self, node: NodeRef) -> int:
        return self.add_fault(netmod.isolate(self.config, self.node_id(node)))

    def cut(self, a: NodeRef, b: NodeRef, net: Net | str | None = None) -> int:
        return self.add_fault(
            netmod.cut(self.config, self.node_id(a), self.node_id(b), netmod.parse_net(net))
        )

    def degrade(
        self,
        src: NodeRef,
        dst: NodeRef,
        net: Net | str | None = None,
        *,
        loss: float = 0.0,
        extra_delay_s: float = 0.0,
        dup: float = 0.0,
        both_directions: bool = True,
    ) -> int:
        fault = netmod.degrade(
            self.config,
            self.node_id(src),
            self.node_id(dst),
            netmod.parse_net(net),
            loss=loss,
            extra_delay_s=extra_delay_s,
            dup=dup,
            both_directions=both_directions,
        )
        return self.add_fault(fault)

    def heal(self, fault_id: int | None = None) -> None:
        """Remove one network fault, or every one (None)."""
        if fault_id is None:
            removed = list(self.network.faults.items())
            self.network.clear()
        else:
            fault = self.network.remove(fault_id)
            removed = [] if fault is None else [(fault_id, fault)]
        for fid, fault in removed:
            self._trace(action_line(self.now, f"heal {fid} {fault.kind.value} {fault.description}"))
        if removed:
            self._check()

    def apply(self, action: FaultAction) -> None:
        """Carry out one scheduled action (see faults.py)."""
        k = action.kind
        if k is ActionKind.START:
            self.start(action.node)
        elif k is ActionKind.KILL:
            self.kill(action.node)
        elif k is ActionKind.RESTART:
            if not self.node(action.node).alive:
                self.restart(action.node)
        elif k is ActionKind.FREEZE:
            self.freeze(action.node)
        elif k is ActionKind.THAW:
            self.thaw(action.node)
        elif k is ActionKind.HEAL:
            fid = self._fault_refs.pop(action.ref, None)
            if fid is not None:
                self.heal(fid)
        elif k in NETWORK_KINDS:
            fid = self.add_fault(network_fault(self.config, action))
            if action.ref:
                self._fault_refs[action.ref] = fid
