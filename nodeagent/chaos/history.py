"""What happened in a chaos run, as intervals: the facts the checker judges.

Theory of operation
-------------------
Four sources, merged on CLOCK_MONOTONIC (every node's ``mono_s``, the runner's ``t``, the disks'
``t`` are all ``time.monotonic()`` on one machine):

1. every node's event log (``read_events``): service_started, membership_installed, halted,
   service_stopped, resource_state, group_owner, ...;
2. the runner's own action log (a kill -9 writes nothing into the victim's log, and a frozen
   process cannot say it is frozen): one record per action, ``{"t", "t_end", "action", "node",
   "ok", ...}``; ``t`` is when the runner began the action, ``t_end`` when it had taken effect;
3. the disks' reservation histories (shareddisk/history.py), kept for evidence;
4. the cluster database (nodes/NAME/clusterdb.json, the copy with the highest version): which
   group each resource is in, which resources are IP addresses and which address they bind, and
   which groups should be online.

``build_history`` walks the merged timeline once, node by node state machines, and produces:

- ``alive``: one span per process life (service_started .. killed / stopped / next start);
- ``frozen``: freeze .. thaw (from the runner's log; a freeze is from ``t``, a thaw until ``t_end``);
- ``in_cluster``: membership installed .. halted / service_stopped / killed / next start;
- ``claims``: one ``Claim`` per resource Online transition on a node, until the node says it is in
  another state, halts, stops, is killed (``t_end`` of the kill) or starts again. A halt and a stop
  end every claim of the node at once: the core clears its resource table there (the
  ``terminate`` actions it issues write no state events);
- ``stale``: the frozen-node exemption of the simulator's checker (sim/invariants.py). While node N
  is frozen, once a running node installs a membership with a later epoch that does not contain N,
  N's claims are stale (fenced by the new owner's disk reservation and the address check) until N's
  current life in the cluster ends: a thawed node halts at its first step.

Open spans end at ``math.inf``. Evidence lines quote the event log: ``+S.SSS NODE [inc] kind: message``
with S the seconds since ``start_s`` (the moment the faults began).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nodeagent.config import ClusterConfig, QuorumType
from nodeagent.runtime.eventlog import event_paths, read_events

INF = math.inf
MAX_EVENTS = 500_000  # a run longer than this is cut (the checker says so)
ENDS_LIFE = ("halted", "service_stopped")


@dataclass(frozen=True, slots=True)
class Span:
    node: str
    start: float
    end: float  # INF: still open when the history ends
    why: str = ""  # what opened it (an evidence line)
    end_why: str = ""


@dataclass(frozen=True, slots=True)
class Claim:
    """One resource Online on one node, from its Online transition until it stopped being so."""

    node: str
    group: str
    resource: str
    start: float
    end: float
    incarnation: int
    line: str  # the evidence line of the Online transition
    in_cluster: bool  # the node had installed a membership and not halted since, at ``start``
    membership: str  # the node's last membership line before ``start`` ("" if none)
    end_why: str = ""


@dataclass
class History:
    start_s: float
    end_s: float
    heal_s: float | None  # when the final heal (heal, thaw, restart) was done; None: no final heal
    bound_s: float  # every expected group must be Online within this after heal_s
    events: list[dict[str, Any]]
    actions: list[dict[str, Any]]
    reservations: dict[str, list[dict[str, Any]]]
    resource_group: dict[str, str]
    addresses: dict[str, str]  # IP Address resource -> the address it binds
    expected_groups: dict[str, tuple[str, ...]]  # group -> its resources; should be Online at the end
    alive: dict[str, list[Span]] = field(default_factory=dict)
    frozen: dict[str, list[Span]] = field(default_factory=dict)
    in_cluster: dict[str, list[Span]] = field(default_factory=dict)
    stale: dict[str, list[Span]] = field(default_factory=dict)
    claims: list[Claim] = field(default_factory=list)
    memberships: list[tuple[float, str, int, tuple[str, ...], str]] = field(default_factory=list)
    truncated: bool = False

    def line(self, e: Mapping[str, Any]) -> str:
        return event_line(e, self.start_s)

    def rel(self, t: float) -> str:
        return "end" if t == INF else f"+{t - self.start_s:.3f}"


def event_line(e: Mapping[str, Any], origin: float) -> str:
    ident = f"[{e['event_id']}] " if e.get("event_id") is not None else ""
    msg = str(e.get("message") or json.dumps(e.get("fields", {}), sort_keys=True))
    when = float(e["mono_s"]) - origin
    return f"+{when:.3f} {e['node']} [{e.get('incarnation', '?')}] {ident}{e['kind']}: {msg}"


def action_line(a: Mapping[str, Any], origin: float) -> str:
    ok = "" if a.get("ok", True) else f" (FAILED: {a.get('error')})"
    return f"+{float(a['t']) - origin:.3f} runner: {a.get('what') or a['action']}{ok}"


# -- building ----------------------------------------------------------------------------------------


@dataclass
class _Node:
    name: str
    incarnation: int = 0
    alive_since: float | None = None
    alive_why: str = ""
    cluster_since: float | None = None
    cluster_why: str = ""
    epoch: int = 0
    membership: str = ""
    claims: dict[str, tuple[float, str, int, str, bool, str]] = field(default_factory=dict)


def build_history(
    events: Sequence[Mapping[str, Any]],
    actions: Sequence[Mapping[str, Any]] = (),
    *,
    resources: Mapping[str, Mapping[str, Any]] | None = None,
    groups: Mapping[str, Mapping[str, Any]] | None = None,
    reservations: Mapping[str, list[dict[str, Any]]] | None = None,
    start_s: float | None = None,
    end_s: float | None = None,
    heal_s: float | None = None,
    bound_s: float = 0.0,
) -> History:
    """Intervals from raw records. ``resources``: name -> {"type", "group", "private"} (clusterdb);
    ``groups``: name -> {"desired": "online"|...}; a group with desired online is expected back."""
    resources = resources or {}
    evs = sorted((dict(e) for e in events[:MAX_EVENTS]), key=lambda e: float(e["mono_s"]))
    acts = sorted((dict(a) for a in actions), key=lambda a: float(a["t"]))
    first = min([float(e["mono_s"]) for e in evs[:1]] + [float(a["t"]) for a in acts[:1]], default=0.0)
    origin = start_s if start_s is not None else first
    last = max(
        [float(e["mono_s"]) for e in evs[-1:]] + [float(a.get("t_end", a["t"])) for a in acts], default=origin
    )
    resource_group = {n: str(r.get("group", "")) for n, r in resources.items()}
    addresses = {
        n: str(r["private"]["Address"])
        for n, r in resources.items()
        if r.get("type") == "IP Address"
        and isinstance(r.get("private"), dict)
        and r["private"].get("Address")
    }
    expected: dict[str, tuple[str, ...]] = {}
    for g, info in (groups or {}).items():
        if info.get("desired", "online") == "online" and not info.get("failed_at_start", False):
            members = tuple(sorted(n for n, grp in resource_group.items() if grp == g))
            if members:
                expected[g] = members
    h = History(
        start_s=origin,
        end_s=end_s if end_s is not None else last,
        heal_s=heal_s,
        bound_s=bound_s,
        events=evs,
        actions=acts,
        reservations={k: list(v) for k, v in (reservations or {}).items()},
        resource_group=resource_group,
        addresses=addresses,
        expected_groups=expected,
        truncated=len(events) > MAX_EVENTS,
    )
    _walk(h)
    _stale(h)
    return h


def _timeline(h: History) -> list[tuple[float, int, str, Mapping[str, Any]]]:
    items: list[tuple[float, int, str, Mapping[str, Any]]] = []
    for i, e in enumerate(h.events):
        items.append((float(e["mono_s"]), i, "event", e))
    for i, a in enumerate(h.actions):
        if not a.get("ok", True) or not a.get("node"):
            continue
        if a["action"] == "kill":
            items.append((float(a.get("t_end", a["t"])), len(h.events) + i, "kill", a))
        elif a["action"] == "freeze":
            items.append((float(a["t"]), len(h.events) + i, "freeze", a))
        elif a["action"] == "thaw":
            items.append((float(a.get("t_end", a["t"])), len(h.events) + i, "thaw", a))
    items.sort(key=lambda x: (x[0], x[1]))
    return items


def _walk(h: History) -> None:
    nodes: dict[str, _Node] = {}
    frozen_since: dict[str, tuple[float, str]] = {}

    def node(name: str) -> _Node:
        return nodes.setdefault(name, _Node(name))

    def end_claims(n: _Node, t: float, why: str) -> None:
        for res, (start, line, inc, group, inside, memb) in sorted(n.claims.items()):
            h.claims.append(Claim(n.name, group, res, start, t, inc, line, inside, memb, why))
        n.claims.clear()

    def end_cluster(n: _Node, t: float, why: str) -> None:
        if n.cluster_since is not None:
            h.in_cluster.setdefault(n.name, []).append(Span(n.name, n.cluster_since, t, n.cluster_why, why))
            n.cluster_since = None

    def end_alive(n: _Node, t: float, why: str) -> None:
        if n.alive_since is not None:
            h.alive.setdefault(n.name, []).append(Span(n.name, n.alive_since, t, n.alive_why, why))
            n.alive_since = None

    for t, _, kind, rec in _timeline(h):
        name = str(rec["node"])
        n = node(name)
        if kind == "kill":
            why = action_line(rec, h.start_s)
            end_claims(n, t, why)
            end_cluster(n, t, why)
            end_alive(n, t, why)
            continue
        if kind == "freeze":
            frozen_since[name] = (t, action_line(rec, h.start_s))
            continue
        if kind == "thaw":
            since = frozen_since.pop(name, None)
            if since is not None:
                h.frozen.setdefault(name, []).append(
                    Span(name, since[0], t, since[1], action_line(rec, h.start_s))
                )
            continue
        e, line = rec, h.line(rec)
        ev = str(e["kind"])
        fields = e.get("fields") if isinstance(e.get("fields"), dict) else {}
        assert isinstance(fields, dict)
        inc = int(e.get("incarnation") or 0)
        if ev == "service_started" or (n.alive_since is None and inc != n.incarnation):
            why = f"{line} (a new process)"
            end_claims(n, t, why)
            end_cluster(n, t, why)
            end_alive(n, t, why)
            n.incarnation, n.alive_since, n.alive_why = inc, t, line
            if ev == "service_started":
                continue
        if n.alive_since is None:
            n.incarnation, n.alive_since, n.alive_why = inc, t, line
        if ev == "membership_installed":
            members = tuple(str(m) for m in fields.get("members", []) or [])
            n.epoch = int(fields.get("epoch", 0) or 0)
            n.membership = line
            h.memberships.append((t, name, n.epoch, members, line))
            if n.cluster_since is None:
                n.cluster_since, n.cluster_why = t, line
        elif ev in ENDS_LIFE:
            end_claims(n, t, line)
            end_cluster(n, t, line)
            if ev == "service_stopped":
                end_alive(n, t, line)
        elif ev == "resource_state":
            res, state = str(fields.get("resource", "")), str(fields.get("state", ""))
            group = str(fields.get("group", "")) or h.resource_group.get(res, "")
            if state == "Online":
                if res not in n.claims:
                    inside = n.cluster_since is not None
                    n.claims[res] = (t, line, n.incarnation, group, inside, n.membership)
            elif res in n.claims:
                start, first, cinc, cgroup, inside, memb = n.claims.pop(res)
                h.claims.append(Claim(name, cgroup, res, start, t, cinc, first, inside, memb, line))
    for n in nodes.values():
        end_claims(n, INF, "still Online at the end")
        end_cluster(n, INF, "")
        end_alive(n, INF, "")
    for name, (begun, why) in frozen_since.items():
        h.frozen.setdefault(name, []).append(Span(name, begun, INF, why, "still frozen at the end"))
    h.claims.sort(key=lambda c: (c.start, c.node, c.resource))


def frozen_at(h: History, node: str, t: float) -> bool:
    return any(s.start <= t < s.end for s in h.frozen.get(node, []))


def _stale(h: History) -> None:
    for name, spans in h.frozen.items():
        for f in spans:
            life = next((s for s in h.in_cluster.get(name, []) if s.start <= f.start < s.end), None)
            if life is None:
                continue
            own = [m for m in h.memberships if m[1] == name and m[0] <= f.start]
            epoch = own[-1][2] if own else 0
            fence = next(
                (
                    m
                    for m in h.memberships
                    if f.start <= m[0] < f.end
                    and m[1] != name
                    and m[2] > epoch
                    and name not in m[3]
                    and not frozen_at(h, m[1], m[0])
                ),
                None,
            )
            if fence is not None:
                h.stale.setdefault(name, []).append(
                    Span(
                        name, fence[0], life.end, fence[4], life.end_why or "still in the cluster at the end"
                    )
                )


# -- loading a cluster directory ------------------------------------------------------------------------


def read_clusterdb(cluster_dir: Path) -> dict[str, Any]:
    """The node copy of the cluster database with the highest version ({} if none can be read)."""
    best: dict[str, Any] = {}
    for path in sorted((cluster_dir / "nodes").glob("*/clusterdb.json")):
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(doc, dict) and int(doc.get("version", 0) or 0) >= int(best.get("version", 0) or 0):
            best = doc
    return best


def read_reservations(cluster_dir: Path) -> dict[str, list[dict[str, Any]]]:
    from shareddisk.history import read_history

    return {p.stem: read_history(p) for p in sorted((cluster_dir / "disks").glob("*.img"))}


def read_actions(path: Path) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return out
    for raw in lines:
        try:
            doc = json.loads(raw)
        except ValueError:
            continue
        if isinstance(doc, dict) and isinstance(doc.get("t"), int | float) and "action" in doc:
            out.append(doc)
    return out


def load_history(
    cluster_dir: Path,
    actions: Iterable[Mapping[str, Any]],
    *,
    start_s: float | None,
    heal_s: float | None,
    bound_s: float,
    expected: Iterable[str] | None = None,
) -> History:
    """The history of a run in ``cluster_dir``. ``expected``: the groups that must come back (default:
    every group the cluster database wants online)."""
    db = read_clusterdb(cluster_dir)
    resources = {str(r["name"]): r for r in db.get("resources", []) if isinstance(r, dict) and "name" in r}
    groups = {str(g["name"]): g for g in db.get("groups", []) if isinstance(g, dict) and "name" in g}
    if expected is not None:
        wanted = set(expected)
        groups = {g: ({"desired": "online"} if g in wanted else {"desired": "offline"}) for g in groups}
    return build_history(
        read_events(event_paths(cluster_dir)),
        list(actions),
        resources=resources,
        groups=groups,
        reservations=read_reservations(cluster_dir),
        start_s=start_s,
        heal_s=heal_s,
        bound_s=bound_s,
    )


def recovery_bound_s(config: ClusterConfig, resources: Iterable[Mapping[str, Any]] = ()) -> float:
    """How long after the final heal every group may take to be Online again (documented in the README).

    The simulator's settle bound (three times the longest chain of recovery timeouts: join, restart
    after a halt, quorum challenge, regroup and two stage timeouts, node down), plus the fence wait
    of the failover manager (``Timing.fence_s``: a lost owner must have halted), plus twice the sum of
    the start-up times of every resource (StartupTime and the Information Store's log replay), at
    least 1 s.
    """
    t = config.timing
    settle = t.settle_bound_s
    start = 0.0
    for r in resources:
        p = r.get("private") if isinstance(r.get("private"), dict) else {}
        assert isinstance(p, dict)
        start += _num(p.get("StartupTime")) + _num(p.get("LogBacklog")) * _num(p.get("LogReplayTime"))
    return settle + t.fence_s(config.quorum is QuorumType.DISK) + max(1.0, 2 * start)


def _num(value: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return 0.0


__all__ = [
    "INF",
    "Claim",
    "History",
    "Span",
    "action_line",
    "build_history",
    "event_line",
    "frozen_at",
    "load_history",
    "read_actions",
    "read_clusterdb",
    "read_reservations",
    "recovery_bound_s",
]
