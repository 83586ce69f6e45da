"""One node: builds the pieces around a NodeCore and runs them in one root nursery.

Theory of operation
-------------------
``serve_node`` is the whole life of a node, for the real process (``python -m nodeagent``, see
``nodeagent/__main__.py``) and for runtime tests that run several nodes in one trio run. In order:

1. load ``DIR/cluster.toml`` (unless a config is given) and find the node (``ConfigError``);
2. bind the node's two addresses, private 127.C.1.N:3343 and public 127.C.2.N:3343, through the
   transport (``AddressInUse``). This comes first because it is what makes the node directory ours:
   a second copy of the node fails here, before it touches any file of the running one;
3. create ``DIR/nodes/NAME/``, increment ``incarnation``, write ``pid``, read ``db.json``'s epoch;
4. open ``events.jsonl``; build the core (``known_epoch`` from db.json), the messenger, the driver and
   the disk executor;
5. start, each with ``nursery.start`` so that a failing start surfaces at once: the sender, one
   receiver per network, the disk executor, the driver (which calls ``core.start``), the control
   socket and the signal watcher (real processes only);
6. hand the ``NodeRuntime`` to the caller (``task_status.started``) and wait until the driver exits.

Stopping: SIGTERM/SIGINT, the control socket's ``stop`` and tests call ``request_stop``: the core gets
``stop`` and the node waits for the Ready with ``exit``, at most ``STOP_BOUND_S`` (then it stops
anyway and says so in the log). A second signal stops at once. A clean exit removes the pid file;
cancellation from outside (a test "killing" a node) leaves it, like a crash would.

Datagram paths, and where each bound lives: transport endpoint -> messenger receive loop (checks,
counters) -> inbound channel (``INBOUND_QUEUE``; full = ``overload``) -> driver -> core -> Ready ->
messenger send queue / disk executor queue / event log / timer. Faults live in one ``FaultTable`` per
node that the messenger consults both ways.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from nodeagent.config import ClusterConfig, Net, load_cluster_file
from nodeagent.core.dnszone import zone_from_db
from nodeagent.core.effects import AdminReply, Event
from nodeagent.errors import WolfpackError
from nodeagent.runtime import files
from nodeagent.runtime.control import ControlServer
from nodeagent.runtime.directory import DIRECTORY_FILE, Directory
from nodeagent.runtime.diskexec import DiskExecutor, DiskOpener, file_disk_opener
from nodeagent.runtime.diskfaults import DiskFaultTable, fault_from_request, faulty_opener
from nodeagent.runtime.dnsserver import DnsServer
from nodeagent.runtime.driver import Core, Driver
from nodeagent.runtime.eventlog import EventWriter
from nodeagent.runtime.faults import FaultTable, faults_to_json, rule_to_json, rules_to_json
from nodeagent.runtime.faults import fault_from_request as link_fault_from_request
from nodeagent.runtime.messenger import Inbound, Messenger
from nodeagent.runtime.resources import NameService, ResourceMonitor
from nodeagent.runtime.transport import Endpoint, Transport, UdpTransport

STOP_BOUND_S = 3.0  # CONTRACT.md: a graceful stop takes at most this long
INBOUND_QUEUE = 1024  # authenticated datagrams waiting for the driver
REORDER_HOLD_BEATS = 2  # a reorder fault without delay_ms holds datagrams back by up to 2 heartbeats
MONITOR_DRAIN_S = 1.0  # after the core's exit, how long the resource monitor may finish its actions

log = logging.getLogger("nodeagent.node")

CoreFactory = Callable[[ClusterConfig, int, int, int], Core]  # (config, node_id, incarnation, known_epoch)


def default_core_factory(config: ClusterConfig, node_id: int, incarnation: int, known_epoch: int) -> Core:
    from nodeagent.core.node import NodeCore

    return NodeCore(config, node_id, incarnation, known_epoch=known_epoch)


@dataclass(frozen=True, slots=True)
class NodeOptions:
    """How to build a node; the defaults are the real process's (except signals, see __main__)."""

    transport: Transport = field(default_factory=UdpTransport)
    disk_opener: DiskOpener | None = None  # None: FileDisk from DIR/disks/NAME.img
    disks_in_thread: bool = True  # False for in-memory disks shared by nodes of one test
    control_socket: bool = True
    handle_signals: bool = False  # only the main thread of a real process may
    core_factory: CoreFactory = default_core_factory
    now: Callable[[], float] = time.monotonic


class NodeRuntime:
    """A running node, as the control socket, the signal watcher and tests see it."""

    def __init__(
        self,
        config: ClusterConfig,
        node_id: int,
        node_dir: Path,
        incarnation: int,
        driver: Driver,
        messenger: Messenger,
        faults: FaultTable,
        events: EventWriter,
        executor: DiskExecutor,
    ) -> None:
        self.config = config
        self.node_id = node_id
        self.name = config.node(node_id).name
        self.node_dir = node_dir
        self.incarnation = incarnation
        self.driver = driver
        self.messenger = messenger
        self.fault_table = faults
        self.events = events
        self.executor = executor
        self.forced_stop = False
        self.monitor: ResourceMonitor | None = None  # attached by serve_node
        self.disk_faults = DiskFaultTable()  # this node's path to each disk; serve_node shares it
        self._stop_scope: trio.CancelScope | None = None
        self._stop_requested = False

    @property
    def control_path(self) -> Path:
        return self.node_dir / files.CONTROL_SOCKET

    # -- ControlTarget ----------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        node = self.driver.snapshot().as_json()
        m = self.messenger
        node.update(
            pid=os.getpid(),
            private_ip=self.config.address(self.node_id, Net.PRIVATE)[0],
            public_ip=self.config.address(self.node_id, Net.PUBLIC)[0],
            bad_datagrams=dict(sorted(m.bad.items())),
            faults=faults_to_json(self.fault_table.faults, self._name_of),  # CONTRACT.md's compact shape
            fault_rules=self.faults(),  # the same with ids and every parameter (the faults op's shape)
            mono_s=self.driver.now(),
            incarnation=self.incarnation,
            **self.fault_counters(),
            send_errors=dict(sorted(m.send_errors.items())),
            datagrams={"sent": m.sent, "received": m.received},
            stopping=self.driver.stopping,
            resources=self.monitor.snapshot() if self.monitor is not None else [],
        )
        return node

    def fault_cut(self, request: dict[str, Any]) -> list[dict[str, Any]]:
        """Issue 2's op: answers with the faults in its compact shape (faults.fault_to_json)."""
        self.fault_add(request, kind="cut")
        return faults_to_json(self.fault_table.faults, self._name_of)

    def fault_add(self, request: dict[str, Any], kind: str | None = None) -> int:
        """Install a fault rule (faults.py); returns its id (an identical rule's, if one is there)."""
        fault = link_fault_from_request(
            request,
            lambda name: self.config.node(name).id,
            self.node_id,
            kind=kind,
            reorder_default_ms=REORDER_HOLD_BEATS * self.config.timing.heartbeat_interval_s * 1000.0,
        )
        rule, new = self.fault_table.install(fault)
        if new:
            peer = "every peer" if fault.peer is None else self._name_of(fault.peer)
            where = f"{fault.net.value} network(s), direction {fault.direction.value}"
            self._runtime_event(
                "fault_added",
                f"Operator added fault {rule.id} on {self.name}: {fault.describe()} to {peer} ({where}).",
                rule_to_json(rule, self._name_of),
            )
        return rule.id

    def fault_heal(self, fault_id: int | None = None) -> int:
        removed = self.fault_table.heal(fault_id)
        for rule in removed:
            self._runtime_event(
                "fault_healed",
                f"Operator removed fault {rule.id} on {self.name}: {rule.fault.describe()}.",
                rule_to_json(rule, self._name_of),
            )
        return len(removed)

    def faults(self) -> list[dict[str, Any]]:
        return rules_to_json(self.fault_table.rules, self._name_of)

    def fault_counters(self) -> dict[str, dict[str, int]]:
        m = self.messenger
        return {
            "fault_drops": dict(sorted(m.fault_drops.items())),
            "fault_delayed": dict(sorted(m.fault_delayed.items())),
            "fault_duplicated": dict(sorted(m.fault_duplicated.items())),
        }

    def set_paused(self, paused: bool) -> None:
        self.driver.set_paused(paused)

    async def admin(self, cmd: str, args: dict[str, Any]) -> AdminReply:
        return await self.driver.admin(cmd, args)

    def resource_fail(self, name: str) -> None:
        """`cluster resource /fail`: the resource fails here, as if its DLL said so."""
        if self.monitor is None or not self.monitor.fail(name):
            raise WolfpackError(f"resource {name!r} is not running on {self.name}")

    def disk_fault(self, request: dict[str, Any]) -> list[dict[str, Any]]:
        """Control op ``disk_fault``: this node loses its path to a disk, or the disk is slow for it."""
        fault = fault_from_request(request)
        self.disk_faults.set(fault)
        self._runtime_event(
            "disk_fault", f"Operator injected a fault on {self.name}: {fault.describe()}.", fault.as_json()
        )
        return self.disk_faults.as_json()

    def disk_heal(self, request: dict[str, Any]) -> int:
        """Control op ``disk_heal``: the fault of ``disk`` (every disk fault when null) is gone."""
        disk = request.get("disk")
        removed = self.disk_faults.heal(disk if disk is None else str(disk))
        for fault in removed:
            self._runtime_event(
                "disk_healed", f"Operator healed on {self.name}: {fault.describe()}.", fault.as_json()
            )
        return len(removed)

    def disk_faults_json(self) -> list[dict[str, Any]]:
        return self.disk_faults.as_json()

    def request_stop(self) -> None:
        """Graceful stop; the node is gone at most ``STOP_BOUND_S`` later."""
        if not self._stop_requested:
            self._stop_requested = True
            log.info("%s: stop requested", self.name)
            if self._stop_scope is not None:
                self._stop_scope.deadline = trio.current_time() + STOP_BOUND_S
            self.driver.request_stop()

    def stop_now(self) -> None:
        self.forced_stop = True
        if self._stop_scope is not None:
            self._stop_scope.cancel()

    # -- helpers ----------------------------------------------------------------------------------
    def _name_of(self, node_id: int) -> str:
        return self.config.node(node_id).name

    def _runtime_event(self, kind: str, message: str, fields: dict[str, Any]) -> None:
        self.events.write(Event(kind=kind, event_id=None, message=message, fields=fields), self.driver.now())

    async def _wait_exit(self) -> None:
        with trio.CancelScope() as scope:
            self._stop_scope = scope
            if self._stop_requested:
                scope.deadline = trio.current_time() + STOP_BOUND_S
            await self.driver.exited.wait()
        self._stop_scope = None
        if not self.driver.exited.is_set():
            self.forced_stop = True
            log.warning("%s: the cluster service did not finish stopping; exiting anyway", self.name)


async def _watch_signals(
    runtime: NodeRuntime, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        task_status.started()
        async for signum in signals:
            name = signal.Signals(signum).name
            if runtime.driver.stopping:
                log.info("%s: %s again: stopping at once", runtime.name, name)
                runtime.stop_now()
            else:
                log.info("%s: %s: stopping gracefully", runtime.name, name)
                runtime.request_stop()


async def _open_endpoints(transport: Transport, config: ClusterConfig, node_id: int) -> dict[Net, Endpoint]:
    endpoints: dict[Net, Endpoint] = {}
    try:
        for net in (Net.PRIVATE, Net.PUBLIC):
            endpoints[net] = await transport.open(config.address(node_id, net))
    except BaseException:
        for endpoint in endpoints.values():
            endpoint.close()
        raise
    return endpoints


def _dns_server(config: ClusterConfig, node_id: int, core: Core) -> DnsServer | None:
    """The DNS server on 127.C.2.N, answering from the core's copy of the cluster database."""
    if not hasattr(core, "db"):
        return None  # a test's core without a database: no zone to serve
    nodes = {n.name: config.address(n.id, Net.PUBLIC)[0] for n in config.nodes}
    port = config.dns_port(os.geteuid() == 0)
    zone = lambda: zone_from_db(core.db, config.dns_domain, nodes, config.speed)  # noqa: E731
    return DnsServer(config.address(node_id, Net.PUBLIC)[0], port, zone)


async def serve_node(
    cluster_dir: Path,
    node_name: str,
    options: NodeOptions | None = None,
    config: ClusterConfig | None = None,
    *,
    task_status: trio.TaskStatus[NodeRuntime] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run one node until it stops; ``nursery.start`` returns its ``NodeRuntime`` once it is up.

    ``config`` (positional, as ``nursery.start`` takes no keywords) skips reading cluster.toml.
    """
    opts = options if options is not None else NodeOptions()
    if config is None:
        config = load_cluster_file(cluster_dir / "cluster.toml")
    node = config.node(node_name)
    endpoints = await _open_endpoints(opts.transport, config, node.id)
    clean = False
    try:
        node_dir = files.node_dir(cluster_dir, node.name)
        node_dir.mkdir(parents=True, exist_ok=True)
        incarnation = files.bump_incarnation(node_dir)
        files.write_pid(node_dir)
        known_epoch = files.read_known_epoch(node_dir)
        log.info(
            "%s: node %d, incarnation %d, known epoch %d, private %s, public %s",
            node.name, node.id, incarnation, known_epoch,
            config.address(node.id, Net.PRIVATE)[0], config.address(node.id, Net.PUBLIC)[0],
        )  # fmt: skip
        with EventWriter(node_dir / files.EVENTS_FILE, node.name, incarnation) as events:
            core = opts.core_factory(config, node.id, incarnation, known_epoch)
            database = files.read_cluster_db(node_dir)
            if database is not None and hasattr(core, "adopt_database"):
                core.adopt_database(database)
            faults = FaultTable()
            inbound_send, inbound_recv = trio.open_memory_channel[Inbound](INBOUND_QUEUE)
            messenger = Messenger(config, node.id, incarnation, faults, inbound_send)
            messenger.endpoints.update(endpoints)
            driver = Driver(
                core,
                inbound_recv,
                sends=messenger,
                events=events,
                on_membership=lambda m: files.write_db(node_dir, m),
                now=opts.now,
                name=node.name,
            )
            disk_faults = DiskFaultTable()  # every disk I/O of this node sees it (diskfaults.py)
            opener = faulty_opener(opts.disk_opener or file_disk_opener(cluster_dir / "disks"), disk_faults)
            executor = DiskExecutor(
                node.name,
                opener,
                driver.on_disk_result,
                in_thread=opts.disks_in_thread,
                faults=disk_faults,
            )
            driver.disks = executor
            driver.on_database = lambda data: files.write_cluster_db(node_dir, data)
            monitor = ResourceMonitor(
                config,
                node.name,
                driver.on_resource_report,
                disk_opener=opener,
                transport=opts.transport,
                disks_in_thread=opts.disks_in_thread,
                log_dir=node_dir,  # Generic Application output: nodes/NAME/app-RESOURCE.log
            )
            driver.resources = monitor
            names = NameService(
                config.address(node.id, Net.PUBLIC)[0],  # 127.C.2.N:3345
                node.name,
                monitor.names,
                getattr(core, "resolve", None),
                transport=opts.transport,
            )
            dns = _dns_server(config, node.id, core)
            runtime = NodeRuntime(
                config, node.id, node_dir, incarnation, driver, messenger, faults, events, executor
            )
            runtime.monitor = monitor
            runtime.disk_faults = monitor.host.disk_faults = disk_faults
            monitor.host.directory = Directory(cluster_dir / DIRECTORY_FILE)  # RequireKerberos
            try:
                async with trio.open_nursery() as nursery:
                    await nursery.start(messenger.run_sender)
                    await nursery.start(messenger.run_delays)
                    for net, endpoint in endpoints.items():
                        await nursery.start(messenger.run_receiver, net, endpoint)
                    await nursery.start(executor.run)
                    await nursery.start(monitor.run)  # before the driver: core.start may emit actions
                    await nursery.start(names.serve)
                    if dns is not None and isinstance(opts.transport, UdpTransport):  # real sockets only
                        await nursery.start(dns.serve)  # guarded: a bind failure leaves DNS off, not the node
                    await nursery.start(driver.run)
                    if opts.control_socket:
                        await nursery.start(ControlServer(runtime.control_path, runtime).serve)
                    if opts.handle_signals:
                        await nursery.start(_watch_signals, runtime)
                    task_status.started(runtime)
                    await runtime._wait_exit()
                    if not runtime.forced_stop:
                        with trio.move_on_after(MONITOR_DRAIN_S):  # let the last terminates release disks
                            await monitor.idle()
                    nursery.cancel_scope.cancel()
            finally:
                executor.close()
                inbound_send.close()
            clean = driver.failure is None
        if clean:
            files.remove_pid(node_dir)
            log.info("%s: stopped (incarnation %d)", node.name, incarnation)
    finally:
        for endpoint in endpoints.values():
            with contextlib.suppress(OSError):
                endpoint.close()
