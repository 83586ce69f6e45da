"""Emulated services: MSDTC and the nine Exchange 2003 resource types.

Theory of operation
-------------------
No Exchange runs here; each of these resources is a service that behaves the way the cluster sees
one: it takes its start-up time to come online, answers its health checks while online, answers
clients (through the group's client endpoint, which reads its state from the monitor's registry),
and can be made to fail.

Private properties (times in lab seconds: the core has already divided them by ``speed``):

- ``StartupTime``: how long ``online`` takes. When absent, the type's default below (Windows 2003
  seconds, our estimate) divided by the cluster's speed.
- ``LogBacklog`` and ``LogReplayTime`` (Information Store only): the store replays every outstanding
  transaction log before it mounts its databases, so online takes StartupTime + LogBacklog x
  LogReplayTime (MSCS.md: "seconds to minutes").
- ``Service``: the short name clients see (SA, IS, ROUTING, MTA, SEARCH, SMTP, HTTP, POP3, IMAP4;
  MSDTC for the coordinator); defaults from the type.
- ``FailMode`` (resource faults, ``wolfpack fault resource``): ``none``; ``once`` (= ``times:1``);
  ``times:N`` (N from 1 to ``MAX_FAIL_TIMES``) - the first N onlines of this resource on this node
  after FailMode was armed fail (each at the end of its start-up time), later ones succeed;
  ``always`` (alias ``forever``) - every online fails; ``hang`` - online never finishes: the resource
  stays Online Pending until the core's PendingTimeout terminates it (Failed, then its restart policy).
  The count lives in the node process (``Host.fail_counts``): a node that takes the resource over,
  or restarts, counts from zero again. It is re-armed when FailMode changes, or when the private
  property ``FailArm`` (any value; ``wolfpack fault resource`` sets a fresh one each time) changes,
  so setting the same ``times:N`` again fails N more onlines.

System Attendant and Kerberos: as Exchange 2003 requires, the SA refuses to come online when its
Network Name (private property ``NetworkName``, default the group's name) has no computer object in
the lab's directory (runtime/directory.py; a Network Name with RequireKerberos=1 creates it). The
check is skipped when the monitor has no directory (runtime tests without a cluster directory).

Fail on demand (``ResourceMonitor.fail``) and terminate stop the service at once. Offline is
immediate: the lab models start-up cost, where failover time goes, not shutdown cost.
"""

from __future__ import annotations

import enum
import time
from typing import Any, ClassVar

import trio

from nodeagent.runtime.directory import DirectoryError
from nodeagent.runtime.resources.base import (
    FailureCallback,
    Host,
    Resource,
    ResourceError,
    prop_float,
    prop_int,
    prop_str,
)

MAX_STARTUP_S = 3600.0
MAX_BACKLOG = 1_000_000
MAX_REPLAY_S = 60.0

# type -> (service short name, default start-up time in Windows 2003 seconds)
SERVICE_TYPES: dict[str, tuple[str, float]] = {
    "Distributed Transaction Coordinator": ("MSDTC", 5.0),
    "Microsoft Exchange System Attendant": ("SA", 20.0),
    "Microsoft Exchange Information Store": ("IS", 15.0),
    "Microsoft Exchange Routing Service": ("ROUTING", 5.0),
    "Microsoft Exchange Message Transfer Agent": ("MTA", 10.0),
    "Microsoft Search": ("SEARCH", 10.0),
    "SMTP Virtual Server Instance": ("SMTP", 5.0),
    "HTTP Virtual Server Instance": ("HTTP", 5.0),
    "POP3 Virtual Server Instance": ("POP3", 3.0),
    "IMAP4 Virtual Server Instance": ("IMAP4", 3.0),
}
SYSTEM_ATTENDANT = "Microsoft Exchange System Attendant"
DEFAULT_LOG_REPLAY_S = 0.5  # Windows 2003 seconds per transaction log (our estimate), divided by speed


MAX_FAIL_TIMES = 1000


class FailMode(enum.StrEnum):
    NONE = "none"
    ONCE = "once"
    TIMES = "times"
    ALWAYS = "always"
    HANG = "hang"


FAIL_MODE_ALIASES = {"forever": FailMode.ALWAYS}


def parse_fail_mode(raw: object) -> tuple[FailMode, int]:
    """``FailMode`` text -> (mode, how many onlines fail: 1 for once, N for times:N, 0 otherwise)."""
    text = str(raw).strip().lower()
    if text.startswith("times:"):
        count = text.removeprefix("times:").strip()
        if count.isdigit() and 1 <= int(count) <= MAX_FAIL_TIMES:
            return FailMode.TIMES, int(count)
        raise ResourceError(
            f"private property FailMode = {raw!r}: times:N needs N from 1 to {MAX_FAIL_TIMES}"
        )
    mode = FAIL_MODE_ALIASES.get(text)
    if mode is None:
        try:
            mode = FailMode(text)
        except ValueError:
            known = "none, once, times:N, always, forever, hang"
            raise ResourceError(f"private property FailMode = {raw!r}: one of {known}") from None
    if mode is FailMode.TIMES:
        raise ResourceError(f"private property FailMode = {raw!r}: times needs a count, e.g. times:2")
    return mode, 1 if mode is FailMode.ONCE else 0


class EmulatedService(Resource):
    """One emulated service; ``rtype`` is set per subclass (see ``service_classes``)."""

    rtype: ClassVar[str] = "Distributed Transaction Coordinator"
    replays_logs: ClassVar[bool] = False

    def __init__(self, name: str, group: str, props: dict[str, Any], host: Host, on_failure: FailureCallback):
        super().__init__(name, group, props, host, on_failure)
        short, default_s = SERVICE_TYPES[self.rtype]
        speed = host.config.speed
        self.service = prop_str(props, "Service", short, max_len=32).strip().upper() or short
        self.startup_s = prop_float(props, "StartupTime", default_s / speed, 0.0, MAX_STARTUP_S)
        self.backlog = 0
        self.replay_s = 0.0
        if self.replays_logs:
            self.backlog = prop_int(props, "LogBacklog", 0, 0, MAX_BACKLOG)
            self.replay_s = prop_float(
                props, "LogReplayTime", DEFAULT_LOG_REPLAY_S / speed, 0.0, MAX_REPLAY_S
            )
        raw_mode = prop_str(props, "FailMode", "none", max_len=32)
        self.fail_mode, self.fail_times = parse_fail_mode(raw_mode)
        self.fail_label = raw_mode.strip().lower()
        if self.fail_times:
            arming = f"{self.fail_label}|{prop_str(props, 'FailArm', '', max_len=64)}"
            if host.fail_counts.get(name, ("", 0))[0] != arming:
                host.fail_counts[name] = (arming, 0)  # newly armed: count from zero
        else:
            host.fail_counts.pop(name, None)  # re-arms once / times:N for the next time it is set
        self.running = False

    @property
    def service_key(self) -> str | None:
        return self.service

    @property
    def start_s(self) -> float:
        return self.startup_s + self.backlog * self.replay_s

    def online_timeout_s(self) -> float:
        return 10 * self.start_s + 30.0

    async def online(self) -> str:
        began = time.monotonic()
        if self.rtype == SYSTEM_ATTENDANT:
            await self._check_computer_object()
        if self.fail_mode is FailMode.HANG:
            await trio.sleep_forever()
        fail = self.fail_mode is FailMode.ALWAYS
        arming, failed = self.host.fail_counts.get(self.name, ("", 0))
        if self.fail_times and failed < self.fail_times:
            self.host.fail_counts[self.name] = (arming, failed + 1)  # counted at once: a cancel still counts
            fail = True
        await trio.sleep(self.start_s)
        if fail:
            raise ResourceError(f"service {self.service} failed to start (FailMode {self.fail_label})")
        self.running = True
        took = time.monotonic() - began
        replayed = f", replayed {self.backlog} transaction logs" if self.backlog else ""
        return f"service {self.service} started in {took:.2f} s{replayed}"

    async def _check_computer_object(self) -> None:
        directory = self.host.directory
        if directory is None:
            return
        netname = prop_str(self.props, "NetworkName", self.group, max_len=64).strip() or self.group
        try:
            found = await trio.to_thread.run_sync(directory.has_computer, netname)
        except DirectoryError as e:
            raise ResourceError(f"service SA cannot read the directory: {e}") from None
        if not found:
            raise ResourceError(
                f"service SA cannot start: Network Name {netname} has no computer object in the "
                f"directory; Exchange 2003 needs Kerberos for a virtual server (set RequireKerberos=1 "
                f"on the Network Name and bring it online)"
            )

    async def offline(self) -> str:
        self.running = False
        await trio.lowlevel.checkpoint()
        return f"service {self.service} stopped"

    async def terminate(self) -> None:
        self.running = False
        await trio.lowlevel.checkpoint()

    def abandon(self) -> None:
        self.running = False

    async def looks_alive(self) -> str:
        await trio.lowlevel.checkpoint()
        if not self.running:
            raise ResourceError(f"service {self.service} is not running")
        return f"service {self.service} running"


def _make(rtype: str) -> type[EmulatedService]:
    attrs: dict[str, Any] = {"rtype": rtype, "replays_logs": rtype == "Microsoft Exchange Information Store"}
    cls_name = "".join(c for c in rtype.title() if c.isalnum())
    return type(cls_name, (EmulatedService,), attrs)


def service_classes() -> dict[str, type[Resource]]:
    """Resource type name -> class, for every emulated service type."""
    return {rtype: _make(rtype) for rtype in SERVICE_TYPES}
