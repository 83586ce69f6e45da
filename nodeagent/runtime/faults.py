"""Network fault rules for one node: what the operator injected, and what it does to a datagram.

Theory of operation
-------------------
A node's ``FaultTable`` holds ``Fault`` rules installed through its control socket. The messenger
asks ``decide(net, peer, direction)`` for every datagram it is about to send (``Direction.OUT``) and
every authenticated datagram it received (``Direction.IN``), and obeys the ``Verdict``. A rule
installed on node A for peer B therefore acts on A->B and B->A in A's own transport; B's transport
knows nothing about it (exactly like a packet filter, or ``tc netem``, on A's NICs).

Kinds (``FaultKind``) and their parameters:

- ``cut``: drop every datagram;
- ``loss``: drop ``pct`` % of the datagrams (each one rolls);
- ``delay``: hold each datagram ``delay_ms`` +/- ``jitter_ms`` (uniform, never below 0; as netem,
  the jitter alone can reorder datagrams);
- ``dup``: deliver ``pct`` % of the datagrams twice;
- ``reorder``: hold ``pct`` % of the datagrams back by an extra uniform random delay of up to
  ``delay_ms``, so that later datagrams overtake them. The node resolves a ``delay_ms`` of 0 in a
  request to two heartbeat intervals (``fault_from_request(reorder_default_ms=...)``).

A rule applies to a network (private, public or all), a peer (a node id, or every peer) and a
direction (both, in, out), seen from the node that holds it.

Combination, for one datagram and every rule that matches it:

1. any matching ``cut`` drops it (whatever the order of installation);
2. else each matching ``loss`` rule rolls in installation order; the first hit drops it;
3. else the delays of the matching ``delay`` rules add up, plus the extra hold of every ``reorder``
   rule whose roll hits; the sum is capped at ``MAX_DELAY_S``;
4. each matching ``dup`` rule whose roll hits adds one copy (at most ``MAX_COPIES`` in all). Every
   copy is delivered after the same delay.

The verdict names the first rule that had an effect (for logs). Decisions draw from one
``random.Random`` injected into the table (a seeded one makes them reproducible in tests); this
module is pure: no trio, no sockets, no clock.

Each installed rule gets an id, monotonic per table (a restarted node starts again at 1): ``heal``
removes one by id, or all. The table is bounded (``MAX_FAULTS``); installing a rule identical to an
installed one installs nothing and returns the installed one. Parameters are validated when a
``Fault`` is built: ``pct`` in (0, 100], ``delay_ms`` and ``jitter_ms`` in [0, 10000], and a kind
takes only its own parameters.

JSON (control socket): ``rule_to_json`` gives the full shape of the ``faults`` op, ``{"id": N,
"kind": ..., "net": ..., "peer": NAME|null, "direction": ..., "pct": P, "delay_ms": D, "jitter_ms":
J}``; ``fault_to_json`` a compact one (``kind``, ``net``, ``peer``, then only what differs from the
defaults), the shape of issue 2's cut.
"""

from __future__ import annotations

import enum
import math
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from nodeagent.config import Net
from nodeagent.errors import ConfigError

MAX_FAULTS = 64
MAX_PARAM_MS = 10_000.0  # delay_ms and jitter_ms
MAX_DELAY_S = 10.0  # total hold of one datagram, whatever the rules add up to
MAX_COPIES = 4  # one datagram and at most three duplicates


class FaultKind(enum.StrEnum):
    CUT = "cut"  # drop every datagram on the matching paths
    LOSS = "loss"  # drop pct % of them
    DELAY = "delay"  # hold each for delay_ms +/- jitter_ms
    DUP = "dup"  # deliver pct % of them twice
    REORDER = "reorder"  # hold pct % of them back by up to delay_ms more, so later ones overtake


_USES_PCT = (FaultKind.LOSS, FaultKind.DUP, FaultKind.REORDER)
_USES_DELAY = (FaultKind.DELAY, FaultKind.REORDER)


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


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"{what} = {value!r}: must be a number")
    return float(value)


@dataclass(frozen=True, slots=True)
class Fault:
    kind: FaultKind
    net: NetSelector
    peer: int | None  # node id; None = every peer
    direction: Direction = Direction.BOTH
    pct: float = 0.0  # loss, dup, reorder
    delay_ms: float = 0.0  # delay (base), reorder (largest extra hold)
    jitter_ms: float = 0.0  # delay

    def __post_init__(self) -> None:
        kind = self.kind.value
        if self.kind in _USES_PCT:
            if not 0.0 < self.pct <= 100.0:
                raise ConfigError(f"{kind}: pct = {self.pct:g}: must be more than 0 and at most 100")
        elif self.pct:
            raise ConfigError(f"{kind}: takes no pct (only loss, dup and reorder do)")
        for name, value in (("delay_ms", self.delay_ms), ("jitter_ms", self.jitter_ms)):
            if not 0.0 <= value <= MAX_PARAM_MS:
                raise ConfigError(f"{kind}: {name} = {value:g}: must be from 0 to {MAX_PARAM_MS:g}")
        if self.kind not in _USES_DELAY and self.delay_ms:
            raise ConfigError(f"{kind}: takes no delay (only delay and reorder do)")
        if self.kind is not FaultKind.DELAY and self.jitter_ms:
            raise ConfigError(f"{kind}: takes no jitter (only delay does)")
        if self.kind is FaultKind.DELAY and not (self.delay_ms or self.jitter_ms):
            raise ConfigError("delay: needs a delay_ms or a jitter_ms above 0")
        if self.kind is FaultKind.REORDER and not self.delay_ms:
            raise ConfigError("reorder: needs a delay_ms above 0 (how far a datagram may be held back)")

    def matches(self, net: Net, peer: int, direction: Direction) -> bool:
        return (
            self.net.covers(net)
            and (self.peer is None or self.peer == peer)
            and self.direction.covers(direction)
        )

    def describe(self) -> str:
        """The parameters in a few words: ``loss 30%``, ``delay 50+/-10 ms``."""
        if self.kind in (FaultKind.LOSS, FaultKind.DUP):
            return f"{self.kind.value} {self.pct:g}%"
        if self.kind is FaultKind.DELAY:
            jitter = f"+/-{self.jitter_ms:g}" if self.jitter_ms else ""
            return f"delay {self.delay_ms:g}{jitter} ms"
        if self.kind is FaultKind.REORDER:
            return f"reorder {self.pct:g}% by <= {self.delay_ms:g} ms"
        return self.kind.value


@dataclass(frozen=True, slots=True)
class Rule:
    """An installed fault and its id in the table."""

    id: int
    fault: Fault


@dataclass(frozen=True, slots=True)
class Verdict:
    """What to do with one datagram."""

    drop: bool = False
    delay_s: float = 0.0  # hold the datagram (and its copies) this long before it goes on
    copies: int = 1  # deliver this many identical copies
    fault: Fault | None = None  # the first rule that had an effect, for counters and logs


PASS = Verdict()


class FaultTable:
    """The rules of one node, in installation order."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rules: list[Rule] = []
        self._next_id = 1
        self.rng = rng if rng is not None else random.Random()

    @property
    def faults(self) -> tuple[Fault, ...]:
        return tuple(r.fault for r in self._rules)

    @property
    def rules(self) -> tuple[Rule, ...]:
        return tuple(self._rules)

    def install(self, fault: Fault) -> tuple[Rule, bool]:
        """Install ``fault``; returns its rule and whether it is new (an identical one may be there)."""
        for rule in self._rules:
            if rule.fault == fault:
                return rule, False
        if len(self._rules) >= MAX_FAULTS:
            raise ConfigError(f"too many faults on this node (at most {MAX_FAULTS}); heal first")
        rule = Rule(self._next_id, fault)
        self._next_id += 1
        self._rules.append(rule)
        return rule, True

    def add(self, fault: Fault) -> bool:
        """Install ``fault``; False when an identical rule was already there."""
        return self.install(fault)[1]

    def heal(self, rule_id: int | None = None) -> list[Rule]:
        """Remove the rule ``rule_id`` (nothing if there is none), or every rule; returns the removed."""
        if rule_id is None:
            removed, self._rules = self._rules, []
            return removed
        removed = [r for r in self._rules if r.id == rule_id]
        self._rules = [r for r in self._rules if r.id != rule_id]
        return removed

    def clear(self) -> int:
        """Remove every rule; returns how many there were."""
        return len(self.heal())

    def decide(self, net: Net, peer: int, direction: Direction) -> Verdict:
        if direction is Direction.BOTH:
            raise ValueError("a datagram travels IN or OUT, not BOTH")
        matching = [r.fault for r in self._rules if r.fault.matches(net, peer, direction)]
        if not matching:
            return PASS
        for fault in matching:
            if fault.kind is FaultKind.CUT:
                return Verdict(drop=True, fault=fault)
        rng = self.rng
        for fault in matching:
            if fault.kind is FaultKind.LOSS and rng.random() * 100.0 < fault.pct:
                return Verdict(drop=True, fault=fault)
        delay_ms = 0.0
        copies = 1
        first: Fault | None = None
        for fault in matching:
            if fault.kind is FaultKind.DELAY:
                delay_ms += max(0.0, fault.delay_ms + rng.uniform(-fault.jitter_ms, fault.jitter_ms))
            elif fault.kind is FaultKind.REORDER and rng.random() * 100.0 < fault.pct:
                delay_ms += rng.uniform(0.0, fault.delay_ms)
            elif fault.kind is FaultKind.DUP and rng.random() * 100.0 < fault.pct:
                copies += 1
            else:
                continue
            first = first or fault
        if first is None:
            return PASS
        delay_s = min(delay_ms / 1000.0, MAX_DELAY_S)
        return Verdict(delay_s=delay_s, copies=min(copies, MAX_COPIES), fault=first)


# -- JSON (the control socket's fault dicts) -------------------------------------------------------


def fault_to_json(fault: Fault, name_of: Callable[[int], str]) -> dict[str, Any]:
    """Compact: kind, net, peer, then only the fields that differ from their defaults."""
    out: dict[str, Any] = {
        "kind": fault.kind.value,
        "net": fault.net.value,
        "peer": None if fault.peer is None else name_of(fault.peer),
    }
    if fault.direction is not Direction.BOTH:
        out["direction"] = fault.direction.value
    for name, value in (("pct", fault.pct), ("delay_ms", fault.delay_ms), ("jitter_ms", fault.jitter_ms)):
        if value:
            out[name] = value
    return out


def faults_to_json(faults: Iterable[Fault], name_of: Callable[[int], str]) -> list[dict[str, Any]]:
    return [fault_to_json(f, name_of) for f in faults]


def rule_to_json(rule: Rule, name_of: Callable[[int], str]) -> dict[str, Any]:
    """Full: the shape of the ``faults`` op (CONTRACT4.md), every field present."""
    f = rule.fault
    return {
        "id": rule.id,
        "kind": f.kind.value,
        "net": f.net.value,
        "peer": None if f.peer is None else name_of(f.peer),
        "direction": f.direction.value,
        "pct": f.pct,
        "delay_ms": f.delay_ms,
        "jitter_ms": f.jitter_ms,
    }


def rules_to_json(rules: Iterable[Rule], name_of: Callable[[int], str]) -> list[dict[str, Any]]:
    return [rule_to_json(r, name_of) for r in rules]


def fault_from_request(
    request: dict[str, Any],
    id_of: Callable[[str], int],
    own_id: int,
    *,
    kind: str | None = None,
    reorder_default_ms: float = 0.0,
) -> Fault:
    """Validate the fields of a ``fault_add`` (or, with ``kind="cut"``, ``fault_cut``) request.

    ``id_of`` raises ConfigError for unknown names. A reorder request without ``delay_ms`` (or 0)
    gets ``reorder_default_ms``.
    """
    kind_value: Any = kind if kind is not None else request.get("kind")
    try:
        fault_kind = FaultKind(kind_value)
    except ValueError:
        known = ", ".join(k.value for k in FaultKind)
        raise ConfigError(f"kind = {kind_value!r}: must be one of {known}") from None
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
            raise ConfigError(f"peer = {peer_value!r}: a node cannot fault its link to itself")
    else:
        raise ConfigError(f"peer = {peer_value!r}: must be a node name or null")
    pct = _number(request.get("pct", 0.0) or 0.0, "pct")
    delay_ms = _number(request.get("delay_ms", 0.0) or 0.0, "delay_ms")
    jitter_ms = _number(request.get("jitter_ms", 0.0) or 0.0, "jitter_ms")
    if fault_kind is FaultKind.REORDER and not delay_ms:
        delay_ms = reorder_default_ms
    return Fault(fault_kind, net, peer, direction, pct=pct, delay_ms=delay_ms, jitter_ms=jitter_ms)


def cut_from_request(request: dict[str, Any], id_of: Callable[[str], int], own_id: int) -> Fault:
    """Validate the fields of a ``fault_cut`` request; ``id_of`` raises ConfigError for unknown names."""
    return fault_from_request(request, id_of, own_id, kind="cut")
