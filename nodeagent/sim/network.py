"""The simulated network: per-path delay, loss, duplication and cuts, drawn from the run's one rng.

Theory of operation
-------------------
A *path* is one direction of one link: ``(src node id, dst node id, Net)``. Every ``Send`` a core
emits becomes zero, one or two ``Delivery`` values (a duplicate is a second copy with its own delay).
A delivery's time is ``now + base_delay_s + jitter`` plus any extra delay the faults on its path add;
jitter lets datagrams overtake each other, as UDP allows.

Faults are values (``NetFault``) installed under an id and removed by id, so overlapping faults compose
and healing one leaves the others in place. On one path: any cutting fault drops everything; losses
combine as independent drops (``1 - prod(1 - loss)``); extra delays add up; duplication takes the
highest. Building helpers turn the operator's words into paths: ``partition`` (every path between two
different sides, both directions, every network), ``isolate``, ``cut`` (one pair, one or all networks,
both directions, like ``wolfpack fault cut``) and ``degrade`` (loss, delay, duplication on some paths).

Datagrams on a network whose role carries no cluster traffic (``config.cluster_nets()``) are dropped:
the real transport would not send cluster traffic there either, and a core that tries is counted.

The rng is drawn in a fixed order (one delay per copy, one loss draw and one duplication draw only
when the path has such a fault), so the same sends under the same faults draw the same numbers.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from nodeagent.config import ClusterConfig, Net
from nodeagent.core.messages import Message
from nodeagent.errors import ConfigError

PathKey = tuple[int, int, Net]

MAX_FAULTS = 1000  # installed at once; a runaway fault schedule is a bug in the caller


class NetFaultKind(enum.StrEnum):
    PARTITION = "partition"
    ISOLATE = "isolate"
    CUT = "cut"
    DEGRADE = "degrade"


@dataclass(frozen=True, slots=True)
class NetFault:
    kind: NetFaultKind
    paths: frozenset[PathKey]
    description: str  # for the trace: "NODE1,NODE2|NODE3", "NODE1-NODE2 private"
    cut: bool = False
    loss: float = 0.0  # probability a datagram on the path is dropped
    extra_delay_s: float = 0.0
    dup: float = 0.0  # probability a datagram on the path is delivered twice


@dataclass(frozen=True, slots=True)
class NetParams:
    base_delay_s: float = 0.0002  # one hop on the loopback
    jitter_s: float = 0.0003  # uniform extra on top of the base, per copy


@dataclass(frozen=True, slots=True)
class Delivery:
    at_s: float
    sent_s: float
    net: Net
    src: int
    src_incarnation: int
    dst: int
    msg: Message


@dataclass(slots=True)
class NetStats:
    sent: int = 0
    delivered: int = 0  # counted by the simulation when a copy reaches a live core
    dropped_role: int = 0  # network does not carry cluster traffic
    dropped_cut: int = 0
    dropped_loss: int = 0
    dropped_unknown_dst: int = 0
    duplicated: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)


class Network:
    def __init__(self, config: ClusterConfig, rng: random.Random, params: NetParams | None = None) -> None:
        self._config = config
        self._rng = rng
        self._params = params or NetParams()
        self._cluster_nets = frozenset(config.cluster_nets())
        self._node_ids = frozenset(config.node_ids)
        self._faults: dict[int, NetFault] = {}  # insertion order = id order: deterministic iteration
        self._next_id = 0
        self.stats = NetStats()

    # -- faults --------------------------------------------------------------------------------------
    def add(self, fault: NetFault) -> int:
        if len(self._faults) >= MAX_FAULTS:
            raise ConfigError(f"too many network faults installed at once (limit {MAX_FAULTS})")
        self._next_id += 1
        self._faults[self._next_id] = fault
        return self._next_id

    def remove(self, fault_id: int) -> NetFault | None:
        return self._faults.pop(fault_id, None)

    def clear(self) -> list[NetFault]:
        removed = list(self._faults.values())
        self._faults.clear()
        return removed

    @property
    def faults(self) -> dict[int, NetFault]:
        return dict(self._faults)

    def is_cut(self, src: int, dst: int, net: Net) -> bool:
        key = (src, dst, net)
        return any(f.cut and key in f.paths for f in self._faults.values())

    # -- datagrams -----------------------------------------------------------------------------------
    def route(
        self, now_s: float, src: int, src_incarnation: int, net: Net, dst: int, msg: Message
    ) -> list[Delivery]:
        """What becomes of one datagram: the copies that will arrive, with their arrival times."""
        st = self.stats
        st.sent += 1
        kind = type(msg).__name__
        st.by_kind[kind] = st.by_kind.get(kind, 0) + 1
        if net not in self._cluster_nets:
            st.dropped_role += 1
            return []
        if dst not in self._node_ids or dst == src:
            st.dropped_unknown_dst += 1
            return []
        key = (src, dst, net)
        keep = 1.0
        extra = 0.0
        dup = 0.0
        for f in self._faults.values():
            if key not in f.paths:
                continue
            if f.cut:
                st.dropped_cut += 1
                return []
            keep *= 1.0 - f.loss
            extra += f.extra_delay_s
            dup = max(dup, f.dup)
        if keep < 1.0 and self._rng.random() >= keep:
            st.dropped_loss += 1
            return []
        copies = 1
        if dup > 0.0 and self._rng.random() < dup:
            copies = 2
            st.duplicated += 1
        p = self._params
        return [
            Delivery(
                at_s=now_s + p.base_delay_s + self._rng.random() * p.jitter_s + extra,
                sent_s=now_s,
                net=net,
                src=src,
                src_incarnation=src_incarnation,
                dst=dst,
                msg=msg,
            )
            for _ in range(copies)
        ]


# -- building faults ---------------------------------------------------------------------------------
def parse_net(net: Net | str | None) -> Net | None:
    """A network as the operator names it: "private", "public", or "all" / None for every network."""
    if net is None or isinstance(net, Net):
        return net
    if net.lower() == "all":
        return None
    try:
        return Net[net.upper()]
    except KeyError:
        raise ConfigError(f"unknown network {net!r} (private, public or all)") from None


def _nets(config: ClusterConfig, net: Net | None) -> tuple[Net, ...]:
    return tuple(n.net for n in config.networks) if net is None else (net,)


def _names(config: ClusterConfig, ids: Iterable[int]) -> str:
    return ",".join(config.node(i).name for i in sorted(ids))


def partition(config: ClusterConfig, sides: Sequence[Iterable[int]]) -> NetFault:
    """Cut every path between nodes on different sides, both directions, on every network.

    Nodes on no side keep every path they had (a partition of some nodes only is allowed).
    """
    groups = [tuple(sorted(set(s))) for s in sides]
    seen: list[int] = [n for g in groups for n in g]
    if len(groups) < 2 or any(not g for g in groups):
        raise ConfigError("a partition needs at least two non-empty sides")
    if len(seen) != len(set(seen)):
        raise ConfigError("a node may be on one side of a partition only")
    paths: set[PathKey] = set()
    for i, a_side in enumerate(groups):
        for j, b_side in enumerate(groups):
            if i == j:
                continue
            for a in a_side:
                for b in b_side:
                    for net in _nets(config, None):
                        paths.add((a, b, net))
    desc = "|".join(_names(config, g) for g in sorted(groups))
    return NetFault(NetFaultKind.PARTITION, frozenset(paths), desc, cut=True)


def isolate(config: ClusterConfig, node: int) -> NetFault:
    others = tuple(n for n in config.node_ids if n != node)
    if not others:
        raise ConfigError("cannot isolate the only node of a cluster")
    fault = partition(config, [(node,), others])
    return NetFault(NetFaultKind.ISOLATE, fault.paths, config.node(node).name, cut=True)


def cut(config: ClusterConfig, a: int, b: int, net: Net | None = None) -> NetFault:
    """Cut the link between ``a`` and ``b`` on ``net`` (None: every network), both directions."""
    if a == b:
        raise ConfigError("a cut needs two different nodes")
    paths = {(x, y, n) for n in _nets(config, net) for (x, y) in ((a, b), (b, a))}
    where = "all" if net is None else net.label
    desc = f"{_names(config, (a, b)).replace(',', '-')} {where}"
    return NetFault(NetFaultKind.CUT, frozenset(paths), desc, cut=True)


def degrade(
    config: ClusterConfig,
    src: int,
    dst: int,
    net: Net | None = None,
    *,
    loss: float = 0.0,
    extra_delay_s: float = 0.0,
    dup: float = 0.0,
    both_directions: bool = True,
) -> NetFault:
    if not (0.0 <= loss <= 1.0 and 0.0 <= dup <= 1.0 and 0.0 <= extra_delay_s <= 60.0):
        raise ConfigError("degrade: loss and dup are probabilities, extra delay 0 to 60 s")
    if src == dst:
        raise ConfigError("degrade needs two different nodes")
    ends = ((src, dst), (dst, src)) if both_directions else ((src, dst),)
    paths = {(x, y, n) for n in _nets(config, net) for (x, y) in ends}
    arrow = "<->" if both_directions else "->"
    where = "all" if net is None else net.label
    desc = (
        f"{config.node(src).name}{arrow}{config.node(dst).name} {where} "
        f"loss={loss:.2f} delay={extra_delay_s:.4f} dup={dup:.2f}"
    )
    return NetFault(
        NetFaultKind.DEGRADE, frozenset(paths), desc, loss=loss, extra_delay_s=extra_delay_s, dup=dup
    )
