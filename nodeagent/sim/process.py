"""One simulated node process: alive, frozen or dead; its core, incarnation, timer and frozen inbox.

Theory of operation
-------------------
A ``SimNode`` is the simulator's stand-in for a ``python -m nodeagent`` process. It owns at most one
core (``None`` while the process is dead) and the bookkeeping the real process would keep:

- ``incarnation``: bumped at every start, like the ``incarnation`` file the real process rewrites.
- ``installed_epoch``: the last membership epoch its core installed, what its ``db.json`` would hold;
  a restarted core is built with ``known_epoch`` = this.
- ``deadline`` and ``timer_token``: the latest ``Ready.next_deadline_s`` and a counter that makes every
  older timer event stale (the most recent Ready's deadline wins).
- ``spin_*``: a busy-loop detector for cores whose tick keeps returning a past deadline.
- ``started_s``: when the current process started; a datagram sent before that is dropped on arrival,
  because it was addressed to the process that died (the brief: a kill drops pending deliveries).

Freezing models SIGSTOP: the process exists, its core keeps its state, but no input is processed.
Whatever arrives meanwhile waits in ``inbox`` in arrival order: datagrams (at most
``MAX_FROZEN_DATAGRAMS``, the rest dropped like a full socket buffer), disk results (never dropped:
every DiskOp gets exactly one DiskResult), resource actions that finished (never dropped: every
ResourceAction gets exactly one report), admin requests, and at most one "timer expired" marker.
Thawing hands the inbox back in order, with the thaw time as ``now``.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass
from typing import Any

from nodeagent.config import Net
from nodeagent.core.effects import DiskResult
from nodeagent.core.messages import Message
from nodeagent.sim.ports import SimCore
from nodeagent.sim.resources import Completion

MAX_FROZEN_DATAGRAMS = 256
SPIN_LIMIT = 10  # ticks at one instant that all return a past deadline: a busy loop
SPIN_BACKOFF_S = 0.001  # a busy node is then ticked again this much later


class ProcState(enum.StrEnum):
    RUNNING = "running"
    FROZEN = "frozen"
    DEAD = "dead"


@dataclass(frozen=True, slots=True)
class QueuedDatagram:
    net: Net
    src: int
    src_incarnation: int
    msg: Message


@dataclass(frozen=True, slots=True)
class QueuedDiskResult:
    result: DiskResult


@dataclass(frozen=True, slots=True)
class QueuedTick:
    pass


@dataclass(frozen=True, slots=True)
class QueuedCompletion:
    """A resource action that finished while the process was stopped (its monitor stopped with it)."""

    completion: Completion


@dataclass(frozen=True, slots=True)
class QueuedAdmin:
    """An admin request that reached the control socket of a stopped process."""

    request_id: int
    cmd: str
    args: dict[str, Any]


Queued = QueuedDatagram | QueuedDiskResult | QueuedTick | QueuedCompletion | QueuedAdmin


class SimNode:
    def __init__(self, node_id: int, name: str) -> None:
        self.node_id = node_id
        self.name = name
        self.state = ProcState.DEAD
        self.core: SimCore | None = None
        self.incarnation = 0
        self.installed_epoch = 0
        self.started_s = 0.0
        self.deadline: float | None = None
        self.timer_token = 0
        self._armed = False
        self.inbox: deque[Queued] = deque()
        self._inbox_datagrams = 0
        self._tick_queued = False
        self.frozen_drops = 0
        self.spin_count = 0  # consecutive ticks at ``spin_at`` that returned a past deadline
        self.spin_at = -1.0
        self.spin_reported = False  # this busy loop was recorded; back off at once until it ends

    @property
    def alive(self) -> bool:
        return self.state is not ProcState.DEAD

    def boot(self, core: SimCore, now_s: float) -> None:
        """A new process with a new core (the caller already bumped ``incarnation``)."""
        # DEAD -> RUNNING
        self.core = core
        self.state = ProcState.RUNNING
        self.started_s = now_s
        self.deadline = None
        self.timer_token += 1
        self._armed = False
        self._clear_inbox()

    def kill(self) -> None:
        # RUNNING/FROZEN -> DEAD: the core and everything queued for it are gone
        self.core = None
        self.state = ProcState.DEAD
        self.deadline = None
        self.timer_token += 1
        self._armed = False
        self._clear_inbox()

    def freeze(self) -> None:
        # RUNNING -> FROZEN
        self.state = ProcState.FROZEN

    def thaw(self) -> list[Queued]:
        # FROZEN -> RUNNING: hand back what arrived meanwhile, in order
        self.state = ProcState.RUNNING
        items = list(self.inbox)
        self._clear_inbox()
        return items

    def enqueue(self, item: Queued) -> bool:
        """Queue an input for a frozen process. False when it had to be dropped."""
        if isinstance(item, QueuedDatagram):
            if self._inbox_datagrams >= MAX_FROZEN_DATAGRAMS:
                self.frozen_drops += 1
                return False
            self._inbox_datagrams += 1
        elif isinstance(item, QueuedTick):
            if self._tick_queued:
                return True
            self._tick_queued = True
        self.inbox.append(item)
        return True

    def arm(self, deadline: float | None) -> int | None:
        """Record the latest Ready's deadline. Returns the token a new timer event must carry, or None
        when no new event is needed (no deadline, or the pending event is already for this deadline)."""
        if deadline is not None and deadline == self.deadline and self._armed:
            return None
        self.deadline = deadline
        self.timer_token += 1
        self._armed = deadline is not None
        return self.timer_token if deadline is not None else None

    def timer_fired(self, token: int) -> bool:
        """True when a timer event with ``token`` is the live one (and disarm it)."""
        if token != self.timer_token or not self._armed:
            return False
        self._armed = False
        return True

    def tick_returned(self, now_s: float, deadline: float | None) -> tuple[float | None, bool]:
        """Watch for a core whose ticks keep asking for a deadline that has already passed.

        One immediate re-tick is fine (the core finished one thing and goes on at once); ``SPIN_LIMIT``
        ticks at one instant are a busy loop a real runtime would spin in. From then until a tick
        returns a future deadline, the node is ticked ``SPIN_BACKOFF_S`` later instead, so the rest of
        the run still gets checked. Returns (the deadline to arm, True when a busy loop just began).
        """
        if deadline is None or deadline > now_s:
            self.spin_count = 0
            self.spin_reported = False
            return deadline, False
        self.spin_count = self.spin_count + 1 if self.spin_at == now_s else 1
        self.spin_at = now_s
        if self.spin_count < SPIN_LIMIT and not self.spin_reported:
            return deadline, False
        began = not self.spin_reported
        self.spin_reported = True
        return now_s + SPIN_BACKOFF_S, began

    def _clear_inbox(self) -> None:
        self.inbox.clear()
        self._inbox_datagrams = 0
        self._tick_queued = False
