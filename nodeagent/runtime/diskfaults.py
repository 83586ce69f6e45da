"""Disk faults of one node: a lost path to a disk, or a slow disk, applied to every disk I/O it does.

Theory of operation
-------------------
A shared disk is reached by each node over its own path (HBA, cable, switch port). A path fails for
one node while the others still see the disk; a disk (or its path) becomes slow. Both are faults of
one node's view of one disk, so they live in the node process, in a ``DiskFaultTable``: disk name
(case-insensitive, stored upper-case) -> ``DiskFault(lost, slow_ms)``. The table is set through the
control socket (ops ``disk_fault``/``disk_heal``) and dies with the process: a restarted node sees
every disk again, as a rebooted host rescans its buses.

Where it applies. Every disk I/O of a node goes through ONE opener (``DiskOpener``, by default
``FileDisk.open(DIR/disks/NAME.img)``), shared by the core's ``DiskExecutor`` (quorum arbitration,
membership record, checkpoint) and the resource monitor (Physical Disk resources). ``faulty_opener``
wraps it: opening a lost disk raises ``DiskUnavailable``, and every handle it returns is a
``FaultyDisk`` proxy that checks the table before EACH call and raises ``DiskUnavailable`` when the
path is lost, without touching the image. Callers already map that error: ``apply_disk_op`` answers
``DiskOutcome.UNAVAILABLE`` to the core, Physical Disk turns it into a failed renewal. ``close`` is
never refused (closing a handle does no I/O). Because the check is per call, a path lost after the
disk was opened takes effect on the very next operation, and healing needs no re-open.

Latency is per operation, not per call (a multi-block READ of the checkpoint is one SCSI command):
the callers ask ``delay_s(name)`` once per operation and wait that long BEFORE it - in the worker
thread (``time.sleep``) when disk calls run in threads, or ``trio.sleep`` when they run inline (the
in-memory test disks) - so the event loop is never blocked. A lost path is not also slow: it fails
at once.

Bounds: at most ``MAX_DISK_FAULTS`` disks, ``slow_ms`` at most ``MAX_SLOW_MS``; disk names are
letters and digits, at most ``MAX_NAME`` characters. The table is read from worker threads, so it
is guarded by a lock and its values are frozen.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from nodeagent.config import MAX_DISK_NAME, is_disk_name
from nodeagent.errors import ConfigError
from shareddisk import DiskUnavailable, Outcome, ReservationInfo, ReservationState, SharedDisk

MAX_DISK_FAULTS = 64
MAX_SLOW_MS = 60_000.0  # one minute per operation: past any timeout the cluster has
MAX_NAME = MAX_DISK_NAME
LOST_CAUSE = "path lost (injected fault)"

DiskOpener = Callable[[str], SharedDisk]


@dataclass(frozen=True, slots=True)
class DiskFault:
    disk: str  # upper-case
    lost: bool = False
    slow_ms: float = 0.0

    def as_json(self) -> dict[str, Any]:
        return {"disk": self.disk, "lost": self.lost, "slow_ms": self.slow_ms}

    def describe(self) -> str:
        parts = (["path lost"] if self.lost else []) + (
            [f"{self.slow_ms:g} ms slower"] if self.slow_ms else []
        )
        return f"disk {self.disk}: {', '.join(parts)}"


def disk_key(name: object) -> str:
    """The table key of a disk name; ``ConfigError`` for anything but 1-64 letters and digits."""
    if not is_disk_name(name):
        raise ConfigError(f"disk name {str(name)[:MAX_NAME]!r}: letters and digits only, 1-{MAX_NAME} long")
    return name.upper()


def slow_ms_value(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"slow_ms {value!r}: must be a number of milliseconds")
    if not 0 <= value <= MAX_SLOW_MS:
        raise ConfigError(f"slow_ms {value:g}: must be from 0 to {MAX_SLOW_MS:g}")
    return float(value)


def make_fault(disk: object, lost: object = False, slow_ms: object = 0.0) -> DiskFault:
    """A validated fault; it must do something (lost, or slow_ms > 0)."""
    if not isinstance(lost, bool):
        raise ConfigError(f"lost {lost!r}: must be true or false")
    fault = DiskFault(disk_key(disk), lost, slow_ms_value(slow_ms))
    if not fault.lost and fault.slow_ms == 0:
        raise ConfigError(f"a fault on disk {fault.disk} needs lost, or slow_ms more than 0")
    return fault


def fault_from_request(request: Mapping[str, Any]) -> DiskFault:
    """``{"op": "disk_fault", "disk": NAME, "lost": bool, "slow_ms": F}`` -> a fault."""
    return make_fault(request.get("disk"), request.get("lost", False), request.get("slow_ms", 0.0))


class DiskFaultTable:
    """The disk faults of one node process; thread-safe (read by the disk worker threads)."""

    def __init__(self, limit: int = MAX_DISK_FAULTS) -> None:
        self._lock = threading.Lock()
        self._faults: dict[str, DiskFault] = {}
        self._limit = limit

    def set(self, fault: DiskFault) -> DiskFault | None:
        """Install ``fault`` (replacing the disk's previous one, returned)."""
        with self._lock:
            if fault.disk not in self._faults and len(self._faults) >= self._limit:
                raise ConfigError(f"at most {self._limit} disks may have faults at once")
            before = self._faults.get(fault.disk)
            self._faults[fault.disk] = fault
            return before

    def heal(self, disk: str | None = None) -> list[DiskFault]:
        """Remove the fault of ``disk`` (every fault when None); the removed ones."""
        with self._lock:
            if disk is None:
                removed = list(self._faults.values())
                self._faults.clear()
            else:
                gone = self._faults.pop(disk_key(disk), None)
                removed = [gone] if gone is not None else []
        return sorted(removed, key=lambda f: f.disk)

    def get(self, disk: str) -> DiskFault | None:
        with self._lock:
            return self._faults.get(disk.upper())

    def lost(self, disk: str) -> bool:
        fault = self.get(disk)
        return fault is not None and fault.lost

    def delay_s(self, disk: str) -> float:
        """How long an operation on ``disk`` waits before it runs (0 for a lost path: it fails)."""
        fault = self.get(disk)
        return fault.slow_ms / 1000.0 if fault is not None and not fault.lost else 0.0

    @property
    def faults(self) -> tuple[DiskFault, ...]:
        with self._lock:
            return tuple(sorted(self._faults.values(), key=lambda f: f.disk))

    def as_json(self) -> list[dict[str, Any]]:
        return [f.as_json() for f in self.faults]

    def check(self, disk: str) -> None:
        """``DiskUnavailable`` if this node's path to ``disk`` is lost."""
        if self.lost(disk):
            raise DiskUnavailable(disk, LOST_CAUSE)


class FaultyDisk:
    """A ``SharedDisk`` seen through this node's path: every call first checks the fault table."""

    def __init__(self, inner: SharedDisk, key: str, table: DiskFaultTable) -> None:
        self.inner = inner
        self._key = key  # the name it was opened by (the table's key), not inner.name
        self._table = table

    def __repr__(self) -> str:
        return f"FaultyDisk({self.inner!r})"

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def block_size(self) -> int:
        return self.inner.block_size

    @property
    def block_count(self) -> int:
        return self.inner.block_count

    def _gate(self) -> None:
        self._table.check(self._key)

    def reserve(self, initiator: str) -> Outcome:
        self._gate()
        return self.inner.reserve(initiator)

    def release(self, initiator: str) -> Outcome:
        self._gate()
        return self.inner.release(initiator)

    def reset(self, initiator: str) -> None:
        self._gate()
        self.inner.reset(initiator)

    def register(self, initiator: str, key: int) -> Outcome:
        self._gate()
        return self.inner.register(initiator, key)

    def pr_reserve(self, initiator: str, key: int) -> Outcome:
        self._gate()
        return self.inner.pr_reserve(initiator, key)

    def pr_release(self, initiator: str, key: int) -> Outcome:
        self._gate()
        return self.inner.pr_release(initiator, key)

    def preempt(self, initiator: str, key: int, victim_key: int) -> Outcome:
        self._gate()
        return self.inner.preempt(initiator, key, victim_key)

    def read_keys(self) -> tuple[int, dict[str, int]]:
        self._gate()
        return self.inner.read_keys()

    def read_reservation(self) -> ReservationInfo:
        self._gate()
        return self.inner.read_reservation()

    def read_state(self) -> ReservationState:
        self._gate()
        return self.inner.read_state()

    def read_block(self, initiator: str, n: int) -> bytes:
        self._gate()
        return self.inner.read_block(initiator, n)

    def write_block(self, initiator: str, n: int, data: bytes) -> None:
        self._gate()
        self.inner.write_block(initiator, n, data)

    def close(self) -> None:
        self.inner.close()


def faulty_opener(opener: DiskOpener, table: DiskFaultTable) -> DiskOpener:
    """``opener`` as this node's path sees it: a lost disk does not open; handles are ``FaultyDisk``."""

    def open_disk(name: str) -> SharedDisk:
        table.check(name)
        return FaultyDisk(opener(name), name, table)

    return open_disk
