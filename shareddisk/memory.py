"""``MemoryDisk``: the in-memory twin of ``FileDisk``, for the simulator and unit tests.

Theory of operation
-------------------
One ``MemoryDisk`` object IS the shared disk: every simulated node calls it with its own initiator
name, as real nodes open the same image file. The reservation state is a ``rules.ReservationState``
value replaced under a thread lock by ``rules.apply``, the very function ``FileDisk`` runs, so the two
flavours cannot disagree on a rule. Data blocks live in a dict (unwritten blocks read as zeros).

Fault injection for the simulator: ``set_unavailable(cause)`` makes every call raise
``DiskUnavailable`` (the path to the disk failed) until ``set_unavailable(None)``.
``close()`` is a no-op: the object is shared by every simulated node, and one node closing its
handle must not take the disk away from the others.
"""

from __future__ import annotations

import threading

from shareddisk import rules
from shareddisk.errors import DiskUnavailable
from shareddisk.protocol import check_block
from shareddisk.rules import Outcome, ReservationInfo, ReservationState

MAX_MEMORY_BYTES = 2**30  # the simulator runs many disks; keep each one modest


class MemoryDisk:
    """A shared disk held in memory. Thread-safe; deterministic."""

    def __init__(self, name: str, block_count: int = 256, block_size: int = 4096) -> None:
        if not name:
            raise ValueError("a disk needs a name")
        if block_size < 1 or block_count < 1 or block_size * block_count > MAX_MEMORY_BYTES:
            raise ValueError(f"disk {name}: {block_count} blocks of {block_size} bytes is not a usable size")
        self._name = name
        self._block_size = block_size
        self._block_count = block_count
        self._lock = threading.Lock()
        self._state = ReservationState()
        self._blocks: dict[int, bytes] = {}
        self._unavailable: str | None = None

    def __repr__(self) -> str:
        return f"MemoryDisk({self._name!r}, block_count={self._block_count}, block_size={self._block_size})"

    @property
    def name(self) -> str:
        return self._name

    @property
    def block_size(self) -> int:
        return self._block_size

    @property
    def block_count(self) -> int:
        return self._block_count

    def set_unavailable(self, cause: str | None) -> None:
        """Fail every later call with DiskUnavailable(cause); None repairs the path."""
        with self._lock:
            self._unavailable = cause

    def _check_available(self) -> None:
        if self._unavailable is not None:
            raise DiskUnavailable(self._name, self._unavailable)

    def _change(self, op: rules.Op) -> Outcome:
        with self._lock:
            self._check_available()
            self._state, outcome = rules.apply(self._state, op)
            return outcome

    def reserve(self, initiator: str) -> Outcome:
        return self._change(rules.Reserve(initiator))

    def release(self, initiator: str) -> Outcome:
        return self._change(rules.Release(initiator))

    def reset(self, initiator: str) -> None:
        self._change(rules.Reset(initiator))

    def register(self, initiator: str, key: int) -> Outcome:
        return self._change(rules.Register(initiator, key))

    def pr_reserve(self, initiator: str, key: int) -> Outcome:
        return self._change(rules.PrReserve(initiator, key))

    def pr_release(self, initiator: str, key: int) -> Outcome:
        return self._change(rules.PrRelease(initiator, key))

    def preempt(self, initiator: str, key: int, victim_key: int) -> Outcome:
        return self._change(rules.Preempt(initiator, key, victim_key))

    def read_state(self) -> ReservationState:
        with self._lock:
            self._check_available()
            return self._state

    def read_keys(self) -> tuple[int, dict[str, int]]:
        state = self.read_state()
        return state.generation, state.keys()

    def read_reservation(self) -> ReservationInfo:
        return rules.info(self.read_state())

    def read_block(self, initiator: str, n: int) -> bytes:
        rules.check_initiator(initiator)
        check_block(self, n)
        with self._lock:
            self._check_available()
            rules.check_io(self._state, self._name, initiator, write=False)
            return self._blocks.get(n, bytes(self._block_size))

    def write_block(self, initiator: str, n: int, data: bytes) -> None:
        rules.check_initiator(initiator)
        check_block(self, n, data)
        with self._lock:
            self._check_available()
            rules.check_io(self._state, self._name, initiator, write=True)
            self._blocks[n] = bytes(data)

    def close(self) -> None:
        """No-op (see the module docstring)."""
