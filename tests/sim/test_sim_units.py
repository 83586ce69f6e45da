"""Unit tests of the simulator's parts: event queue, network model, fault schedule, process model, trace."""

from __future__ import annotations

import random

import pytest

from nodeagent.config import ClusterConfig, Net, Timing, default_config_dict
from nodeagent.core.effects import DiskOutcome, DiskResult, Event
from nodeagent.core.messages import Ack, Heartbeat
from nodeagent.errors import ConfigError
from nodeagent.sim import network as netmod
from nodeagent.sim.clock import EventQueue, SimulationStuck
from nodeagent.sim.faults import NETWORK_KINDS, ActionKind, plan_faults
from nodeagent.sim.process import (
    MAX_FROZEN_DATAGRAMS,
    ProcState,
    QueuedDatagram,
    QueuedDiskResult,
    QueuedTick,
    SimNode,
)
from nodeagent.sim.trace import action_line, event_line, format_value
from nodeagent.sim.wirecheck import WireCheck


def config(nodes: int = 3, *, public_role: int | None = None) -> ClusterConfig:
    data = default_config_dict(number=1, key=bytes(16), nodes=nodes)
    if public_role is not None:
        data["networks"]["public"]["role"] = public_role
    return ClusterConfig.from_dict(data)


BEAT = Heartbeat(seq=1, phase=3, epoch=1, members=(1, 2), quorum_owner=1, paused=False)


# -- clock ------------------------------------------------------------------------------------------
def test_queue_orders_by_time_then_push_order() -> None:
    q: EventQueue[str] = EventQueue()
    q.push(2.0, "late")
    q.push(1.0, "first")
    q.push(1.0, "second")
    q.push(1.0, "third")
    out = [q.pop() for _ in range(4)]
    assert out == [(1.0, "first"), (1.0, "second"), (1.0, "third"), (2.0, "late")]
    assert q.now == 2.0


def test_queue_never_goes_back_in_time() -> None:
    q: EventQueue[str] = EventQueue()
    q.push(5.0, "a")
    q.pop()
    q.push(1.0, "past")  # due now, not in the past
    assert q.pop() == (5.0, "past")
    q.advance_to(3.0)
    assert q.now == 5.0
    with pytest.raises(ValueError):
        q.push(float("nan"), "x")


def test_queue_limits() -> None:
    q: EventQueue[int] = EventQueue(limit=3)
    for i in range(3):
        q.push(1.0, i)
    with pytest.raises(SimulationStuck, match="overflow"):
        q.push(1.0, 99)
    spin: EventQueue[int] = EventQueue(max_steps_per_instant=5)
    with pytest.raises(SimulationStuck, match="re-arms"):
        for i in range(10):
            spin.push(0.0, i)
            spin.pop()


# -- network ----------------------------------------------------------------------------------------
def test_route_delay_and_identity() -> None:
    cfg = config()
    net = netmod.Network(cfg, random.Random(1))
    out = net.route(10.0, 1, 7, Net.PRIVATE, 2, BEAT)
    assert len(out) == 1
    d = out[0]
    assert (d.src, d.src_incarnation, d.dst, d.net, d.msg, d.sent_s) == (1, 7, 2, Net.PRIVATE, BEAT, 10.0)
    assert 10.0002 <= d.at_s <= 10.0005


def test_route_drops_non_cluster_networks_and_bad_destinations() -> None:
    cfg = config(public_role=2)  # client access only: no cluster traffic
    net = netmod.Network(cfg, random.Random(1))
    assert net.route(0.0, 1, 1, Net.PUBLIC, 2, BEAT) == []
    assert net.stats.dropped_role == 1
    assert net.route(0.0, 1, 1, Net.PRIVATE, 9, BEAT) == []
    assert net.route(0.0, 1, 1, Net.PRIVATE, 1, BEAT) == []
    assert net.stats.dropped_unknown_dst == 2
    assert len(net.route(0.0, 1, 1, Net.PRIVATE, 2, BEAT)) == 1


def test_partition_cuts_between_sides_only() -> None:
    cfg = config(4)
    fault = netmod.partition(cfg, [(1, 2), (3,)])
    assert fault.description == "NODE1,NODE2|NODE3"
    for a, b in ((1, 3), (3, 1), (2, 3), (3, 2)):
        for n in Net:
            assert (a, b, n) in fault.paths
    assert (1, 2, Net.PRIVATE) not in fault.paths
    assert not any(4 in (p[0], p[1]) for p in fault.paths)  # on no side: untouched
    with pytest.raises(ConfigError):
        netmod.partition(cfg, [(1, 2), (2, 3)])
    with pytest.raises(ConfigError):
        netmod.partition(cfg, [(1, 2)])


def test_overlapping_faults_heal_independently() -> None:
    cfg = config()
    net = netmod.Network(cfg, random.Random(1))
    a = net.add(netmod.cut(cfg, 1, 2, Net.PRIVATE))
    b = net.add(netmod.isolate(cfg, 1))
    assert net.is_cut(2, 1, Net.PRIVATE) and net.is_cut(1, 3, Net.PUBLIC)
    net.remove(b)
    assert net.is_cut(1, 2, Net.PRIVATE) and net.is_cut(2, 1, Net.PRIVATE)
    assert not net.is_cut(1, 2, Net.PUBLIC) and not net.is_cut(1, 3, Net.PUBLIC)
    assert net.route(0.0, 1, 1, Net.PRIVATE, 2, BEAT) == []
    assert net.stats.dropped_cut == 1
    net.remove(a)
    assert net.faults == {}
    assert len(net.route(0.0, 1, 1, Net.PRIVATE, 2, BEAT)) == 1


def test_degrade_loss_delay_duplication() -> None:
    cfg = config()
    net = netmod.Network(cfg, random.Random(3))
    net.add(
        netmod.degrade(cfg, 1, 2, Net.PRIVATE, loss=0.5, extra_delay_s=0.01, dup=0.5, both_directions=False)
    )
    copies = [net.route(0.0, 1, 1, Net.PRIVATE, 2, BEAT) for _ in range(2000)]
    lost = sum(1 for c in copies if not c)
    doubled = sum(1 for c in copies if len(c) == 2)
    assert 850 < lost < 1150
    assert 400 < doubled < 600
    assert all(d.at_s >= 0.0102 for c in copies for d in c)
    # the other direction and the other network are untouched
    assert all(len(net.route(0.0, 2, 1, Net.PRIVATE, 1, BEAT)) == 1 for _ in range(50))
    assert all(len(net.route(0.0, 1, 1, Net.PUBLIC, 2, BEAT)) == 1 for _ in range(50))
    with pytest.raises(ConfigError):
        netmod.degrade(cfg, 1, 2, loss=1.5)


def test_route_is_deterministic_for_a_seed() -> None:
    cfg = config()

    def run(seed: int) -> list[float]:
        net = netmod.Network(cfg, random.Random(seed))
        net.add(netmod.degrade(cfg, 1, 2, loss=0.3, dup=0.3))
        return [d.at_s for i in range(200) for d in net.route(i * 0.1, 1, 1, Net.PRIVATE, 2, BEAT)]

    assert run(5) == run(5)
    assert run(5) != run(6)


# -- fault schedule ---------------------------------------------------------------------------------
@pytest.mark.parametrize("nodes", [2, 3, 5, 8])
def test_plan_is_well_formed(nodes: int) -> None:
    timing = Timing.for_speed(10.0)
    plan = plan_faults(random.Random(nodes), list(range(1, nodes + 1)), 60.0, timing, speed=10.0)
    assert plan == plan_faults(random.Random(nodes), list(range(1, nodes + 1)), 60.0, timing, speed=10.0)
    assert len(plan) > 20
    assert [a.at_s for a in plan] == sorted(a.at_s for a in plan)
    assert all(0.0 <= a.at_s < 60.0 for a in plan)
    # Process faults never overlap on one node, and at most N-1 nodes are down or frozen at once.
    down: set[int] = set()
    for a in plan:
        if a.kind in (ActionKind.KILL, ActionKind.FREEZE):
            assert a.node not in down
            down.add(a.node)
            assert len(down) <= nodes - 1
        elif a.kind in (ActionKind.RESTART, ActionKind.THAW):
            down.discard(a.node)
    # Every network fault has a ref; a heal comes later with the same ref (or falls after the end).
    refs = {a.ref: a.at_s for a in plan if a.kind in NETWORK_KINDS}
    assert len(refs) == sum(1 for a in plan if a.kind in NETWORK_KINDS)
    for a in plan:
        if a.kind is ActionKind.HEAL:
            assert a.ref in refs and a.at_s >= refs[a.ref]
    kinds = {a.kind for a in plan}
    assert {ActionKind.KILL, ActionKind.FREEZE, ActionKind.CUT} <= kinds


def test_plan_freezes_straddle_the_lease() -> None:
    timing = Timing.for_speed(10.0)
    lengths: list[float] = []
    for seed in range(30):
        plan = plan_faults(random.Random(seed), [1, 2, 3], 60.0, timing, speed=10.0)
        start: dict[int, float] = {}
        for a in plan:
            if a.kind is ActionKind.FREEZE:
                start[a.node] = a.at_s
            elif a.kind is ActionKind.THAW:
                lengths.append(a.at_s - start.pop(a.node))
    assert any(x < timing.quorum_lease_s for x in lengths)
    assert any(x > timing.quorum_lease_s for x in lengths)
    assert all(0.1 - 1e-9 <= x <= 3.0 + 1e-9 for x in lengths)


def test_plan_scales_with_speed_and_one_node_has_none() -> None:
    slow = plan_faults(random.Random(1), [1, 2, 3], 600.0, Timing.for_speed(1.0), speed=1.0)
    fast = plan_faults(random.Random(1), [1, 2, 3], 60.0, Timing.for_speed(10.0), speed=10.0)
    assert [a.kind for a in slow] == [a.kind for a in fast]
    assert slow[0].at_s == pytest.approx(fast[0].at_s * 10)
    assert plan_faults(random.Random(1), [1], 60.0, Timing.for_speed(10.0), speed=10.0) == ()


# -- process model ----------------------------------------------------------------------------------
def test_frozen_inbox_caps_datagrams_but_keeps_disk_results_and_one_tick() -> None:
    n = SimNode(1, "NODE1")
    n.state = ProcState.FROZEN
    for i in range(MAX_FROZEN_DATAGRAMS + 10):
        n.enqueue(QueuedDatagram(Net.PRIVATE, 2, 1, Ack(i)))
    for i in range(5):
        assert n.enqueue(QueuedDiskResult(DiskResult(i, DiskOutcome.OK)))
        n.enqueue(QueuedTick())
    assert n.frozen_drops == 10
    items = n.thaw()
    assert n.state is ProcState.RUNNING
    assert sum(isinstance(i, QueuedDatagram) for i in items) == MAX_FROZEN_DATAGRAMS
    assert sum(isinstance(i, QueuedDiskResult) for i in items) == 5
    assert sum(isinstance(i, QueuedTick) for i in items) == 1
    first = items[0]
    assert isinstance(first, QueuedDatagram) and first.msg == Ack(0)  # arrival order kept
    assert not n.inbox


def test_timer_tokens_make_older_timers_stale() -> None:
    n = SimNode(1, "NODE1")
    t1 = n.arm(1.0)
    assert t1 is not None
    assert n.arm(1.0) is None  # same deadline, timer already pending
    t2 = n.arm(2.0)
    assert t2 is not None and t2 != t1
    assert not n.timer_fired(t1)
    assert n.timer_fired(t2)
    assert not n.timer_fired(t2)  # once
    assert n.arm(None) is None and n.deadline is None


# -- trace ------------------------------------------------------------------------------------------
def test_trace_line_format() -> None:
    ev = Event("interface_failed", 1123, "lost", {"peer": "NODE1", "net": "private"})
    assert (
        event_line(12.3456, "NODE2", ev) == "   12.3456 NODE2  1123 interface_failed net=private peer=NODE1"
    )
    ev2 = Event("membership_installed", None, "m", {"members": ["NODE1", "NODE2"], "quorum_owner": None})
    assert event_line(1.0, "NODE1", ev2) == (
        "    1.0000 NODE1       membership_installed members=[NODE1,NODE2] quorum_owner=-"
    )
    assert (
        action_line(3.5, "fault 1 partition NODE1|NODE2")
        == "    3.5000 ----        fault 1 partition NODE1|NODE2"
    )


def test_format_value_is_stable() -> None:
    assert format_value({"b": 1, "a": {3, 1, 2}}) == "{a:[1,2,3],b:1}"
    assert format_value(frozenset({"NODE2", "NODE1"})) == "[NODE1,NODE2]"
    assert format_value("two words") == '"two words"'
    assert format_value(0.1 + 0.2) == "0.3000"
    assert format_value(True) == "true"
    assert format_value(Net.PRIVATE) == "private"
    assert format_value(Ack(3)) == "Ack(epoch=3)"
    assert format_value(object()) == "<object>"
    assert len(format_value("x" * 1000)) == 200


# -- wire check -------------------------------------------------------------------------------------
def test_wire_check_round_trips_and_reports_what_the_wire_refuses() -> None:
    check = WireCheck(config())
    assert check.through(1, 3, BEAT) == (BEAT, "")
    huge = Heartbeat(seq=1, phase=3, epoch=1, members=tuple(range(100)), quorum_owner=1, paused=False)
    out, problem = check.through(1, 3, huge)
    assert out is None and problem
    assert check.first_time(huge, problem)
    assert not check.first_time(huge, problem)
