"""The driver: owns one NodeCore, feeds it inputs, carries out its Ready effects.

Theory of operation
-------------------
The driver is the only code that calls core methods, and every call goes through ``_step``: read the
clock once, call the core with that ``now_s``, then apply the returned Ready before anything else can
run. Applying a Ready never awaits - sends are queued to the messenger, disk operations to the disk
executor, events are appended to the event log, the deadline is stored - so a core call and its
effects are one atomic step of the trio scheduler, and calls from different tasks (the inbound loop,
the timer, the disk executor, the control socket) are serialized without a lock, in the order they
happen. Effects are applied in the core's order: events, then sends, then disk operations.

Inputs:
- datagrams: the messenger's receive loops put authenticated messages on a bounded channel; the
  ``run`` loop takes them one by one (``core.on_message``);
- the timer: ``run`` waits for the channel inside a cancel scope whose deadline is the core's latest
  ``next_deadline_s`` (the most recent Ready's deadline wins; None = no timer); when it expires the
  loop calls ``core.on_tick``. Updating the scope's deadline from any step re-arms the wait at once,
  and a past deadline is served before the next datagram;
- disk results: the disk executor calls ``on_disk_result`` directly. When a disk operation cannot even
  be queued, the driver answers it ``UNAVAILABLE`` itself right after the current step, so every
  DiskOp still gets exactly one DiskResult;
- the operator: ``request_stop``, ``set_paused``, ``snapshot`` (control socket and signals).

Clocks. The core reads no clock; it gets ``now_s`` from ``self.now``, which is ``time.monotonic()``
(CLOCK_MONOTONIC) - the same clock the event log's ``mono_s`` and other node processes use, so the
core's times, deadlines and the log all agree across processes. trio's own clock is
``perf_counter`` plus a random offset, so a core deadline ``d`` becomes the trio deadline
``trio.current_time() + (d - now())``: the offset is measured at the moment of conversion and both
clocks advance at the same rate, so nothing drifts. If trio wakes up a hair before ``d`` by the
monotonic clock, the loop simply waits again for the remainder; ``on_tick`` is never called early.

After a Ready with ``exit`` (the operator's stop is complete) the driver sets ``exited`` and ignores
every later input. After the installed epoch changes, ``on_membership`` is told (node.py writes
db.json). An exception from the core is a bug: it is logged, kept in ``failure`` and re-raised, and
``exited`` is set so the process stops instead of running a core in an unknown state.
"""

from __future__ import annotations

import functools
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

import trio

from nodeagent.config import Net
from nodeagent.core.effects import (
    AdminReply,
    DiskOp,
    DiskOutcome,
    DiskResult,
    Event,
    Ready,
    ResourceAction,
    ResourceReport,
    Send,
)
from nodeagent.core.messages import Message, Phase
from nodeagent.core.snapshot import NodeSnapshot
from nodeagent.runtime.files import Membership
from nodeagent.runtime.messenger import Inbound

MIN_TICK_GAP_S = 0.001  # a deadline that does not move forward cannot spin the loop

log = logging.getLogger("nodeagent.driver")


class Core(Protocol):
    """What the driver needs of a core (``nodeagent.core.node.NodeCore``; tests may use a fake)."""

    @property
    def epoch(self) -> int: ...
    @property
    def members(self) -> tuple[int, ...]: ...
    @property
    def quorum_owner(self) -> int | None: ...
    @property
    def phase(self) -> Phase: ...

    def start(self, now_s: float) -> Ready: ...
    def on_message(self, net: Net, sender: int, incarnation: int, msg: Message, now_s: float) -> Ready: ...
    def on_disk_result(self, result: DiskResult, now_s: float) -> Ready: ...
    def on_tick(self, now_s: float) -> Ready: ...
    def stop(self, now_s: float) -> Ready: ...
    def set_paused(self, paused: bool, now_s: float) -> Ready: ...
    def on_admin(self, request_id: int, cmd: str, args: dict[str, Any], now_s: float) -> Ready: ...
    def on_resource_report(self, report: ResourceReport, now_s: float) -> Ready: ...
    def snapshot(self, now_s: float) -> NodeSnapshot: ...


class SendSink(Protocol):
    def send(self, send: Send) -> None: ...


class DiskSink(Protocol):
    def submit(self, op: DiskOp) -> bool: ...


class ResourceSink(Protocol):
    def submit(self, action: ResourceAction) -> None: ...


class EventSink(Protocol):
    def write(self, event: Event, mono_s: float) -> object: ...


class Driver:
    def __init__(
        self,
        core: Core,
        inbound: trio.MemoryReceiveChannel[Inbound],
        *,
        sends: SendSink,
        events: EventSink,
        on_membership: Callable[[Membership], None] | None = None,
        now: Callable[[], float] = time.monotonic,
        name: str = "node",
    ) -> None:
        self.core = core
        self.name = name  # for log lines
        self.now = now
        self.disks: DiskSink | None = None  # attached by node.py: the executor needs the driver too
        self.resources: ResourceSink | None = None  # the resource monitor, attached by node.py
        self.on_database: Callable[[dict[str, Any]], None] | None = None  # persist the cluster database
        self._admin_seq = 0
        self._admin_waiters: dict[int, tuple[trio.Event, list[AdminReply]]] = {}
        self._pending_reports: deque[ResourceReport] = deque()
        self._inbound = inbound
        self._sends = sends
        self._events = events
        self._on_membership = on_membership
        self._deadline_s: float | None = None
        self._wait_scope: trio.CancelScope | None = None
        self._last_tick_trio = -float("inf")
        self._pending_results: deque[DiskResult] = deque()
        self._installed_epoch = 0
        self.started = False
        self.stopping = False
        self.exited = trio.Event()
        self.failure: BaseException | None = None
        self.steps = 0
        self.ticks = 0

    # -- inputs ---------------------------------------------------------------------------------
    def start(self) -> None:
        if not self.started:
            self.started = True
            self._step(self.core.start)

    def on_message(self, item: Inbound) -> None:
        self._step(lambda now: self.core.on_message(item.net, item.sender, item.incarnation, item.msg, now))

    def on_disk_result(self, result: DiskResult) -> None:
        self._step(lambda now: self.core.on_disk_result(result, now))

    def tick(self) -> None:
        self.ticks += 1
        self._step(self.core.on_tick)

    def request_stop(self) -> None:
        """The operator's graceful stop; ``exited`` is set when the core says it is done."""
        if not self.stopping:
            self.stopping = True
            self._step(self.core.stop)

    def set_paused(self, paused: bool) -> None:
        self._step(lambda now: self.core.set_paused(paused, now))

    def on_resource_report(self, report: ResourceReport) -> None:
        self._step(functools.partial(self._report_call, report))

    async def admin(self, cmd: str, args: dict[str, Any], timeout_s: float = 10.0) -> AdminReply:
        """Pass an admin request to the core and wait for its answer (it may come from the quorum owner)."""
        self._admin_seq += 1
        request_id = self._admin_seq
        done, box = trio.Event(), list[AdminReply]()
        self._admin_waiters[request_id] = (done, box)
        try:
            self._step(lambda now: self.core.on_admin(request_id, cmd, args, now))
            with trio.move_on_after(timeout_s):
                await done.wait()
        finally:
            self._admin_waiters.pop(request_id, None)
        if not box:
            return AdminReply(request_id, False, {}, "no answer from the cluster in time", "timeout")
        return box[0]

    def snapshot(self) -> NodeSnapshot:
        return self.core.snapshot(self.now())

    @property
    def deadline_s(self) -> float | None:
        return self._deadline_s

    # -- the loop -------------------------------------------------------------------------------
    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Start the core, then serve datagrams and the timer until the core exits."""
        self.start()
        task_status.started()
        while not self.exited.is_set():
            with trio.CancelScope(deadline=self._trio_deadline()) as scope:
                self._wait_scope = scope
                try:
                    item = await self._inbound.receive()
                except trio.EndOfChannel:
                    return
            self._wait_scope = None
            if scope.cancelled_caught:
                deadline = self._deadline_s
                if deadline is not None and self.now() >= deadline:
                    self._last_tick_trio = trio.current_time()
                    self.tick()
                continue
            self.on_message(item)

    def _trio_deadline(self) -> float:
        if self._deadline_s is None:
            return float("inf")
        at = trio.current_time() + (self._deadline_s - self.now())
        return max(at, self._last_tick_trio + MIN_TICK_GAP_S)

    # -- applying a Ready -----------------------------------------------------------------------
    def _step(self, call: Callable[[float], Ready]) -> None:
        if self.exited.is_set():
            return
        self._run_core(call)
        while (self._pending_results or self._pending_reports) and not self.exited.is_set():
            if self._pending_results:
                result = self._pending_results.popleft()
                self._run_core(functools.partial(self._disk_result_call, result))
            else:
                report = self._pending_reports.popleft()
                self._run_core(functools.partial(self._report_call, report))

    def _report_call(self, report: ResourceReport, now: float) -> Ready:
        return self.core.on_resource_report(report, now)

    def _disk_result_call(self, result: DiskResult, now: float) -> Ready:
        return self.core.on_disk_result(result, now)

    def _run_core(self, call: Callable[[float], Ready]) -> None:
        now = self.now()
        if hasattr(self.core, "wall_hour"):
            self.core.wall_hour = time.localtime().tm_hour  # failback windows are in local hours
        try:
            ready = call(now)
            self.steps += 1
            self._apply(ready, now)
        except BaseException as e:
            if isinstance(e, Exception):
                log.exception("%s: the cluster service core failed; stopping this node", self.name)
            self.failure = e
            self._set_exited()
            raise

    def _apply(self, ready: Ready, now: float) -> None:
        for event in ready.events:
            self._events.write(event, now)
        for send in ready.sends:
            self._sends.send(send)
        for op in ready.disk_ops:
            if self.disks is None or not self.disks.submit(op):
                log.warning("%s: disk queue full: %s on %s answered UNAVAILABLE", self.name, op.kind, op.disk)
                self._pending_results.append(DiskResult(op_id=op.op_id, outcome=DiskOutcome.UNAVAILABLE))
        for action in ready.resource_actions:
            if self.resources is not None:
                self.resources.submit(action)
            elif action.action != "terminate":
                # No monitor (tests without one): the resource cannot run here.
                report = ResourceReport(
                    action.resource, action.action, action.token, False, "no resource monitor"
                )
                self._pending_reports.append(report)
        for reply in ready.admin_replies:
            waiter = self._admin_waiters.get(reply.request_id)
            if waiter is not None:
                waiter[1].append(reply)
                waiter[0].set()
        if ready.db_snapshot is not None and self.on_database is not None:
            self.on_database(ready.db_snapshot)
        self._deadline_s = ready.next_deadline_s
        if self._wait_scope is not None:
            self._wait_scope.deadline = self._trio_deadline()
        self._note_membership()
        if ready.exit:
            log.info("%s: the core is done: exiting", self.name)
            self._set_exited()

    def _set_exited(self) -> None:
        self.exited.set()
        if self._wait_scope is not None:
            self._wait_scope.cancel()  # ``run`` returns instead of waiting for the next input

    def _note_membership(self) -> None:
        epoch = self.core.epoch
        if epoch != self._installed_epoch and epoch > 0:
            self._installed_epoch = epoch
            if self._on_membership is not None:
                membership = Membership(
                    epoch=epoch, members=tuple(self.core.members), quorum_owner=self.core.quorum_owner
                )
                try:
                    self._on_membership(membership)
                except OSError as e:
                    log.warning("%s: cannot record membership epoch %d: %s", self.name, epoch, e)
