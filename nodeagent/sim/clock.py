"""Virtual time for the simulator: one event queue ordered by (time, sequence).

Theory of operation
-------------------
Nothing in the simulator reads a real clock. ``EventQueue`` holds pending happenings (a datagram
arriving, a disk operation finishing, a node's timer, a scheduled fault) keyed by their virtual time
and by a sequence number handed out at push time. Popping the smallest key advances ``now``; two
items due at the same instant come out in the order they were pushed, so a run depends only on the
order of pushes, which depends only on the seed. The sequence number also keeps the heap from ever
comparing the items themselves.

Time never goes backwards: an item pushed for the past is due now (a core that asks for a deadline it
has already passed gets its tick at once, the way a real timer would fire immediately).

Limits: the queue refuses to grow past ``limit`` items and the run refuses to spin at one instant for
more than ``max_steps_per_instant`` pops. Either means the simulated system has run away (a timer
re-armed for the past forever, a duplication storm); ``SimulationStuck`` ends the run with a clear
message instead of hanging.
"""

from __future__ import annotations

import heapq
import math
from typing import Generic, TypeVar

from nodeagent.errors import WolfpackError

T = TypeVar("T")

DEFAULT_QUEUE_LIMIT = 2_000_000
DEFAULT_MAX_STEPS_PER_INSTANT = 100_000


class SimulationStuck(WolfpackError):
    """The simulated system stopped making progress in virtual time, or its event queue overflowed."""


class EventQueue(Generic[T]):
    def __init__(
        self,
        *,
        limit: int = DEFAULT_QUEUE_LIMIT,
        max_steps_per_instant: int = DEFAULT_MAX_STEPS_PER_INSTANT,
    ) -> None:
        self._heap: list[tuple[float, int, T]] = []
        self._seq = 0
        self._limit = limit
        self._max_steps_per_instant = max_steps_per_instant
        self._steps_at_now = 0
        self.now = 0.0
        self.popped = 0

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, at_s: float, item: T) -> None:
        if not math.isfinite(at_s):
            raise ValueError(f"event time must be finite, got {at_s!r}")
        if len(self._heap) >= self._limit:
            raise SimulationStuck(f"event queue overflow: {self._limit} pending events at t={self.now:.4f}")
        self._seq += 1
        heapq.heappush(self._heap, (max(at_s, self.now), self._seq, item))

    def peek_time(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def pop(self) -> tuple[float, T]:
        """Remove the earliest item and move ``now`` to its time."""
        at_s, _, item = heapq.heappop(self._heap)
        if at_s > self.now:
            self.now = at_s
            self._steps_at_now = 0
        self._steps_at_now += 1
        if self._steps_at_now > self._max_steps_per_instant:
            raise SimulationStuck(
                f"more than {self._max_steps_per_instant} events at t={self.now:.4f}: "
                "something re-arms itself without letting time pass"
            )
        self.popped += 1
        return at_s, item

    def advance_to(self, at_s: float) -> None:
        """Move ``now`` forward with nothing happening (the end of a run, say). Never backwards."""
        if at_s > self.now:
            self.now = at_s
            self._steps_at_now = 0
