"""The simulation driver: N real cores, one virtual clock, a simulated network and disks, one seed.

Theory of operation
-------------------
Everything non-deterministic comes from ``self.rng = random.Random(seed)``: network delays, losses and
duplicates, disk latencies, start-up stagger, and (in ``runner.simulate``) the fault schedule. The
driver pops one event at a time from the ``EventQueue`` and turns it into at most one core call:

- ``_Deliver``: a datagram arrives -> ``core.on_message(net, sender, incarnation, msg, now)``, if the
  destination process exists, started before the datagram was sent, and the path is not cut;
- ``_DiskExec`` / ``_DiskDone``: a disk operation reaches the disk (it is applied to the in-memory disk
  at that instant, as initiator = node name) and its result comes back -> ``core.on_disk_result``.
  Each op takes 0.5 to 2 ms, half on the way there, half back; a node's ops reach the disk, and
  their results come back, in the order it issued them (one I/O path per node, like the runtime's
  worker). An op already on its way still reaches the disk after its node was killed or frozen;
  the result of a killed process is dropped, that of a frozen one waits for the thaw;
- ``_Timer``: the latest ``Ready.next_deadline_s`` of a node is reached -> ``core.on_tick(now)``;
- ``_Act``: a scheduled fault action (kill, restart, freeze, thaw, network faults, heal).

Core calls take no virtual time. After every core call the driver carries out the Ready (trace lines
for its events, datagrams into the network, disk ops into the queue, the timer re-armed), notes the
epoch the node installed (its db.json), and runs the invariant checker over every node. A core that
raises is a bug: it is recorded as a ``core_error`` violation and its process dies, as it would.

Frozen processes take no input: their events wait in the process inbox (sim/process.py) and are fed
in order at thaw time. Killed processes lose their core and inbox; ``restart`` builds a new core with
incarnation + 1 and ``known_epoch`` = the epoch it last installed.

Resources and admin requests (sim/resources.py): every ``Ready.resource_actions`` item goes to the
simulated resource monitor, whose completions come back as ``_ResDone`` events ->
``core.on_resource_report``; ``admin`` queues an ``_AdminCall`` -> ``core.on_admin`` and
``admin_replies`` records every ``AdminReply``. Each node's latest ``Ready.db_snapshot`` is kept (its
clusterdb.json) and a restarted core ``adopt_database``s it, as the runtime does. ``wall_hour`` is set
on every core before each call (failback windows). The checker's group rules (one_group_owner,
one_address, online_needs_quorum) run after every step too.

With ``wire=True`` every datagram also goes through the real encoder and decoder (sim/wirecheck.py);
a message the wire refuses or changes is a ``wire_error`` violation.

Tests drive the public methods (``kill``, ``freeze``, ``partition``, ``run_until`` ...) step by step;
``runner.simulate`` drives a whole seeded run. The operator's actions (process and network faults,
``apply``) live in sim/operations.py, a mixin of ``Simulation``.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from nodeagent.config import ClusterConfig
from nodeagent.core.effects import AdminReply, DiskOp, DiskOutcome, DiskResult, Event, Ready, ResourceReport
from nodeagent.core.messages import Message
from nodeagent.sim.clock import EventQueue
from nodeagent.sim.faults import ActionKind, FaultAction
from nodeagent.sim.invariants import InvariantChecker, NodeView, Violation, converged
from nodeagent.sim.network import Delivery, NetParams, Network
from nodeagent.sim.operations import NodeRef, Operations
from nodeagent.sim.ports import CoreFactory, DiskFactory, MemorySimDisk, SimCore, SimDisk, node_core_factory
from nodeagent.sim.process import (
    SPIN_LIMIT,
    ProcState,
    QueuedAdmin,
    QueuedCompletion,
    QueuedDatagram,
    QueuedDiskResult,
    QueuedTick,
    SimNode,
)
from nodeagent.sim.resources import Completion, SimResourceMonitor, local_online
from nodeagent.sim.trace import action_line, describe_exception, event_line
from nodeagent.sim.wirecheck import WireCheck

DISK_LATENCY_S = (0.0005, 0.002)
MAX_TRACE_LINES = 500_000
MAX_DISKS = 64
MAX_EVENTS = 200_000
MAX_ADMIN_REPLIES = 10_000


@dataclass(frozen=True, slots=True)
class _Deliver:
    delivery: Delivery


@dataclass(frozen=True, slots=True)
class _DiskExec:
    node_id: int
    incarnation: int
    op: DiskOp
    back_s: float  # time the result takes to come back


@dataclass(frozen=True, slots=True)
class _DiskDone:
    node_id: int
    incarnation: int
    result: DiskResult


@dataclass(frozen=True, slots=True)
class _Timer:
    node_id: int
    token: int


@dataclass(frozen=True, slots=True)
class _Act:
    action: FaultAction
    plan: int  # plan generation; ``end_faults`` makes older plans stale


@dataclass(frozen=True, slots=True)
class _ResDone:
    completion: Completion


@dataclass(frozen=True, slots=True)
class _AdminCall:
    node_id: int
    request_id: int
    cmd: str
    args: dict[str, Any]


_SimEvent = _Deliver | _DiskExec | _DiskDone | _Timer | _Act | _ResDone | _AdminCall


class Simulation(Operations):
    def __init__(
        self,
        config: ClusterConfig,
        seed: int,
        *,
        core_factory: CoreFactory | None = None,
        disk_factory: DiskFactory | None = None,
        net_params: NetParams | None = None,
        start_stagger_s: float | None = None,
        autostart: bool = True,
        raise_core_errors: bool = False,
        wire: bool = False,
        strict_backing: bool = False,
    ) -> None:
        self.config = config
        self.seed = seed
        self.rng = random.Random(seed)
        self.queue: EventQueue[_SimEvent] = EventQueue()
        self.network = Network(config, self.rng, net_params)
        self.checker = InvariantChecker(config, strict_backing=strict_backing)
        self.trace: list[str] = []
        self.trace_dropped = 0
        self.counters: dict[str, int] = {}
        self._core_factory = core_factory or node_core_factory
        self._disk_factory: DiskFactory = disk_factory or MemorySimDisk
        self._raise_core_errors = raise_core_errors
        self._wire = WireCheck(config) if wire else None
        self.nodes: dict[int, SimNode] = {
            n.id: SimNode(n.id, n.name) for n in sorted(config.nodes, key=lambda n: n.id)
        }
        self.disks: dict[str, SimDisk] = {config.quorum_disk: self._disk_factory(config.quorum_disk)}
        self._disk_free_at: dict[int, float] = {}  # node -> when its previous disk op reaches the disk
        self._disk_done_at: dict[int, float] = {}  # node -> when its previous disk result gets back
        self._fault_refs: dict[int, int] = {}  # plan ref -> installed network fault id
        self._plan = 0
        self.monitor = SimResourceMonitor(self.rng, {i: n.name for i, n in self.nodes.items()})
        self.wall_hour: int | None = 12  # the local hour every core is told (failback windows)
        self.events: list[tuple[float, str, Event]] = []  # every core event: (time, node, event)
        self.admin_replies: dict[int, tuple[float, AdminReply]] = {}  # request id -> (when, reply)
        self.db_snapshots: dict[int, dict[str, Any]] = {}  # node -> its last saved cluster database
        self._admin_seq = 0
        if autostart:
            stagger = config.timing.join_timeout_s / 2 if start_stagger_s is None else start_stagger_s
            for node_id in self.nodes:
                at = self.rng.uniform(0.0, stagger) if stagger > 0 else 0.0
                self.queue.push(at, _Act(FaultAction(at, ActionKind.START, node=node_id), self._plan))

    # -- lookups -------------------------------------------------------------------------------------
    @property
    def now(self) -> float:
        return self.queue.now

    def node_id(self, node: NodeRef) -> int:
        return self.config.node(node).id

    def node(self, node: NodeRef) -> SimNode:
        return self.nodes[self.node_id(node)]

    def core(self, node: NodeRef) -> SimCore | None:
        return self.node(node).core

    def live_cores(self) -> list[tuple[int, SimCore]]:
        return [(i, n.core) for i, n in self.nodes.items() if n.core is not None]

    def quorum_holder(self) -> str | None:
        return self.disks[self.config.quorum_disk].holder()

    def views(self) -> list[NodeView]:
        now = self.now
        return [self._view(n, now) for n in self.nodes.values()]

    def _view(self, n: SimNode, now: float) -> NodeView:
        c = n.core
        if c is None:
            return NodeView(n.node_id, n.name, False, False, n.incarnation, None, 0, (), None, False)
        return NodeView(
            n.node_id,
            n.name,
            True,
            n.state is ProcState.FROZEN,
            n.incarnation,
            c.phase,
            c.epoch,
            tuple(c.members),
            c.quorum_owner,
            c.holds_quorum(now),
            local_online(c),
        )

    def quorum_holders(self) -> list[str]:
        """Names of the nodes whose core says it holds the quorum now (frozen ones included)."""
        now = self.now
        return [n.name for n in self.nodes.values() if n.core is not None and n.core.holds_quorum(now)]

    def converged(self) -> bool:
        return converged(self.views())

    @property
    def violations(self) -> list[Violation]:
        return self.checker.violations

    def settle_bound_s(self) -> float:
        """How long a healed cluster may take to converge, from the timing (see runner.simulate)."""
        return self.config.timing.settle_bound_s

    # -- running -------------------------------------------------------------------------------------
    def step(self) -> bool:
        """Process the next event. False when nothing is pending."""
        if not len(self.queue):
            return False
        _, ev = self.queue.pop()
        self._dispatch(ev)
        return True

    def run_until(self, t: float) -> None:
        """Process every event due at or before ``t``, then move the clock to ``t``."""
        while True:
            nxt = self.queue.peek_time()
            if nxt is None or nxt > t:
                break
            self.step()
        self.queue.advance_to(t)

    def run_for(self, dt: float) -> None:
        self.run_until(self.now + dt)

    def run_until_condition(self, pred: Callable[[], bool], deadline: float) -> bool:
        """Step until ``pred()`` holds (checked after every event) or ``deadline``; returns ``pred()``."""
        if pred():
            return True
        while True:
            nxt = self.queue.peek_time()
            if nxt is None or nxt > deadline:
                self.queue.advance_to(deadline)
                return pred()
            self.step()
            if pred():
                return True

    def schedule(self, actions: Iterable[FaultAction]) -> None:
        for a in actions:
            self.queue.push(a.at_s, _Act(a, self._plan))

    def end_faults(self) -> None:
        """Cancel the rest of the schedule, heal the network, thaw frozen and restart dead nodes."""
        self._plan += 1
        self.heal()
        for n in self.nodes.values():
            if n.state is ProcState.FROZEN:
                self.thaw(n.node_id)
        for n in self.nodes.values():
            if n.state is ProcState.DEAD:
                self.restart(n.node_id)

    def settle(self) -> float | None:
        """After ``end_faults``: run until converged (at most ``settle_bound_s``), then a stability window
        of two node-down periods, then check the ``final`` rule. Returns when it first converged."""
        converged_at: float | None = None
        if self.run_until_condition(self.converged, self.now + self.settle_bound_s()):
            converged_at = self.now
        self.run_for(2 * self.config.timing.node_down_after_s)
        note = (
            f" (it had converged at {converged_at:.4f} and did not stay so)"
            if converged_at is not None
            else f" (it never converged within {self.settle_bound_s():.4f} s)"
        )
        for v in self.checker.check_final(self.now, self.views(), note):
            self._trace(action_line(self.now, f"VIOLATION {v.name}: {v.evidence}"))
        return converged_at

    # -- resources and admin requests ----------------------------------------------------------------
    def admin(self, node: NodeRef, cmd: str, args: dict[str, Any] | None = None) -> int:
        """Queue an admin request to ``node``'s control socket (now); returns its request id."""
        self._admin_seq += 1
        rid = self._admin_seq
        n = self.node(node)
        self._trace(action_line(self.now, f"admin {n.name} #{rid} {cmd}"))
        self.queue.push(self.now, _AdminCall(n.node_id, rid, cmd, dict(args or {})))
        return rid

    def reply(self, request_id: int) -> AdminReply | None:
        got = self.admin_replies.get(request_id)
        return None if got is None else got[1]

    def run_until_answered(self, request_id: int, timeout_s: float = 10.0) -> AdminReply:
        """Run until request ``request_id`` is answered; a timeout answers it "no answer from the cluster"."""
        self.run_until_condition(lambda: request_id in self.admin_replies, self.now + timeout_s)
        got = self.reply(request_id)
        if got is None:
            got = AdminReply(request_id, False, {}, "no answer from the cluster", "timeout")
            self._record_reply(got)
        return got

    def request(
        self, node: NodeRef, cmd: str, args: dict[str, Any] | None = None, timeout_s: float = 10.0
    ) -> AdminReply:
        """``admin`` + ``run_until_answered``: what ``wolfpack`` admin verbs do through the control socket."""
        return self.run_until_answered(self.admin(node, cmd, args), timeout_s)

    def fail(self, node: NodeRef, resource: str) -> bool:
        """Make ``resource`` fail now on ``node`` (fail on demand); False when it is not online there."""
        n = self.node(node)
        if n.state is not ProcState.RUNNING:
            return False
        report = self.monitor.fail(n.node_id, resource)
        self._trace(action_line(self.now, f"fail {n.name} {resource}" + ("" if report else " (not online)")))
        if report is None:
            return False
        self._check()
        self._report(n, report)
        return True

    # -- internals -----------------------------------------------------------------------------------
    def _boot(self, n: SimNode, verb: str) -> None:
        n.incarnation += 1
        known = n.installed_epoch
        self._trace(action_line(self.now, f"{verb} {n.name} incarnation={n.incarnation} known_epoch={known}"))
        try:
            core = self._core_factory(self.config, n.node_id, n.incarnation, known)
        except Exception as e:
            if self._raise_core_errors:
                raise
            self._core_error(n, "NodeCore()", e)
            return
        database = self.db_snapshots.get(n.node_id)
        adopt = getattr(core, "adopt_database", None)
        if database is not None and adopt is not None:
            adopt(database)  # the runtime loads nodes/NAME/clusterdb.json the same way
        n.boot(core, self.now)
        self.monitor.node_started(n.node_id, n.incarnation)
        self._count(verb)
        self._call(n, "start", lambda c: c.start(self.now))

    def _dispatch(self, ev: _SimEvent) -> None:
        if isinstance(ev, _Deliver):
            self._deliver(ev.delivery)
        elif isinstance(ev, _Timer):
            n = self.nodes[ev.node_id]
            if not n.alive or not n.timer_fired(ev.token):
                return
            if n.state is ProcState.FROZEN:
                n.enqueue(QueuedTick())
            else:
                self._call(n, "on_tick", lambda c: c.on_tick(self.now))
        elif isinstance(ev, _DiskExec):
            self._disk_exec(ev)
        elif isinstance(ev, _DiskDone):
            n = self.nodes[ev.node_id]
            if not n.alive or n.incarnation != ev.incarnation:
                self._count("disk_results_lost")
            elif n.state is ProcState.FROZEN:
                n.enqueue(QueuedDiskResult(ev.result))
            else:
                self._call(n, "on_disk_result", lambda c: c.on_disk_result(ev.result, self.now))
        elif isinstance(ev, _ResDone):
            n = self.nodes[ev.completion.node_id]
            if not n.alive or n.incarnation != ev.completion.incarnation:
                self._count("resource_reports_lost")
            elif n.state is ProcState.FROZEN:
                n.enqueue(QueuedCompletion(ev.completion))
            else:
                self._complete(n, ev.completion)
        elif isinstance(ev, _AdminCall):
            n = self.nodes[ev.node_id]
            if not n.alive:
                self._record_reply(
                    AdminReply(ev.request_id, False, {}, f"{n.name} is not running", "timeout")
                )
            elif n.state is ProcState.FROZEN:
                n.enqueue(QueuedAdmin(ev.request_id, ev.cmd, ev.args))
            else:
                self._admin_call(n, ev.request_id, ev.cmd, ev.args)
        elif ev.plan == self._plan:
            self.apply(ev.action)

    def _deliver(self, d: Delivery) -> None:
        n = self.nodes[d.dst]
        st = self.network.stats
        if not n.alive or d.sent_s < n.started_s:
            self._count("datagrams_to_dead")
            return
        if self.network.is_cut(d.src, d.dst, d.net):
            st.dropped_cut += 1
            return
        if n.state is ProcState.FROZEN:
            n.enqueue(QueuedDatagram(d.net, d.src, d.src_incarnation, d.msg))
            return
        st.delivered += 1
        self._call(n, "on_message", lambda c: c.on_message(d.net, d.src, d.src_incarnation, d.msg, self.now))

    def _disk_exec(self, ev: _DiskExec) -> None:
        name = self.nodes[ev.node_id].name
        disk = self.disks.get(ev.op.disk)
        if disk is None and len(self.disks) < MAX_DISKS:
            # A disk resource other than the quorum disk: created on first use, empty and unreserved.
            disk = self.disks[ev.op.disk] = self._disk_factory(ev.op.disk)
        if disk is None:
            result = DiskResult(ev.op.op_id, DiskOutcome.UNAVAILABLE)
        else:
            try:
                result = disk.apply(name, ev.op)
            except Exception as e:
                self.checker.record(
                    self.now,
                    "disk_error",
                    f"{name} {ev.op.kind.value} on {ev.op.disk}: {describe_exception(e)}",
                )
                result = DiskResult(ev.op.op_id, DiskOutcome.UNAVAILABLE)
        self._count(f"disk_{ev.op.kind.value}_{result.outcome.value}")
        # Results come back in issue order too: the node's I/O path completes its commands in turn.
        done = max(self.now + ev.back_s, self._disk_done_at.get(ev.node_id, 0.0))
        self._disk_done_at[ev.node_id] = done
        self.queue.push(done, _DiskDone(ev.node_id, ev.incarnation, result))

    def _call(self, n: SimNode, what: str, fn: Callable[[SimCore], Ready]) -> None:
        core = n.core
        if core is None:
            return
        self._count("core_calls")
        if hasattr(core, "wall_hour"):
            core.wall_hour = self.wall_hour  # the runtime sets the local hour before every call
        try:
            ready = fn(core)
        except Exception as e:
            if self._raise_core_errors:
                raise
            self._core_error(n, what, e)
            return
        self._carry_out(n, core, ready, what)
        self._check(n)

    def _carry_out(self, n: SimNode, core: SimCore, ready: Ready, what: str) -> None:
        now = self.now
        for event in ready.events:
            self._count(f"event_{event.kind}")
            self._trace(event_line(now, n.name, event))
            if len(self.events) < MAX_EVENTS:
                self.events.append((now, n.name, event))
        for action in ready.resource_actions:
            self._count("resource_actions")
            for c in self.monitor.submit(n.node_id, n.incarnation, action, now):
                self.queue.push(c.at_s, _ResDone(c))
        for reply in ready.admin_replies:
            self._record_reply(reply)
        if ready.db_snapshot is not None:
            self.db_snapshots[n.node_id] = ready.db_snapshot
        for send in ready.sends:
            msg = send.msg if self._wire is None else self._through_wire(n, send.msg)
            if msg is None:
                continue
            for d in self.network.route(now, n.node_id, n.incarnation, send.net, send.dst, msg):
                self.queue.push(d.at_s, _Deliver(d))
        for op in ready.disk_ops:
            self._count("disk_ops")
            latency = self.rng.uniform(*DISK_LATENCY_S)
            # One I/O path per node: its ops reach the disk in the order it issued them.
            at = max(now + latency / 2, self._disk_free_at.get(n.node_id, 0.0))
            self._disk_free_at[n.node_id] = at
            self.queue.push(at, _DiskExec(n.node_id, n.incarnation, op, latency / 2))
        epoch = core.epoch
        if epoch > n.installed_epoch:
            n.installed_epoch = epoch  # what db.json would now hold
        if ready.exit:
            # RUNNING -> DEAD: the operator's stop is complete and the process exits
            self._die(n)
            self._trace(action_line(now, f"exit {n.name}"))
            return
        deadline = ready.next_deadline_s
        if what == "on_tick":
            deadline = self._spin_guard(n, core, deadline)
        token = n.arm(deadline)
        if token is not None and deadline is not None:
            self.queue.push(deadline, _Timer(n.node_id, token))

    def _spin_guard(self, n: SimNode, core: SimCore, deadline: float | None) -> float | None:
        """A tick that keeps asking for a past deadline is a busy loop: record it once (process.py)."""
        deadline, became_busy = n.tick_returned(self.now, deadline)
        if became_busy:
            phase = getattr(core.phase, "name", str(core.phase))
            evidence = (
                f"{n.name} on_tick returned a past deadline {SPIN_LIMIT} times at {self.now:.6f} "
                f"(phase {phase})"
            )
            self.checker.record(self.now, "busy_timer", evidence)
            self._trace(action_line(self.now, f"VIOLATION busy_timer: {evidence}"))
        return deadline

    def _through_wire(self, n: SimNode, msg: Message) -> Message | None:
        assert self._wire is not None
        out, problem = self._wire.through(n.node_id, n.incarnation, msg)
        if problem and self._wire.first_time(msg, problem):
            evidence = f"{n.name} sent {msg!r}: {problem}"
            self.checker.record(self.now, "wire_error", evidence)
            self._trace(action_line(self.now, f"VIOLATION wire_error: {evidence}"))
        return out

    def _core_error(self, n: SimNode, what: str, e: Exception) -> None:
        evidence = f"{n.name} {what}: {describe_exception(e)}"
        self.checker.record(self.now, "core_error", evidence)
        self._trace(action_line(self.now, f"CRASH {evidence}"))
        self._die(n)
        self._check()

    def _check(self, stepped: SimNode | None = None) -> None:
        """Run the checker: after a core call only ``stepped`` can have installed anything, so only its
        view is built; who holds the quorum is asked of every live core (time alone can end a lease)."""
        now = self.now
        holders: list[int] = []
        frozen: list[int] = []
        for n in self.nodes.values():
            if n.core is not None and n.core.holds_quorum(now):
                holders.append(n.node_id)
                if n.state is ProcState.FROZEN:
                    frozen.append(n.node_id)
        views = self.views() if stepped is None else [self._view(stepped, now)]
        found = self.checker.check_step(
            now, views, self.quorum_holder, holders=holders, frozen_holders=frozen
        )
        found += self.checker.check_groups(now, views, self.monitor.bound)
        for v in found:
            self._trace(action_line(now, f"VIOLATION {v.name}: {v.evidence}"))

    def _die(self, n: SimNode) -> None:
        """The process is gone: its core, inbox, resources and bound addresses with it."""
        n.kill()
        self.monitor.node_gone(n.node_id)

    def _complete(self, n: SimNode, c: Completion) -> None:
        report = self.monitor.complete(c)
        if report is not None:
            self._report(n, report)

    def _report(self, n: SimNode, report: ResourceReport) -> None:
        call = getattr(n.core, "on_resource_report", None)
        if call is not None:
            self._call(n, "on_resource_report", lambda c: call(report, self.now))

    def _admin_call(self, n: SimNode, request_id: int, cmd: str, args: dict[str, Any]) -> None:
        call = getattr(n.core, "on_admin", None)
        if call is None:
            self._record_reply(AdminReply(request_id, False, {}, "this core takes no admin requests", "bad"))
            return
        self._call(n, "on_admin", lambda c: call(request_id, cmd, args, self.now))

    def _record_reply(self, reply: AdminReply) -> None:
        if reply.request_id not in self.admin_replies and len(self.admin_replies) < MAX_ADMIN_REPLIES:
            self.admin_replies[reply.request_id] = (self.now, reply)

    def _trace(self, text: str) -> None:
        if len(self.trace) < MAX_TRACE_LINES:
            self.trace.append(text)
        else:
            self.trace_dropped += 1

    def _count(self, key: str) -> None:
        self.counters[key] = self.counters.get(key, 0) + 1
