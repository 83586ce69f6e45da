"""The simulation driver with a tiny scripted core: delivery, timers, kill/restart, freeze/thaw, disks."""

from __future__ import annotations

from typing import Any

import pytest

from nodeagent.config import ClusterConfig, Net, default_config_dict
from nodeagent.core.effects import DiskOp, DiskOpKind, DiskOutcome, DiskResult, Ready, Send
from nodeagent.core.messages import Heartbeat, Message, Phase
from nodeagent.sim import Simulation
from nodeagent.sim.process import MAX_FROZEN_DATAGRAMS


class FakeCore:
    """Beats to every peer on every network each ``period``; logs every input; scriptable."""

    period = 0.1

    def __init__(self, config: ClusterConfig, node_id: int, incarnation: int, known_epoch: int) -> None:
        self.config = config
        self.node_id = node_id
        self.incarnation = incarnation
        self.known_epoch = known_epoch
        self.phase = Phase.JOINING
        self.epoch = 0
        self.members: tuple[int, ...] = ()
        self.quorum_owner: int | None = None
        self.holding = False
        self.log: list[tuple[str, float, Any]] = []
        self.next_s = 0.0
        self.seq = 0
        self.pending_ops: list[DiskOp] = []
        self.explode = False
        self.spin = False
        self.silent = False

    def _ready(self, now_s: float, beat: bool = False) -> Ready:
        if self.explode:
            raise RuntimeError("boom")
        r = Ready(disk_ops=self.pending_ops)
        self.pending_ops = []
        if beat and not self.silent:
            self.seq += 1
            msg = Heartbeat(self.seq, int(self.phase), self.epoch, self.members, 0, False)
            for peer in self.config.node_ids:
                if peer != self.node_id:
                    r.sends.extend(Send(net, peer, msg) for net in (Net.PRIVATE, Net.PUBLIC))
        r.next_deadline_s = now_s if self.spin else self.next_s
        return r

    def start(self, now_s: float, /) -> Ready:
        self.log.append(("start", now_s, None))
        self.next_s = now_s + self.period
        return self._ready(now_s, beat=True)

    def on_message(self, net: Net, sender: int, incarnation: int, msg: Message, now_s: float, /) -> Ready:
        self.log.append(("msg", now_s, (net, sender, incarnation, msg)))
        return self._ready(now_s)

    def on_disk_result(self, result: DiskResult, now_s: float, /) -> Ready:
        self.log.append(("disk", now_s, result))
        return self._ready(now_s)

    def on_tick(self, now_s: float, /) -> Ready:
        self.log.append(("tick", now_s, None))
        beat = now_s >= self.next_s
        if beat:
            self.next_s += self.period
        return self._ready(now_s, beat=beat)

    def stop(self, now_s: float, /) -> Ready:
        self.log.append(("stop", now_s, None))
        return Ready(exit=True)

    def holds_quorum(self, now_s: float, /) -> bool:
        return self.holding


def fake_sim(nodes: int = 3, seed: int = 1, public_role: int | None = None) -> Simulation:
    data = default_config_dict(number=1, key=bytes(16), nodes=nodes)
    if public_role is not None:
        data["networks"]["public"]["role"] = public_role
    return Simulation(ClusterConfig.from_dict(data), seed, core_factory=FakeCore, start_stagger_s=0.0)


def fake(sim: Simulation, node: str | int) -> FakeCore:
    core = sim.core(node)
    assert isinstance(core, FakeCore)
    return core


def msgs(core: FakeCore) -> list[tuple[float, Any]]:
    return [(t, x) for kind, t, x in core.log if kind == "msg"]


def test_datagrams_arrive_after_a_small_delay_with_sender_and_incarnation() -> None:
    sim = fake_sim(2)
    sim.run_until(1.0)
    got = msgs(fake(sim, "NODE2"))
    assert len(got) == 2 * 10  # two networks, beats at 0.0 .. 0.9
    for t, (_net, sender, inc, msg) in got:
        assert sender == 1 and inc == 1 and isinstance(msg, Heartbeat)
        sent = (msg.seq - 1) * 0.1
        assert sent + 0.0002 <= t <= sent + 0.0005 + 1e-9
    assert sim.violations == []
    ticks = [t for kind, t, _ in fake(sim, 1).log if kind == "tick"]
    assert ticks[:3] == pytest.approx([0.1, 0.2, 0.3])  # on_tick exactly at each deadline


def test_network_without_cluster_role_carries_nothing() -> None:
    sim = fake_sim(2, public_role=2)
    sim.run_until(0.55)
    nets = {net for _, (net, *_rest) in msgs(fake(sim, 2))}
    assert nets == {Net.PRIVATE}
    assert sim.network.stats.dropped_role > 0


def test_same_seed_same_run_other_seed_other_timings() -> None:
    def arrivals(seed: int) -> list[float]:
        sim = fake_sim(3, seed=seed)
        sim.run_until(2.0)
        return [t for t, _ in msgs(fake(sim, 3))]

    assert arrivals(7) == arrivals(7)
    assert arrivals(7) != arrivals(8)


def test_kill_drops_pending_deliveries_and_restart_is_a_new_incarnation() -> None:
    sim = fake_sim(2)
    sim.run_until(0.25)
    old = fake(sim, 2)
    old.phase, old.epoch, old.members = Phase.MEMBER, 4, (1, 2)
    sim.run_until(0.30001)  # a call happened: the node "installed" epoch 4; beats of 0.3 are in flight
    assert sim.node(2).installed_epoch == 4
    sim.kill("NODE2")
    assert sim.core("NODE2") is None
    sim.restart("NODE2")
    new = fake(sim, 2)
    assert new is not old
    assert (new.incarnation, new.known_epoch) == (2, 4)
    sim.run_until(0.5)
    # Datagrams sent at 0.3 to the dead process never reach the new one.
    assert all(t > 0.4 for t, _ in msgs(new))
    assert sim.counters["datagrams_to_dead"] >= 2
    # The peer sees the new incarnation.
    incs = [x[2] for t, x in msgs(fake(sim, 1)) if t > 0.4]
    assert incs and set(incs) == {2}
    assert "    0.3000 ----        kill NODE2" in sim.trace
    assert "    0.3000 ----        restart NODE2 incarnation=2 known_epoch=4" in sim.trace


def test_freeze_queues_inputs_and_thaw_feeds_them_in_order_at_thaw_time() -> None:
    sim = fake_sim(2)
    sim.run_until(0.05)
    core = fake(sim, 2)
    sim.freeze(2)
    n_before = len(core.log)
    sim.run_until(1.05)
    assert len(core.log) == n_before  # nothing processed while frozen
    assert core.holds_quorum(sim.now) is False
    sim.thaw(2)
    new = core.log[n_before:]
    queued_msgs = [x for kind, t, x in new if kind == "msg"]
    assert len(queued_msgs) == 20
    assert all(t == 1.05 for _, t, _ in new)  # processed with the thaw time as now
    seqs = [m[3].seq for m in queued_msgs]
    assert seqs == sorted(seqs)
    assert [kind for kind, _, _ in new].count("tick") == 1  # timers coalesce into one tick
    assert "    1.0500 ----        thaw NODE2 queued=21 dropped=0" in sim.trace


def test_frozen_process_keeps_at_most_256_datagrams() -> None:
    sim = fake_sim(2)
    sim.run_until(0.01)
    fake(sim, 1).period = 0.001
    sim.freeze(2)
    sim.run_until(0.5)
    sim.thaw(2)
    got = [x for kind, t, x in fake(sim, 2).log if kind == "msg" and t == sim.now]
    assert len(got) == MAX_FROZEN_DATAGRAMS
    line = next(x for x in sim.trace if "thaw NODE2" in x)
    dropped = int(line.rsplit("dropped=", 1)[1])
    assert dropped > 500


def test_disk_ops_get_exactly_one_result_in_issue_order() -> None:
    sim = fake_sim(2)
    sim.run_until(0.01)
    a = fake(sim, 1)
    a.pending_ops = [
        DiskOp(1, "Q", DiskOpKind.RESERVE),
        DiskOp(2, "Q", DiskOpKind.WRITE, block=0, data=b"hello"),
        DiskOp(3, "Q", DiskOpKind.READ, block=0),
    ]
    sim.run_until(0.1001)  # the tick at 0.1 issues them
    assert sim.quorum_holder() is None or sim.quorum_holder() == "NODE1"
    sim.run_until(0.2)
    results = [(t, r) for kind, t, r in a.log if kind == "disk"]
    assert [r.op_id for _, r in results] == [1, 2, 3]
    assert [r.outcome for _, r in results] == [DiskOutcome.OK] * 3
    assert results[2][1].data.startswith(b"hello")
    assert all(0.1005 <= t <= 0.1 + 0.006 for t, _ in results)
    assert sim.quorum_holder() == "NODE1"
    b = fake(sim, 2)
    b.pending_ops = [DiskOp(1, "Q", DiskOpKind.RESERVE), DiskOp(2, "Q", DiskOpKind.WRITE, block=0, data=b"x")]
    sim.run_until(0.4)
    res_b = [r for kind, _, r in b.log if kind == "disk"]
    assert [(r.outcome, r.holder) for r in res_b] == [(DiskOutcome.CONFLICT, "NODE1")] * 2


def test_disk_results_wait_for_a_frozen_node_and_are_lost_with_a_dead_one() -> None:
    sim = fake_sim(2)
    sim.run_until(0.01)
    a = fake(sim, 1)
    a.pending_ops = [DiskOp(1, "Q", DiskOpKind.RESERVE)]
    sim.run_until(0.1)  # issued at 0.1, in flight
    sim.freeze(1)
    sim.run_until(0.5)
    assert not [x for x in a.log if x[0] == "disk"]
    sim.thaw(1)
    assert [(t, r.op_id) for kind, t, r in a.log if kind == "disk"] == [(0.5, 1)]
    sim.run_until(0.55)
    a.pending_ops = [DiskOp(2, "Q", DiskOpKind.RELEASE)]
    sim.run_until(0.6001)  # issued by the tick at 0.6, not yet at the disk
    sim.kill(1)
    sim.run_until(0.7)
    assert sim.counters["disk_results_lost"] == 1
    assert sim.quorum_holder() is None  # the release still reached the disk


def test_core_exception_is_a_violation_and_kills_the_process() -> None:
    sim = fake_sim(2)
    sim.run_until(0.05)
    fake(sim, 2).explode = True
    sim.run_until(0.3)
    assert sim.core(2) is None
    assert [v.name for v in sim.violations] == ["core_error"]
    assert "NODE2" in sim.violations[0].evidence and "RuntimeError: boom" in sim.violations[0].evidence
    assert any("CRASH NODE2" in line for line in sim.trace)


def test_a_tick_that_does_not_move_the_deadline_is_reported_once_and_the_run_goes_on() -> None:
    sim = fake_sim(2)
    sim.run_until(0.05)
    fake(sim, 1).spin = True
    sim.run_until(0.5)
    assert sim.now == 0.5
    assert [v.name for v in sim.violations] == ["busy_timer"]


def test_graceful_stop_exits_the_process() -> None:
    sim = fake_sim(2)
    sim.run_until(0.05)
    sim.stop("NODE1")
    assert sim.core("NODE1") is None
    assert sim.trace[-1] == "    0.0500 ----        exit NODE1"


def test_partition_and_heal() -> None:
    sim = fake_sim(3)
    sim.run_until(0.05)
    fid = sim.partition([["NODE1", "NODE2"], ["NODE3"]])
    assert sim.trace[-1] == "    0.0500 ----        fault 1 partition NODE1,NODE2|NODE3"
    sim.run_until(1.05)
    c3 = fake(sim, 3)
    assert not [t for t, _ in msgs(c3) if t > 0.05]
    assert {x[1] for t, x in msgs(fake(sim, 1)) if t > 0.05} == {2}
    sim.heal(fid)
    assert sim.trace[-1] == "    1.0500 ----        heal 1 partition NODE1,NODE2|NODE3"
    sim.run_until(1.5)
    assert {x[1] for t, x in msgs(c3) if t > 1.05} == {1, 2}


def test_cut_one_network_only() -> None:
    sim = fake_sim(2)
    sim.cut("NODE1", "NODE2", "private")
    sim.run_until(1.0)
    assert {x[0] for _, x in msgs(fake(sim, 2))} == {Net.PUBLIC}
    assert {x[0] for _, x in msgs(fake(sim, 1))} == {Net.PUBLIC}


def test_two_owners_in_the_simulation_are_caught() -> None:
    sim = fake_sim(3)
    sim.run_until(0.05)
    fake(sim, 1).holding = True
    sim.run_until(0.2)
    assert sim.violations == []
    fake(sim, 3).holding = True
    sim.freeze(3)  # a frozen owner still counts, at the global now
    assert [v.name for v in sim.violations] == ["one_owner"]
    assert "NODE1,NODE3 all hold the quorum (frozen: NODE3)" in sim.violations[0].evidence
    assert any("VIOLATION one_owner" in line for line in sim.trace)


def test_settle_bound_comes_from_the_timing() -> None:
    sim = fake_sim(3)
    t = sim.config.timing
    expected = 3 * (
        t.join_timeout_s
        + t.restart_delay_s
        + t.challenge_takeover_s
        + t.regroup_activity_s
        + 2 * t.regroup_stage_timeout_s
        + t.node_down_after_s
    )
    assert sim.settle_bound_s() == pytest.approx(expected)
    assert 5.0 < expected < 30.0  # lab speed 10


def test_run_until_condition_stops_at_the_first_step_where_it_holds() -> None:
    sim = fake_sim(2)
    sim.run_until(0.0)  # both started
    assert sim.run_until_condition(lambda: len(msgs(fake(sim, 2))) >= 3, 10.0)
    assert 0.1 < sim.now < 0.2
    assert not sim.run_until_condition(lambda: False, 0.5)
    assert sim.now == 0.5
