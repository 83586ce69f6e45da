"""Conditions of ``wait`` and ``assert`` steps, evaluated on what the cluster says and what it logged.

Theory of operation
-------------------
A condition is a pure function of ``Facts``: the cluster picture (``status.as_json`` of one
``probe.observe``: node states as the cluster sees them, the quorum owner, groups and resources
from the highest-epoch member's database copy), the merged event log of every node
(``eventlog.read_events``, sorted by CLOCK_MONOTONIC), the JSON lines of every client the scenario
runs, and the CLOCK_MONOTONIC instant at which each step started (``marks``; mark 0 is the moment
the cluster was ready, before step 1). ``Facts`` reads each source lazily, once: a condition on
the status never reads the event log, and the other way round.

Every evaluation returns a ``Verdict``: whether it holds and one line saying what was seen, which
the report prints on PASS and on FAIL alike ("EVS1 is Online on NODE2 (every resource Online)").
Times inside conditions (``client_outages`` ``max_s``) are Windows seconds divided by the speed,
like every other time of a scenario; ``max_lab_s`` is not scaled.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nodeagent.scenario.model import Step

Record = Mapping[str, Any]
MAX_SHOWN = 3  # events quoted in a verdict


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool
    why: str


class Facts:
    """What a condition may look at; each source is read at most once per ``Facts``."""

    def __init__(
        self,
        *,
        speed: float,
        marks: Mapping[int, float],
        status: Callable[[], Mapping[str, Any]] | Mapping[str, Any],
        events: Callable[[], Sequence[Record]] | Sequence[Record] = (),
        clients: Callable[[], Mapping[str, Sequence[Record]]] | Mapping[str, Sequence[Record]] | None = None,
    ) -> None:
        self.speed = speed
        self.marks = marks
        self._status_src, self._events_src, self._clients_src = status, events, clients
        self._status: Mapping[str, Any] | None = None
        self._events: Sequence[Record] | None = None
        self._clients: Mapping[str, Sequence[Record]] | None = None

    @property
    def status(self) -> Mapping[str, Any]:
        if self._status is None:
            src = self._status_src
            self._status = src() if callable(src) else src
        return self._status

    @property
    def events(self) -> Sequence[Record]:
        if self._events is None:
            src = self._events_src
            self._events = src() if callable(src) else src
        return self._events

    @property
    def clients(self) -> Mapping[str, Sequence[Record]]:
        if self._clients is None:
            src = self._clients_src
            self._clients = (src() if callable(src) else src) or {}
        return self._clients

    def lab_s(self, windows_s: float) -> float:
        return windows_s / self.speed


def evaluate(step: Step, facts: Facts) -> Verdict:
    name = step.condition
    check = CHECKS.get(name or "")
    if check is None:
        return Verdict(False, f"unknown condition {name!r}")
    return check(step, facts)


# -- groups and resources ---------------------------------------------------------------------------------


def _groups(facts: Facts) -> list[Mapping[str, Any]] | None:
    """The groups of the cluster picture; None when no member answers (no view)."""
    status = facts.status
    if status.get("view_from") is None:
        return None
    raw = status.get("groups")
    return [g for g in raw if isinstance(g, dict)] if isinstance(raw, list) else []


def _group(step: Step, facts: Facts) -> tuple[Mapping[str, Any] | None, str]:
    groups = _groups(facts)
    want = str(step.get("group"))
    if groups is None:
        return None, "no cluster member answers, so no group is known"
    for g in groups:
        if str(g.get("name", "")).upper() == want.upper():
            return g, ""
    return None, f"group {want} is not in the cluster database"


def _where(g: Mapping[str, Any]) -> str:
    moving = f", moving to {g['target']}" if g.get("target") else ""
    return f"{g.get('name')} is {g.get('state')} on {g.get('owner') or 'no node'}{moving}"


def _resources(g: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    raw = g.get("resources")
    return [r for r in raw if isinstance(r, dict)] if isinstance(raw, list) else []


def group_online(step: Step, facts: Facts) -> Verdict:
    g, why = _group(step, facts)
    if g is None:
        return Verdict(False, why)
    node = step.get("node")
    not_online = [str(r.get("name")) for r in _resources(g) if r.get("state") != "Online"]
    ok = (
        g.get("state") == "Online"
        and not g.get("target")
        and not not_online
        and (node is None or g.get("owner") == node)
    )
    detail = "every resource Online" if not not_online else f"not Online: {', '.join(not_online[:MAX_SHOWN])}"
    return Verdict(ok, f"{_where(g)} ({detail})")


def group_offline(step: Step, facts: Facts) -> Verdict:
    g, why = _group(step, facts)
    if g is None:
        return Verdict(False, why)
    return Verdict(g.get("state") == "Offline" and not g.get("target"), _where(g))


def group_failed(step: Step, facts: Facts) -> Verdict:
    g, why = _group(step, facts)
    if g is None:
        return Verdict(False, why)
    node = step.get("node")
    # Left Failed: nothing pending any more (a resource that just failed makes the group Failed for
    # a moment, before the rest of it goes offline).
    settled = all(r.get("state") in ("Offline", "Failed") for r in _resources(g))
    ok = g.get("state") == "Failed" and settled and (node is None or g.get("owner") == node)
    return Verdict(ok, _where(g) + ("" if settled else " (resources still changing state)"))


def group_owner(step: Step, facts: Facts) -> Verdict:
    g, why = _group(step, facts)
    if g is None:
        return Verdict(False, why)
    return Verdict(g.get("owner") == step.get("node") and not g.get("target"), _where(g))


def resource_state(step: Step, facts: Facts) -> Verdict:
    groups = _groups(facts)
    want = str(step.get("resource"))
    if groups is None:
        return Verdict(False, "no cluster member answers, so no resource is known")
    for g in groups:
        for r in _resources(g):
            if str(r.get("name", "")).upper() == want.upper():
                state = r.get("state")
                return Verdict(
                    str(state).lower() == str(step.get("state")).lower(),
                    f"{r.get('name')} is {state} (group {g.get('name')} on {g.get('owner') or 'no node'})",
                )
    return Verdict(False, f"resource {want} is not in the cluster database")


# -- nodes and quorum -------------------------------------------------------------------------------------


def _node(step: Step, facts: Facts) -> Mapping[str, Any] | None:
    raw = facts.status.get("nodes")
    for n in raw if isinstance(raw, list) else []:
        if isinstance(n, dict) and n.get("name") == step.get("node"):
            return n
    return None


def _node_text(n: Mapping[str, Any]) -> str:
    own = n.get("own_state")
    says = f" (says {own} itself)" if own is not None and own != n.get("state") else ""
    process = n.get("process")
    proc = f", process {process}" if process not in (None, "running") else ""
    return f"{n.get('name')} is {n.get('state')}{says}{proc}"


def node_state(step: Step, facts: Facts) -> Verdict:
    n = _node(step, facts)
    if n is None:
        return Verdict(False, f"{step.get('node')} is not in the status")
    return Verdict(n.get("state") == step.get("state"), _node_text(n))


def node_up(step: Step, facts: Facts) -> Verdict:
    n = _node(step, facts)
    if n is None:
        return Verdict(False, f"{step.get('node')} is not in the status")
    return Verdict(n.get("state") == "Up", _node_text(n))


def node_down(step: Step, facts: Facts) -> Verdict:
    """Not a working member: the cluster says Down, or the node is outside it (Joining, Halted)."""
    n = _node(step, facts)
    if n is None:
        return Verdict(False, f"{step.get('node')} is not in the status")
    return Verdict(n.get("state") not in ("Up", "Paused"), _node_text(n))


def quorum_owner(step: Step, facts: Facts) -> Verdict:
    owner = facts.status.get("quorum_owner")
    want = step.get("node")
    text = f"the quorum owner is {owner}" if owner else "no node owns the quorum"
    return Verdict(owner is not None and (want is None or owner == want), text)


# -- clients ----------------------------------------------------------------------------------------------


def _client(step: Step, facts: Facts) -> tuple[str | None, Sequence[Record]]:
    clients = facts.clients
    name = step.get("client")
    if name is None:
        if len(clients) != 1:
            return None, ()
        name = next(iter(clients))
    for key, records in clients.items():
        if key.upper() == str(name).upper():
            return key, records
    return None, ()


def client_served_by(step: Step, facts: Facts) -> Verdict:
    name, records = _client(step, facts)
    if name is None:
        return Verdict(False, _no_client(step, facts))
    replies = [r for r in records if r.get("event") == "reply"]
    if not replies:
        return Verdict(False, f"client {name} has had no reply yet")
    last = replies[-1]
    if last.get("ok") is not True:
        return Verdict(False, f"client {name}: last reply is an error from {last.get('node')}: "
                              f"{last.get('error')}")  # fmt: skip
    served = last.get("node")
    lost = _ongoing(records)
    if lost:
        return Verdict(False, f"client {name}: last answered by {served}, then {lost}")
    return Verdict(served == step.get("node"), f"client {name} is served by {served}")


def _ongoing(records: Sequence[Record]) -> str:
    """A client that has stopped getting replies: its summary says so (only once it was stopped)."""
    for r in reversed(records):
        if r.get("event") == "summary":
            ongoing = r.get("ongoing_outage_s")
            return f"no answer for the last {ongoing:.3f} s" if isinstance(ongoing, int | float) else ""
        if r.get("event") == "reply":
            return ""
    return ""


def client_outages(step: Step, facts: Facts) -> Verdict:
    name, records = _client(step, facts)
    if name is None:
        return Verdict(False, _no_client(step, facts))
    lengths = [float(r["length_s"]) for r in records
               if r.get("event") == "outage" and isinstance(r.get("length_s"), int | float)]  # fmt: skip
    for r in records:
        if r.get("event") == "summary" and isinstance(r.get("ongoing_outage_s"), int | float):
            lengths.append(float(r["ongoing_outage_s"]))  # still out when the client stopped
    longest = max(lengths, default=0.0)
    text = f"client {name}: {len(lengths)} outage{'s' if len(lengths) != 1 else ''}"
    if lengths:
        text += f", longest {longest:.3f} s"
    problems = []
    count = step.get("count")
    if count is not None and len(lengths) != count:
        problems.append(f"expected {count}")
    if step.get("min_count") is not None and len(lengths) < step.get("min_count"):
        problems.append(f"expected at least {step.get('min_count')}")
    if step.get("max_count") is not None and len(lengths) > step.get("max_count"):
        problems.append(f"expected at most {step.get('max_count')}")
    limit = step.get("max_lab_s")
    if limit is None and step.get("max_s") is not None:
        limit = facts.lab_s(float(step.get("max_s")))
    if limit is not None and longest > float(limit):
        problems.append(f"longest must be at most {float(limit):.3f} s")
    return Verdict(not problems, text + (f" ({'; '.join(problems)})" if problems else ""))


def _no_client(step: Step, facts: Facts) -> str:
    names = ", ".join(facts.clients) or "none"
    which = step.get("client") or "(the only one)"
    return f"no client {which} is running or ran (clients: {names})"


# -- the event log ----------------------------------------------------------------------------------------


def matching_events(step: Step, facts: Facts) -> list[Record]:
    since_step = int(step.get("since") or 0)
    since = facts.marks.get(since_step, facts.marks.get(0, 0.0))
    kind, node = step.get("kind"), step.get("node")
    want = step.get("fields") or {}
    out = []
    for e in facts.events:
        if e.get("kind") != kind or (node is not None and e.get("node") != node):
            continue
        if float(e.get("mono_s", 0.0)) < since:
            continue
        fields = _fields_of(e)
        if all(fields.get(k) == v for k, v in want.items()):
            out.append(e)
    return out


def _fields_of(e: Record) -> Mapping[str, Any]:
    fields = e.get("fields")
    return fields if isinstance(fields, dict) else {}


def _event_text(e: Record) -> str:
    fields = _fields_of(e)
    shown = ", ".join(f"{k}={v}" for k, v in list(fields.items())[:4])
    return f"{e.get('node')} {e.get('kind')}" + (f" ({shown})" if shown else "")


def _what(step: Step) -> str:
    since = f" since step {step.get('since')}" if step.get("since") else ""
    on = f" on {step.get('node')}" if step.get("node") else ""
    fields = step.get("fields") or {}
    having = f" with {', '.join(f'{k}={v}' for k, v in fields.items())}" if fields else ""
    return f"{step.get('kind')}{on}{having}{since}"


def event(step: Step, facts: Facts) -> Verdict:
    found = matching_events(step, facts)
    need = int(step.get("min_count") or 1)
    if len(found) >= need:
        return Verdict(True, f"{len(found)} event(s) {_what(step)}: {_event_text(found[0])}")
    return Verdict(False, f"{len(found)} event(s) {_what(step)}, expected at least {need}")


def no_event(step: Step, facts: Facts) -> Verdict:
    found = matching_events(step, facts)
    if not found:
        return Verdict(True, f"no event {_what(step)}")
    shown = "; ".join(_event_text(e) for e in found[:MAX_SHOWN])
    return Verdict(False, f"{len(found)} event(s) {_what(step)}: {shown}")


CHECKS: dict[str, Callable[[Step, Facts], Verdict]] = {
    "group_online": group_online,
    "group_offline": group_offline,
    "group_failed": group_failed,
    "group_owner": group_owner,
    "resource_state": resource_state,
    "node_up": node_up,
    "node_down": node_down,
    "node_state": node_state,
    "quorum_owner": quorum_owner,
    "client_served_by": client_served_by,
    "client_outages": client_outages,
    "event": event,
    "no_event": no_event,
}
