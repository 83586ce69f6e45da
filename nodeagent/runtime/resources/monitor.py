"""The resource monitor: carries out the core's resource actions and reports how they ended.

Theory of operation
-------------------
MSCS runs resource DLLs in a resource monitor process and keeps every policy (restart, failover,
dependency order, PendingTimeout) in the cluster service. Here the core is the cluster service and
this class is the monitor: it keeps NO policy. The driver ``submit``s each ``ResourceAction`` of a
Ready; the monitor answers every one with exactly one ``ResourceReport`` through ``report`` (the
driver's ``on_resource_report``), and adds unsolicited ``failed`` reports (token 0) when a resource
fails by itself (a child process exits, a disk reservation is lost, ``fail`` on demand).

Concurrency. Each resource has a slot: a FIFO of actions and at most one worker task. Actions of
one resource run one after the other, in the order submitted; different resources run in parallel
(independent resources start in parallel, MSCS.md). ``submit`` is synchronous, never blocks and
never raises: it appends to the slot's queue and starts the worker if none runs. Reports do not go
to the driver from inside ``submit`` (the driver is applying a Ready then): every report goes
through one outbox, delivered in order by the ``_deliver`` task.

Bounds. ``online``/``offline`` are capped by the resource type's own generous bound (10 x its
start-up time + 30 s for services; the core's PendingTimeout is the real policy and normally
terminates first); ``looks_alive``/``is_alive`` by ``PROBE_TIMEOUT_S``; ``terminate`` by
``TERMINATE_BOUND_S`` and it always reports ok. At most ``MAX_QUEUED`` actions wait per resource and
``MAX_RESOURCES`` resources are known (idle offline ones are forgotten to make room); past that an
action is answered ok=False at once. The outbox is unbounded in type only: it holds at most one
report per queued action plus one failure per resource.

``terminate`` jumps the queue: the action in flight is cancelled (reported ok=False "cancelled by
terminate"), actions still waiting are answered ok=False "superseded by terminate", then the
resource is terminated (reported ok=True: it is offline now).

States (registry.py, read by the client endpoint): online -> Online Pending -> Online | Failed;
offline -> Offline Pending -> Offline; terminate -> Offline; a failure -> Failed. An ``online`` always
starts from a fresh instance of the type (a stale one is terminated first), with the properties of
that action. A failure noticed while the resource is still Online Pending fails that online.

Extension beyond CONTRACT3.md: action ``"fail"`` (and the method ``fail``) makes an online
resource fail now (``cluster resource /fail``): it is cleaned up like any failed resource and the
unsolicited failed report follows; the action itself is answered ok=True (ok=False: not online).

When ``run`` ends (the node stops or is cancelled), every resource is ``abandon``ed synchronously:
children killed, sockets closed, names unregistered, disk handles closed WITHOUT release.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from nodeagent.config import ClusterConfig
from nodeagent.core.effects import ResourceAction, ResourceReport
from nodeagent.runtime.diskexec import DiskOpener, file_disk_opener
from nodeagent.runtime.resources.base import Host, Resource, ResourceError, State
from nodeagent.runtime.resources.catalog import Catalog, default_catalog
from nodeagent.runtime.resources.names import NameTable
from nodeagent.runtime.resources.registry import ResourceRegistry
from nodeagent.runtime.transport import Transport, UdpTransport

ACTIONS = frozenset({"online", "offline", "terminate", "looks_alive", "is_alive", "fail"})
PROBE_TIMEOUT_S = 2.0
TERMINATE_BOUND_S = 5.0
MAX_RESOURCES = 1024
MAX_QUEUED = 32

log = logging.getLogger("nodeagent.resources")

ReportCallback = Callable[[ResourceReport], None]


@dataclass(eq=False, slots=True)
class _Cleanup:
    """Internal queue item: terminate an instance that failed by itself (no report)."""

    impl: Resource


@dataclass(eq=False, slots=True)
class _Slot:
    name: str
    group: str = ""
    rtype: str = ""
    queue: deque[ResourceAction | _Cleanup] = field(default_factory=deque)
    impl: Resource | None = None
    state: State = State.OFFLINE
    running: bool = False
    scope: trio.CancelScope | None = None
    current: str = ""  # the action in flight
    pending_failure: str | None = None


def _no_disks(name: str) -> Any:
    raise ResourceError("this monitor has no cluster directory, so no disks")


class ResourceMonitor:
    def __init__(
        self,
        config: ClusterConfig,
        node_name: str,
        report: ReportCallback | None = None,
        *,
        cluster_dir: Path | None = None,
        disk_opener: DiskOpener | None = None,
        transport: Transport | None = None,
        names: NameTable | None = None,
        disks_in_thread: bool = True,
        log_dir: Path | None = None,
        catalog: Catalog | None = None,
    ) -> None:
        if disk_opener is None:
            disk_opener = file_disk_opener(cluster_dir / "disks") if cluster_dir is not None else _no_disks
        self.report = report
        self.names = names if names is not None else NameTable()
        self.registry = ResourceRegistry()
        self.host = Host(
            config=config,
            node_name=node_name,
            transport=transport if transport is not None else UdpTransport(),
            names=self.names,
            registry=self.registry,
            disk_opener=disk_opener,
            disks_in_thread=disks_in_thread,
            log_dir=log_dir,
        )
        self._catalog = catalog if catalog is not None else default_catalog()
        self._slots: dict[str, _Slot] = {}
        self._outbox_send, self._outbox_recv = trio.open_memory_channel[ResourceReport](math.inf)
        self._nursery: trio.Nursery | None = None
        self._closed = False
        self._idle_event = trio.Event()
        self._posted = 0
        self.reports = 0  # delivered
        self.rejected = 0  # answered at once: queue full, too many resources, unknown action

    # -- the driver's side -------------------------------------------------------------------------
    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = self.host.nursery = nursery
                nursery.start_soon(self._deliver)
                for slot in self._slots.values():
                    self._kick(slot)  # actions submitted before run
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._closed = True
            self._nursery = self.host.nursery = None
            for slot in self._slots.values():
                if slot.impl is not None:
                    try:
                        slot.impl.abandon()
                    except Exception:
                        log.exception("%s: abandon failed", slot.name)

    def submit(self, action: ResourceAction) -> None:
        """Queue ``action``; its report comes later through ``report``. Never blocks, never raises."""
        try:
            self._submit(action)
        except Exception as e:
            log.exception("resource monitor: submit of %s %s failed", action.action, action.resource)
            self._emit(action, False, f"internal error in the resource monitor: {type(e).__name__}")

    def fail(self, resource: str, detail: str = "failed on demand (cluster resource /fail)") -> bool:
        """Make an online resource fail now; False when it is not online on this node."""
        slot = self._slots.get(resource)
        if slot is None or slot.impl is None or slot.state is not State.ONLINE:
            return False
        self._fail(slot, detail)
        return True

    async def idle(self) -> None:
        """Return once no action is queued or running and every report has been delivered.

        For a graceful stop: the node can wait (bounded) for its terminates to be carried out and
        reported before it cancels the monitor.
        """
        while self._posted != self.reports or any(s.running or s.queue for s in self._slots.values()):
            if self._idle_event.is_set():  # a fresh one, shared by every waiter
                self._idle_event = trio.Event()
            await self._idle_event.wait()
        await trio.lowlevel.checkpoint()

    def state_of(self, resource: str) -> str:
        slot = self._slots.get(resource)
        return slot.state.value if slot is not None else State.OFFLINE.value

    def snapshot(self) -> list[dict[str, Any]]:
        """What this node's monitor is running, for the control socket's status."""
        return [
            {"name": e.resource, "group": e.group, "type": e.rtype, "state": e.state, "detail": e.detail}
            for e in self.registry.entries()
        ]

    # -- queueing ----------------------------------------------------------------------------------
    def _submit(self, action: ResourceAction) -> None:
        if self._closed:
            return  # the node is going away; nobody is left to read a report
        if action.action not in ACTIONS:
            self._reject(action, f"unknown action {action.action[:40]!r}")
            return
        slot = self._slots.get(action.resource)
        if slot is None:
            if len(self._slots) >= MAX_RESOURCES and not self._forget_idle():
                self._reject(action, f"resource monitor full: at most {MAX_RESOURCES} resources")
                return
            slot = self._slots[action.resource] = _Slot(action.resource, action.group, action.rtype)
        if action.action == "terminate":
            self._supersede(slot)
        elif len(slot.queue) >= MAX_QUEUED:
            self._reject(action, f"resource monitor queue full: {MAX_QUEUED} actions waiting")
            return
        slot.queue.append(action)
        self._kick(slot)

    def _supersede(self, slot: _Slot) -> None:
        waiting, slot.queue = slot.queue, deque()
        for item in waiting:
            if isinstance(item, ResourceAction):
                self._emit(item, False, "superseded by terminate")
        if slot.scope is not None and slot.current != "terminate":
            slot.scope.cancel()

    def _reject(self, action: ResourceAction, detail: str) -> None:
        self.rejected += 1
        log.warning("resource %s: %s refused: %s", action.resource, action.action, detail)
        self._emit(action, False, detail)

    def _forget_idle(self) -> bool:
        for name, slot in self._slots.items():
            if not slot.running and not slot.queue and slot.state is State.OFFLINE:
                del self._slots[name]
                return True
        return False

    def _kick(self, slot: _Slot) -> None:
        if slot.queue and not slot.running and self._nursery is not None:
            slot.running = True
            self._nursery.start_soon(self._work, slot, name=f"resource {slot.name}")

    # -- reports -----------------------------------------------------------------------------------
    def _emit(self, action: ResourceAction, ok: bool, detail: str) -> None:
        self._post(ResourceReport(action.resource, action.action, action.token, ok, _one_line(detail)))

    def _post(self, report: ResourceReport) -> None:
        if not self._closed:
            self._posted += 1
            self._outbox_send.send_nowait(report)  # unbounded channel: never WouldBlock

    async def _deliver(self) -> None:
        async for report in self._outbox_recv:
            try:
                if self.report is not None:
                    self.report(report)
            except Exception:
                log.exception("resource monitor: delivering %s of %s failed", report.action, report.resource)
            finally:
                self.reports += 1
                self._idle_event.set()

    # -- the worker --------------------------------------------------------------------------------
    async def _work(self, slot: _Slot) -> None:
        try:
            while slot.queue:
                item = slot.queue.popleft()
                if isinstance(item, _Cleanup):
                    await self._terminate_impl(item.impl)
                    continue
                ok, detail = await self._perform(slot, item)
                self._emit(item, ok, detail)
        finally:
            slot.running = False
            self._idle_event.set()  # idle() re-checks every slot

    async def _perform(self, slot: _Slot, action: ResourceAction) -> tuple[bool, str]:
        kind = action.action
        slot.current = kind
        result: tuple[bool, str] = (False, f"{kind} cancelled by terminate")
        with trio.CancelScope() as scope:
            slot.scope = scope
            try:
                if kind == "online":
                    result = await self._online(slot, action)
                elif kind == "offline":
                    result = await self._offline(slot)
                elif kind == "terminate":
                    result = await self._terminate(slot)
                elif kind == "fail":
                    failed = self.fail(slot.name)
                    result = (failed, "failed on demand" if failed else f"not online ({slot.state.value})")
                    await trio.lowlevel.checkpoint()
                else:
                    result = await self._probe(slot, kind)
            finally:
                slot.scope = None
                slot.current = ""
        return result

    async def _online(self, slot: _Slot, action: ResourceAction) -> tuple[bool, str]:
        if slot.impl is not None and slot.state is not State.OFFLINE:
            await self._terminate_impl(slot.impl)  # a stale instance: start from a clean slate
        slot.impl, slot.pending_failure = None, None
        slot.group, slot.rtype = action.group, action.rtype
        try:
            impl = self._create(slot, action)
        except ResourceError as e:
            self._set_state(slot, State.FAILED, e.detail)
            await trio.lowlevel.checkpoint()
            return False, e.detail
        slot.impl = impl
        self._set_state(slot, State.ONLINE_PENDING)
        timeout_s = impl.online_timeout_s()
        detail = f"online did not finish within {timeout_s:g} s"
        ok = False
        with trio.move_on_after(timeout_s):
            try:
                detail = await impl.online()
                ok = slot.pending_failure is None
                detail = detail if ok else str(slot.pending_failure)
            except ResourceError as e:
                detail = e.detail
            except Exception as e:
                log.exception("%s: online crashed", slot.name)
                detail = f"internal error: {type(e).__name__}: {e}"
        if not ok:
            await self._terminate_impl(impl)
            self._set_state(slot, State.FAILED, detail)
            return False, detail
        self._set_state(slot, State.ONLINE, detail)
        return True, detail

    async def _offline(self, slot: _Slot) -> tuple[bool, str]:
        impl = slot.impl
        if impl is None or slot.state in (State.OFFLINE, State.FAILED):
            # A failed instance was cleaned up when it failed: offline is only bookkeeping.
            was = slot.state
            if impl is not None:
                self._set_state(slot, State.OFFLINE)
            await trio.lowlevel.checkpoint()
            return True, "already offline" if was is State.OFFLINE else f"offline (it was {was.value})"
        self._set_state(slot, State.OFFLINE_PENDING)
        timeout_s = impl.online_timeout_s()
        detail = f"offline did not finish within {timeout_s:g} s: terminated"
        done = False
        with trio.move_on_after(timeout_s):
            try:
                detail = await impl.offline()
                done = True
            except ResourceError as e:
                detail = f"{e.detail}; terminated"
            except Exception as e:
                log.exception("%s: offline crashed", slot.name)
                detail = f"internal error: {type(e).__name__}: {e}; terminated"
        if not done:
            await self._terminate_impl(impl)
        self._set_state(slot, State.OFFLINE, detail)
        return True, detail

    async def _terminate(self, slot: _Slot) -> tuple[bool, str]:
        if slot.impl is not None:
            await self._terminate_impl(slot.impl)
            self._set_state(slot, State.OFFLINE, "terminated")
        else:
            await trio.lowlevel.checkpoint()
        return True, "terminated"

    async def _probe(self, slot: _Slot, kind: str) -> tuple[bool, str]:
        impl = slot.impl
        if impl is None or slot.state is not State.ONLINE:
            await trio.lowlevel.checkpoint()
            return False, f"not online ({slot.state.value})"
        with trio.move_on_after(PROBE_TIMEOUT_S):
            try:
                return True, await (impl.looks_alive() if kind == "looks_alive" else impl.is_alive())
            except ResourceError as e:
                return False, e.detail
            except Exception as e:
                log.exception("%s: %s crashed", slot.name, kind)
                return False, f"internal error: {type(e).__name__}: {e}"
        return False, f"{kind} did not answer within {PROBE_TIMEOUT_S:g} s"

    async def _terminate_impl(self, impl: Resource) -> None:
        with trio.move_on_after(TERMINATE_BOUND_S):
            try:
                await impl.terminate()
            except Exception:
                log.exception("%s: terminate crashed", impl.name)

    # -- failures ----------------------------------------------------------------------------------
    def _on_failure(self, slot: _Slot, impl: Resource, detail: str) -> None:
        if slot.impl is not impl:
            return  # an instance we already replaced
        if slot.state is State.ONLINE_PENDING:
            slot.pending_failure = slot.pending_failure or detail
        elif slot.state is State.ONLINE:
            self._fail(slot, detail)

    def _fail(self, slot: _Slot, detail: str) -> None:
        assert slot.impl is not None
        log.info("resource %s failed: %s", slot.name, detail)
        self._set_state(slot, State.FAILED, detail)
        slot.queue.appendleft(_Cleanup(slot.impl))  # before whatever the core asks next
        self._kick(slot)
        self._post(ResourceReport(slot.name, "failed", 0, False, _one_line(detail)))

    # -- helpers -----------------------------------------------------------------------------------
    def _create(self, slot: _Slot, action: ResourceAction) -> Resource:
        cls = self._catalog.get(action.rtype)
        if cls is None:
            raise ResourceError(f"unknown resource type {action.rtype[:60]!r}")
        props = action.props if isinstance(action.props, dict) else {}
        holder: list[Resource] = []
        impl = cls(slot.name, action.group, props, self.host, lambda d: self._on_failure(slot, holder[0], d))
        holder.append(impl)
        return impl

    def _set_state(self, slot: _Slot, state: State, detail: str = "") -> None:
        slot.state = state
        service = slot.impl.service_key if slot.impl is not None else None
        self.registry.set(slot.name, slot.group, slot.rtype, service, state.value, _one_line(detail))


def _one_line(text: str) -> str:
    return " ".join(str(text).split())[:400]
