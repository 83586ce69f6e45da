"""Regroup and membership-proposal bookkeeping (the data; the decisions are in node.py).

Theory of operation
-------------------
Regroup follows the stages of the Tandem algorithm that MSCS uses:

1. Activity: every member that noticed a failure (or heard a regroup vote for its epoch) sends a
   ``RegroupVote`` each heartbeat interval for ``regroup_activity_s``, saying whom it hears.
2. Closing: the voters form the partition P. Under disk quorum the coordinator is the quorum owner
   when it is in P, otherwise the lowest id in P (the tiebreaker), which must win the quorum disk
   first. Under Majority Node Set the coordinator is the lowest id, and P's membership needs
   floor(N/2)+1 nodes.
3. Pruning: the coordinator keeps the largest set of P in which every pair hears each other
   (``largest_clique``) and proposes it; nodes left out halt when they see the commit.
4. Cleanup: ``Propose`` -> ``Ack`` from every proposed member -> (disk quorum: the fenced write of
   the membership record) -> ``Commit``; every member installs the new epoch and the failover
   manager takes over.

A member acks a proposal only for an epoch above every epoch it acked before (a promise), so two
coordinators can never both gather the same member for one epoch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations


@dataclass(slots=True)
class Regroup:
    round: int
    started_s: float
    activity_end_s: float
    reason: str
    votes: dict[int, tuple[int, ...]] = field(default_factory=dict)  # voter -> whom it hears
    coordinator: int | None = None  # decided at the end of the activity stage
    wait_until_s: float | None = None  # a non-coordinator halts if nothing is committed by then
    candidate: tuple[int, ...] = ()  # the membership the coordinator will propose


@dataclass(slots=True)
class Proposal:
    epoch: int
    members: tuple[int, ...]
    incarnations: tuple[int, ...]
    owner: int
    deadline_s: float
    acks: set[int] = field(default_factory=set)
    record_op: int | None = None  # disk quorum: the op id of the membership record write

    @property
    def missing(self) -> tuple[int, ...]:
        return tuple(m for m in self.members if m not in self.acks)


def largest_clique(me: int, votes: dict[int, tuple[int, ...]]) -> tuple[int, ...]:
    """The largest set containing ``me`` whose members all hear each other (both ways).

    Ties go to the set with the lowest ids. At most 8 nodes, so trying every subset is cheap.
    """

    def mutual(a: int, b: int) -> bool:
        return b in votes.get(a, ()) and a in votes.get(b, ())

    others = sorted(n for n in votes if n != me and mutual(me, n))
    for size in range(len(others), -1, -1):
        for combo in combinations(others, size):
            if all(mutual(a, b) for a, b in combinations(combo, 2)):
                return tuple(sorted((me, *combo)))
    return (me,)
