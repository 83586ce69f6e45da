"""The chaos schedule: one seed, the simulator's fault plan, mapped to actions on real processes.

Theory of operation
-------------------
``fault_schedule(seed, config, duration_s)`` is THE function both ``wolfpack chaos`` and
``wolfpack simulate --chaos-seed S`` draw their network and process faults with: the simulator's
``plan_faults`` fed by its own rng, ``random.Random(f"wolfpack-chaos:{seed}")`` (a string seed is
hashed with SHA-512 by ``random``, so it is the same in every process, whatever PYTHONHASHSEED). It
only reads the node ids, ``config.timing`` (the quorum lease) and ``config.speed``, so a lab made by
``wolfpack up --nodes N --speed S`` and the simulator's config for the same N and S get the same
schedule: kills (restarted later), freezes (thawed later), two-sided partitions, isolations,
single-link cuts and degraded paths (loss, extra delay, duplication), each with its heal.

``plan(seed, config, duration_s, disks=...)`` maps that schedule onto runtime steps. A network fault
becomes a set of per-node link rules (``LinkRule``), each installed in one node's transport through
its control socket (ops ``fault_cut`` / ``fault_add``):

- partition A|B: on every a in A a cut to every b in B, and the mirror on b (every network);
- isolate N: on N a cut to every peer, and on every peer a cut to N;
- cut A-B on one network: a cut on A to B and on B to A;
- degrade A->B: on A, for peer B, ``loss`` (pct), ``delay`` (ms) and ``dup`` (pct) rules, direction
  ``both`` or ``out`` as the simulator's ``both_directions`` says.

Both sides of a cut carry the rule so that the fault still holds while one side is frozen or
restarting (a restarted node starts with no faults; the runner installs its rules again).

Disk path loss is not in the simulator's plan (the simulator has no path faults), so it is drawn
from a second, separate stream, ``random.Random(f"wolfpack-chaos-disk:{seed}")``: the network and
process schedule stays exactly what the simulator replays, whatever the disk stream draws. Disk
faults are rare (one every ``DISK_GAP_S`` on average at speed 10, scaled like the rest), last
``DISK_LOST_S`` and never overlap on one node.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from nodeagent.config import ClusterConfig, Net
from nodeagent.sim.faults import REFERENCE_SPEED, ActionKind, FaultAction, plan_faults

DISK_GAP_S = (4.0, 14.0)  # between two disk faults, seconds at speed 10
DISK_FIRST_S = (1.0, 8.0)
DISK_LOST_S = (0.5, 3.0)
MAX_DISK_FAULTS = 1000


def _stream(seed: int, what: str = "") -> random.Random:
    return random.Random(f"wolfpack-chaos{what}:{seed}")


def fault_schedule(seed: int, config: ClusterConfig, duration_s: float) -> tuple[FaultAction, ...]:
    """The network and process schedule of a seed: what both chaos and the simulator replay."""
    return plan_faults(_stream(seed), config.node_ids, duration_s, config.timing, speed=config.speed)


@dataclass(frozen=True, slots=True)
class LinkRule:
    """One fault rule installed on one node (its control socket's ``fault_cut`` / ``fault_add``)."""

    node: str
    kind: str  # cut | loss | delay | dup
    peer: str | None  # None: every peer
    net: str  # private | public | all
    direction: str = "both"  # both | in | out
    pct: float = 0.0
    delay_ms: float = 0.0

    def request(self) -> dict[str, Any]:
        if self.kind == "cut" and self.direction == "both":
            return {"op": "fault_cut", "net": self.net, "peer": self.peer}
        return {"op": "fault_add", "kind": self.kind, "net": self.net, "peer": self.peer,
                "direction": self.direction, "pct": self.pct, "delay_ms": self.delay_ms,
                "jitter_ms": 0.0}  # fmt: skip

    def text(self) -> str:
        what = self.kind
        if self.pct:
            what += f" {self.pct:.0f}%"
        if self.delay_ms:
            what += f" {self.delay_ms:.1f} ms"
        return f"{self.node}: {what} {self.net} to {self.peer or 'every peer'} ({self.direction})"


@dataclass(frozen=True, slots=True)
class Step:
    """One thing the runner does at ``at_s`` seconds after the faults begin."""

    at_s: float
    action: str  # kill, restart, freeze, thaw, fault, heal, disk_fault, disk_heal
    node: str | None = None
    ref: int = 0  # a fault and the heal that ends it share a ref (disk refs are negative)
    what: str = ""  # one human line
    rules: tuple[LinkRule, ...] = ()
    disk: str | None = None
    origin: str = "sim"  # sim: from fault_schedule (replays in the simulator); disk: the disk stream

    def as_json(self) -> dict[str, Any]:
        return {"at_s": round(self.at_s, 6), "action": self.action, "node": self.node, "ref": self.ref,
                "what": self.what, "disk": self.disk, "origin": self.origin,
                "rules": [r.text() for r in self.rules]}  # fmt: skip


@dataclass(frozen=True, slots=True)
class ChaosPlan:
    seed: int
    nodes: int
    duration_s: float
    speed: float
    schedule: tuple[FaultAction, ...]  # fault_schedule(seed, ...): what the simulator replays
    steps: tuple[Step, ...]  # every runtime step, sorted by time

    def replay_command(self) -> str:
        return (
            f"wolfpack simulate --seed {self.seed} --chaos-seed {self.seed} --nodes {self.nodes} "
            f"--duration-s {self.duration_s:g} --speed {self.speed:g}"
        )


def plan(
    seed: int,
    config: ClusterConfig,
    duration_s: float,
    *,
    disks: Sequence[str] = (),
    disk_faults: bool = True,
) -> ChaosPlan:
    """The whole chaos schedule of ``seed``: the simulator's faults as runtime steps, plus disk faults."""
    schedule = fault_schedule(seed, config, duration_s)
    steps = [s for a in schedule for s in _steps_of(config, a)]
    if disk_faults and disks:
        steps += disk_steps(seed, config, duration_s, disks)
    ordered = sorted(enumerate(steps), key=lambda p: (p[1].at_s, p[0]))
    return ChaosPlan(
        seed, len(config.nodes), duration_s, config.speed, schedule, tuple(s for _, s in ordered)
    )


def _net(net: Net | None) -> str:
    return "all" if net is None else net.label


def _steps_of(config: ClusterConfig, a: FaultAction) -> list[Step]:
    name = config.node(a.node).name if a.node else None
    if a.kind in (ActionKind.KILL, ActionKind.RESTART, ActionKind.FREEZE, ActionKind.THAW):
        return [Step(a.at_s, a.kind.value, name, what=f"{a.kind.value} {name}")]
    if a.kind is ActionKind.HEAL:
        return [Step(a.at_s, "heal", ref=a.ref, what=f"heal fault #{a.ref}")]
    rules, what = link_rules(config, a)
    return [Step(a.at_s, "fault", name, ref=a.ref, what=f"#{a.ref} {what}", rules=rules)]


def _cut_both(a: str, b: str, net: str) -> list[LinkRule]:
    return [LinkRule(a, "cut", b, net), LinkRule(b, "cut", a, net)]


def link_rules(config: ClusterConfig, a: FaultAction) -> tuple[tuple[LinkRule, ...], str]:
    """The per-node rules of one network fault of the simulator's plan, and a one-line description."""
    names = {n.id: n.name for n in config.nodes}
    rules: list[LinkRule] = []
    if a.kind is ActionKind.PARTITION:
        left, right = a.sides[0], a.sides[1]
        for x in left:
            for y in right:
                rules += _cut_both(names[x], names[y], "all")
        sides = "|".join(",".join(names[n] for n in side) for side in a.sides)
        return tuple(rules), f"split {sides}"
    if a.kind is ActionKind.ISOLATE:
        n = names[a.node]
        rules.append(LinkRule(n, "cut", None, "all"))
        rules += [LinkRule(names[m], "cut", n, "all") for m in sorted(names) if m != a.node]
        return tuple(rules), f"isolate {n}"
    src, dst, net = names[a.node], names[a.peer], _net(a.net)
    if a.kind is ActionKind.CUT:
        return tuple(_cut_both(src, dst, net)), f"cut {src}-{dst} {net}"
    if a.kind is ActionKind.DEGRADE:
        direction = "both" if a.both_directions else "out"
        if a.loss > 0:
            rules.append(LinkRule(src, "loss", dst, net, direction, pct=round(a.loss * 100, 3)))
        if a.extra_delay_s >= 0.0001:
            rules.append(
                LinkRule(src, "delay", dst, net, direction, delay_ms=round(a.extra_delay_s * 1000, 3))
            )
        if a.dup > 0:
            rules.append(LinkRule(src, "dup", dst, net, direction, pct=round(a.dup * 100, 3)))
        arrow = "<->" if a.both_directions else "->"
        detail = f"loss {a.loss * 100:.0f}% delay {a.extra_delay_s * 1000:.1f} ms dup {a.dup * 100:.0f}%"
        return tuple(rules), f"degrade {src}{arrow}{dst} {net}: {detail}"
    raise ValueError(f"{a.kind.value} is not a network fault")


def disk_steps(seed: int, config: ClusterConfig, duration_s: float, disks: Sequence[str]) -> list[Step]:
    """Disk path losses from the separate disk stream (never in the simulator's replay)."""
    rng = _stream(seed, "-disk")
    scale = REFERENCE_SPEED / config.speed
    names = [n.name for n in sorted(config.nodes, key=lambda n: n.id)]
    choices = sorted(disks)
    steps: list[Step] = []
    busy_until: dict[str, float] = {}
    t = rng.uniform(*DISK_FIRST_S) * scale
    ref = 0
    while t < duration_s and len(steps) < 2 * MAX_DISK_FAULTS:
        node, disk = rng.choice(names), rng.choice(choices)
        end = t + rng.uniform(*DISK_LOST_S) * scale
        if busy_until.get(node, -1.0) <= t:
            ref -= 1
            busy_until[node] = end
            steps.append(Step(t, "disk_fault", node, ref, f"{node} loses its path to disk {disk}", disk=disk,
                              origin="disk"))  # fmt: skip
            if end < duration_s:
                steps.append(Step(end, "disk_heal", node, ref, f"{node} gets disk {disk} back", disk=disk,
                                  origin="disk"))  # fmt: skip
        t += rng.uniform(*DISK_GAP_S) * scale
    return steps


__all__ = ["ChaosPlan", "LinkRule", "Step", "disk_steps", "fault_schedule", "link_rules", "plan"]
