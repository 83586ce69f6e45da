"""Network fault rules for one node: what the operator injected, and what it does to a datagram.

Theory of operation
-------------------
A node's ``FaultTable`` holds ``Fault`` rules installed through its control socket. The messenger
asks ``decide(net, peer, direction)`` for every datagram it is about to send (``Direction.OUT``) and
every authenticated datagram it received (``Direction.IN``), and obeys the ``Verdict``. A rule
installed on node A for peer B therefore cuts A->B and B->A in A's own transport; B's transport knows
nothing about it (exactly like a packet filter on A's NICs).

This module is pure: no trio, no sockets, no clock. For issue 2 the only kind is ``cut`` (drop
everything on the matching paths). The shape is ready for later kinds without a rewrite:

- a ``Fault`` already names a ``direction`` (both / in / out), so one-way faults are a new value of an
  existing field, not a new field;
- ``Verdict`` already carries ``delay_s`` and ``copies``: loss %, delay/jitter, duplication and
  reordering become new ``FaultKind`` values whose parameters go in new fields of ``Fault`` and whose
  decision code (with a ``random.Random`` injected into the table) fills those ``Verdict`` fields;
  the messenger would then honour ``delay_s`` and ``copies`` (today they are always 0 and 1).

Rules are combined in installation order; the first ``cut`` that matches wins. The table is bounded
(``MAX_FAULTS``) and installing a rule identical to an existing one is a no-op.

JSON shape (control socket, CONTRACT.md): ``{"kind": "cut", "net": "private"|"public"|"all",
"peer": "NODE2"|null}``; ``"direction": "in"|"out"`` appears only for one-way rules.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from nodeagent.config import Net
from nodeagent.errors import ConfigError

MAX_FAULTS = 64


class FaultKind(enum.StrEnum):
    CUT = "cut"  # drop every datagram on the matching paths


class NetSelector(enum.StrEnum):
    PRIVATE = "private"
    PUBLIC = "public"
    ALL = "all"

    def covers(self, net: Net) -> bool:
        return self is NetSelector.ALL or self.value == net.label


class Direction(enum.StrEnum):
    """Which way a datagram travels, seen from the node that holds the rule."""

    BOTH = "both"  # only as a rule's scope, never as a datagram's direction
    IN = "in"
    OUT = "out"

    def covers(self, direction: Direction) -> bool:
        return self is Direction.BOTH or self is direction


@dataclass(frozen=True, slots=True)
class Fault:
    kind: FaultKind
    net: NetSelector
    peer: int | None  # node id; None = every peer
    direction: Direction = Direction.BOTH

    def matches(self, net: Net, peer: int, direction: Direction) -> bool:
        return (
            self.net.covers(net)
            and (self.peer is None or self.peer == peer)
            and self.direction.covers(direction)
        )


@dataclass(frozen=True, slots=True)
class Verdict:
    """What to do with one datagram."""

    drop: bool = False
    delay_s: float = 0.0  # reserved for delay/jitter faults: hold the datagram this long
    copies: int = 1  # reserved for duplication faults: deliver this many copies
    fault: Fault | None = None  # the rule that decided, for counters and logs


PASS = Verdict()


class FaultTable:
    """The rules of one node, in installation order."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []

    @property
    def faults(self) -> tuple[Fault, ...]:
        return tuple(self._faults)

    def add(self, fault: Fault) -> bool:
        """Install ``fault``; False when an identical rule was already there."""
        if fault in self._faults:
            return False
        if len(self._faults) >= MAX_FAULTS:
            raise ConfigError(f"too many faults on this node (at most {MAX_FAULTS}); heal first")
        self._faults.append(fault)
        return True

    def clear(self) -> int:
        """Remove every rule; returns how many there were."""
        count = len(self._faults)
        self._faults.clear()
        return count

    def decide(self, net: Net, peer: int, direction: Direction) -> Verdict:
        if direction is Direction.BOTH:
            raise ValueError("a datagram travels IN or OUT, not BOTH")
        for fault in self._faults:
            if fault.kind is FaultKind.CUT and fault.matches(net, peer, direction):
                return Verdict(drop=True, fault=fault)
        return PASS


# -- JSON (the control socket's fault dicts) -------------------------------------------------------


def fault_to_json(fault: Fault, name_of: Callable[[int], str]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "kind": fault.kind.value,
        "net": fault.net.value,
        "peer": None if fault.peer is None else name_of(fault.peer),
    }
    if fault.direction is not Direction.BOTH:
        out["direction"] = fault.direction.value
    return out


def faults_to_json(faults: Iterable[Fault], name_of: Callable[[int], str]) -> list[dict[str, Any]]:
    return [fault_to_json(f, name_of) for f in faults]


def cut_from_request(request: dict[str, Any], id_of: Callable[[str], int], own_id: int) -> Fault:
    """Validate the fields of a ``fault_cut`` request; ``id_of`` raises ConfigError for unknown names."""
    net_value = request.get("net", "all")
    try:
        net = NetSelector(net_value)
    except ValueError:
        raise ConfigError(f"net = {net_value!r}: must be 'private', 'public' or 'all'") from None
    direction_value = request.get("direction", "both")
    try:
        direction = Direction(direction_value)
    except ValueError:
        raise ConfigError(f"direction = {direction_value!r}: must be 'both', 'in' or 'out'") from None
    peer_value = request.get("peer")
    peer: int | None
    if peer_value is None:
        peer = None
    elif isinstance(peer_value, str):
        peer = id_of(peer_value)
        if peer == own_id:
            raise ConfigError(f"peer = {peer_value!r}: a node cannot cut itself off from itself")
    else:
        raise ConfigError(f"peer = {peer_value!r}: must be a node name or null")
    return Fault(kind=FaultKind.CUT, net=net, peer=peer, direction=direction)
