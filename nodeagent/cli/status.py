"""``wolfpack status``: one picture of the cluster, composed from what every node says.

Theory of operation
-------------------
``compose`` is a pure function of the configuration and the raw observations of ``probe.observe``.

A node's *state* is what the cluster says of it, as Cluster Administrator would show it when
connected to the cluster: the composer takes the view (the snapshot's ``node_states``) of one
answering member, the one with the highest membership epoch, preferring the quorum owner among
equals. So a killed or frozen node shows Down once the survivors have detected it (and Up until
then; the process column already says it is gone). A live node outside that membership shows its
own state (Joining, Halted). A node that still believes it is a member of an older membership (it
is partitioned and has not halted yet) shows what the cluster says, with a note. With no member
answering at all, a silent node is Down and an answering one shows its own state.

The groups and resources (the Cluster Administrator tree, tree.py) come from the same view: the
replicated database copy of the member whose view decided the node states. With no member
answering there is no tree: a node outside the cluster may hold an outdated copy.

``render`` prints a table; ``as_json`` the same facts as one JSON object.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from nodeagent.cli.probe import ControlState, NodeObservation
from nodeagent.cli.procs import ProcessState
from nodeagent.cli.tree import GroupView, group_json, parse_groups, render_tree
from nodeagent.config import ClusterConfig, Net
from nodeagent.core.snapshot import NodeState

_STATES = {s.value: s for s in NodeState}
_MEMBER_STATES = (NodeState.UP, NodeState.PAUSED)


@dataclass(frozen=True, slots=True)
class NodeStatus:
    name: str
    id: int
    state: NodeState
    own_state: NodeState | None  # what the node says of itself (None: no answer)
    phase: str | None
    pid: int | None
    private_ip: str
    public_ip: str
    incarnation: int | None
    cpu_percent: float | None
    rss_bytes: int | None
    control: ControlState
    process: ProcessState
    epoch: int | None  # the membership epoch this node has installed
    faults: tuple[dict[str, Any], ...]
    note: str | None
    fault_counters: dict[str, Any] = field(default_factory=dict)  # fault_drops, fault_delayed, ...


@dataclass(frozen=True, slots=True)
class InterfaceProblem:
    """A network interface that one answering node does not see Up (peers that are Down omitted)."""

    observer: str
    peer: str
    net: str
    state: str
    faults: tuple[str, ...] = ()  # the faults that act on this interface (fault_marks)


@dataclass(frozen=True, slots=True)
class ClusterStatus:
    name: str
    number: int
    speed: float
    quorum: str
    arbitration: str
    quorum_disk: str | None
    edition: str
    nodes: tuple[NodeStatus, ...]
    quorum_owner: str | None
    epoch: int | None
    view_from: str | None  # the member whose view decided the states
    interfaces: tuple[InterfaceProblem, ...]
    groups: tuple[GroupView, ...] = ()  # from the view_from node; () without a view
    db_version: int | None = None
    faulted: tuple[InterfaceProblem, ...] = ()  # every interface a fault acts on, whatever its state


def _state(value: Any) -> NodeState | None:
    return _STATES.get(value) if isinstance(value, str) else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _members(answer: Mapping[str, Any]) -> set[int]:
    raw = answer.get("members")
    return {m for m in raw if isinstance(m, int)} if isinstance(raw, list) else set()


def choose_view(observations: Sequence[NodeObservation]) -> NodeObservation | None:
    """The answering member with the highest epoch; among equals the quorum owner, then the lowest name."""
    candidates = []
    for obs in observations:
        a = obs.answer
        if a is None or _state(a.get("own_state")) not in _MEMBER_STATES:
            continue
        epoch = _int(a.get("epoch")) or 0
        if epoch <= 0:
            continue
        is_owner = a.get("holds_quorum") is True or (
            _int(a.get("quorum_owner")) is not None and a.get("quorum_owner") == a.get("node_id")
        )
        candidates.append(((epoch, is_owner), obs))
    if not candidates:
        return None
    best = max(key for key, _ in candidates)
    return next(obs for key, obs in candidates if key == best)


def _view_state(view: Mapping[str, Any], node_id: int) -> NodeState:
    states = view.get("node_states")
    if isinstance(states, dict):
        said = _state(states.get(str(node_id)))
        if said is not None:
            return said
    return NodeState.UP if node_id in _members(view) else NodeState.DOWN


def compose(config: ClusterConfig, observations: Sequence[NodeObservation]) -> ClusterStatus:
    by_name = {o.name: o for o in observations}
    view_obs = choose_view(observations)
    view = view_obs.answer if view_obs is not None else None
    names = {n.id: n.name for n in config.nodes}
    nodes: list[NodeStatus] = []
    for node in config.nodes:
        obs = by_name.get(node.name) or NodeObservation(
            name=node.name, process=ProcessState.NOT_RUNNING, pid=None,
            control=ControlState.NOT_RUNNING, answer=None, incarnation=None,
        )  # fmt: skip
        answer = obs.answer
        own = _state(answer.get("own_state")) if answer is not None else None
        note: str | None = None
        if view is None:
            # No member answers: nobody speaks for the cluster.
            state = own if own is not None else NodeState.DOWN
        elif answer is not None and node.id not in _members(view):
            state = own if own is not None else NodeState.DOWN
            if own in _MEMBER_STATES:
                # Still a member of an older (partitioned) membership: the cluster's word wins.
                state = _view_state(view, node.id)
                note = f"says {own.value} in epoch {answer.get('epoch')} (partitioned)"
        else:
            state = _view_state(view, node.id)
        if obs.process is ProcessState.FROZEN:
            note = note or "frozen (SIGSTOP): wolfpack thaw " + node.name
        elif obs.process is ProcessState.NOT_RUNNING and obs.control is not ControlState.OK:
            if state is not NodeState.DOWN:
                note = note or f"not running, but the cluster has not noticed yet (it says {state.value})"
            elif view is not None:
                note = note or "not running: wolfpack start " + node.name
        # fault_rules: the full shape, with ids (a node of issue 2 has only the compact "faults").
        raw_faults = (answer.get("fault_rules") or answer.get("faults")) if answer is not None else None
        faults = tuple(f for f in raw_faults if isinstance(f, dict)) if isinstance(raw_faults, list) else ()
        nodes.append(
            NodeStatus(
                name=node.name,
                id=node.id,
                state=state,
                own_state=own,
                phase=answer.get("phase") if answer is not None else None,
                pid=obs.pid,
                private_ip=config.address(node.id, Net.PRIVATE)[0],
                public_ip=config.address(node.id, Net.PUBLIC)[0],
                incarnation=obs.incarnation,
                cpu_percent=obs.cpu_percent,
                rss_bytes=obs.rss_bytes,
                control=obs.control,
                process=obs.process,
                epoch=_int(answer.get("epoch")) if answer is not None else None,
                faults=faults,
                note=note,
                fault_counters=_fault_counters(answer),
            )
        )
    states = {n.id: n.state for n in nodes}
    marks = fault_marks(config, {n.name: n.faults for n in nodes})
    owner = _int(view.get("quorum_owner")) if view is not None else None
    return ClusterStatus(
        name=config.name,
        number=config.number,
        speed=config.speed,
        quorum=config.quorum.value,
        arbitration=config.arbitration.value,
        quorum_disk=config.quorum_disk if config.quorum.value == "disk" else None,
        edition=config.edition,
        nodes=tuple(nodes),
        quorum_owner=names.get(owner) if owner is not None else None,
        epoch=_int(view.get("epoch")) if view is not None else None,
        view_from=view_obs.name if view_obs is not None else None,
        interfaces=_interface_problems(observations, names, states, marks),
        groups=parse_groups(view.get("groups")) if view is not None else (),
        db_version=_int(view.get("db_version")) if view is not None else None,
        faulted=_faulted_interfaces(observations, names, marks),
    )


# -- faults on interfaces ---------------------------------------------------------------------------

_COUNTERS = ("fault_drops", "fault_delayed", "fault_duplicated")


def _fault_counters(answer: Mapping[str, Any] | None) -> dict[str, Any]:
    if answer is None:
        return {}
    return {k: answer[k] for k in _COUNTERS if isinstance(answer.get(k), dict)}


def fault_params(fault: Mapping[str, Any]) -> str:
    """A fault dict's kind and parameters in a few words: ``cut``, ``loss 30%``, ``delay 50+/-10 ms``."""
    kind = str(fault.get("kind", "cut"))
    pct, delay, jitter = (fault.get(k) or 0 for k in ("pct", "delay_ms", "jitter_ms"))
    if kind in ("loss", "dup"):
        return f"{kind} {pct:g}%"
    if kind == "delay":
        return f"delay {delay:g}{f'+/-{jitter:g}' if jitter else ''} ms"
    if kind == "reorder":
        return f"reorder {pct:g}% by <= {delay:g} ms"
    return kind


def _net_covers(selector: Any, net: str) -> bool:
    return selector in (None, "all", net)


def fault_marks(
    config: ClusterConfig, faults: Mapping[str, Sequence[Mapping[str, Any]]]
) -> dict[tuple[str, str, str], tuple[str, ...]]:
    """Per interface ``(observer, peer, net)``: the faults acting on the link between the two, on
    the observer (``loss 30%``) or on the peer (``loss 30% at NODE2``); a one-way rule says which way."""
    names = [n.name for n in config.nodes]
    marks: dict[tuple[str, str, str], list[str]] = {}
    for holder, rules in faults.items():
        for fault in rules:
            peer = fault.get("peer")
            direction = fault.get("direction", "both")
            for other in names:
                if other == holder or (peer is not None and peer != other):
                    continue
                for net in ("private", "public"):
                    if not _net_covers(fault.get("net"), net):
                        continue
                    text = fault_params(fault)
                    if direction in ("in", "out"):
                        text += f" {direction}"
                    marks.setdefault((holder, other, net), []).append(text)
                    marks.setdefault((other, holder, net), []).append(f"{text} at {holder}")
    return {key: tuple(texts) for key, texts in marks.items()}


def _faulted_interfaces(
    observations: Sequence[NodeObservation],
    names: Mapping[int, str],
    marks: Mapping[tuple[str, str, str], tuple[str, ...]],
) -> tuple[InterfaceProblem, ...]:
    out = []
    for obs in observations:
        raw = obs.answer.get("interfaces") if obs.answer is not None else None
        for iface in raw if isinstance(raw, list) else []:
            if not isinstance(iface, dict):
                continue
            peer = _int(iface.get("peer"))
            net = str(iface.get("net"))
            if peer is None or peer not in names:
                continue
            texts = marks.get((obs.name, names[peer], net))
            if texts:
                out.append(InterfaceProblem(obs.name, names[peer], net, str(iface.get("state")), texts))
    return tuple(out)


def interface_text(p: InterfaceProblem) -> str:
    """``Up`` or ``Up (fault: loss 30%)``."""
    return f"{p.state} (fault: {', '.join(p.faults)})" if p.faults else p.state


def _interface_problems(
    observations: Sequence[NodeObservation],
    names: Mapping[int, str],
    states: Mapping[int, NodeState],
    marks: Mapping[tuple[str, str, str], tuple[str, ...]] | None = None,
) -> tuple[InterfaceProblem, ...]:
    problems = []
    for obs in observations:
        if obs.answer is None or _state(obs.answer.get("own_state")) not in _MEMBER_STATES:
            continue
        raw = obs.answer.get("interfaces")
        for iface in raw if isinstance(raw, list) else []:
            if not isinstance(iface, dict):
                continue
            peer = _int(iface.get("peer"))
            state = iface.get("state")
            if peer is None or peer not in names or state in ("Up", "Unavailable"):
                continue
            if states.get(peer) is NodeState.DOWN:
                continue  # a down node's interfaces are failed, of course
            net = str(iface.get("net"))
            texts = (marks or {}).get((obs.name, names[peer], net), ())
            problems.append(InterfaceProblem(obs.name, names[peer], net, str(state), texts))
    return tuple(problems)


def as_json(status: ClusterStatus) -> dict[str, Any]:
    return {
        "cluster": {
            "name": status.name,
            "number": status.number,
            "speed": status.speed,
            "quorum": status.quorum,
            "arbitration": status.arbitration,
            "quorum_disk": status.quorum_disk,
            "edition": status.edition,
        },
        "quorum_owner": status.quorum_owner,
        "epoch": status.epoch,
        "view_from": status.view_from,
        "nodes": [
            {
                "name": n.name,
                "id": n.id,
                "state": n.state.value,
                "own_state": n.own_state.value if n.own_state is not None else None,
                "phase": n.phase,
                "pid": n.pid,
                "private_ip": n.private_ip,
                "public_ip": n.public_ip,
                "incarnation": n.incarnation,
                "cpu_percent": n.cpu_percent,
                "rss_bytes": n.rss_bytes,
                "control": n.control.value,
                "process": n.process.value,
                "epoch": n.epoch,
                "faults": list(n.faults),
                "fault_counters": n.fault_counters,
                "note": n.note,
            }
            for n in status.nodes
        ],
        "interfaces": [
            {"observer": p.observer, "peer": p.peer, "net": p.net, "state": p.state, "faults": list(p.faults)}
            for p in status.interfaces
        ],
        "faulted_interfaces": [
            {"observer": p.observer, "peer": p.peer, "net": p.net, "state": p.state, "faults": list(p.faults)}
            for p in status.faulted
        ],
        "db_version": status.db_version,
        "groups": [group_json(g) for g in status.groups],
    }


def _mib(n: int | None) -> str:
    return "-" if n is None else f"{n / 2**20:.1f}M"


def _fault_text(fault: Mapping[str, Any]) -> str:
    peer = fault.get("peer") or "every peer"
    direction = fault.get("direction", "both")
    way = "" if direction == "both" else f" ({direction} only)"
    ident = f"[{fault['id']}] " if "id" in fault else ""
    return f"{ident}{fault_params(fault)} {fault.get('net', '?')} to {peer}{way}"


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[int] = ()) -> str:
    """Plain columns separated by two spaces; ``right`` lists right-aligned column indexes."""
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    lines = []
    for row in [list(headers), *map(list, rows)]:
        cells = [
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def render(status: ClusterStatus) -> str:
    quorum = (
        f"disk {status.quorum_disk} ({status.arbitration})" if status.quorum_disk else "majority node set"
    )
    owner = status.quorum_owner or "none"
    epoch = "-" if status.epoch is None else str(status.epoch)
    head = (
        f"Cluster {status.name} (number {status.number}, speed {status.speed:g}, {status.edition})  "
        f"quorum: {quorum}  owner: {owner}  epoch: {epoch}"
    )
    rows = [
        [
            n.name,
            str(n.id),
            n.state.value,
            "-" if n.pid is None else str(n.pid),
            n.private_ip,
            n.public_ip,
            "-" if n.incarnation is None else str(n.incarnation),
            "-" if n.cpu_percent is None else f"{n.cpu_percent:.1f}",
            _mib(n.rss_bytes),
            n.process.value,
            n.control.value,
        ]
        for n in status.nodes
    ]
    headers = ["NODE", "ID", "STATE", "PID", "PRIVATE", "PUBLIC", "INC", "CPU%", "RSS", "PROCESS", "CONTROL"]
    out = [head, "", render_table(headers, rows, right=(1, 3, 6, 7, 8))]
    notes = [f"  {n.name}: {n.note}" for n in status.nodes if n.note]
    all_down = all(
        n.process is ProcessState.NOT_RUNNING and n.control is not ControlState.OK for n in status.nodes
    )
    silent = [n.name for n in status.nodes if n.control is not ControlState.OK]
    if silent and not all_down:
        out.append(f"\nNot answering the control socket: {', '.join(silent)}")
    if notes:
        out += ["", "Notes:", *notes]
    faults = [f"  {n.name}: {_fault_text(f)}" for n in status.nodes for f in n.faults]
    if faults:
        out += ["", "Faults installed (wolfpack fault heal to remove):", *faults]
    if status.interfaces:
        out += ["", "Interfaces not Up:"]
        out += [f"  {p.observer} sees {p.peer} on {p.net}: {interface_text(p)}" for p in status.interfaces]
    if status.faulted:
        out += ["", "Interfaces under faults:"]
        out += [f"  {p.observer} sees {p.peer} on {p.net}: {interface_text(p)}" for p in status.faulted]
    if status.groups:
        out += ["", f"Groups (as {status.view_from} sees them):", render_tree(status.groups)]
    if all_down:
        out.append("\nNo node is running (wolfpack up to start them).")
    elif status.view_from is None:
        out.append("\nNo answering node is a member of a cluster (forming, joining or halted).")
    return "\n".join(out)
