"""The virtual address space of the 32-bit store.exe, and how activity fragments it (pure, deterministic).

Theory of operation
-------------------
A 32-bit process has 2 GB of user address space. ``AddressSpace`` keeps it as a sorted free list of
(start, size) blocks in 64 KB granules (the Windows allocation granularity) and allocates first-fit,
as VirtualAlloc's bottom-up search does. What fragments it in the product: long-lived small
allocations (thread stacks, ESE version store and cache pieces, MAPI sessions) land in the holes
that short-lived larger ones (message buffers, sorts, search results) leave behind, until no large
contiguous block is left even though plenty of memory is free in total.

The model, driven by ``activity(units)`` (one unit = the work of one mounted database for a while):
each unit allocates a short-lived block of 64 KB - 4 MB (first-fit) and frees a short-lived one
beyond a working set; every ``PIN_EVERY`` units a small long-lived block (64 - 256 KB) is placed at a
scattered address (``alloc_near``) and stays until the process restarts. Scattered pins cut the large
free blocks: with k of them the largest block is about 1.7 GB * ln(k) / k, so it falls under 32 MB
after some 3,000 units and under 16 MB after some 8,000, while most of the 2 GB is still free.
Every mounted database multiplies the work, so two storage groups' databases in one process (two
EVSs on one node after a failover: active/active) fragment it about twice as fast.
Sizes come from a fixed linear congruential sequence: the same history gives the same counters.

Rules (Exchange 2003, MSCS.md): mounting a database reserves a 10 MB contiguous block for its cache
pieces, and fails without one; a store coming online at failover needs a 16 MB block; event 9582
(a warning) is reported when the largest free block falls under 32 MB; ``restart`` (a new store.exe)
gives a fresh address space. The counters of the Performance Monitor object MSExchangeIS are
``counters()``: VM Largest Block Size, VM Total Free Blocks, VM Total 16MB Free Blocks.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from nodeagent.exchange.storelog import StoreError

KB = 1024
MB = 1024 * KB
ADDRESS_SPACE = 2048 * MB  # user mode half of a 32-bit address space
GRANULE = 64 * KB
BASELINE_BYTES = 320 * MB  # store.exe, its DLLs, heaps and the ESE cache at start
MOUNT_BLOCK = 10 * MB
FAILOVER_BLOCK = 16 * MB
WARN_BLOCK = 32 * MB
DATABASE_BYTES = 10 * MB  # kept per mounted database (the mount's contiguous reservation)
WORKING_SET = 48  # short-lived blocks alive at once per process
PIN_EVERY = 10  # one long-lived small block every PIN_EVERY units
EVENT_VM_LOW = 9582


class VmMountRefused(StoreError):
    """No contiguous block big enough: the database does not mount (the store fails to come online)."""


@dataclass(frozen=True, slots=True)
class VmCounters:
    largest_block_bytes: int  # VM Largest Block Size
    free_blocks: int  # VM Total Free Blocks
    free_16mb_blocks: int  # VM Total 16MB Free Blocks
    free_bytes: int


@dataclass(slots=True)
class AddressSpace:
    """The free list of one process; first-fit allocation in granules. Addresses are byte offsets."""

    free: list[tuple[int, int]] = field(default_factory=lambda: [(GRANULE, ADDRESS_SPACE - GRANULE)])

    def alloc(self, size: int) -> int | None:
        size = -(-size // GRANULE) * GRANULE
        for i, (start, length) in enumerate(self.free):
            if length >= size:
                if length == size:
                    del self.free[i]
                else:
                    self.free[i] = (start + size, length - size)
                return start
        return None

    def alloc_near(self, address: int, size: int) -> int | None:
        """Allocate at the first free granule at or after ``address`` that has room (wrapping around):
        how thread stacks, DLLs and other fixed-address reservations end up scattered."""
        size = -(-size // GRANULE) * GRANULE
        address = address // GRANULE * GRANULE
        i = max(0, bisect.bisect(self.free, (address, ADDRESS_SPACE)) - 1)
        for j in list(range(i, len(self.free))) + list(range(0, i)):
            start, length = self.free[j]
            at = max(start, address) if j >= i else start
            if start + length - at >= size:
                pieces = [(start, at - start), (at + size, start + length - at - size)]
                self.free[j : j + 1] = [p for p in pieces if p[1] > 0]
                return at
        return None

    def release(self, start: int, size: int) -> None:
        size = -(-size // GRANULE) * GRANULE
        i = bisect.bisect(self.free, (start, 0))
        if i > 0 and self.free[i - 1][0] + self.free[i - 1][1] == start:  # merge with the block below
            i -= 1
            start, size = self.free[i][0], self.free[i][1] + size
            del self.free[i]
        if i < len(self.free) and start + size == self.free[i][0]:  # and with the block above
            size += self.free[i][1]
            del self.free[i]
        self.free.insert(i, (start, size))

    def largest(self) -> int:
        return max((length for _, length in self.free), default=0)


class StoreVm:
    """The address space of one store.exe process (one per node, whatever EVSs it serves)."""

    def __init__(self) -> None:
        self.restart()

    def restart(self) -> None:
        """A new store.exe: a fresh address space (the cure for fragmentation)."""
        self.space = AddressSpace()
        base = self.space.alloc(BASELINE_BYTES)
        assert base is not None
        self.databases: dict[str, tuple[int, int]] = {}  # name -> its block
        self._transient: list[tuple[int, int]] = []
        self._seed = 12345
        self._units = 0
        self._warned = False

    def _next(self) -> int:
        self._seed = (self._seed * 1103515245 + 12345) % 2**31  # the C library's LCG: deterministic
        return self._seed >> 8

    def counters(self) -> VmCounters:
        free = self.space.free
        return VmCounters(
            self.space.largest(),
            len(free),
            sum(length >= FAILOVER_BLOCK for _, length in free),
            sum(length for _, length in free),
        )

    def _events(self) -> list[int]:
        """Event 9582 once when the largest free block falls under 32 MB (again after it recovers)."""
        low = self.space.largest() < WARN_BLOCK
        fire, self._warned = low and not self._warned, low
        return [EVENT_VM_LOW] if fire else []

    def mount(self, database: str, *, failover: bool = False) -> list[int]:
        """Mount one database (its 10 MB block); at failover the store needs a 16 MB block first.
        ``VmMountRefused`` names the largest block. Returns the events raised."""
        need = FAILOVER_BLOCK if failover else MOUNT_BLOCK
        largest = self.space.largest()
        if largest < need:
            raise VmMountRefused(
                f"database {database}: no {need // MB} MB contiguous block in store.exe's address space "
                f"(largest free block {largest / MB:.1f} MB); restart the Information Store"
            )
        start = self.space.alloc(DATABASE_BYTES)
        assert start is not None  # largest >= 10 MB
        self.databases[database] = (start, DATABASE_BYTES)
        return self._events()

    def dismount(self, database: str) -> None:
        block = self.databases.pop(database, None)
        if block is not None:
            self.space.release(*block)

    def activity(self, units: int) -> list[int]:
        """``units`` of work by each mounted database (see the module docstring); the events raised."""
        for _ in range(units * max(1, len(self.databases))):
            self._units += 1
            size = GRANULE * (1 + self._next() % 64)  # 64 KB .. 4 MB
            start = self.space.alloc(size)
            if start is not None:
                self._transient.append((start, size))
            while len(self._transient) > WORKING_SET:
                self.space.release(*self._transient.pop(self._next() % len(self._transient)))
            if self._units % PIN_EVERY == 0:  # long-lived, at a scattered address: never freed
                where = self._next() * GRANULE % ADDRESS_SPACE
                self.space.alloc_near(where, GRANULE * (1 + self._next() % 4))
        return self._events()
