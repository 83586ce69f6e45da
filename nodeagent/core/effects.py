"""What the pure core asks its shell to do, and what the shell tells it back.

Theory of operation
-------------------
A core method takes an input and ``now_s`` and returns a ``Ready``: the datagrams to send, the disk
operations to run, the event-log records to append, the next deadline at which the shell must call
``on_tick``, and whether the node process should exit. The shell (runtime/ for real processes, sim/
for the simulator) carries the effects out in order and feeds results back as inputs:
``DiskResult`` for each ``DiskOp`` (matched by ``op_id``). Nothing here does I/O.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from nodeagent.config import Net
from nodeagent.core.messages import Message


@dataclass(frozen=True, slots=True)
class Send:
    """Send ``msg`` from this node's address on ``net`` to node ``dst``'s address on ``net``."""

    net: Net
    dst: int
    msg: Message


class DiskOpKind(enum.StrEnum):
    """Operations on a shared disk, carried out as this node's initiator (its name)."""

    RESERVE = "reserve"  # SCSI-2 RESERVE; with scsi3 a PR RESERVE (write exclusive, registrants only)
    RELEASE = "release"  # SCSI-2 RELEASE; with scsi3 PR RELEASE
    RESET = "reset"  # SCSI-2 bus reset: breaks any reservation
    REGISTER = "register"  # SCSI-3 REGISTER ``key``
    READ_RESERVATION = "read_reservation"  # SCSI-3 READ RESERVATION: the holder's key in DiskResult.key
    PREEMPT = "preempt"  # SCSI-3 PREEMPT AND ABORT ``victim_key`` (and take the reservation)
    READ = "read"  # read data block ``block``
    WRITE = "write"  # write ``data`` to data block ``block`` (fenced)


class DiskOutcome(enum.StrEnum):
    OK = "ok"
    CONFLICT = "conflict"  # RESERVATION CONFLICT: someone else holds the disk
    UNAVAILABLE = "unavailable"  # the path to the disk failed (I/O error)


@dataclass(frozen=True, slots=True)
class DiskOp:
    op_id: int
    disk: str
    kind: DiskOpKind
    key: int = 0  # REGISTER / RESERVE / RELEASE / PREEMPT (scsi3): this node's registration key
    victim_key: int = 0  # PREEMPT: the key to remove
    block: int = 0  # READ / WRITE: the first block
    count: int = 1  # READ: how many consecutive blocks (WRITE spans as many as its data needs)
    data: bytes = b""  # WRITE
    scsi3: bool = False  # RESERVE / RELEASE: persistent-reservation flavour


@dataclass(frozen=True, slots=True)
class DiskResult:
    op_id: int
    outcome: DiskOutcome
    holder: str | None = None  # on CONFLICT: who holds the disk, when known
    key: int = 0  # READ_RESERVATION: the holder's key (0: no reservation)
    data: bytes = b""  # READ: the block's contents


@dataclass(frozen=True, slots=True)
class Event:
    """One event-log record. The shell adds time, node and incarnation when it writes it."""

    kind: str  # short snake_case name, e.g. "interface_failed"
    event_id: int | None  # the MSCS event id where one exists (1122, 1123, 1126, 1135, 1177, ...)
    message: str  # one human sentence, in the words of the Windows event log where possible
    fields: dict[str, Any] = field(default_factory=dict)  # JSON-able details


@dataclass(frozen=True, slots=True)
class ResourceAction:
    """Ask the resource monitor to act on one resource; it answers with one ``ResourceReport``."""

    resource: str
    rtype: str  # resource type, e.g. "IP Address", "Microsoft Exchange Information Store"
    group: str
    action: str  # "online" | "offline" | "terminate" | "looks_alive" | "is_alive"
    props: dict[str, Any]  # the resource's private properties
    token: int  # echoed in the report


@dataclass(frozen=True, slots=True)
class ResourceReport:
    resource: str
    action: str  # the action answered, or "failed" (unsolicited: the resource failed by itself)
    token: int
    ok: bool
    detail: str = ""


@dataclass(frozen=True, slots=True)
class AdminReply:
    """The answer to an admin request the shell passed in with ``on_admin``."""

    request_id: int
    ok: bool
    result: dict[str, Any]
    error: str = ""
    rule: str = ""  # the MSCS rule that refused it


@dataclass(slots=True)
class Ready:
    """Effects gathered by one core call. Mutable while the core builds it; read-only afterwards."""

    sends: list[Send] = field(default_factory=list)
    disk_ops: list[DiskOp] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    resource_actions: list[ResourceAction] = field(default_factory=list)
    admin_replies: list[AdminReply] = field(default_factory=list)
    db_snapshot: dict[str, Any] | None = None  # the cluster database changed: persist this copy
    next_deadline_s: float | None = None
    exit: bool = False  # the operator's stop is complete: the process should exit now
