"""Admin replies held until their change is durable: an accepted change is never lost by a failover.

Theory of operation
-------------------
MSCS's global update manager answers an update only after every node applied it. wolfpack's
sequencer (the quorum owner, gum.py) applies a change to its own copy at once and streams it to the
members; if it died right after answering, before the change reached anyone else or the quorum
disk, the next owner would not have it, and an admin who was told "done" would lose a change. So the
sequencer holds the reply to a request that changed the database until that version is durable:

- disk quorum: the checkpoint holding it (or a later one) was written to the quorum disk; the next
  owner reads the checkpoint before it sequences anything (gum.py);
- Majority Node Set: every other member's heartbeat reports that version (or a later one); any
  survivor that forms the next majority then has it.

A refused request, or one that changed nothing, is answered at once. Held replies are dropped when
the node stops being the sequencer (halt): the requester then gets no answer, as when a node dies
while it serves a request, and must look at the cluster to see what happened. At most
``MAX_HELD`` replies are held (the oldest is answered when a new one would exceed it: a bound, not a
case that happens).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MAX_HELD = 256


@dataclass(frozen=True, slots=True)
class HeldReply:
    version: int  # the database version the request produced
    request_id: int
    origin: int  # the node whose client asked
    ok: bool
    result: dict[str, Any]
    error: str
    rule: str


class ReplyHold:
    def __init__(self) -> None:
        self._held: list[HeldReply] = []

    def hold(self, reply: HeldReply) -> list[HeldReply]:
        """Hold ``reply``; returns what must be answered now to stay within the bound."""
        self._held.append(reply)
        overflow, self._held = self._held[:-MAX_HELD], self._held[-MAX_HELD:]
        return overflow

    def release(self, durable_version: int) -> list[HeldReply]:
        """The replies whose change is durable now, in request order."""
        done = [r for r in self._held if r.version <= durable_version]
        self._held = [r for r in self._held if r.version > durable_version]
        return done

    def drop(self) -> int:
        count = len(self._held)
        self._held.clear()
        return count

    def __len__(self) -> int:
        return len(self._held)
