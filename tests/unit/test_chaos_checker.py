"""The chaos checker can fail: crafted histories with each kind of violation are reported, a clean
one is not; the chaos plan is deterministic and is the schedule the simulator replays."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from nodeagent.chaos import checker
from nodeagent.chaos.history import History, build_history, recovery_bound_s
from nodeagent.chaos.plan import fault_schedule, plan
from nodeagent.chaos.report import client_summary, failovers
from nodeagent.config import ClusterConfig, default_config_dict
from nodeagent.sim import runner as simrunner
from nodeagent.sim.simulation import Simulation
from shareddisk import create_disk
from shareddisk.history import read_history

RESOURCES: dict[str, dict[str, Any]] = {
    "EVS1 Disk": {"type": "Physical Disk", "group": "EVS1", "private": {"Disk": "EVS1"}},
    "EVS1 IP Address": {"type": "IP Address", "group": "EVS1", "private": {"Address": "127.9.3.2"}},
    "G2 IP Address": {"type": "IP Address", "group": "G2", "private": {"Address": "127.9.3.2"}},
}
GROUPS = {"EVS1": {"desired": "online"}}
EVS1 = ("EVS1 Disk", "EVS1 IP Address")


def ev(t: float, node: str, kind: str, inc: int = 1, **fields: Any) -> dict[str, Any]:
    return {"mono_s": t, "node": node, "incarnation": inc, "event_id": None, "kind": kind,
            "message": f"{kind} {fields}", "fields": fields}  # fmt: skip


def member(t: float, node: str, epoch: int, members: list[str], inc: int = 1) -> dict[str, Any]:
    return ev(t, node, "membership_installed", inc, epoch=epoch, members=members, quorum_owner=members[0])


def online(
    t: float, node: str, group: str, resources: tuple[str, ...], state: str = "Online"
) -> list[dict[str, Any]]:
    return [ev(t, node, "resource_state", resource=r, group=group, state=state) for r in resources]


def act(t: float, action: str, node: str, took: float = 0.01) -> dict[str, Any]:
    return {"t": t, "t_end": t + took, "action": action, "node": node, "what": f"{action} {node}", "ok": True}


def start(nodes: list[str]) -> list[dict[str, Any]]:
    out = []
    for n in nodes:
        out += [ev(0.0, n, "service_started", incarnation=1), member(0.5, n, 1, nodes)]
    return out + online(1.0, "NODE1", "EVS1", EVS1)


def history(events: list[dict[str, Any]], actions: Sequence[dict[str, Any]] = (), **kw: Any) -> History:
    kw.setdefault("heal_s", None)
    return build_history(events, list(actions), resources=RESOURCES, groups=GROUPS, start_s=0.0, **kw)


def rules(h: History) -> list[str]:
    return [v.rule for v in checker.check(h)]


# -- a clean run -------------------------------------------------------------------------------------


def clean_failover() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    events = start(["NODE1", "NODE2", "NODE3"])
    events += [member(12.0, "NODE2", 2, ["NODE2", "NODE3"]), member(12.0, "NODE3", 2, ["NODE2", "NODE3"])]
    events += online(13.0, "NODE2", "EVS1", EVS1)
    return events, [act(10.0, "kill", "NODE1")]


def test_clean_history_reports_nothing() -> None:
    events, actions = clean_failover()
    h = history(events, actions, heal_s=11.0, bound_s=5.0)
    assert checker.check(h) == []
    assert checker.recovery_time(h, "EVS1") == (13.0, "NODE2")


# -- each rule can fail ------------------------------------------------------------------------------


def test_split_brain_is_reported_with_evidence() -> None:
    events = start(["NODE1", "NODE2"]) + online(5.0, "NODE2", "EVS1", EVS1)  # NODE1 never stopped
    found = checker.check(history(events))
    split = [v for v in found if v.rule == "one_group_owner"]
    assert len(split) == 1
    assert split[0].time_s == 5.0
    assert "EVS1" in split[0].summary and "NODE1" in split[0].summary and "NODE2" in split[0].summary
    assert any("NODE1" in line and "resource_state" in line for line in split[0].evidence)
    assert any("NODE2" in line and "resource_state" in line for line in split[0].evidence)


def test_double_bound_address_is_reported() -> None:
    # two different groups whose IP Address resources bind the same address, on two nodes at once
    events = start(["NODE1", "NODE2"]) + online(3.0, "NODE2", "G2", ("G2 IP Address",))
    found = checker.check(history(events))
    assert [v.rule for v in found] == ["one_address"]
    assert "127.9.3.2" in found[0].summary


def test_online_without_quorum_is_reported() -> None:
    events = [ev(0.0, "NODE2", "service_started"), *online(1.0, "NODE2", "EVS1", EVS1)]
    found = checker.check(history(events))
    assert {v.rule for v in found} == {"online_needs_quorum"}
    assert len(found) == 2  # each resource


def test_online_after_a_halt_is_reported() -> None:
    events = start(["NODE1", "NODE2"])
    events += [
        ev(4.0, "NODE2", "halted", reason="lost quorum"),
        *online(5.0, "NODE2", "G2", ("G2 IP Address",)),
    ]
    events += [ev(3.9, "NODE1", "halted", reason="test")]
    assert "online_needs_quorum" in rules(history(events))


def test_missed_recovery_bound_is_reported() -> None:
    events, actions = clean_failover()
    late = checker.check(history(events, actions, heal_s=11.0, bound_s=1.0))
    assert [v.rule for v in late] == ["recovery"]
    assert "EVS1" in late[0].summary and "within 1.0 s" in late[0].summary
    never = history(start(["NODE1", "NODE2"]) + online(2.0, "NODE1", "EVS1", EVS1, "Failed"), heal_s=3.0,
                    bound_s=5.0)  # fmt: skip
    assert [v.rule for v in checker.check(never)] == ["recovery"]


def test_a_kill_ends_the_victims_claims() -> None:
    events = start(["NODE1", "NODE2"]) + online(5.0, "NODE2", "EVS1", EVS1)
    assert rules(history(events, [act(4.0, "kill", "NODE1")])) == []
    assert "one_group_owner" in rules(history(events, [act(6.0, "kill", "NODE1")]))


# -- the frozen-node exemption -------------------------------------------------------------------------


def frozen_case(online_at: float) -> list[str]:
    events = start(["NODE1", "NODE2", "NODE3"])
    events += [member(7.0, "NODE2", 2, ["NODE2", "NODE3"]), member(7.0, "NODE3", 2, ["NODE2", "NODE3"])]
    events += online(online_at, "NODE2", "EVS1", EVS1)
    events += [ev(9.05, "NODE1", "halted", reason="removed from the cluster")]
    return rules(history(events, [act(5.0, "freeze", "NODE1"), act(9.0, "thaw", "NODE1")]))


def test_a_fenced_frozen_node_does_not_count() -> None:
    assert frozen_case(8.0) == []


def test_a_frozen_node_counts_until_it_is_fenced() -> None:
    assert "one_group_owner" in frozen_case(6.0)


def test_a_running_node_is_never_exempt() -> None:
    events = start(["NODE1", "NODE2", "NODE3"])
    events += [member(7.0, "NODE2", 2, ["NODE2", "NODE3"]), *online(8.0, "NODE2", "EVS1", EVS1)]
    assert "one_group_owner" in rules(history(events))  # NODE1 partitioned, not frozen, not halted


# -- the plan and its replay ---------------------------------------------------------------------------


def lab_config(nodes: int = 3, speed: float = 10.0, number: int = 42) -> ClusterConfig:
    return ClusterConfig.from_dict(
        default_config_dict(number=number, key=bytes(32), nodes=nodes, speed=speed)
    )


def test_same_seed_same_plan_other_seed_other_plan() -> None:
    config = lab_config()
    a = plan(7, config, 30.0, disks=["EVS1", "Q"])
    assert a == plan(7, config, 30.0, disks=["EVS1", "Q"])
    assert a.steps != plan(8, config, 30.0, disks=["EVS1", "Q"]).steps
    assert {s.action for s in a.steps} >= {"fault", "heal"}
    assert all(s.at_s < 30.0 for s in a.steps)


def test_disk_faults_do_not_change_the_replayed_schedule() -> None:
    config = lab_config()
    with_disks = plan(11, config, 60.0, disks=["EVS1", "Q"])
    without = plan(11, config, 60.0)
    assert with_disks.schedule == without.schedule == fault_schedule(11, config, 60.0)
    assert any(s.origin == "disk" for s in with_disks.steps)
    assert [s for s in with_disks.steps if s.origin == "sim"] == list(without.steps)


def test_the_simulator_replays_the_chaos_schedule(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[Any, ...]] = []
    original = Simulation.schedule

    def spy(self: Simulation, actions: Any) -> None:
        actions = tuple(actions)
        seen.append(actions)
        original(self, actions)

    monkeypatch.setattr(Simulation, "schedule", spy)
    report = simrunner.simulate(3, nodes=3, duration_s=8.0, chaos_seed=7)
    # the lab's config (another cluster number and key) gives the very same schedule
    assert seen == [fault_schedule(7, lab_config(), 8.0)]
    assert seen[0] == plan(7, lab_config(number=9), 8.0).schedule
    assert report.seed == 3


def test_recovery_bound_is_computed_from_the_timing() -> None:
    fast, slow = recovery_bound_s(lab_config(speed=10.0)), recovery_bound_s(lab_config(speed=1.0))
    assert 10.0 < fast < 30.0 and slow > 9 * fast - 10.0
    assert recovery_bound_s(lab_config(), [{"private": {"StartupTime": 5.0}}]) == pytest.approx(fast + 9.0)


# -- the reservation history and the report helpers ------------------------------------------------------


def test_reservation_history_logs_every_change_in_order() -> None:
    directory = Path(tempfile.mkdtemp(prefix="wpu", dir="/tmp"))
    with create_disk(directory / "Q.img", size_bytes=2**20) as disk:
        disk.reserve("NODE1")
        disk.reserve("NODE1")  # no change: not logged
        disk.reset("NODE2")
        disk.reserve("NODE2")
        disk.release("NODE2")
    records = read_history(directory / "Q.img")
    assert [(r["op"], r["initiator"], r["holder"]) for r in records] == [
        ("reserve", "NODE1", "NODE1"),
        ("reset", "NODE2", None),
        ("reserve", "NODE2", "NODE2"),
        ("release", "NODE2", None),
    ]
    assert records == sorted(records, key=lambda r: r["t"])


def test_client_lines_and_failovers() -> None:
    lines = ['{"event": "reply", "ok": true, "node": "NODE1", "mono_s": 1}',
             '{"event": "outage", "length_s": 2.5, "start_mono_s": 12.0, "end_mono_s": 14.5, "missed": 9,'
             ' "node_before": "NODE1", "node_after": "NODE2"}',
             '{"event": "reply", "ok": true, "node": "NODE2", "mono_s": 14.5}', "torn {",
             '{"event": "summary", "sent": 10, "answered": 1, "lost": 9, "outages": 1,'
             ' "nodes": ["NODE1"]}']  # fmt: skip
    c = client_summary(lines, origin=10.0)
    assert c["outages"][0]["start_s"] == 2.0 and c["outages"][0]["node_after"] == "NODE2"
    assert c["served_by"] == ["NODE1", "NODE2"] and c["summary"]["sent"] == 10
    evs = [ev(3.0, "NODE2", "group_owner", group="EVS1", owner="NODE2", reason="x"),
           ev(3.0, "NODE3", "group_owner", group="EVS1", owner="NODE2", reason="x")]  # fmt: skip
    assert [f["owner"] for f in failovers(evs, 0.0)] == ["NODE2"]
