"""Scenario files: parse and validate the TOML into frozen values, with one-line errors.

Theory of operation
-------------------
A scenario file has a ``description`` (one line, shown by ``wolfpack scenario list``), an optional
``name`` (default: the file's stem), one ``[cluster]`` table shaped like the options of ``wolfpack
up`` and a list of ``[[step]]`` tables run in order. Everything is checked before anything is
started: unknown keys, wrong types, unknown actions or conditions, node names outside the cluster,
``since`` references to a later step. The error names the file, the step number, the action and the
field, on one line (``ScenarioError`` is a ``ConfigError``: the CLI prints it and exits 1).

A step is kept as its action plus a plain mapping of validated fields (``Step.get``); the runner
and the conditions read the fields they own. Times in a file are Windows seconds (what MSCS would
take), divided by the cluster's speed at run time, unless the field says ``_lab_s`` (wall seconds
on this machine, never scaled); see ``runner``.

``exchange_version`` may be a list: the scenario then runs once per version, each on a cluster of
its own, and the report has one run per version (Exchange 2000 vs 2003 failover time, say).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nodeagent.errors import ConfigError

MAX_STEPS = 200
MAX_NODES = 8
MAX_TIMEOUT_S = 36_000.0  # Windows seconds: ten hours, divided by speed
MAX_LAB_S = 3_600.0

ACTIONS = (
    "fault", "heal", "kill", "start", "stop", "freeze", "thaw", "move", "pause", "resume",
    "fail", "client", "wait", "assert", "sleep", "prop",
)  # fmt: skip
FAULT_KINDS = ("cut", "loss", "delay", "dup", "reorder", "shape", "disk", "resource")
LINK_KINDS = ("cut", "loss", "delay", "dup", "reorder")
NETS = ("private", "public", "all")
DIRECTIONS = ("both", "in", "out")
RESOURCE_MODES = ("once", "times", "forever", "hang", "none")
HEAL_WHAT = ("all", "net", "disk")
PROP_TARGETS = ("cluster", "group", "resource")
NODE_STATES = ("Up", "Down", "Paused", "Joining", "Halted")


class ScenarioError(ConfigError):
    """A scenario file that cannot be run; the message is one line naming the place."""


# -- field types ------------------------------------------------------------------------------------------

Check = Callable[[Any], str | None]  # None when the value is acceptable, else what was expected


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def t_str(v: Any) -> str | None:
    return None if isinstance(v, str) and v.strip() else "a non-empty string"


def t_bool(v: Any) -> str | None:
    return None if isinstance(v, bool) else "true or false"


def t_table(v: Any) -> str | None:
    return None if isinstance(v, dict) else "a table"


def t_since(v: Any) -> str | None:
    ok = (isinstance(v, int) and not isinstance(v, bool) and v >= 1) or (isinstance(v, str) and v.strip())
    return None if ok else "a step number (1, 2, ...) or a step id"


def t_num(lo: float, hi: float) -> Check:
    def check(v: Any) -> str | None:
        return None if _is_num(v) and lo <= v <= hi else f"a number from {lo:g} to {hi:g}"

    return check


def t_int(lo: int, hi: int) -> Check:
    def check(v: Any) -> str | None:
        ok = isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi
        return None if ok else f"a whole number from {lo} to {hi}"

    return check


def t_choice(*choices: str) -> Check:
    def check(v: Any) -> str | None:
        return None if v in choices else f"one of {', '.join(choices)}"

    return check


T_TIMEOUT = t_num(0.001, MAX_TIMEOUT_S)
T_LAB = t_num(0.001, MAX_LAB_S)
T_PCT = t_num(0.0, 100.0)
T_MS = t_num(0.0, 60_000.0)

# Fields shared by every step.
COMMON: dict[str, Check] = {"action": t_str, "id": t_str, "note": t_str}

# action -> (fields, required fields)
ACTION_FIELDS: dict[str, tuple[dict[str, Check], tuple[str, ...]]] = {
    "fault": ({
        "kind": t_choice(*FAULT_KINDS), "node": t_str, "peer": t_str, "net": t_choice(*NETS),
        "direction": t_choice(*DIRECTIONS), "pct": T_PCT, "delay_ms": T_MS, "jitter_ms": T_MS,
        "shape": t_str, "seed": t_int(0, 2**31), "disk": t_str, "lost": t_bool, "slow_ms": T_MS,
        "resource": t_str, "mode": t_choice(*RESOURCE_MODES), "times": t_int(1, 1000),
    }, ("kind",)),
    "heal": ({"node": t_str, "what": t_choice(*HEAL_WHAT), "fault_id": t_int(0, 2**31), "disk": t_str}, ()),
    "kill": ({"node": t_str}, ("node",)),
    "stop": ({"node": t_str}, ("node",)),
    "freeze": ({"node": t_str}, ("node",)),
    "thaw": ({"node": t_str}, ("node",)),
    "pause": ({"node": t_str}, ("node",)),
    "resume": ({"node": t_str}, ("node",)),
    "start": ({"node": t_str, "wait": t_bool, "timeout_s": T_TIMEOUT, "timeout_lab_s": T_LAB}, ("node",)),
    "move": ({"group": t_str, "to": t_str, "wait": t_bool, "timeout_s": T_TIMEOUT, "timeout_lab_s": T_LAB},
             ("group",)),
    "fail": ({"resource": t_str}, ("resource",)),
    "client": ({"name": t_str, "state": t_choice("on", "off"), "service": t_str,
                "interval_ms": t_num(20.0, 10_000.0)}, ("name", "state")),
    "wait": ({"condition": t_str, "timeout_s": T_TIMEOUT, "timeout_lab_s": T_LAB}, ("condition",)),
    "assert": ({"condition": t_str, "during_s": T_TIMEOUT, "during_lab_s": T_LAB}, ("condition",)),
    "sleep": ({"seconds": T_TIMEOUT, "lab_seconds": T_LAB}, ()),
    "prop": ({"target": t_choice(*PROP_TARGETS), "name": t_str, "props": t_table, "private": t_table},
             ("target",)),
}  # fmt: skip

# condition -> (fields, required fields); the fields sit in the wait/assert step itself.
CONDITIONS: dict[str, tuple[dict[str, Check], tuple[str, ...]]] = {
    "group_online": ({"group": t_str, "node": t_str}, ("group",)),
    "group_offline": ({"group": t_str}, ("group",)),
    "group_failed": ({"group": t_str, "node": t_str}, ("group",)),
    "group_owner": ({"group": t_str, "node": t_str}, ("group", "node")),
    "resource_state": ({"resource": t_str, "state": t_str}, ("resource", "state")),
    "node_up": ({"node": t_str}, ("node",)),
    "node_down": ({"node": t_str}, ("node",)),
    "node_state": ({"node": t_str, "state": t_choice(*NODE_STATES)}, ("node", "state")),
    "quorum_owner": ({"node": t_str}, ()),
    "client_served_by": ({"node": t_str, "client": t_str}, ("node",)),
    "client_outages": ({"client": t_str, "count": t_int(0, 10_000), "min_count": t_int(0, 10_000),
                        "max_count": t_int(0, 10_000), "max_s": T_TIMEOUT, "max_lab_s": T_LAB}, ()),
    "event": ({"kind": t_str, "node": t_str, "since": t_since, "fields": t_table,
               "min_count": t_int(1, 10_000)}, ("kind",)),
    "no_event": ({"kind": t_str, "node": t_str, "since": t_since, "fields": t_table}, ("kind",)),
}  # fmt: skip

NODE_FIELDS = ("node", "peer", "to")

CLUSTER_FIELDS: dict[str, Check] = {
    "nodes": t_int(1, MAX_NODES),
    "speed": t_num(0.1, 1000.0),
    "quorum": t_choice("disk", "majority"),
    "arbitration": t_choice("scsi2", "scsi3"),
    "edition": t_str,
    "evs": t_int(0, 8),
    "exchange_version": lambda v: None,  # checked below: "2000", "2003" or a list of them
    "first": lambda v: None if isinstance(v, str) else 'a node name, or "" for none',
    "networks": t_table,
    "timing": t_table,
    "props": t_table,
}


# -- values -----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClusterSpec:
    nodes: int = 2
    speed: float = 10.0
    quorum: str = "disk"
    arbitration: str = "scsi2"
    edition: str | None = None
    evs: int = 0
    exchange_versions: tuple[str, ...] = ("2003",)
    first: str | None = "NODE1"  # forms the cluster alone before the others join (None: all at once)
    networks: Mapping[str, Any] = field(default_factory=dict)  # cluster.toml [networks] overrides
    timing: Mapping[str, Any] = field(default_factory=dict)  # cluster.toml [timing] overrides
    props: Mapping[str, Any] = field(default_factory=dict)  # cluster properties set once it is up

    @property
    def node_names(self) -> tuple[str, ...]:
        return tuple(f"NODE{i}" for i in range(1, self.nodes + 1))


@dataclass(frozen=True, slots=True)
class Step:
    number: int  # 1-based, as the report shows it
    action: str
    fields: Mapping[str, Any]
    id: str | None = None
    note: str = ""

    def get(self, key: str, default: Any = None) -> Any:
        return self.fields.get(key, default)

    @property
    def condition(self) -> str | None:
        c = self.fields.get("condition")
        return c if isinstance(c, str) else None

    def describe(self) -> str:
        """A short human line: the action and its fields, e.g. ``kill NODE1``."""
        if self.note:
            return self.note
        parts = [self.action]
        skip = {"action", "id", "note", "timeout_s", "timeout_lab_s"}
        for key, value in self.fields.items():
            if key in skip:
                continue
            if key in ("node", "condition", "name", "group", "resource", "kind") and isinstance(value, str):
                parts.append(value)
            elif key == "since":
                parts.append(f"since step {value}")
            elif isinstance(value, dict):
                parts.append(f"{key}({', '.join(f'{k}={v}' for k, v in value.items())})")
            else:
                parts.append(f"{key}={value}")
        return " ".join(parts)


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    description: str
    cluster: ClusterSpec
    steps: tuple[Step, ...]
    source: str = ""  # the file it came from ("" when parsed from text)


# -- parsing ----------------------------------------------------------------------------------------------


def load_file(path: Path) -> Scenario:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ScenarioError(f"{path}: cannot read it ({e.strerror or e})") from None
    return parse(text, source=str(path), default_name=path.stem)


def parse(text: str, source: str = "<scenario>", default_name: str = "scenario") -> Scenario:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError(f"{source}: not valid TOML ({e})") from None
    return from_dict(data, source, default_name)


def _fail(source: str, where: str, message: str) -> ScenarioError:
    return ScenarioError(f"{source}: {where}: {message}")


def from_dict(
    data: Mapping[str, Any], source: str = "<scenario>", default_name: str = "scenario"
) -> Scenario:
    for key in data:
        if key not in ("name", "description", "cluster", "step"):
            raise _fail(source, "top level", f"unknown key {key!r} (name, description, [cluster], [[step]])")
    name = data.get("name", default_name)
    if t_str(name) is not None or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", str(name)):
        raise _fail(source, "name", "letters, digits, '.', '_' and '-', at most 64")
    description = data.get("description")
    if t_str(description) is not None or "\n" in str(description):
        raise _fail(source, "description", "required: one line saying what the scenario shows")
    cluster = _cluster(data.get("cluster", {}), source)
    raw_steps = data.get("step")
    if not isinstance(raw_steps, list) or not raw_steps:
        raise _fail(source, "[[step]]", "at least one step is required")
    if len(raw_steps) > MAX_STEPS:
        raise _fail(source, "[[step]]", f"at most {MAX_STEPS} steps")
    steps: list[Step] = []
    ids: dict[str, int] = {}
    for i, raw in enumerate(raw_steps, start=1):
        step = _step(raw, i, cluster, ids, source)
        if step.id is not None:
            ids[step.id] = i
        steps.append(step)
    return Scenario(str(name), str(description).strip(), cluster, tuple(steps), source)


def _cluster(raw: Any, source: str) -> ClusterSpec:
    if not isinstance(raw, dict):
        raise _fail(source, "[cluster]", "must be a table")
    for key, value in raw.items():
        check = CLUSTER_FIELDS.get(key)
        if check is None:
            raise _fail(source, "[cluster]", f"unknown key {key!r} ({', '.join(CLUSTER_FIELDS)})")
        expected = check(value)
        if expected is not None:
            raise _fail(source, f"[cluster] {key}", f"expected {expected}, got {value!r}")
    versions_raw = raw.get("exchange_version", "2003")
    versions = versions_raw if isinstance(versions_raw, list) else [versions_raw]
    if (
        not versions
        or any(v not in ("2000", "2003") for v in versions)
        or len(set(versions)) != len(versions)
    ):
        raise _fail(source, "[cluster] exchange_version", '"2000", "2003", or a list of both')
    nodes = int(raw.get("nodes", 2))
    quorum = str(raw.get("quorum", "disk"))
    first_raw = raw.get("first", "NODE1" if quorum == "disk" else "")
    first = str(first_raw).upper() or None
    if first is not None and first not in {f"NODE{i}" for i in range(1, nodes + 1)}:
        raise _fail(
            source, "[cluster] first", f"{first_raw!r} is not a node of this cluster (NODE1..NODE{nodes})"
        )
    if first is not None and quorum == "majority" and nodes > 1:
        raise _fail(
            source, "[cluster] first", 'a Majority Node Set cluster cannot form with one node: use ""'
        )
    evs = int(raw.get("evs", 0))
    if evs > 1 and nodes > 2 and evs > nodes - 1:
        raise _fail(source, "[cluster] evs", f"at most {nodes - 1} virtual servers on {nodes} nodes (N-1)")
    return ClusterSpec(
        nodes=nodes,
        speed=float(raw.get("speed", 10.0)),
        quorum=quorum,
        arbitration=str(raw.get("arbitration", "scsi2")),
        edition=str(raw["edition"]).lower() if "edition" in raw else None,
        evs=evs,
        exchange_versions=tuple(str(v) for v in versions),
        first=first,
        networks=dict(raw.get("networks", {})),
        timing=dict(raw.get("timing", {})),
        props=dict(raw.get("props", {})),
    )


def _step(raw: Any, number: int, cluster: ClusterSpec, ids: Mapping[str, int], source: str) -> Step:
    if not isinstance(raw, dict):
        raise _fail(source, f"step {number}", "must be a table")
    action = raw.get("action")
    if action not in ACTION_FIELDS:
        raise _fail(source, f"step {number}", f"action {action!r}: expected one of {', '.join(ACTIONS)}")
    where = f"step {number} ({action})"
    fields, required = ACTION_FIELDS[action]
    allowed = {**COMMON, **fields}
    condition = raw.get("condition")
    if action in ("wait", "assert"):
        if condition not in CONDITIONS:
            raise _fail(source, where, f"condition {condition!r}: expected one of {', '.join(CONDITIONS)}")
        cfields, crequired = CONDITIONS[condition]
        allowed = {**allowed, **cfields}
        required = (*required, *crequired)
    for key, value in raw.items():
        check = allowed.get(key)
        if check is None:
            what = f"condition {condition}" if action in ("wait", "assert") else f"action {action}"
            known = ", ".join(k for k in allowed if k not in COMMON)
            raise _fail(source, where, f"unknown field {key!r} for {what} (fields: {known})")
        expected = check(value)
        if expected is not None:
            raise _fail(source, f"{where} {key}", f"expected {expected}, got {value!r}")
    for key in required:
        if key not in raw:
            raise _fail(source, where, f"missing field {key!r}")
    values = dict(raw)
    for key in NODE_FIELDS:
        if key in values:
            values[key] = _node_name(values[key], cluster, source, f"{where} {key}")
    _check_action(values, cluster, source, where)
    since = values.get("since")
    if since is not None:
        ref = since if isinstance(since, int) else ids.get(str(since))
        if ref is None:
            raise _fail(source, f"{where} since", f"no earlier step has id {since!r}")
        if ref >= number:
            raise _fail(source, f"{where} since", f"step {ref} is not before this step")
        values["since"] = ref
    step_id = values.get("id")
    if isinstance(step_id, str) and step_id in ids:
        raise _fail(source, f"{where} id", f"{step_id!r} is already the id of step {ids[step_id]}")
    return Step(number, str(action), values, step_id if isinstance(step_id, str) else None,
                str(values.get("note", "")))  # fmt: skip


def _node_name(value: str, cluster: ClusterSpec, source: str, where: str) -> str:
    name = value.strip().upper()
    if name not in cluster.node_names:
        raise _fail(source, where, f"{value!r} is not a node of this cluster (NODE1..NODE{cluster.nodes})")
    return name


def _check_action(values: dict[str, Any], cluster: ClusterSpec, source: str, where: str) -> None:
    action = values["action"]
    if action == "fault":
        kind = values["kind"]
        need = {"shape": ("shape",), "disk": ("node", "disk"), "resource": ("resource", "mode")}.get(
            kind, ("node",)
        )
        for key in need:
            if key not in values:
                raise _fail(source, where, f"kind {kind} needs field {key!r}")
        if kind in ("loss", "dup", "reorder") and not values.get("pct"):
            raise _fail(source, f"{where} pct", f"kind {kind} needs a pct above 0")
        if kind == "delay" and not values.get("delay_ms"):
            raise _fail(source, f"{where} delay_ms", "kind delay needs a delay_ms above 0")
        if kind == "disk" and not values.get("lost") and not values.get("slow_ms"):
            raise _fail(source, where, "kind disk needs lost = true or a slow_ms above 0")
        if values.get("peer") is not None and values.get("peer") == values.get("node"):
            raise _fail(source, f"{where} peer", "a node cannot be cut from itself")
    elif action == "sleep":
        if ("seconds" in values) == ("lab_seconds" in values):
            raise _fail(source, where, "give exactly one of seconds (Windows time) or lab_seconds")
    elif action == "prop":
        if values["target"] != "cluster" and "name" not in values:
            raise _fail(source, where, f"target {values['target']} needs the {values['target']}'s name")
        if not values.get("props") and not values.get("private"):
            raise _fail(source, where, "nothing to set: give props = {...} (or private = {...})")
        if values.get("private") and values["target"] != "resource":
            raise _fail(source, f"{where} private", "only a resource has private properties")
    for a, b in (("timeout_s", "timeout_lab_s"), ("during_s", "during_lab_s"), ("max_s", "max_lab_s")):
        if a in values and b in values:
            raise _fail(source, where, f"give {a} or {b}, not both")
    outages = action in ("wait", "assert") and values.get("condition") == "client_outages"
    if outages and "count" in values and ("min_count" in values or "max_count" in values):
        raise _fail(source, where, "give count, or min_count/max_count, not both")
