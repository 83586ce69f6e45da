"""The Cluster Administrator tree in ``wolfpack status``: from a crafted status, text and JSON."""

from __future__ import annotations

from typing import Any

from nodeagent.cli.probe import ControlState, NodeObservation
from nodeagent.cli.procs import ProcessState
from nodeagent.cli.status import as_json, compose, render
from nodeagent.cli.tree import parse_groups, render_tree
from nodeagent.config import ClusterConfig, default_config_dict

CONFIG = ClusterConfig.from_dict(default_config_dict(number=5, key=bytes(32), nodes=3))
NAMES = {1: "NODE1", 2: "NODE2", 3: "NODE3"}


def answer(
    node_id: int, own_state: str, epoch: int, members: list[int], owner: int | None, phase: str = "MEMBER"
) -> dict[str, Any]:
    return {
        "node_id": node_id, "name": NAMES[node_id], "incarnation": 1, "phase": phase, "own_state": own_state,
        "epoch": epoch, "members": members, "quorum_owner": owner, "holds_quorum": owner == node_id,
        "paused": False, "node_states": {}, "interfaces": [], "counters": {}, "pid": 1000 + node_id,
        "faults": [], "mono_s": 100.0,
    }  # fmt: skip


def answering(node_id: int, ans: dict[str, Any]) -> NodeObservation:
    return NodeObservation(
        name=NAMES[node_id], process=ProcessState.RUNNING, pid=1000 + node_id, control=ControlState.OK,
        answer=ans, incarnation=1,
    )  # fmt: skip


def dead(node_id: int) -> NodeObservation:
    return NodeObservation(
        name=NAMES[node_id], process=ProcessState.NOT_RUNNING, pid=None, control=ControlState.NOT_RUNNING,
        answer=None, incarnation=None, error="not there",
    )  # fmt: skip


def res(name: str, rtype: str, state: str = "Online", deps: list[str] | None = None) -> dict[str, Any]:
    return {"name": name, "type": rtype, "group": "", "state": state, "depends_on": deps or [],
            "possible_owners": [], "props": {}, "private": {}}  # fmt: skip


GROUPS: list[dict[str, Any]] = [
    {"name": "Cluster Group", "state": "Online", "owner": "NODE1", "target": None, "preferred_owners": [],
     "props": {}, "resources": [res("Cluster IP Address", "IP Address"), res("Cluster Name", "Network Name"),
                                res("Disk Q:", "Physical Disk")]},
    {"name": "EVS1", "state": "Partially Online", "owner": "NODE2", "target": "NODE3",
     "preferred_owners": ["NODE2", "NODE1"], "props": {}, "custom": 1,
     "resources": [res("EVS1 IP", "IP Address"),
                   res("EVS1 Name", "Network Name", "Online Pending", ["EVS1 IP"])]},
]  # fmt: skip

TREE = [
    "GROUP / RESOURCE      TYPE           STATE             OWNER",
    "Cluster Group                        Online            NODE1",
    "  Cluster IP Address  IP Address     Online",
    "  Cluster Name        Network Name   Online",
    "  Disk Q:             Physical Disk  Online",
    "EVS1                                 Partially Online  NODE2  (moving to NODE3; preferred NODE2, NODE1)",
    "  EVS1 IP             IP Address     Online",
    "  EVS1 Name           Network Name   Online Pending",
]


def with_groups(node_id: int, groups: list[dict[str, Any]], epoch: int = 3, owner: int = 1) -> dict[str, Any]:
    return {**answer(node_id, "Up", epoch, [1, 2, 3], owner), "groups": groups, "db_version": 12}


def test_render_tree() -> None:
    assert render_tree(parse_groups(GROUPS)).splitlines() == TREE


def test_status_shows_the_tree_from_the_view_node() -> None:
    stale = [{**GROUPS[0], "owner": "NODE3"}]
    obs = [answering(1, with_groups(1, GROUPS)), answering(2, with_groups(2, stale)), dead(3)]
    status = compose(CONFIG, obs)
    assert status.view_from == "NODE1" and status.db_version == 12
    text = render(status).splitlines()
    start = text.index("Groups (as NODE1 sees them):")
    assert text[start + 1 : start + 1 + len(TREE)] == TREE
    doc = as_json(status)
    assert doc["db_version"] == 12
    assert [g["name"] for g in doc["groups"]] == ["Cluster Group", "EVS1"]
    evs = doc["groups"][1]
    assert (evs["state"], evs["owner"], evs["target"], evs["custom"]) == (
        "Partially Online",
        "NODE2",
        "NODE3",
        1,
    )
    assert evs["resources"][1] == {**GROUPS[1]["resources"][1], "depends_on": ["EVS1 IP"]}


def test_no_groups_without_a_view_or_from_an_old_node() -> None:
    old = [answering(i, answer(i, "Up", 1, [1, 2, 3], 1)) for i in NAMES]
    status = compose(CONFIG, old)
    assert status.groups == () and as_json(status)["groups"] == []
    assert "Groups" not in render(status)
    halted = [
        answering(1, {**answer(1, "Halted", 2, [], None, phase="HALTED"), "groups": GROUPS}),
        dead(2),
        dead(3),
    ]
    assert as_json(compose(CONFIG, halted))["groups"] == []


def test_malformed_groups_do_not_break_status() -> None:
    raw = [GROUPS[0], "junk", {"name": 5, "resources": "x"}, {"name": "G", "resources": [{"type": 3}, 7]}]
    groups = parse_groups(raw)
    assert [g.name for g in groups] == ["Cluster Group", "?", "G"]
    assert groups[2].resources[0].name == "?" and groups[2].resources[0].type == ""
    assert parse_groups({"not": "a list"}) == ()
    render_tree(groups)  # must not raise
