"""``SharedDisk``: the one interface of a shared disk, whatever stores it.

Theory of operation
-------------------
A shared disk is addressed by many initiators (cluster nodes, named by the caller on every call, as a
SCSI target sees the initiator of every command). ``FileDisk`` keeps the disk in an image file that
separate processes open; ``MemoryDisk`` keeps it in memory for the simulator and unit tests. Both
implement this Protocol and delegate every reservation decision to ``shareddisk.rules``.

Expected outcomes of reservation commands are ``Outcome`` values; data I/O refused by the fence
raises ``ReservationConflict``; a disk that cannot be reached raises ``DiskUnavailable``. Bad
arguments (an out-of-range block, a wrong data size, a key outside 64 bits) are programming errors
and raise ``ValueError``.
"""

from __future__ import annotations

from typing import Protocol

from shareddisk.rules import Outcome, ReservationInfo, ReservationState


class SharedDisk(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def block_size(self) -> int: ...

    @property
    def block_count(self) -> int: ...

    def reserve(self, initiator: str) -> Outcome:
        """SCSI-2 RESERVE."""
        ...

    def release(self, initiator: str) -> Outcome:
        """SCSI-2 RELEASE."""
        ...

    def reset(self, initiator: str) -> None:
        """Bus reset: breaks the SCSI-2 reservation (persistent reservations survive it)."""
        ...

    def register(self, initiator: str, key: int) -> Outcome:
        """SCSI-3 REGISTER (AND IGNORE EXISTING KEY); key 0 unregisters."""
        ...

    def pr_reserve(self, initiator: str, key: int) -> Outcome:
        """SCSI-3 RESERVE, write exclusive - registrants only."""
        ...

    def pr_release(self, initiator: str, key: int) -> Outcome:
        """SCSI-3 RELEASE."""
        ...

    def preempt(self, initiator: str, key: int, victim_key: int) -> Outcome:
        """SCSI-3 PREEMPT AND ABORT."""
        ...

    def read_keys(self) -> tuple[int, dict[str, int]]:
        """READ KEYS: (generation, {initiator: key})."""
        ...

    def read_reservation(self) -> ReservationInfo:
        """READ RESERVATION (either flavour)."""
        ...

    def read_state(self) -> ReservationState:
        """The whole reservation record (for ``describe`` and tests)."""
        ...

    def read_block(self, initiator: str, n: int) -> bytes:
        """Fenced read of data block ``n``."""
        ...

    def write_block(self, initiator: str, n: int, data: bytes) -> None:
        """Fenced write of data block ``n``; ``data`` is exactly one block."""
        ...

    def close(self) -> None: ...


def check_block(disk: SharedDisk, n: int, data: bytes | None = None) -> None:
    """ValueError for a block number out of range or data that is not exactly one block."""
    if not isinstance(n, int) or isinstance(n, bool) or not 0 <= n < disk.block_count:
        raise ValueError(f"disk {disk.name}: block {n!r} out of range 0..{disk.block_count - 1}")
    if data is not None and len(data) != disk.block_size:
        size = disk.block_size
        raise ValueError(f"disk {disk.name}: a block write takes exactly {size} bytes, not {len(data)}")
