"""The outcome of one chaos run: what was done, what the cluster and the client saw, what broke.

Theory of operation
-------------------
``ChaosReport`` is built once by the runner from the plan, its action log, the client's JSON lines
and the checker's violations; ``as_json`` is the ``--json`` document and ``format_report`` the text.
Times in both are seconds since the faults began (``start_mono_s`` gives the CLOCK_MONOTONIC origin).
``client_summary`` and ``failovers`` are pure helpers over the raw records, so tests can feed them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from nodeagent.chaos.checker import Violation

FAULT_ACTIONS = ("kill", "freeze", "fault", "disk_fault")  # the actions that start a fault


@dataclass
class ChaosReport:
    seed: int
    nodes: int
    duration_s: float
    speed: float
    directory: str
    start_mono_s: float
    heal_s: float | None  # since start
    bound_s: float
    steps: list[dict[str, Any]]
    actions: list[dict[str, Any]]
    failovers: list[dict[str, Any]]
    client: dict[str, Any]
    recovery: dict[str, float | None]  # group -> seconds after the heal until Online (None: never)
    violations: list[Violation]
    replay: str
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations

    def faults_applied(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for a in self.actions:
            if a.get("ok") and a.get("origin") != "final" and a.get("action") in FAULT_ACTIONS:
                kind = str(a.get("kind") or a["action"])
                counts[kind] = counts.get(kind, 0) + 1
        return dict(sorted(counts.items()))

    def as_json(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "ok": self.ok,
            "nodes": self.nodes,
            "duration_s": self.duration_s,
            "speed": self.speed,
            "dir": self.directory,
            "start_mono_s": self.start_mono_s,
            "heal_s": self.heal_s,
            "recovery_bound_s": round(self.bound_s, 3),
            "faults_applied": self.faults_applied(),
            "steps": self.steps,
            "actions": [_rel_action(a, self.start_mono_s) for a in self.actions],
            "failovers": self.failovers,
            "client": self.client,
            "recovery": self.recovery,
            "violations": [v.as_json(self.start_mono_s) for v in self.violations],
            "replay": self.replay,
            "notes": self.notes,
        }


def _rel_action(a: Mapping[str, Any], origin: float) -> dict[str, Any]:
    doc = {k: v for k, v in a.items() if k not in ("t", "t_end")}
    doc["t_s"] = round(float(a["t"]) - origin, 6)
    doc["took_s"] = round(float(a.get("t_end", a["t"])) - float(a["t"]), 6)
    return doc


def failovers(events: Iterable[Mapping[str, Any]], origin: float) -> list[dict[str, Any]]:
    """Every change of a group's owner (group_owner events; one per change, whoever logged it)."""
    out: list[dict[str, Any]] = []
    owner: dict[str, str | None] = {}
    for e in events:
        if e.get("kind") != "group_owner":
            continue
        f = e.get("fields") or {}
        group, new = str(f.get("group")), f.get("owner")
        if owner.get(group) == new:
            continue
        owner[group] = new
        out.append({"t_s": round(float(e["mono_s"]) - origin, 6), "group": group, "owner": new,
                    "reason": f.get("reason"), "by": e.get("node")})  # fmt: skip
    return out


def client_summary(lines: Iterable[str], origin: float) -> dict[str, Any]:
    """The client's JSON lines -> its summary and every outage (times since the faults began)."""
    outages: list[dict[str, Any]] = []
    summary: dict[str, Any] = {}
    served: list[str] = []
    for raw in lines:
        try:
            doc = json.loads(raw)
        except ValueError:
            continue
        if not isinstance(doc, dict):
            continue
        if doc.get("event") == "outage":
            outage: dict[str, Any] = {"start_s": round(float(doc["start_mono_s"]) - origin, 6)}
            outage |= {k: doc.get(k) for k in ("length_s", "missed", "node_before", "node_after")}
            outages.append(outage)
        elif doc.get("event") == "reply" and doc.get("ok") and doc.get("node") not in served[-1:]:
            served.append(str(doc.get("node")))
        elif doc.get("event") == "summary":
            summary = {k: doc.get(k) for k in ("sent", "answered", "errors", "lost", "outages",
                                               "longest_outage_s", "ongoing_outage_s", "nodes")}  # fmt: skip
    return {"summary": summary, "outages": outages, "served_by": served}


def format_report(r: ChaosReport) -> str:
    out = [
        f"chaos seed {r.seed}: {r.nodes} nodes, {r.duration_s:g} s of faults at speed {r.speed:g} "
        f"({r.directory})"
    ]
    out.append("actions (seconds since the faults began):")
    for a in r.actions:
        ok = "" if a.get("ok") else f"  SKIPPED/FAILED: {a.get('error')}"
        origin = " [final]" if a.get("origin") == "final" else ""
        out.append(f"  +{float(a['t']) - r.start_mono_s:8.3f}  {a.get('what') or a['action']}{origin}{ok}")
    applied = ", ".join(f"{k} {n}" for k, n in r.faults_applied().items()) or "none"
    out.append(f"faults applied: {applied}")
    out.append(f"failovers: {len(r.failovers)}")
    for f in r.failovers:
        out.append(f"  +{f['t_s']:8.3f}  {f['group']} -> {f['owner']} ({f['reason']})")
    s = r.client.get("summary") or {}
    if s:
        out.append(
            f"client: {s.get('sent')} sent, {s.get('answered')} answered, {s.get('lost')} lost, "
            f"{s.get('outages')} outages, longest {float(s.get('longest_outage_s') or 0):.3f} s; "
            f"served by {', '.join(r.client.get('served_by') or []) or 'no node'}"
        )
    else:
        out.append("client: no summary (see the client log)")
    for o in r.client.get("outages", []):
        out.append(
            f"  outage at +{o['start_s']:.3f}: {float(o['length_s'] or 0):.3f} s "
            f"({o['node_before']} -> {o['node_after']})"
        )
    if r.heal_s is not None:
        out.append(f"final heal at +{r.heal_s:.3f}; recovery bound {r.bound_s:.1f} s")
        for g, took in sorted(r.recovery.items()):
            out.append(
                f"  {g}: " + (f"Online {took:.3f} s after the heal" if took is not None else "NOT Online")
            )
    out += [f"note: {n}" for n in r.notes]
    if r.violations:
        out.append(f"VIOLATIONS: {len(r.violations)}")
        for v in r.violations:
            out.append(f"  +{v.time_s - r.start_mono_s:.3f} {v.rule}: {v.summary}")
            out += [f"      {line}" for line in v.evidence]
    else:
        out.append("no violation")
    out.append(f"replay the schedule in the simulator: {r.replay}")
    return "\n".join(out) + "\n"


def steps_json(steps: Sequence[Any]) -> list[dict[str, Any]]:
    return [s.as_json() for s in steps]


__all__ = ["ChaosReport", "client_summary", "failovers", "format_report", "steps_json"]
