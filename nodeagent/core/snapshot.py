"""A read-only picture of one node's cluster service, for status displays and invariant checks."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any


class NodeState(enum.StrEnum):
    """What ``wolfpack status`` shows for a node (the Cluster Administrator words)."""

    UP = "Up"
    DOWN = "Down"
    JOINING = "Joining"
    PAUSED = "Paused"
    HALTED = "Halted"


class InterfaceState(enum.StrEnum):
    """MSCS network interface states, as seen from this node for one peer on one network."""

    UP = "Up"
    UNREACHABLE = "Unreachable"  # not heard for a while, but not yet declared failed
    FAILED = "Failed"  # missed ``interface_misses`` heartbeats: event 1123
    UNAVAILABLE = "Unavailable"  # the network does not carry cluster traffic (role 0 or 2)


@dataclass(frozen=True, slots=True)
class InterfaceView:
    peer: int
    net: str  # "private" / "public"
    state: InterfaceState
    last_heard_s: float | None


@dataclass(frozen=True, slots=True)
class NodeSnapshot:
    node_id: int
    name: str
    incarnation: int
    phase: str  # Phase name: JOINING, ARBITRATING, MEMBER, REGROUPING, HALTED, STOPPED
    own_state: NodeState  # what this node says of itself
    epoch: int  # installed membership epoch (0: never a member)
    members: tuple[int, ...]
    quorum_owner: int | None  # node id as this node believes, None when unknown
    holds_quorum: bool  # this node owns the quorum and its lease is fresh (disk) / majority (MNS)
    paused: bool
    node_states: dict[int, NodeState]  # this node's view of every configured node
    interfaces: tuple[InterfaceView, ...]
    counters: dict[str, int]  # regroups, arbitrations_won, arbitrations_lost, halts, ...
    db_version: int = 0
    groups: tuple[dict[str, Any], ...] = ()  # the Cluster Administrator tree, from this node's copy

    def as_json(self) -> dict[str, Any]:
        return {
            "node_id": self.node_id,
            "name": self.name,
            "incarnation": self.incarnation,
            "phase": self.phase,
            "own_state": self.own_state.value,
            "epoch": self.epoch,
            "members": list(self.members),
            "quorum_owner": self.quorum_owner,
            "holds_quorum": self.holds_quorum,
            "paused": self.paused,
            "node_states": {str(k): v.value for k, v in self.node_states.items()},
            "interfaces": [
                {"peer": i.peer, "net": i.net, "state": i.state.value, "last_heard_s": i.last_heard_s}
                for i in self.interfaces
            ],
            "counters": dict(self.counters),
            "db_version": self.db_version,
            "groups": [dict(g) for g in self.groups],
        }
