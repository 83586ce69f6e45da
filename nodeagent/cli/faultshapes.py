"""Named partition shapes (``wolfpack fault isolate|split|oneway|partition``): pure planning.

Theory of operation
-------------------
A shape is a set of *blocked directed pairs* ``(src, dst)``: the datagrams from ``src`` to ``dst``
are dropped, on the chosen network(s). ``plan`` parses the text of a shape and draws any random
choice from a ``random.Random`` seeded by the caller; ``ShapePlan.rules`` turns the blocked pairs
into per-node ``cut`` rules about one peer, installed on *both* ends of each pair, so that the shape
still holds while either end restarts (the messenger drops on the way out of ``src`` and again on
the way into ``dst``; dropping twice is the same as dropping once):

- ``src`` gets a cut for peer ``dst`` in direction ``out``, and ``dst`` one for peer ``src``
  direction ``in``; when both ``(a, b)`` and ``(b, a)`` are blocked, each end gets one rule in
  direction ``both`` instead.

Shapes (names as in ``config.nodes``; case does not matter):

- ``isolate A``: A can neither send to nor hear any other node;
- ``split A,B|C,D``: every node named exactly once, at least two sides; nodes of different sides
  cannot talk, nodes of one side can;
- ``A->B`` (one-way): A's datagrams to B are dropped; B->A still flows;
- ``one`` (Jepsen): one random node isolated;
- ``majority`` (Jepsen): a random minority of ``(n - 1) // 2`` nodes split from the majority of the
  rest (needs at least 3 nodes);
- ``ring`` (Jepsen's majorities ring, needs at least 3 nodes): the nodes are shuffled into a cycle
  ``p0 .. p(n-1)``; with ``m = n // 2 + 1`` (a majority), node ``p(i)`` hears the ``m`` consecutive
  nodes ``p(i - (m - 1) // 2) .. p(i - (m - 1) // 2 + m - 1)`` (itself among them) and nothing
  else. Every visible set is a majority, and the ``n`` sets are ``n`` different windows of one
  cycle, so no two are the same (``m < n``). Hearing need not be mutual (with ``n = 3``: p0 hears
  p1, p1 does not hear p0), so the blocked pairs are directed: ``(src, dst)`` is blocked when
  ``dst`` does not hear ``src``.

Every mistake (an unknown node, a node named twice or left out, fewer than two sides, too few
nodes for a shape) is a ``ConfigError`` with one line.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from nodeagent.config import ClusterConfig
from nodeagent.errors import ConfigError

JEPSEN_SHAPES = ("one", "majority", "ring")


@dataclass(frozen=True, slots=True)
class CutRule:
    """One per-node rule of a shape: on ``node``, cut ``peer`` in ``direction`` (both / in / out)."""

    node: str
    peer: str
    direction: str


@dataclass(frozen=True, slots=True)
class ShapePlan:
    name: str  # "isolate", "split", "oneway", "one", "majority", "ring"
    description: str  # one line, e.g. "NODE1,NODE2 | NODE3"
    blocked: frozenset[tuple[str, str]]  # (src, dst): src's datagrams to dst are dropped
    visible: dict[str, frozenset[str]]  # per node, the nodes it hears (itself included)

    def rules(self) -> list[CutRule]:
        """Per-node cut rules, every node's in name order, its peers in name order."""
        out: list[CutRule] = []
        nodes = sorted({n for pair in self.blocked for n in pair})
        for node in nodes:
            for peer in nodes:
                if peer == node:
                    continue
                outgoing = (node, peer) in self.blocked
                incoming = (peer, node) in self.blocked
                if outgoing and incoming:
                    out.append(CutRule(node, peer, "both"))
                elif outgoing:
                    out.append(CutRule(node, peer, "out"))
                elif incoming:
                    out.append(CutRule(node, peer, "in"))
        return out


def _visible(names: Sequence[str], blocked: frozenset[tuple[str, str]]) -> dict[str, frozenset[str]]:
    return {d: frozenset(s for s in names if s == d or (s, d) not in blocked) for d in names}


def _plan(name: str, description: str, names: Sequence[str], blocked: set[tuple[str, str]]) -> ShapePlan:
    frozen = frozenset(blocked)
    return ShapePlan(name, description, frozen, _visible(names, frozen))


def _between(sides: Sequence[Sequence[str]]) -> set[tuple[str, str]]:
    blocked: set[tuple[str, str]] = set()
    for i, side in enumerate(sides):
        for j, other in enumerate(sides):
            if i != j:
                blocked.update((a, b) for a in side for b in other)
    return blocked


def isolate(config: ClusterConfig, node: str) -> ShapePlan:
    names = [n.name for n in config.nodes]
    victim = config.node(node).name
    rest = [n for n in names if n != victim]
    if not rest:
        raise ConfigError(f"cannot isolate {victim}: it is the only node")
    return _plan("isolate", f"{victim} | {','.join(rest)}", names, _between([[victim], rest]))


def split(config: ClusterConfig, text: str) -> ShapePlan:
    names = [n.name for n in config.nodes]
    sides: list[list[str]] = []
    seen: set[str] = set()
    for part in text.split("|"):
        side = []
        for raw in part.split(","):
            if not raw.strip():
                raise ConfigError(f"split {text!r}: an empty name or side (write it as A,B|C,D)")
            name = config.node(raw.strip()).name
            if name in seen:
                raise ConfigError(f"split {text!r}: {name} is named twice (every node exactly once)")
            seen.add(name)
            side.append(name)
        sides.append(side)
    if len(sides) < 2:
        raise ConfigError(f"split {text!r}: needs at least two sides separated by '|' (A,B|C,D)")
    missing = [n for n in names if n not in seen]
    if missing:
        raise ConfigError(f"split {text!r}: {', '.join(missing)} not named (every node exactly once)")
    return _plan("split", " | ".join(",".join(s) for s in sides), names, _between(sides))


def oneway(config: ClusterConfig, text: str) -> ShapePlan:
    parts = text.split("->")
    if len(parts) != 2 or not all(p.strip() for p in parts):
        raise ConfigError(f"one-way cut {text!r}: write it as A->B (A's datagrams to B are dropped)")
    src, dst = (config.node(p.strip()).name for p in parts)
    if src == dst:
        raise ConfigError(f"one-way cut {text!r}: a node cannot cut itself")
    return _plan("oneway", f"{src}->{dst}", [n.name for n in config.nodes], {(src, dst)})


def jepsen(config: ClusterConfig, shape: str, rng: random.Random) -> ShapePlan:
    names = [n.name for n in config.nodes]
    n = len(names)
    if shape == "one":
        if n < 2:
            raise ConfigError("partition one: needs at least 2 nodes")
        victim = rng.choice(names)
        plan = isolate(config, victim)
        return ShapePlan("one", plan.description, plan.blocked, plan.visible)
    if shape not in ("majority", "ring"):
        raise ConfigError(f"partition {shape!r}: must be one of {', '.join(JEPSEN_SHAPES)}")
    if n < 3:
        raise ConfigError(f"partition {shape}: needs at least 3 nodes (this cluster has {n})")
    shuffled = list(names)
    rng.shuffle(shuffled)
    if shape == "majority":
        size = (n - 1) // 2
        minority, majority = sorted(shuffled[:size]), sorted(shuffled[size:])
        desc = f"{','.join(minority)} | {','.join(majority)}"
        return _plan("majority", desc, names, _between([minority, majority]))
    m = n // 2 + 1
    start = (m - 1) // 2
    hears = {shuffled[i]: {shuffled[(i - start + k) % n] for k in range(m)} for i in range(n)}
    blocked = {(src, dst) for dst in names for src in names if src not in hears[dst]}
    desc = (
        "ring "
        + "->".join(shuffled)
        + "; "
        + "; ".join(f"{node} hears {','.join(sorted(hears[node]))}" for node in sorted(names))
    )
    return _plan("ring", desc, names, blocked)


def plan(config: ClusterConfig, text: str, rng: random.Random) -> ShapePlan:
    """Parse a shape: ``isolate NODE``, ``split A,B|C,D``, ``A->B``, ``one``, ``majority``, ``ring``."""
    words = text.strip().split(None, 1)
    if not words:
        raise ConfigError("empty fault shape (isolate NODE, split A,B|C,D, A->B, one, majority, ring)")
    head, rest = words[0].lower(), (words[1].strip() if len(words) > 1 else "")
    if head == "isolate" and rest:
        return isolate(config, rest)
    if head == "split" and rest:
        return split(config, rest.replace(" ", ""))
    if "->" in text:
        return oneway(config, text.replace(" ", ""))
    if head in JEPSEN_SHAPES and not rest:
        return jepsen(config, head, rng)
    raise ConfigError(
        f"fault shape {text!r}: must be 'isolate NODE', 'split A,B|C,D', 'A->B', 'one', 'majority' or 'ring'"
    )
