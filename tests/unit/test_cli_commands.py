"""fault, disk, simulate and status through ``main``, with the control client replaced by a fake."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nodeagent.cli import clusterdir, faultcmd, main
from nodeagent.cli.clusterdir import ClusterDir, UpOptions
from nodeagent.config import ClusterConfig
from nodeagent.errors import NodeUnreachable, WolfpackError
from nodeagent.runtime import control_client


class FakeNodes:
    """Stands in for the control sockets: per node, a list of faults, or None for "does not answer"."""

    def __init__(self, config: ClusterConfig, silent: tuple[str, ...] = ()) -> None:
        self.config = config
        self.faults: dict[str, list[dict[str, Any]] | None] = {
            n.name: (None if n.name in silent else []) for n in config.nodes
        }
        self.requests: list[tuple[str, dict[str, Any]]] = []

    def request(self, sock_path: Path | str, obj: dict[str, Any], timeout_s: float = 5.0) -> dict[str, Any]:
        name = Path(sock_path).parent.name
        faults = self.faults[name]
        if faults is None:
            raise NodeUnreachable(f"node control socket {sock_path}: not there")
        self.requests.append((name, obj))
        op = obj["op"]
        if op == "fault_cut":
            faults.append({"kind": "cut", "net": obj["net"], "peer": obj["peer"]})
            return {"ok": True}
        if op == "fault_heal":
            faults.clear()
            return {"ok": True}
        if op == "faults":
            return {"ok": True, "faults": list(faults)}
        if op in ("pause", "resume"):
            return {"ok": True}
        if op == "status":
            node = self.config.node(name)
            members = [n.id for n in self.config.nodes if self.faults[n.name] is not None]
            return {
                "ok": True,
                "node": {
                    "node_id": node.id, "name": name, "incarnation": 4, "phase": "MEMBER", "own_state": "Up",
                    "epoch": 3, "members": members, "quorum_owner": members[0], "holds_quorum": False,
                    "paused": False, "node_states": {}, "interfaces": [], "counters": {}, "pid": 99999999,
                    "faults": list(faults),
                },
            }  # fmt: skip
        return {"ok": False, "error": f"unknown op {op!r}"}


@pytest.fixture
def lab() -> Iterator[tuple[ClusterDir, ClusterConfig]]:
    root = Path(tempfile.mkdtemp(prefix="wp", dir="/tmp"))
    try:
        yield clusterdir.create_cluster(root / "lab", UpOptions(), bindable=lambda c: True)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def fake(
    lab: tuple[ClusterDir, ClusterConfig], monkeypatch: pytest.MonkeyPatch, silent: tuple[str, ...] = ()
) -> FakeNodes:
    nodes = FakeNodes(lab[1], silent)
    monkeypatch.setattr(control_client, "request", nodes.request)
    return nodes


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# -- fault -------------------------------------------------------------------------------------------


def test_cut_between_two_nodes_is_installed_on_both(
    lab: tuple[ClusterDir, ClusterConfig], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    nodes = fake(lab, monkeypatch)
    code, out, _ = run(
        capsys, "fault", "cut", "node1", "NODE3", "--net", "private", "--dir", str(lab[0].root)
    )
    assert code == 0
    assert out.splitlines() == ["NODE1: cut private to NODE3", "NODE3: cut private to NODE1"]
    assert nodes.requests == [
        ("NODE1", {"op": "fault_cut", "net": "private", "peer": "NODE3"}),
        ("NODE3", {"op": "fault_cut", "net": "private", "peer": "NODE1"}),
    ]


def test_cut_holds_on_one_side_when_the_other_is_down(
    lab: tuple[ClusterDir, ClusterConfig], monkeypatch: pytest.MonkeyPatch
) -> None:
    nodes = fake(lab, monkeypatch, silent=("NODE2",))
    report = faultcmd.cut(lab[0], lab[1], "NODE1", "NODE2", "all")
    assert report.done == ["NODE1: cut all to NODE2"]
    assert len(report.warnings) == 1
    assert report.warnings[0].startswith("the cut is installed on NODE1 only: NODE2 does not answer")
    assert nodes.faults["NODE1"] == [{"kind": "cut", "net": "all", "peer": "NODE2"}]


def test_cut_errors(lab: tuple[ClusterDir, ClusterConfig], monkeypatch: pytest.MonkeyPatch) -> None:
    fake(lab, monkeypatch, silent=("NODE2",))
    cdir, config = lab
    with pytest.raises(WolfpackError, match="cannot cut NODE1 from itself"):
        faultcmd.cut(cdir, config, "NODE1", "node1", "all")
    with pytest.raises(WolfpackError, match=r"^NODE2 does not answer its control socket \(not running\)$"):
        faultcmd.cut(cdir, config, "NODE2", None, "public")
    with pytest.raises(WolfpackError, match="unknown node 'NODE5'"):
        faultcmd.cut(cdir, config, "NODE1", "NODE5", "public")


def test_heal_and_list(
    lab: tuple[ClusterDir, ClusterConfig], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    nodes = fake(lab, monkeypatch, silent=("NODE3",))
    root = str(lab[0].root)
    run(capsys, "fault", "cut", "NODE1", "--net", "public", "--dir", root)
    run(capsys, "fault", "cut", "NODE2", "NODE1", "--net", "all", "--dir", root)

    code, out, _ = run(capsys, "fault", "list", "--dir", root, "--json")
    doc = json.loads(out)
    assert code == 0
    assert doc["faults"] == {
        "NODE1": [
            {"kind": "cut", "net": "public", "peer": None},
            {"kind": "cut", "net": "all", "peer": "NODE2"},
        ],
        "NODE2": [{"kind": "cut", "net": "all", "peer": "NODE1"}],
    }
    assert list(doc["unreachable"]) == ["NODE3"]

    code, out, _ = run(capsys, "fault", "list", "--dir", root)
    assert out.splitlines()[:2] == ["NODE   KIND  NET     PEER", "NODE1  cut   public  every peer"]

    code, out, _ = run(capsys, "fault", "heal", "--dir", root)
    assert code == 0
    assert out.splitlines()[:2] == ["NODE1: healed 2 faults", "NODE2: healed 1 fault"]
    assert "not asked: NODE3 does not answer" in out
    assert nodes.faults["NODE1"] == [] and nodes.faults["NODE2"] == []

    code, _, err = run(capsys, "fault", "heal", "NODE3", "--dir", root)  # named: its silence is an error
    assert code == 1 and err.startswith("wolfpack: error: NODE3 does not answer its control socket")


def test_a_refusal_by_the_node_is_one_line(
    lab: tuple[ClusterDir, ClusterConfig], monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(sock_path: Path | str, obj: dict[str, Any], timeout_s: float = 5.0) -> dict[str, Any]:
        return {"ok": False, "error": "unknown peer 'NODE9'"}

    monkeypatch.setattr(control_client, "request", refuse)
    with pytest.raises(WolfpackError) as exc:
        faultcmd.cut(lab[0], lab[1], "NODE1", None, "all")
    assert str(exc.value) == "NODE1 refused 'fault_cut': unknown peer 'NODE9'"


def test_status_json(
    lab: tuple[ClusterDir, ClusterConfig], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake(lab, monkeypatch, silent=("NODE2",))
    code, out, _ = run(capsys, "status", str(lab[0].root), "--json")
    assert code == 0
    doc = json.loads(out)
    assert doc["dir"] == str(lab[0].root)
    assert doc["epoch"] == 3 and doc["quorum_owner"] == "NODE1"
    assert [(n["name"], n["state"], n["control"]) for n in doc["nodes"]] == [
        ("NODE1", "Up", "ok"),
        ("NODE2", "Down", "not running"),
        ("NODE3", "Up", "ok"),
    ]
    # The pid a node reports is only believed once psutil confirms it: 99999999 does not exist.
    assert doc["nodes"][0]["pid"] is None and doc["nodes"][0]["incarnation"] == 4


def test_status_table(
    lab: tuple[ClusterDir, ClusterConfig], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake(lab, monkeypatch)
    code, out, _ = run(capsys, "status", "--dir", str(lab[0].root))
    assert code == 0
    assert out.startswith("Cluster WOLFPACK (number 1, speed 10, enterprise)  quorum: disk Q (scsi2)")
    assert [ln.split()[:3] for ln in out.splitlines()[3:6]] == [
        ["NODE1", "1", "Up"],
        ["NODE2", "2", "Up"],
        ["NODE3", "3", "Up"],
    ]


# -- disk ---------------------------------------------------------------------------------------------


def test_disk_create_and_show(
    lab: tuple[ClusterDir, ClusterConfig], capsys: pytest.CaptureFixture[str]
) -> None:
    root = str(lab[0].root)
    code, out, _ = run(capsys, "disk", "create", "DATA", "--size-mb", "2", "--dir", root, "--json")
    assert code == 0
    info = json.loads(out)
    assert (info["name"], info["size_bytes"], info["generation"]) == ("DATA", 2 * 2**20, 0)
    assert Path(info["path"]) == lab[0].disk_path("DATA")

    code, out, _ = run(capsys, "disk", "show", "--dir", root, "--json")
    assert [d["name"] for d in json.loads(out)["disks"]] == ["DATA", "Q"]

    code, out, _ = run(capsys, "disk", "show", "Q", "--dir", root)
    assert out.splitlines()[0].startswith("Disk Q  ")
    assert "  SCSI-2 reserved by: -" in out and "  registered keys:    -" in out


def test_disk_show_a_reserved_disk(
    lab: tuple[ClusterDir, ClusterConfig], capsys: pytest.CaptureFixture[str]
) -> None:
    from shareddisk import FileDisk

    disk = FileDisk.open(lab[0].disk_path("Q"))
    try:
        disk.register("NODE1", 1)
        disk.register("NODE2", 2)
        disk.pr_reserve("NODE2", 2)
    finally:
        disk.close()
    code, out, _ = run(capsys, "disk", "show", "Q", "--dir", str(lab[0].root))
    assert code == 0
    assert "  PR reservation:     NODE2 key 0x2 (write_exclusive_registrants_only)" in out
    assert "  registered keys:    NODE1 0x1, NODE2 0x2" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["disk", "create", "Q"], "disk Q already exists"),
        (["disk", "create", "my-disk"], "disk name 'my-disk': letters and digits only"),
        (["disk", "create", "D", "--size-mb", "0"], "--size-mb 0: must be from 1 to 65536"),
        (["disk", "show", "NOPE"], "no disk NOPE in "),
    ],
)
def test_disk_errors(
    argv: list[str], message: str, lab: tuple[ClusterDir, ClusterConfig], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, *argv, "--dir", str(lab[0].root))
    assert code == 1 and out == ""
    assert message in err and len(err.splitlines()) == 1


# -- simulate -----------------------------------------------------------------------------------------


def test_simulate_prints_the_report_and_the_verdict(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "simulate", "--seed", "7", "--duration-s", "3")
    assert code == 0
    assert "== verdict" in out and "OK: no invariant violated" in out
    assert "replay: wolfpack simulate --seed 7 " in out
    assert err == ""
    again = run(capsys, "simulate", "--seed", "7", "--duration-s", "3")
    assert again[1] == out  # same seed, same bytes


def test_simulate_without_seed_prints_the_one_it_drew(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "simulate", "--duration-s", "1", "--no-faults", "--json")
    assert code == 0
    doc = json.loads(out)
    assert err == f"seed {doc['seed']} (replay with --seed {doc['seed']})\n"
    assert doc["ok"] is True and doc["violations"] == []
    assert doc["replay"].startswith(f"wolfpack simulate --seed {doc['seed']} ")
    # The replay line must parse with this very parser.
    args = main.build_parser().parse_args(doc["replay"].split()[1:])
    assert args.seed == doc["seed"] and args.no_faults is True


def test_simulate_exits_1_on_violations(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import nodeagent.sim

    real = nodeagent.sim.simulate

    def violated(*args: Any, **kwargs: Any) -> Any:
        import dataclasses

        return dataclasses.replace(real(*args, **kwargs), ok=False)

    monkeypatch.setattr(nodeagent.sim, "simulate", violated)
    code, _, _ = run(capsys, "simulate", "--seed", "1", "--duration-s", "1")
    assert code == 1


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--nodes", "9"], "--nodes 9: a cluster has 1 to 8 nodes"),
        (["--duration-s", "0"], "--duration-s 0: must be more than 0"),
        (["--speed", "0"], "--speed 0: must be a number"),
        (["--seed", "-1"], "--seed -1: must be from 0"),
    ],
)
def test_simulate_bad_input(flags: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "simulate", "--seed", "1", *flags)
    assert code == 1 and out == ""
    assert message in err and len(err.splitlines()) == 1
