"""The chaos checker: the simulator's safety rules, and a recovery bound, judged on a real history.

Theory of operation
-------------------
Pure: ``check(history) -> list[Violation]``, no I/O, so crafted histories prove it can fail. The
rules are those of the simulator's checker (sim/invariants.py), on intervals instead of states:

1. ``one_group_owner``: no group is Online on two nodes at the same instant. A node "has" a group
   while any resource of the group is Online there (its claims, history.py), minus the node's stale
   spans (a frozen node fenced by a later membership without it, until its life in the cluster
   ends). Two nodes' spans of one group overlapping by any positive time is a violation.
2. ``one_address``: no virtual IP address (the ``Address`` of an IP Address resource) is Online on two
   nodes at the same instant, with the same exemption.
3. ``online_needs_quorum``: a resource goes Online only on a node that has installed a membership
   and has not halted, stopped or died since (the simulator's "phase MEMBER or REGROUPING"). Disk
   quorum backs every membership (a node installs one only through the quorum owner), so "in a
   membership" is "with quorum".
4. ``recovery``: after the final heal (``heal_s``), every expected group (the cluster database wants
   it online) is Online, every one of its resources on one node, within ``bound_s``
   (``history.recovery_bound_s``). A group left Failed (FailoverThreshold) misses it too: chaos
   says so, with the group's last events as evidence.

Each violation carries its time (CLOCK_MONOTONIC) and evidence: the event-log lines that opened
the conflicting claims, the runner's actions around that time (a freeze, a partition), the node's
last membership, and the quorum disk's reservation holder from the disk history. One overlap
episode (a pair of spans) is one violation; at most ``MAX_VIOLATIONS`` are returned.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from nodeagent.chaos.history import INF, Claim, History, Span, action_line

MAX_VIOLATIONS = 100
CONTEXT_ACTIONS = 4  # runner actions quoted before a violation
RULES = ("one_group_owner", "one_address", "online_needs_quorum", "recovery")


@dataclass(frozen=True, slots=True)
class Violation:
    rule: str
    time_s: float  # CLOCK_MONOTONIC
    summary: str
    evidence: tuple[str, ...]

    def as_json(self, origin: float = 0.0) -> dict[str, Any]:
        return {"rule": self.rule, "time_s": round(self.time_s - origin, 6), "mono_s": self.time_s,
                "summary": self.summary, "evidence": list(self.evidence)}  # fmt: skip


def check(h: History) -> list[Violation]:
    found: list[Violation] = []
    found += one_owner(h, "one_group_owner", {c.group for c in h.claims}, lambda c, key: c.group == key)
    addresses = sorted(set(h.addresses.values()))
    found += one_owner(h, "one_address", addresses, lambda c, key: h.addresses.get(c.resource) == key)
    found += online_needs_quorum(h)
    found += recovery(h)
    found.sort(key=lambda v: (v.time_s, v.rule))
    return found[:MAX_VIOLATIONS]


# -- helpers ------------------------------------------------------------------------------------------


def _minus(start: float, end: float, holes: Sequence[Span]) -> list[tuple[float, float]]:
    """[start, end) without the stale spans."""
    parts = [(start, end)]
    for hole in holes:
        nxt = []
        for a, b in parts:
            if hole.end <= a or hole.start >= b:
                nxt.append((a, b))
                continue
            if a < hole.start:
                nxt.append((a, hole.start))
            if hole.end < b:
                nxt.append((hole.end, b))
        parts = nxt
    return [(a, b) for a, b in parts if b > a]


def _live_claims(h: History, claims: Iterable[Claim]) -> dict[str, list[tuple[float, float, Claim]]]:
    by_node: dict[str, list[tuple[float, float, Claim]]] = {}
    for c in claims:
        for a, b in _minus(c.start, c.end, h.stale.get(c.node, [])):
            by_node.setdefault(c.node, []).append((a, b, c))
    for spans in by_node.values():
        spans.sort(key=lambda x: x[0])
    return by_node


def _merged(spans: list[tuple[float, float, Claim]]) -> list[tuple[float, float, Claim, Claim]]:
    """One node's spans of one key merged where they overlap or touch: (start, end, first, last claim)."""
    out: list[tuple[float, float, Claim, Claim]] = []
    for a, b, c in spans:  # sorted by start
        if out and a <= out[-1][1]:
            lo, hi, first, last = out[-1]
            out[-1] = (lo, max(hi, b), first, c if b >= hi else last)
        else:
            out.append((a, b, c, c))
    return out


def _context(h: History, t: float, nodes: Iterable[str] = ()) -> list[str]:
    before = [a for a in h.actions if float(a["t"]) <= t]
    lines = [action_line(a, h.start_s) for a in before[-CONTEXT_ACTIONS:]]
    wanted = set(nodes)
    for name in sorted(wanted):
        for s in h.frozen.get(name, []):
            if s.start <= t < s.end:
                lines.append(f"{name} frozen from {h.rel(s.start)} to {h.rel(s.end)}")
        for s in h.stale.get(name, []):
            if s.start <= t + 1e-9:
                lines.append(f"{name}'s claims stale from {h.rel(s.start)} (fenced by: {s.why})")
    lines += _disk_holders(h, t)
    return lines


def _disk_holders(h: History, t: float) -> list[str]:
    out = []
    for disk, records in sorted(h.reservations.items()):
        last = None
        for r in records:
            if float(r["t"]) <= t:
                last = r
        if last is not None:
            out.append(
                f"disk {disk}: held by {last.get('holder') or 'no one'} since {h.rel(float(last['t']))} "
                f"({last.get('op')} by {last.get('initiator')})"
            )
    return out


# -- the rules ----------------------------------------------------------------------------------------


def one_owner(h: History, rule: str, keys: Iterable[str], member: Any) -> list[Violation]:
    """Rules 1 and 2: for each key (a group, an address), no two nodes hold it at the same instant."""
    found: list[Violation] = []
    for key in sorted(k for k in keys if k):
        by_node = {n: _merged(s) for n, s in _live_claims(h, (c for c in h.claims if member(c, key))).items()}
        names = sorted(by_node)
        for i, n1 in enumerate(names):
            for n2 in names[i + 1 :]:
                for a1, b1, c1, e1 in by_node[n1]:
                    for a2, b2, c2, e2 in by_node[n2]:
                        lo, hi = max(a1, a2), min(b1, b2)
                        if hi <= lo:
                            continue
                        what = "group" if rule == "one_group_owner" else "address"
                        summary = (
                            f"{what} {key} is Online on {n1} ({c1.resource}) and {n2} ({c2.resource}) "
                            f"at once, from {h.rel(lo)} to {h.rel(hi)}"
                        )
                        ends = (f"  ended: {e1.end_why or 'open'}", f"  ended: {e2.end_why or 'open'}")
                        evidence = (c1.line, ends[0], c2.line, ends[1], *_context(h, lo, (n1, n2)))
                        found.append(Violation(rule, lo, summary, evidence))
                        if len(found) >= MAX_VIOLATIONS:
                            return found
    return found


def online_needs_quorum(h: History) -> list[Violation]:
    found = []
    for c in h.claims:
        if c.in_cluster:
            continue
        summary = f"{c.resource} (group {c.group}) went Online on {c.node}, which was in no membership"
        evidence = (c.line, f"  last membership of {c.node}: {c.membership or 'none'}",
                    *_context(h, c.start, (c.node,)))  # fmt: skip
        found.append(Violation("online_needs_quorum", c.start, summary, evidence))
    return found


def group_online_spans(h: History, resources: Sequence[str]) -> list[tuple[float, float, str]]:
    """Where every resource of a group is Online (not stale) on one node: (start, end, node)."""
    wanted = set(resources)
    by_node = _live_claims(h, (c for c in h.claims if c.resource in wanted))
    out: list[tuple[float, float, str]] = []
    for node, spans in sorted(by_node.items()):
        per_res: dict[str, list[tuple[float, float]]] = {}
        for a, b, c in spans:
            per_res.setdefault(c.resource, []).append((a, b))
        if set(per_res) != wanted:
            continue
        common = per_res[resources[0]]
        for r in resources[1:]:
            common = [
                (max(a, c), min(b, d)) for a, b in common for c, d in per_res[r] if min(b, d) > max(a, c)
            ]
        out += [(a, b, node) for a, b in common]
    out.sort()
    return out


def recovery_time(h: History, group: str) -> tuple[float, str] | None:
    """When ``group`` was first whole on one node at or after the heal (and on which node)."""
    if h.heal_s is None:
        return None
    for a, b, node in group_online_spans(h, h.expected_groups[group]):
        if b > h.heal_s:
            return max(a, h.heal_s), node
    return None


def recovery(h: History) -> list[Violation]:
    if h.heal_s is None:
        return []
    found = []
    deadline = h.heal_s + h.bound_s
    for group in sorted(h.expected_groups):
        got = recovery_time(h, group)
        if got is not None and got[0] <= deadline:
            continue
        late = f"only at {h.rel(got[0])} on {got[1]}" if got is not None else "never (in the history)"
        summary = (
            f"group {group} was not Online on one node within {h.bound_s:.1f} s of the final heal "
            f"(heal at {h.rel(h.heal_s)}; Online {late})"
        )
        members = set(h.expected_groups[group])
        related = [
            e
            for e in h.events
            if (e.get("fields") or {}).get("group") == group
            or (e.get("fields") or {}).get("resource") in members
        ]
        evidence = tuple(h.line(e) for e in related[-8:]) or ("no event mentions the group",)
        found.append(Violation("recovery", deadline if got is None else got[0], summary, evidence))
    return found


__all__ = ["INF", "MAX_VIOLATIONS", "RULES", "Violation", "check", "group_online_spans", "recovery_time"]
