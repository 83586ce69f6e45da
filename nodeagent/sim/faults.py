"""The random fault schedule: what goes wrong, to whom and when, drawn from the run's one rng.

Theory of operation
-------------------
``plan_faults`` draws the whole schedule up front, before the first event runs, so the schedule is a
plain tuple of ``FaultAction`` values that the trace can show and a test can replay or edit. Faults
start one after the other with a random gap; each is undone after a random time:

- kill a node; it restarts (a new process, incarnation + 1) 0.5 to 5 s later;
- freeze a node (SIGSTOP); thaw it 0.1 to 3 s later. Half the freezes are shorter than the quorum
  lease (``timing.quorum_lease_s``), half longer, so both "the defender wakes in time" and "the
  defender wakes to find its disk taken" happen;
- partition the nodes into two random sides, or isolate one node;
- cut one link (private mostly, public sometimes) between two nodes, which must change nothing;
- degrade some paths: loss, extra delay, duplication.

Every network fault is healed 0.3 to 4 s after it began. Durations are the brief's lab numbers at
speed 10 and scale with ``10 / speed``, so a slower cluster gets proportionally longer faults.

Process faults never overlap on one node (a frozen node is not also killed), and at most N-1 nodes
are down or frozen at once, so some node can always make progress. Actions due after the run's
``duration_s`` are left out: the end of a run heals, thaws and restarts everything anyway.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Sequence
from dataclasses import dataclass

from nodeagent.config import ClusterConfig, Net, Timing
from nodeagent.sim import network as netmod

REFERENCE_SPEED = 10.0
MAX_ACTIONS = 10_000


class ActionKind(enum.StrEnum):
    START = "start"  # the first start of a node (not a fault; the simulation schedules it)
    KILL = "kill"
    RESTART = "restart"
    FREEZE = "freeze"
    THAW = "thaw"
    PARTITION = "partition"
    ISOLATE = "isolate"
    CUT = "cut"
    DEGRADE = "degrade"
    HEAL = "heal"


NETWORK_KINDS = frozenset({ActionKind.PARTITION, ActionKind.ISOLATE, ActionKind.CUT, ActionKind.DEGRADE})


@dataclass(frozen=True, slots=True)
class FaultAction:
    at_s: float
    kind: ActionKind
    node: int = 0  # kill / restart / freeze / thaw / isolate; cut and degrade: one end
    peer: int = 0  # cut and degrade: the other end
    net: Net | None = None  # cut and degrade: one network, None for every network
    sides: tuple[tuple[int, ...], ...] = ()  # partition
    loss: float = 0.0
    extra_delay_s: float = 0.0
    dup: float = 0.0
    both_directions: bool = True
    ref: int = 0  # a network fault and the HEAL that ends it share a ref


@dataclass(frozen=True, slots=True)
class FaultMix:
    """Relative weights of the fault kinds and their ranges, in seconds at speed 10."""

    kill: float = 2.0
    freeze: float = 2.0
    partition: float = 1.5
    isolate: float = 1.5
    cut: float = 1.5
    degrade: float = 1.5
    gap_s: tuple[float, float] = (0.2, 2.0)  # between the starts of two faults
    first_s: tuple[float, float] = (0.0, 3.0)  # when the first fault starts
    restart_after_s: tuple[float, float] = (0.5, 5.0)
    freeze_s: tuple[float, float] = (0.1, 3.0)
    heal_after_s: tuple[float, float] = (0.3, 4.0)
    loss: tuple[float, float] = (0.1, 0.6)
    extra_delay_s: tuple[float, float] = (0.0, 0.05)
    dup: tuple[float, float] = (0.0, 0.3)
    private_cut_share: float = 0.7


def plan_faults(
    rng: random.Random,
    node_ids: Sequence[int],
    duration_s: float,
    timing: Timing,
    *,
    speed: float,
    mix: FaultMix | None = None,
) -> tuple[FaultAction, ...]:
    """A random schedule over ``[0, duration_s)``, sorted by time (ties keep their drawing order)."""
    mix = mix or FaultMix()
    scale = REFERENCE_SPEED / speed
    nodes = sorted(node_ids)
    if len(nodes) < 2:
        return ()  # one node: nothing to partition, and N-1 = 0 nodes may be down at once
    actions: list[FaultAction] = []
    busy_until: dict[int, float] = {}  # node -> time its process fault ends
    max_busy = len(nodes) - 1
    ref = 0

    def draw(bounds: tuple[float, float]) -> float:
        return rng.uniform(bounds[0], bounds[1]) * scale

    kinds = [
        ActionKind.KILL,
        ActionKind.FREEZE,
        ActionKind.PARTITION,
        ActionKind.ISOLATE,
        ActionKind.CUT,
        ActionKind.DEGRADE,
    ]
    weights = [mix.kill, mix.freeze, mix.partition, mix.isolate, mix.cut, mix.degrade]
    t = draw(mix.first_s)
    while t < duration_s and len(actions) < MAX_ACTIONS:
        kind = rng.choices(kinds, weights)[0]
        if kind in (ActionKind.KILL, ActionKind.FREEZE):
            free = [n for n in nodes if busy_until.get(n, -1.0) <= t]
            busy = len(nodes) - len(free)
            if free and busy < max_busy:
                node = rng.choice(free)
                if kind is ActionKind.KILL:
                    end = t + draw(mix.restart_after_s)
                    actions.append(FaultAction(t, ActionKind.KILL, node=node))
                    actions.append(FaultAction(end, ActionKind.RESTART, node=node))
                else:
                    end = t + _freeze_length(rng, mix, timing, scale)
                    actions.append(FaultAction(t, ActionKind.FREEZE, node=node))
                    actions.append(FaultAction(end, ActionKind.THAW, node=node))
                busy_until[node] = end
        else:
            ref += 1
            actions.append(_network_fault(rng, kind, nodes, t, ref, mix, scale))
            actions.append(FaultAction(t + draw(mix.heal_after_s), ActionKind.HEAL, ref=ref))
        t += draw(mix.gap_s)
    ordered = sorted(enumerate(actions), key=lambda pair: (pair[1].at_s, pair[0]))
    return tuple(a for _, a in ordered if a.at_s < duration_s)


def _freeze_length(rng: random.Random, mix: FaultMix, timing: Timing, scale: float) -> float:
    lo, hi = mix.freeze_s[0] * scale, mix.freeze_s[1] * scale
    lease = timing.quorum_lease_s
    if rng.random() < 0.5 and lo < lease:
        return rng.uniform(lo, min(lease * 0.9, hi))
    return rng.uniform(max(lo, lease * 1.1), max(hi, lease * 1.5))


def _network_fault(
    rng: random.Random,
    kind: ActionKind,
    nodes: list[int],
    t: float,
    ref: int,
    mix: FaultMix,
    scale: float,
) -> FaultAction:
    if kind is ActionKind.PARTITION:
        shuffled = list(nodes)
        rng.shuffle(shuffled)
        k = rng.randint(1, len(shuffled) - 1)
        sides = (tuple(sorted(shuffled[:k])), tuple(sorted(shuffled[k:])))
        return FaultAction(t, kind, sides=tuple(sorted(sides)), ref=ref)
    if kind is ActionKind.ISOLATE:
        return FaultAction(t, kind, node=rng.choice(nodes), ref=ref)
    a, b = sorted(rng.sample(nodes, 2))
    if kind is ActionKind.CUT:
        net = Net.PRIVATE if rng.random() < mix.private_cut_share else Net.PUBLIC
        return FaultAction(t, kind, node=a, peer=b, net=net, ref=ref)
    net_choice = rng.choice([Net.PRIVATE, Net.PUBLIC, None])
    if rng.random() < 0.5:
        a, b = b, a
    return FaultAction(
        t,
        ActionKind.DEGRADE,
        node=a,
        peer=b,
        net=net_choice,
        loss=rng.uniform(*mix.loss),
        extra_delay_s=rng.uniform(*mix.extra_delay_s) * scale,
        dup=rng.uniform(*mix.dup),
        both_directions=rng.random() < 0.5,
        ref=ref,
    )


def network_fault(config: ClusterConfig, a: FaultAction) -> netmod.NetFault:
    """The network fault a PARTITION / ISOLATE / CUT / DEGRADE action installs."""
    if a.kind is ActionKind.PARTITION:
        return netmod.partition(config, a.sides)
    if a.kind is ActionKind.ISOLATE:
        return netmod.isolate(config, a.node)
    if a.kind is ActionKind.CUT:
        return netmod.cut(config, a.node, a.peer, a.net)
    if a.kind is ActionKind.DEGRADE:
        return netmod.degrade(
            config,
            a.node,
            a.peer,
            a.net,
            loss=a.loss,
            extra_delay_s=a.extra_delay_s,
            dup=a.dup,
            both_directions=a.both_directions,
        )
    raise ValueError(f"{a.kind.value} is not a network fault")
