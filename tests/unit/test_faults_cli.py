"""The link-fault API and CLI (faultcmd, main) against fake nodes that run the real rule tables and
control dispatch; status marks of the interfaces under faults."""

from __future__ import annotations

import json
import random
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nodeagent.cli import clusterdir, faultcmd, main
from nodeagent.cli.clusterdir import ClusterDir, UpOptions
from nodeagent.cli.probe import ControlState, NodeObservation
from nodeagent.cli.procs import ProcessState
from nodeagent.cli.status import compose, fault_marks, render
from nodeagent.config import ClusterConfig
from nodeagent.errors import ConfigError, NodeUnreachable, WolfpackError
from nodeagent.runtime import control_client
from nodeagent.runtime.control import dispatch
from nodeagent.runtime.faults import FaultTable, fault_from_request, rules_to_json


class FakeNode:
    """A ControlTarget with a real FaultTable (the fault part of NodeRuntime, without the rest)."""

    def __init__(self, config: ClusterConfig, name: str) -> None:
        self.config = config
        self.id = config.node(name).id
        self.table = FaultTable(random.Random(1))

    def fault_add(self, request: dict[str, Any], kind: str | None = None) -> int:
        fault = fault_from_request(
            request, lambda n: self.config.node(n).id, self.id, kind=kind, reorder_default_ms=240.0
        )
        return self.table.install(fault)[0].id

    def fault_cut(self, request: dict[str, Any]) -> None:
        self.fault_add(request, kind="cut")

    def fault_heal(self, fault_id: int | None = None) -> int:
        return len(self.table.heal(fault_id))

    def faults(self) -> list[dict[str, Any]]:
        return rules_to_json(self.table.rules, lambda i: self.config.node(i).name)


class Cluster:
    def __init__(self, config: ClusterConfig, silent: tuple[str, ...] = ()) -> None:
        self.nodes = {n.name: FakeNode(config, n.name) for n in config.nodes}
        self.silent = silent
        self.requests: list[tuple[str, dict[str, Any]]] = []

    def request(self, sock_path: Path | str, obj: dict[str, Any], timeout_s: float = 5.0) -> dict[str, Any]:
        name = Path(sock_path).parent.name
        if name in self.silent:
            raise NodeUnreachable("not there")
        self.requests.append((name, obj))
        reply, _ = dispatch(self.nodes[name], json.dumps(obj).encode())  # type: ignore[arg-type]
        return reply


@pytest.fixture
def lab() -> Iterator[tuple[ClusterDir, ClusterConfig]]:
    root = Path(tempfile.mkdtemp(prefix="wp", dir="/tmp"))
    try:
        yield clusterdir.create_cluster(root / "lab", UpOptions(nodes=4), bindable=lambda c: True)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def fake(
    lab: tuple[ClusterDir, ClusterConfig], mp: pytest.MonkeyPatch, silent: tuple[str, ...] = ()
) -> Cluster:
    cluster = Cluster(lab[1], silent)
    mp.setattr(control_client, "request", cluster.request)
    return cluster


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_add_installs_on_the_node_only_except_a_cut_which_gets_its_mirror(
    lab: tuple[ClusterDir, ClusterConfig], monkeypatch: pytest.MonkeyPatch
) -> None:
    cluster = fake(lab, monkeypatch)
    cdir, config = lab
    report = faultcmd.add(cdir, config, "node1", "loss", peer="NODE2", pct=30, net="private")
    assert [r[0] for r in cluster.requests] == ["NODE1"]
    assert report.installed == [
        {"node": "NODE1", "id": 1, "kind": "loss", "net": "private", "peer": "NODE2", "direction": "both",
         "pct": 30.0, "delay_ms": 0.0, "jitter_ms": 0.0},
    ]  # fmt: skip
    assert report.done == ["NODE1: fault 1: loss 30% to NODE2 on private"]
    report = faultcmd.add(cdir, config, "NODE1", "cut", peer="NODE3", direction="out")
    assert [(e["node"], e["peer"], e["direction"]) for e in report.installed] == [
        ("NODE1", "NODE3", "out"),
        ("NODE3", "NODE1", "in"),
    ]
    reorder = faultcmd.add(cdir, config, "NODE2", "reorder", pct=10)
    assert reorder.installed[0]["delay_ms"] == 240.0  # the node's default


def test_add_validates_before_asking_anyone(
    lab: tuple[ClusterDir, ClusterConfig], monkeypatch: pytest.MonkeyPatch
) -> None:
    cluster = fake(lab, monkeypatch)
    cdir, config = lab
    for kwargs, match in [
        ({"kind": "loss"}, "needs --pct"),
        ({"kind": "loss", "pct": 150}, "pct"),
        ({"kind": "delay", "delay_ms": 20_000}, "delay_ms"),
        ({"kind": "jam"}, "fault kind 'jam'"),
        ({"kind": "cut", "net": "wifi"}, "--net wifi"),
        ({"kind": "cut", "direction": "up"}, "--direction up"),
        ({"kind": "cut", "peer": "node1"}, "itself"),
    ]:
        with pytest.raises(ConfigError, match=match):
            faultcmd.add(cdir, config, "NODE1", **kwargs)  # type: ignore[arg-type]
    assert cluster.requests == []


def test_shape_installs_rules_on_every_node_concerned_and_warns_for_a_silent_one(
    lab: tuple[ClusterDir, ClusterConfig], monkeypatch: pytest.MonkeyPatch
) -> None:
    cluster = fake(lab, monkeypatch, silent=("NODE4",))
    cdir, config = lab
    report = faultcmd.shape(cdir, config, "split NODE1,NODE2|NODE3,NODE4", net="private")
    assert report.shape is not None and report.shape["name"] == "split"
    assert {n: len(f) for n, f in report.faults.items()} == {"NODE1": 2, "NODE2": 2, "NODE3": 2}
    assert all(f["net"] == "private" and f["kind"] == "cut" for fs in report.faults.values() for f in fs)
    assert list(report.unreachable) == ["NODE4"] and "NODE4" in report.warnings[0]
    assert len(report.installed) == 6
    ring = faultcmd.shape(cdir, config, "ring", seed=5)
    assert ring.shape is not None and ring.shape["seed"] == 5
    assert ring.shape == faultcmd.shape(cdir, config, "ring", seed=5).shape  # same seed, same plan
    cluster.silent = tuple(n.name for n in config.nodes)
    with pytest.raises(WolfpackError, match="no node answered"):
        faultcmd.shape(cdir, config, "isolate NODE1")


def test_cli_kinds_shapes_list_and_heal_by_id(
    lab: tuple[ClusterDir, ClusterConfig], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cluster = fake(lab, monkeypatch)
    root = str(lab[0].root)
    assert run(capsys, "fault", "delay", "NODE2", "--ms", "50", "--jitter-ms", "10", "--dir", root)[0] == 0
    assert (
        run(capsys, "fault", "dup", "NODE2", "NODE3", "--pct", "5", "--net", "public", "--dir", root)[0] == 0
    )
    code, out, _ = run(capsys, "fault", "oneway", "NODE1->NODE4", "--dir", root, "--json")
    assert code == 0 and json.loads(out)["shape"]["blocked"] == [["NODE1", "NODE4"]]
    code, out, _ = run(capsys, "fault", "list", "--dir", root)
    lines = out.splitlines()
    assert lines[0].split() == ["NODE", "ID", "KIND", "NET", "PEER", "DIRECTION", "PARAMS"]
    assert lines[1].split() == ["NODE1", "1", "cut", "all", "NODE4", "out", "-"]
    assert lines[2].split() == ["NODE2", "1", "delay", "all", "every", "peer", "both", "50+/-10", "ms"]
    assert lines[3].split() == ["NODE2", "2", "dup", "public", "NODE3", "both", "5%"]
    code, out, _ = run(capsys, "fault", "heal", "NODE2", "--id", "1", "--dir", root)
    assert (code, out.strip()) == (0, "NODE2: healed fault 1")
    assert [f["id"] for f in cluster.nodes["NODE2"].faults()] == [2]
    code, _, err = run(capsys, "fault", "heal", "NODE2", "--id", "1", "--dir", root)
    assert code == 1 and "NODE2 has no fault 1" in err
    code, _, err = run(capsys, "fault", "heal", "--id", "2", "--dir", root)
    assert code == 1 and "--id needs a NODE" in err
    code, _, err = run(capsys, "fault", "partition", "ring", "--seed", "1", "--dir", root)
    assert code == 0
    code, _, err = run(capsys, "fault", "oneway", "NODE1", "--dir", root)
    assert code == 1 and "A->B" in err
    for argv in (["fault", "loss", "NODE1"], ["fault", "delay", "NODE1"], ["fault", "partition", "star"]):
        with pytest.raises(SystemExit):
            main.main(argv)
    parser = main.build_parser()
    for argv in (["loss", "N", "--pct", "1"], ["isolate", "N"], ["split", "A|B"], ["partition", "one"],
                 ["heal"], ["list"], ["oneway", "A->B"]):  # fmt: skip
        assert parser.parse_args(["fault", *argv, "--json"]).json is True


def obs(
    config: ClusterConfig, name: str, faults: list[dict[str, Any]], ifaces: list[dict[str, Any]]
) -> NodeObservation:
    node = config.node(name)
    answer = {
        "node_id": node.id, "name": name, "own_state": "Up", "phase": "MEMBER", "epoch": 2,
        "members": [n.id for n in config.nodes], "quorum_owner": 1, "holds_quorum": node.id == 1,
        "node_states": {}, "interfaces": ifaces, "faults": faults,
        "fault_drops": {"out": 3}, "fault_delayed": {}, "fault_duplicated": {"in": 1},
    }  # fmt: skip
    return NodeObservation(name, ProcessState.RUNNING, 100 + node.id, ControlState.OK, answer, 1)


def test_status_marks_interfaces_under_faults(lab: tuple[ClusterDir, ClusterConfig]) -> None:
    config = lab[1]
    loss = {"id": 1, "kind": "loss", "net": "private", "peer": "NODE2", "direction": "both", "pct": 30}
    ifaces = [
        {"peer": 2, "net": "private", "state": "Up"},
        {"peer": 2, "net": "public", "state": "Up"},
        {"peer": 3, "net": "private", "state": "Up"},
    ]
    observations = [
        obs(config, "NODE1", [loss], ifaces),
        obs(config, "NODE2", [], [{"peer": 1, "net": "private", "state": "Failed"}]),
        obs(config, "NODE3", [], []),
        obs(config, "NODE4", [], []),
    ]
    status = compose(config, observations)
    marked = {(p.observer, p.peer, p.net): p.faults for p in status.faulted}
    assert marked == {
        ("NODE1", "NODE2", "private"): ("loss 30%",),
        ("NODE2", "NODE1", "private"): ("loss 30% at NODE1",),
    }
    text = render(status)
    assert "NODE1 sees NODE2 on private: Up (fault: loss 30%)" in text
    assert "NODE2 sees NODE1 on private: Failed (fault: loss 30% at NODE1)" in text
    assert "NODE1: [1] loss 30% private to NODE2" in text
    from nodeagent.cli.status import as_json

    doc = as_json(status)
    node1 = next(n for n in doc["nodes"] if n["name"] == "NODE1")
    assert node1["faults"] == [loss]
    assert node1["fault_counters"] == {
        "fault_drops": {"out": 3},
        "fault_delayed": {},
        "fault_duplicated": {"in": 1},
    }
    assert doc["faulted_interfaces"][0]["faults"] == ["loss 30%"]
    one_way = fault_marks(
        config, {"NODE3": [{"kind": "cut", "net": "all", "peer": None, "direction": "out"}]}
    )
    assert one_way[("NODE3", "NODE4", "public")] == ("cut out",)
    assert one_way[("NODE1", "NODE3", "private")] == ("cut out at NODE3",)
