"""``wolfpack status`` composition: a pure function of the configuration and what each node said."""

from __future__ import annotations

import json
from typing import Any

from nodeagent.cli.probe import ControlState, NodeObservation
from nodeagent.cli.procs import ProcessState
from nodeagent.cli.status import as_json, choose_view, compose, render
from nodeagent.config import ClusterConfig, default_config_dict
from nodeagent.core.snapshot import NodeState

CONFIG = ClusterConfig.from_dict(default_config_dict(number=5, key=bytes(32), nodes=3))
NAMES = {1: "NODE1", 2: "NODE2", 3: "NODE3"}


def answer(
    node_id: int,
    own_state: str,
    epoch: int,
    members: list[int],
    owner: int | None,
    states: dict[int, str] | None = None,
    *,
    phase: str = "MEMBER",
    interfaces: list[dict[str, Any]] | None = None,
    faults: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    if states is None:
        states = {i: ("Up" if i in members else "Down") for i in NAMES}
    return {
        "node_id": node_id,
        "name": NAMES[node_id],
        "incarnation": 1,
        "phase": phase,
        "own_state": own_state,
        "epoch": epoch,
        "members": members,
        "quorum_owner": owner,
        "holds_quorum": owner == node_id,
        "paused": False,
        "node_states": {str(k): v for k, v in states.items()},
        "interfaces": interfaces or [],
        "counters": {},
        "pid": 1000 + node_id,
        "private_ip": f"127.5.1.{node_id}",
        "public_ip": f"127.5.2.{node_id}",
        "bad_datagrams": {},
        "faults": faults or [],
        "mono_s": 100.0,
    }


def answering(node_id: int, ans: dict[str, Any]) -> NodeObservation:
    return NodeObservation(
        name=NAMES[node_id],
        process=ProcessState.RUNNING,
        pid=1000 + node_id,
        control=ControlState.OK,
        answer=ans,
        incarnation=ans.get("incarnation"),
        cpu_percent=1.5,
        rss_bytes=30 * 2**20,
    )


def dead(node_id: int, incarnation: int | None = 2) -> NodeObservation:
    return NodeObservation(
        name=NAMES[node_id],
        process=ProcessState.NOT_RUNNING,
        pid=None,
        control=ControlState.NOT_RUNNING,
        answer=None,
        incarnation=incarnation,
        error="not there",
    )


def frozen(node_id: int) -> NodeObservation:
    return NodeObservation(
        name=NAMES[node_id],
        process=ProcessState.FROZEN,
        pid=1000 + node_id,
        control=ControlState.NO_ANSWER,
        answer=None,
        incarnation=1,
        cpu_percent=0.0,
        rss_bytes=30 * 2**20,
        error="frozen",
    )


def states(status: Any) -> dict[str, str]:
    return {n.name: n.state.value for n in status.nodes}


def test_all_up() -> None:
    obs = [answering(i, answer(i, "Up", 1, [1, 2, 3], 1)) for i in NAMES]
    status = compose(CONFIG, obs)
    assert states(status) == {"NODE1": "Up", "NODE2": "Up", "NODE3": "Up"}
    assert status.quorum_owner == "NODE1"
    assert status.epoch == 1
    assert status.view_from == "NODE1"  # the owner's view among equals
    assert status.interfaces == ()
    node1 = status.nodes[0]
    assert (node1.private_ip, node1.public_ip, node1.pid) == ("127.5.1.1", "127.5.2.1", 1001)


def test_killed_node_is_down_once_detected() -> None:
    obs = [dead(1), answering(2, answer(2, "Up", 2, [2, 3], 2)), answering(3, answer(3, "Up", 2, [2, 3], 2))]
    status = compose(CONFIG, obs)
    assert states(status) == {"NODE1": "Down", "NODE2": "Up", "NODE3": "Up"}
    assert status.quorum_owner == "NODE2"
    node1 = status.nodes[0]
    assert node1.pid is None and node1.cpu_percent is None and node1.rss_bytes is None
    assert node1.control is ControlState.NOT_RUNNING and node1.process is ProcessState.NOT_RUNNING
    assert node1.incarnation == 2  # from the incarnation file
    assert node1.note == "not running: wolfpack start NODE1"


def test_killed_node_before_detection_is_what_the_cluster_says() -> None:
    obs = [
        dead(1),
        answering(2, answer(2, "Up", 1, [1, 2, 3], 1)),
        answering(3, answer(3, "Up", 1, [1, 2, 3], 1)),
    ]
    status = compose(CONFIG, obs)
    assert states(status)["NODE1"] == "Up"
    assert "not noticed yet" in (status.nodes[0].note or "")
    assert status.quorum_owner == "NODE1"  # as the members believe, until they regroup


def test_frozen_node() -> None:
    obs = [
        answering(1, answer(1, "Up", 2, [1, 3], 1)),
        frozen(2),
        answering(3, answer(3, "Up", 2, [1, 3], 1)),
    ]
    status = compose(CONFIG, obs)
    node2 = status.nodes[1]
    assert node2.state is NodeState.DOWN
    assert node2.process is ProcessState.FROZEN
    assert node2.control is ControlState.NO_ANSWER
    assert node2.pid == 1002 and node2.rss_bytes == 30 * 2**20
    assert node2.note == "frozen (SIGSTOP): wolfpack thaw NODE2"


def test_halted_and_joining_nodes_show_their_own_state() -> None:
    obs = [
        answering(1, answer(1, "Up", 4, [1], 1)),
        answering(2, answer(2, "Halted", 3, [1, 2], 1, phase="HALTED")),
        answering(3, answer(3, "Joining", 0, [], None, phase="JOINING")),
    ]
    status = compose(CONFIG, obs)
    assert states(status) == {"NODE1": "Up", "NODE2": "Halted", "NODE3": "Joining"}
    assert status.nodes[1].own_state is NodeState.HALTED
    assert status.nodes[2].phase == "JOINING"


def test_partitioned_old_member_shows_the_clusters_word() -> None:
    # NODE3 was cut off: the majority moved on to epoch 5 without it; NODE3 still believes epoch 4.
    obs = [
        answering(1, answer(1, "Up", 5, [1, 2], 1)),
        answering(2, answer(2, "Up", 5, [1, 2], 1)),
        answering(3, answer(3, "Up", 4, [1, 2, 3], 1)),
    ]
    status = compose(CONFIG, obs)
    assert states(status) == {"NODE1": "Up", "NODE2": "Up", "NODE3": "Down"}
    assert status.nodes[2].own_state is NodeState.UP
    assert status.nodes[2].note == "says Up in epoch 4 (partitioned)"
    assert status.view_from == "NODE1" and status.epoch == 5


def test_the_highest_epoch_wins_and_the_owner_is_preferred_among_equals() -> None:
    stale = answer(1, "Up", 3, [1, 2, 3], 1)
    fresh_member = answer(2, "Up", 4, [2, 3], 3, {1: "Down", 2: "Up", 3: "Up"})
    fresh_owner = answer(3, "Up", 4, [2, 3], 3, {1: "Down", 2: "Up", 3: "Up"})
    view = choose_view([answering(1, stale), answering(2, fresh_member), answering(3, fresh_owner)])
    assert view is not None and view.name == "NODE3"
    view = choose_view([answering(1, stale), answering(2, fresh_member)])
    assert view is not None and view.name == "NODE2"


def test_paused_node() -> None:
    view_states = {1: "Up", 2: "Paused", 3: "Up"}
    obs = [
        answering(1, answer(1, "Up", 2, [1, 2, 3], 1, view_states)),
        answering(2, answer(2, "Paused", 2, [1, 2, 3], 1, view_states)),
        answering(3, answer(3, "Up", 2, [1, 2, 3], 1, view_states)),
    ]
    assert states(compose(CONFIG, obs))["NODE2"] == "Paused"


def test_no_member_answers() -> None:
    obs = [dead(1), frozen(2), answering(3, answer(3, "Joining", 0, [], None, phase="JOINING"))]
    status = compose(CONFIG, obs)
    assert states(status) == {"NODE1": "Down", "NODE2": "Down", "NODE3": "Joining"}
    assert status.quorum_owner is None and status.epoch is None and status.view_from is None
    assert "No answering node is a member" in render(status)


def test_everything_down() -> None:
    status = compose(CONFIG, [dead(1, None), dead(2, None), dead(3, None)])
    assert states(status) == {"NODE1": "Down", "NODE2": "Down", "NODE3": "Down"}
    text = render(status)
    assert "No node is running (wolfpack up to start them)." in text
    assert "Notes:" not in text


def test_malformed_answers_do_not_break_the_picture() -> None:
    garbage: dict[str, Any] = {
        "own_state": 7,
        "epoch": "x",
        "members": "all",
        "node_states": [],
        "faults": {},
    }
    obs = [answering(1, garbage), answering(2, answer(2, "Up", 2, [2], 2)), dead(3)]
    status = compose(CONFIG, obs)
    assert states(status) == {"NODE1": "Down", "NODE2": "Up", "NODE3": "Down"}
    assert status.nodes[0].faults == ()
    json.dumps(as_json(status))


def test_interface_problems_skip_down_peers() -> None:
    ifaces = [
        {"peer": 1, "net": "private", "state": "Failed", "last_heard_s": None},
        {"peer": 3, "net": "private", "state": "Failed", "last_heard_s": 90.0},
        {"peer": 3, "net": "public", "state": "Up", "last_heard_s": 99.9},
    ]
    obs = [
        dead(1),
        answering(2, answer(2, "Up", 2, [2, 3], 2, interfaces=ifaces)),
        answering(3, answer(3, "Up", 2, [2, 3], 2, faults=[{"kind": "cut", "net": "private", "peer": None}])),
    ]
    status = compose(CONFIG, obs)
    assert [(p.observer, p.peer, p.net, p.state) for p in status.interfaces] == [
        ("NODE2", "NODE3", "private", "Failed")
    ]
    text = render(status)
    assert "NODE2 sees NODE3 on private: Failed" in text
    assert "NODE3: cut private to every peer" in text


def test_json_document_has_the_documented_fields() -> None:
    obs = [dead(1), frozen(2), answering(3, answer(3, "Up", 2, [3], 3))]
    doc = json.loads(json.dumps(as_json(compose(CONFIG, obs))))
    assert doc["cluster"] == {
        "name": "WOLFPACK",
        "number": 5,
        "speed": 10.0,
        "quorum": "disk",
        "arbitration": "scsi2",
        "quorum_disk": "Q",
        "edition": "enterprise",
    }
    assert doc["quorum_owner"] == "NODE3" and doc["epoch"] == 2
    required = {
        "name", "id", "state", "pid", "private_ip", "public_ip", "incarnation",
        "cpu_percent", "rss_bytes", "control", "process",
    }  # fmt: skip
    for node in doc["nodes"]:
        assert required <= set(node)
    by_name = {n["name"]: n for n in doc["nodes"]}
    assert (by_name["NODE1"]["control"], by_name["NODE1"]["process"]) == ("not running", "not running")
    assert (by_name["NODE2"]["control"], by_name["NODE2"]["process"]) == ("no answer", "frozen")
    assert (by_name["NODE3"]["control"], by_name["NODE3"]["process"]) == ("ok", "running")
    assert by_name["NODE1"]["pid"] is None and by_name["NODE3"]["pid"] == 1003


def test_table() -> None:
    obs = [dead(1), frozen(2), answering(3, answer(3, "Up", 2, [3], 3))]
    text = render(compose(CONFIG, obs))
    lines = text.splitlines()
    assert lines[0].startswith("Cluster WOLFPACK (number 5, speed 10, enterprise)")
    assert "owner: NODE3" in lines[0] and "epoch: 2" in lines[0]
    header = lines[2].split()
    assert header == [
        "NODE",
        "ID",
        "STATE",
        "PID",
        "PRIVATE",
        "PUBLIC",
        "INC",
        "CPU%",
        "RSS",
        "PROCESS",
        "CONTROL",
    ]
    assert lines[3].split()[:4] == ["NODE1", "1", "Down", "-"]
    assert lines[4].split()[-3:] == ["frozen", "no", "answer"]
    assert lines[5].split()[-4:] == ["1.5", "30.0M", "running", "ok"]
    assert "Not answering the control socket: NODE1, NODE2" in text
