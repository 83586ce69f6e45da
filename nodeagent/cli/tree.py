"""The groups and resources of the cluster as Cluster Administrator draws them: a tree, one row each.

Theory of operation
-------------------
A status answer's ``groups`` (CONTRACT3.md, "Control socket: admin requests") is the node's replicated
copy of the cluster database: every group with its state, owner, target and preferred owners, and
its resources with type, state and dependencies. ``parse_groups`` turns that raw JSON into values,
tolerating missing or malformed fields (a node of an older build, a half-written answer): a field
it cannot read becomes empty rather than an error, because ``wolfpack status`` must always print.
The raw objects are kept so that ``--json`` passes every field through, including ones this module
does not know.

``render_tree`` prints the groups in the node's order, each followed by its resources indented, the
way the left pane of Cluster Administrator lists them. A resource whose group is Online but is not
itself Online stands out by its state; the owner and the preferred owners go on the group's row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

MAX_GROUPS = 1000  # bounds what one (possibly corrupt) answer can make us print
MAX_RESOURCES = 1000


@dataclass(frozen=True, slots=True)
class ResourceView:
    name: str
    type: str
    state: str
    depends_on: tuple[str, ...]
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True, slots=True)
class GroupView:
    name: str
    state: str
    owner: str | None
    target: str | None
    preferred_owners: tuple[str, ...]
    resources: tuple[ResourceView, ...]
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False)


def _text(value: Any, default: str = "") -> str:
    return value if isinstance(value, str) else default


def _names(value: Any) -> tuple[str, ...]:
    return tuple(v for v in value if isinstance(v, str)) if isinstance(value, list) else ()


def parse_resource(raw: Mapping[str, Any]) -> ResourceView:
    return ResourceView(
        name=_text(raw.get("name"), "?"),
        type=_text(raw.get("type")),
        state=_text(raw.get("state"), "?"),
        depends_on=_names(raw.get("depends_on")),
        raw=raw,
    )


def parse_group(raw: Mapping[str, Any]) -> GroupView:
    resources = raw.get("resources")
    rlist = [r for r in resources if isinstance(r, dict)] if isinstance(resources, list) else []
    return GroupView(
        name=_text(raw.get("name"), "?"),
        state=_text(raw.get("state"), "?"),
        owner=raw.get("owner") if isinstance(raw.get("owner"), str) else None,
        target=raw.get("target") if isinstance(raw.get("target"), str) else None,
        preferred_owners=_names(raw.get("preferred_owners")),
        resources=tuple(parse_resource(r) for r in rlist[:MAX_RESOURCES]),
        raw=raw,
    )


def parse_groups(raw: Any) -> tuple[GroupView, ...]:
    """The ``groups`` of a status answer; anything that is not a list of objects gives no groups."""
    if not isinstance(raw, list):
        return ()
    return tuple(parse_group(g) for g in raw[:MAX_GROUPS] if isinstance(g, dict))


def group_json(g: GroupView) -> dict[str, Any]:
    """Every field the node sent, with the documented ones always present and well-typed."""
    return {
        **g.raw,
        "name": g.name,
        "state": g.state,
        "owner": g.owner,
        "target": g.target,
        "preferred_owners": list(g.preferred_owners),
        "resources": [
            {**r.raw, "name": r.name, "type": r.type, "state": r.state, "depends_on": list(r.depends_on)}
            for r in g.resources
        ],
    }


def group_note(g: GroupView) -> str:
    notes = []
    if g.target is not None:
        notes.append(f"moving to {g.target}")
    if g.preferred_owners:
        notes.append(f"preferred {', '.join(g.preferred_owners)}")
    return f"({'; '.join(notes)})" if notes else ""


def tree_rows(groups: Sequence[GroupView]) -> list[list[str]]:
    rows: list[list[str]] = []
    for g in groups:
        rows.append([g.name, "", g.state, g.owner or "-", group_note(g)])
        rows += [["  " + r.name, r.type, r.state, "", ""] for r in g.resources]
    return rows


def render_tree(groups: Sequence[GroupView]) -> str:
    """The tree under a header; columns separated by at least two spaces."""
    return render_table(["GROUP / RESOURCE", "TYPE", "STATE", "OWNER", ""], tree_rows(groups))


# -- one object, as cluster.exe /status and /prop print it -----------------------------------------------


def value_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ", ".join(value_text(v) for v in value) or "-"
    if isinstance(value, dict):
        return ", ".join(f"{k}={value_text(v)}" for k, v in value.items()) or "-"
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def render_fields(fields: Sequence[tuple[str, Any]]) -> str:
    width = max((len(k) for k, _ in fields), default=0) + 1
    return "\n".join(f"{(k + ':').ljust(width)}  {value_text(v)}" for k, v in fields)


def render_props(props: Mapping[str, Any]) -> str:
    """name = value, one a line, as cluster.exe /prop lists them."""
    width = max((len(k) for k in props), default=0)
    return "\n".join(f"{k.ljust(width)} = {value_text(v)}" for k, v in props.items()) or "(no properties)"


def render_group(raw: Mapping[str, Any]) -> str:
    g = parse_group(raw)
    moving = f", moving to {g.target}" if g.target else ""
    lines = [f"Group {g.name}: {g.state} on {g.owner or 'no node'}{moving}"]
    fields: list[tuple[str, Any]] = [("preferred owners", list(g.preferred_owners))]
    if isinstance(raw.get("props"), dict):
        fields.append(("properties", raw["props"]))
    lines.append(render_fields(fields))
    if g.resources:
        rows = [[r.name, r.type, r.state, value_text(list(r.depends_on))] for r in g.resources]
        lines += ["", render_table(["RESOURCE", "TYPE", "STATE", "DEPENDS ON"], rows)]
    else:
        lines.append("no resources")
    return "\n".join(lines)


def render_resource(raw: Mapping[str, Any]) -> str:
    r = parse_resource(raw)
    owners = raw.get("possible_owners")
    fields: list[tuple[str, Any]] = [
        ("type", r.type),
        ("group", raw.get("group")),
        ("depends on", list(r.depends_on)),
        ("possible owners", owners if owners else "every node"),
        ("properties", raw.get("props", {})),
        ("private", raw.get("private", {})),
    ]
    return f"Resource {r.name}: {r.state}\n{render_fields(fields)}"


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in [list(headers), *map(list, rows)]
    )
