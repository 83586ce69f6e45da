"""``wolfpack node | group | resource | cluster``: parsing, request assembly, routing, waiting, output.

No node processes: the control client is replaced by ``FakeCluster``, which answers status and admin
requests from canned data and records every request.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nodeagent.cli import admincmd, clusterdir, main
from nodeagent.cli.admincmd import parse_assignment, parse_value
from nodeagent.cli.clusterdir import ClusterDir, UpOptions
from nodeagent.config import ClusterConfig
from nodeagent.errors import NodeUnreachable
from nodeagent.runtime import control_client


def group(
    name: str = "EVS1",
    state: str = "Online",
    owner: str | None = "NODE2",
    target: str | None = None,
    rstates: tuple[str, str] = ("Online", "Online"),
) -> dict[str, Any]:
    return {
        "name": name, "state": state, "owner": owner, "target": target,
        "preferred_owners": ["NODE2", "NODE1"],
        "props": {"FailoverThreshold": 10},
        "resources": [
            {"name": f"{name} IP", "type": "IP Address", "group": name, "state": rstates[0], "depends_on": [],
             "possible_owners": [], "props": {}, "private": {"Address": "127.7.3.9"}},
            {"name": f"{name} Name", "type": "Network Name", "group": name, "state": rstates[1],
             "depends_on": [f"{name} IP"], "possible_owners": [], "props": {}, "private": {"Name": name}},
        ],
    }  # fmt: skip


class FakeCluster:
    """Control sockets of a 3-node cluster: status answers name ``owner`` as the quorum owner."""

    def __init__(self, config: ClusterConfig, owner: str = "NODE1", silent: tuple[str, ...] = ()) -> None:
        self.config = config
        self.owner = owner
        self.silent = set(silent)
        self.admin_broken: set[str] = set()  # answer status, but the admin request fails on the socket
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.replies: dict[str, dict[str, Any]] = {}  # admin cmd -> the whole answer
        self.groups: list[dict[str, Any]] = [group()]
        self.timeline: list[list[dict[str, Any]]] = []  # groups seen by successive polls after an admin op
        self.admin_done = False
        self.ops: dict[str, dict[str, Any]] = {}  # other ops -> answer

    def request(self, sock_path: Path | str, obj: dict[str, Any], timeout_s: float = 5.0) -> dict[str, Any]:
        name = Path(sock_path).parent.name
        if name in self.silent:
            raise NodeUnreachable(f"node control socket {sock_path}: not there")
        op = obj["op"]
        if op == "admin" and name in self.admin_broken:
            raise NodeUnreachable(f"node control socket {sock_path}: connection reset")
        self.requests.append((name, obj))
        if op == "status":
            if self.admin_done and self.timeline:
                self.groups = self.timeline.pop(0)
            return {"ok": True, "node": self.node(name)}
        if op == "admin":
            self.admin_done = True
            default = {"ok": True, "result": {"name": obj["args"].get("name", "")}}
            return self.replies.get(obj["cmd"], default)
        return self.ops.get(op, {"ok": False, "error": f"unknown op {op!r} (known: status)"})

    def node(self, name: str) -> dict[str, Any]:
        me = self.config.node(name)
        members = [n.id for n in self.config.nodes if n.name not in self.silent or n.name == self.owner]
        owner_id = self.config.node(self.owner).id
        return {
            "node_id": me.id, "name": name, "incarnation": 2, "phase": "MEMBER", "own_state": "Up",
            "epoch": 4,
            "members": members, "quorum_owner": owner_id, "holds_quorum": me.id == owner_id, "paused": False,
            "node_states": {}, "interfaces": [], "counters": {}, "pid": 99999999, "faults": [],
            "groups": json.loads(json.dumps(self.groups)), "db_version": 7,
        }  # fmt: skip

    def admin_requests(self) -> list[tuple[str, str, dict[str, Any]]]:
        return [(n, o["cmd"], o["args"]) for n, o in self.requests if o["op"] == "admin"]


@pytest.fixture
def lab() -> Iterator[tuple[ClusterDir, ClusterConfig]]:
    root = Path(tempfile.mkdtemp(prefix="wp", dir="/tmp"))
    try:
        yield clusterdir.create_cluster(root / "lab", UpOptions(), bindable=lambda c: True)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(admincmd, "POLL_INTERVAL_S", 0.001)


def fake(lab: tuple[ClusterDir, ClusterConfig], monkeypatch: pytest.MonkeyPatch, **kw: Any) -> FakeCluster:
    nodes = FakeCluster(lab[1], **kw)
    monkeypatch.setattr(control_client, "request", nodes.request)
    return nodes


def run(
    capsys: pytest.CaptureFixture[str], lab: tuple[ClusterDir, ClusterConfig], *argv: str
) -> tuple[int, str, str]:
    code = main.main([*argv, "--dir", str(lab[0].root)])
    out, err = capsys.readouterr()
    return code, out, err


# -- key=value ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("3", 3), ("-2", -2), ("2.5", 2.5), ("1e3", 1000.0), ("true", True), ("FALSE", False),
        ("127.7.3.9", "127.7.3.9"), ("EVS1", "EVS1"), ("", ""), ("inf", "inf"), ("nan", "nan"),
    ],
)  # fmt: skip
def test_values_are_int_float_bool_or_string(text: str, value: Any) -> None:
    parsed = parse_value(text)
    assert parsed == value and type(parsed) is type(value)


def test_assignments() -> None:
    assert parse_assignment("Address=127.7.3.9") == ("Address", "127.7.3.9")
    assert parse_assignment("CommandLine=a=b") == ("CommandLine", "a=b")
    for bad in ("novalue", "=3"):
        with pytest.raises(argparse.ArgumentTypeError, match="expected name=value"):
            parse_assignment(bad)


# -- parsing --------------------------------------------------------------------------------------------

VERBS = [
    ["node", "NODE2", "status"], ["node", "NODE2", "pause"], ["node", "NODE2", "resume"],
    ["node", "N", "evict"],
    ["group", "G", "status"], ["group", "G", "create"], ["group", "G", "delete"], ["group", "G", "online"],
    ["group", "G", "offline"], ["group", "G", "move"], ["group", "G", "owners"], ["group", "G", "prop"],
    ["resource", "R", "status"], ["resource", "R", "create"], ["resource", "R", "delete"],
    ["resource", "R", "online"], ["resource", "R", "offline"], ["resource", "R", "fail"],
    ["resource", "R", "deps"], ["resource", "R", "owners"], ["resource", "R", "prop"], ["cluster", "prop"],
]  # fmt: skip


@pytest.mark.parametrize("argv", [["node"], ["group"], ["resource"], ["cluster"], *VERBS], ids=" ".join)
def test_every_verb_has_help_with_examples(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main.main([*argv, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out and f"wolfpack {argv[0]} " in out and "--dir DIR" in out


def test_parsing_of_the_verbs() -> None:
    p = main.build_parser()
    a = p.parse_args(["group", "EVS1", "create", "--preferred", "node2, NODE1", "--json"])
    assert (a.name, a.verb, a.preferred, a.json) == ("EVS1", "create", ["node2", "NODE1"], True)
    a = p.parse_args(["group", "EVS1", "move"])
    assert (a.to, a.wait, a.timeout_s) == (None, True, 60.0)
    a = p.parse_args(["group", "EVS1", "move", "--to", "NODE1", "--no-wait", "--timeout-s", "5"])
    assert (a.to, a.wait, a.timeout_s) == ("NODE1", False, 5.0)
    a = p.parse_args(["group", "EVS1", "online", "--node", "NODE3"])
    assert (a.node, a.wait) == ("NODE3", True)
    assert p.parse_args(["group", "EVS1", "offline", "--no-wait"]).wait is False
    assert p.parse_args(["group", "EVS1", "owners", "NODE2", "NODE1"]).nodes == ["NODE2", "NODE1"]
    a = p.parse_args(["group", "EVS1", "prop", "FailoverThreshold=2", "FailoverPeriod=0.5"])
    assert a.assign == [("FailoverThreshold", 2), ("FailoverPeriod", 0.5)]
    a = p.parse_args(["resource", "IP", "create", "--group", "EVS1", "--type", "ip address", "--separate",
                      "--priv", "Address=127.7.3.9", "Port=3344"])  # fmt: skip
    assert (a.group, a.type, a.separate) == ("EVS1", "IP Address", True)
    assert a.priv == [("Address", "127.7.3.9"), ("Port", 3344)]
    assert p.parse_args(["resource", "N", "deps", "add", "IP"]).change == ["add", "IP"]
    assert p.parse_args(["resource", "N", "deps"]).change is None
    assert p.parse_args(["resource", "N", "owners", "remove", "NODE3"]).change == ["remove", "NODE3"]
    a = p.parse_args(["resource", "N", "prop", "RestartThreshold=1", "--priv", "Name=EVS1"])
    assert (a.assign, a.priv) == ([("RestartThreshold", 1)], [("Name", "EVS1")])
    assert p.parse_args(["cluster", "prop", "QuorumLogSize=4096"]).assign == [("QuorumLogSize", 4096)]
    assert p.parse_args(["node", "NODE2", "--dir", "/tmp/x", "pause"]).dir_opt == "/tmp/x"


@pytest.mark.parametrize(
    "argv",
    [
        ["group", "EVS1"],
        ["group", "EVS1", "bogus"],
        ["group", "EVS1", "prop", "novalue"],
        ["group", "EVS1", "move", "--timeout-s", "x"],
        ["resource", "R", "create", "--group", "G"],
        ["resource", "R", "create", "--group", "G", "--type", "Toaster"],
        ["resource", "R", "deps", "add"],
        ["resource", "R", "deps", "plus", "X"],
        ["resource", "R", "owners", "add", "N1", "N2"],
        ["node", "NODE1", "start"],
        ["cluster"],
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main.main(argv)
    assert exc.value.code == 2
    assert "usage:" in capsys.readouterr().err


# -- request assembly -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "cmd", "args"),
    [
        (["node", "node2", "pause"], "node.pause", {"node": "NODE2"}),
        (["node", "NODE2", "resume"], "node.resume", {"node": "NODE2"}),
        (["node", "NODE3", "evict"], "node.evict", {"node": "NODE3"}),
        (["pause", "node2"], "node.pause", {"node": "NODE2"}),
        (["resume", "NODE2"], "node.resume", {"node": "NODE2"}),
        (["group", "EVS1", "status"], "group.status", {"name": "EVS1"}),
        (["group", "EVS1", "create", "--preferred", "node2,node1"], "group.create",
         {"name": "EVS1", "preferred_owners": ["NODE2", "NODE1"]}),
        (["group", "EVS1", "create"], "group.create", {"name": "EVS1", "preferred_owners": []}),
        (["group", "EVS1", "delete"], "group.delete", {"name": "EVS1"}),
        (["group", "EVS1", "online", "--no-wait"], "group.online", {"name": "EVS1"}),
        (["group", "EVS1", "online", "--node", "node3", "--no-wait"], "group.online",
         {"name": "EVS1", "node": "NODE3"}),
        (["group", "EVS1", "offline", "--no-wait"], "group.offline", {"name": "EVS1"}),
        (["group", "EVS1", "move", "--no-wait"], "group.move", {"name": "EVS1"}),
        (["group", "EVS1", "move", "--to", "node1", "--no-wait"], "group.move",
         {"name": "EVS1", "node": "NODE1"}),
        (["group", "EVS1", "owners"], "group.owners", {"name": "EVS1"}),
        (["group", "EVS1", "owners", "node1", "NODE2"], "group.owners",
         {"name": "EVS1", "nodes": ["NODE1", "NODE2"]}),
        (["group", "EVS1", "prop"], "group.prop", {"name": "EVS1", "props": {}}),
        (["group", "EVS1", "prop", "FailoverThreshold=2", "AutoFailbackType=1"], "group.prop",
         {"name": "EVS1", "props": {"FailoverThreshold": 2, "AutoFailbackType": 1}}),
        (["resource", "IP", "create", "--group", "EVS1", "--type", "IP Address",
          "--priv", "Address=127.7.3.9"],
         "resource.create",
         {"name": "IP", "group": "EVS1", "type": "IP Address", "separate": False,
          "private": {"Address": "127.7.3.9"}}),
        (["resource", "App", "create", "--group", "G", "--type", "generic application", "--separate"],
         "resource.create",
         {"name": "App", "group": "G", "type": "Generic Application", "separate": True, "private": {}}),
        (["resource", "IP", "status"], "resource.status", {"name": "IP"}),
        (["resource", "IP", "delete"], "resource.delete", {"name": "IP"}),
        (["resource", "IP", "online"], "resource.online", {"name": "IP"}),
        (["resource", "IP", "offline"], "resource.offline", {"name": "IP"}),
        (["resource", "Name", "deps"], "resource.deps", {"name": "Name"}),
        (["resource", "Name", "deps", "add", "IP"], "resource.deps", {"name": "Name", "add": "IP"}),
        (["resource", "Name", "deps", "remove", "IP"], "resource.deps", {"name": "Name", "remove": "IP"}),
        (["resource", "IP", "owners"], "resource.owners", {"name": "IP"}),
        (["resource", "IP", "owners", "add", "node3"], "resource.owners", {"name": "IP", "add": "NODE3"}),
        (["resource", "IP", "owners", "remove", "NODE1"], "resource.owners",
         {"name": "IP", "remove": "NODE1"}),
        (["resource", "IP", "prop", "RestartThreshold=1", "--priv", "Port=3345", "Network=public"],
         "resource.prop",
         {"name": "IP", "props": {"RestartThreshold": 1}, "private": {"Port": 3345, "Network": "public"}}),
        (["cluster", "prop"], "cluster.prop", {"props": {}}),
        (["cluster", "prop", "QuorumLogSize=4096", "Verbose=true"], "cluster.prop",
         {"props": {"QuorumLogSize": 4096, "Verbose": True}}),
    ],
)  # fmt: skip
def test_request_assembly(
    argv: list[str],
    cmd: str,
    args: dict[str, Any],
    lab: tuple[ClusterDir, ClusterConfig],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    nodes = fake(lab, monkeypatch, owner="NODE2")
    code, out, err = run(capsys, lab, *argv)
    assert (code, err) == (0, "")
    assert out.strip()
    assert nodes.admin_requests() == [("NODE2", cmd, args)]


def test_unknown_node_is_refused_before_asking(
    lab: tuple[ClusterDir, ClusterConfig], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    nodes = fake(lab, monkeypatch)
    code, _, err = run(capsys, lab, "group", "EVS1", "move", "--to", "NODE9")
    assert code == 1
    assert err == "wolfpack: error: unknown node 'NODE9' (this cluster has NODE1, NODE2, NODE3)\n"
    assert nodes.admin_requests() == []


# -- routing --------------------------------------------------------------------------------------------


def test_the_quorum_owner_is_asked_first(
    lab: tuple[ClusterDir, ClusterConfig], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    nodes = fake(lab, monkeypatch, owner="NODE3")
    assert run(capsys, lab, "group", "EVS1", "delete")[0] == 0
    assert [n for n, _, _ in nodes.admin_requests()] == ["NODE3"]


def test_a_silent_owner_is_skipped(
    lab: tuple[ClusterDir, ClusterConfig], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    nodes = fake(lab, monkeypatch, owner="NODE2", silent=("NODE2",))
    assert run(capsys, lab, "group", "EVS1", "delete")[0] == 0
    assert [n for n, _, _ in nodes.admin_requests()] == ["NODE1"]


def test_an_owner_whose_socket_fails_falls_back_to_the_next_node(
    lab: tuple[ClusterDir, ClusterConfig], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    nodes = fake(lab, monkeypatch, owner="NODE2")
    nodes.admin_broken = {"NODE2", "NODE1"}
    code, out, _ = run(capsys, lab, "group", "EVS1", "delete")
    assert (code, out) == (0, "deleted group EVS1\n")
    assert [n for n, _, _ in nodes.admin_requests()] == ["NODE3"]


def test_retry_moves_on_but_a_refusal_is_final(
    lab: tuple[ClusterDir, ClusterConfig], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    nodes = fake(lab, monkeypatch)
    nodes.replies["group.delete"] = {"ok": False, "error": "not the quorum owner", "rule": "retry"}
    code, _, err = run(capsys, lab, "group", "EVS1", "delete")
    assert code == 1
    assert [n for n, _, _ in nodes.admin_requests()] == ["NODE1", "NODE2", "NODE3"]
    assert err.startswith(
        "wolfpack: error: no node took the group.delete request (NODE1: not the quorum owner;"
    )


def test_no_node_answers(
    lab: tuple[ClusterDir, ClusterConfig], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake(lab, monkeypatch, silent=("NODE1", "NODE2", "NODE3"))
    code, _, err = run(capsys, lab, "group", "EVS1", "status")
    assert code == 1
    assert err.startswith("wolfpack: error: no node answers its control socket (NODE1: ")
    assert len(err.splitlines()) == 1


# -- refusals -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "answer",
    [
        {"ok": False, "error": "The group does not exist: EVS9", "rule": "The group does not exist"},
        {"ok": False, "error": "EVS9", "rule": "The group does not exist"},
    ],
)
def test_a_refusal_is_one_line_rule_then_detail(
    answer: dict[str, Any],
    lab: tuple[ClusterDir, ClusterConfig],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    nodes = fake(lab, monkeypatch)
    nodes.replies["group.online"] = answer
    code, out, err = run(capsys, lab, "group", "EVS9", "online")
    assert (code, out) == (1, "")
    assert err == "wolfpack: error: The group does not exist: EVS9\n"


def test_a_node_without_admin_requests(
    lab: tuple[ClusterDir, ClusterConfig], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    nodes = fake(lab, monkeypatch)
    nodes.replies["group.status"] = {"ok": False, "error": "unknown op 'admin' (known: status)"}
    code, _, err = run(capsys, lab, "group", "EVS1", "status")
    assert code == 1
    assert "NODE1 does not take admin requests" in err and len(err.splitlines()) == 1


# -- output ---------------------------------------------------------------------------------------------


def test_group_status_text_and_json(
    lab: tuple[ClusterDir, ClusterConfig], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    nodes = fake(lab, monkeypatch)
    nodes.replies["group.status"] = {
        "ok": True,
        "result": group(rstates=("Online", "Failed"), state="Failed"),
    }
    code, out, _ = run(capsys, lab, "group", "evs1", "status")
    assert code == 0
    assert out.splitlines() == [
        "Group EVS1: Failed on NODE2",
        "preferred owners:  NODE2, NODE1",
        "properties:        FailoverThreshold=10",
        "",
        "RESOURCE   TYPE          STATE   DEPENDS ON",
        "EVS1 IP    IP Address    Online  -",
        "EVS1 Name  Network Name  Failed  EVS1 IP",
    ]
    code, out, _ = run(capsys, lab, "group", "evs1", "status", "--json")
    assert json.loads(out) == nodes.replies["group.status"]["result"]


def test_resource_status_text(
    lab: tuple[ClusterDir, ClusterConfig], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    nodes = fake(lab, monkeypatch)
    res = {**group()["resources"][1], "props": {"RestartThreshold": 3, "PendingTimeout": 180.0}}
    nodes.replies["resource.status"] = {"ok": True, "result": res}
    code, out, _ = run(capsys, lab, "resource", "EVS1 Name", "status")
    assert code == 0
    assert out.splitlines() == [
        "Resource EVS1 Name: Online",
        "type:             Network Name",
        "group:            EVS1",
        "depends on:       EVS1 IP",
        "possible owners:  every node",
        "properties:       RestartThreshold=3, PendingTimeout=180",
        "private:          Name=EVS1",
    ]


def test_pause_uses_the_admin_verb(
    lab: tuple[ClusterDir, ClusterConfig], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    nodes = fake(lab, monkeypatch, owner="NODE3")
    assert run(capsys, lab, "pause", "node2") == (0, "NODE2 paused\n", "")
    assert run(capsys, lab, "node", "NODE2", "resume")[1] == "NODE2 resumed\n"
    assert all(o["op"] != "pause" for _, o in nodes.requests)
    assert nodes.admin_requests() == [("NODE3", "node.pause", {"node": "NODE2"}),
                                      ("NODE3", "node.resume", {"node": "NODE2"})]  # fmt: skip


def test_node_status_shows_the_groups_it_owns(
    lab: tuple[ClusterDir, ClusterConfig], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    nodes = fake(lab, monkeypatch)
    nodes.groups = [group("Cluster Group", owner="NODE1"), group("EVS1", owner="NODE2")]
    code, out, _ = run(capsys, lab, "node", "NODE2", "status")
    assert code == 0
    assert "EVS1" in out and "Cluster Group" not in out and "NODE2" in out.splitlines()[1]
    code, out, _ = run(capsys, lab, "node", "NODE2", "status", "--json")
    doc = json.loads(out)
    assert doc["node"]["name"] == "NODE2" and [g["name"] for g in doc["groups"]] == ["EVS1"]
    assert run(capsys, lab, "node", "NODE3", "status")[1].splitlines()[-1] == "NODE3 owns no group"


# -- waiting --------------------------------------------------------------------------------------------


@pytest.mark.usefixtures("fast")
def test_move_waits_until_online_on_the_new_owner(
    lab: tuple[ClusterDir, ClusterConfig], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    nodes = fake(lab, monkeypatch)
    nodes.replies["group.move"] = {
        "ok": True,
        "result": {"name": "EVS1", "owner": "NODE2", "target": "NODE1"},
    }
    nodes.timeline = [
        [group(target="NODE1", rstates=("Online", "Offline Pending"), state="Pending")],
        [group(target="NODE1", rstates=("Offline", "Offline"), state="Offline")],
        [group(owner="NODE1", rstates=("Online Pending", "Offline"), state="Pending")],
        [group(owner="NODE1")],
    ]
    code, out, err = run(capsys, lab, "group", "EVS1", "move", "--to", "NODE1")
    assert code == 0
    assert out.splitlines()[0] == "Group EVS1: Online on NODE1"
    progress = [line.split("s  ", 1)[-1] for line in err.splitlines()]
    assert progress == [
        "moving group EVS1 to NODE1",
        "EVS1: Pending on NODE2, moving to NODE1",
        "EVS1: Offline on NODE2, moving to NODE1",
        "EVS1: Pending on NODE1",
        "EVS1: Online on NODE1",
    ]
    polls = [n for n, o in nodes.requests if o["op"] == "status"][3:]  # after the first look at all three
    assert set(polls) == {"NODE1"}  # the node that took the request
    code, out, _ = run(capsys, lab, "group", "EVS1", "move", "--to", "NODE1", "--json")
    assert json.loads(out)["group"]["owner"] == "NODE1" and json.loads(out)["target"] == "NODE1"


@pytest.mark.usefixtures("fast")
def test_move_that_ends_failed_is_an_error(
    lab: tuple[ClusterDir, ClusterConfig], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(admincmd, "FAILED_STABLE_S", 0.0)
    nodes = fake(lab, monkeypatch)
    nodes.replies["group.move"] = {
        "ok": True,
        "result": {"name": "EVS1", "owner": "NODE2", "target": "NODE3"},
    }
    failed = group(owner="NODE3", rstates=("Failed", "Offline"), state="Failed")
    nodes.timeline = [[group(target="NODE3", state="Pending")], [failed]]
    code, out, err = run(capsys, lab, "group", "EVS1", "move")
    assert (code, out) == (1, "")
    assert err.splitlines()[-1] == "wolfpack: error: group EVS1 failed on NODE3 (failed: EVS1 IP)"


@pytest.mark.usefixtures("fast")
def test_move_that_goes_back_is_an_error(
    lab: tuple[ClusterDir, ClusterConfig], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    nodes = fake(lab, monkeypatch)
    nodes.replies["group.move"] = {
        "ok": True,
        "result": {"name": "EVS1", "owner": "NODE2", "target": "NODE3"},
    }
    nodes.timeline = [[group(target="NODE3", state="Pending")], [group(owner="NODE2")]]
    code, _, err = run(capsys, lab, "group", "EVS1", "move", "--to", "NODE3")
    assert code == 1
    assert err.splitlines()[-1] == "wolfpack: error: group EVS1 did not move to NODE3: it is Online on NODE2"


@pytest.mark.usefixtures("fast")
def test_waiting_is_bounded(
    lab: tuple[ClusterDir, ClusterConfig], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    nodes = fake(lab, monkeypatch)
    nodes.groups = [group(rstates=("Online Pending", "Offline"), state="Pending")]
    code, _, err = run(capsys, lab, "group", "EVS1", "online", "--timeout-s", "0.05")
    assert code == 1
    assert (
        err.splitlines()[-1] == "wolfpack: error: group EVS1 did not settle in 0.05 s: it is Pending on NODE2"
    )
    code, _, err = run(capsys, lab, "group", "EVS1", "online", "--timeout-s", "0")
    assert code == 1 and "--timeout-s 0: must be more than 0" in err


@pytest.mark.usefixtures("fast")
def test_offline_waits_until_offline(
    lab: tuple[ClusterDir, ClusterConfig], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    nodes = fake(lab, monkeypatch)
    nodes.timeline = [[group(rstates=("Online", "Offline Pending"), state="Pending")],
                      [group(rstates=("Offline", "Offline"), state="Offline")]]  # fmt: skip
    code, out, _ = run(capsys, lab, "group", "EVS1", "offline")
    assert code == 0 and out.splitlines()[0] == "Group EVS1: Offline on NODE2"


# -- resource fail --------------------------------------------------------------------------------------


def test_fail_goes_to_the_owner_of_the_group(
    lab: tuple[ClusterDir, ClusterConfig], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    nodes = fake(lab, monkeypatch)
    nodes.replies["resource.status"] = {"ok": True, "result": group()["resources"][0]}
    nodes.replies["group.status"] = {"ok": True, "result": group(owner="NODE3")}
    nodes.ops["resource_fail"] = {"ok": True}
    code, out, _ = run(capsys, lab, "resource", "evs1 ip", "fail")
    assert (code, out) == (0, "resource EVS1 IP made to fail on NODE3 (group EVS1)\n")
    assert ("NODE3", {"op": "resource_fail", "name": "EVS1 IP"}) in nodes.requests


def test_fail_on_a_node_without_the_op(
    lab: tuple[ClusterDir, ClusterConfig], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    nodes = fake(lab, monkeypatch)
    nodes.replies["resource.status"] = {"ok": True, "result": group()["resources"][0]}
    nodes.replies["group.status"] = {"ok": True, "result": group(owner="NODE2")}
    code, _, err = run(capsys, lab, "resource", "EVS1 IP", "fail")
    assert code == 1
    assert err.startswith(
        "wolfpack: error: NODE2 cannot fail a resource on demand: no resource_fail op there"
    )
    nodes.replies["group.status"] = {"ok": True, "result": group(owner=None, state="Offline")}
    code, _, err = run(capsys, lab, "resource", "EVS1 IP", "fail")
    assert err == "wolfpack: error: resource EVS1 IP is not running: group EVS1 has no owner\n"
