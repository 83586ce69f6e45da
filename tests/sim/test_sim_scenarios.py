"""Explicit failover scenarios on real NodeCores, driven step by step through ``Simulation``.

Every scenario also relies on the checker the simulation runs after every step: a scenario passes only
if no invariant was violated on the way (``assert_clean``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from nodeagent.core.messages import Phase
from nodeagent.sim import Simulation, plan_faults, sim_config

MakeSim = Callable[..., Simulation]  # the make_sim fixture (conftest.py)


@dataclass(frozen=True, slots=True)
class Line:
    time_s: float
    who: str
    event_id: int | None
    text: str


def lines(sim: Simulation, *, since: int = 0) -> list[Line]:
    """Trace lines from index ``since`` on (take ``len(sim.trace)`` as a mark before an action)."""
    out = []
    for raw in sim.trace[since:]:
        t = float(raw[:10])
        eid = raw[17:22].strip()
        out.append(Line(t, raw[11:17].strip(), int(eid) if eid else None, raw[23:]))
    return out


def events(sim: Simulation, kind: str, *, who: str | None = None, since: int = 0) -> list[Line]:
    return [
        ln
        for ln in lines(sim, since=since)
        if ln.text.split(" ", 1)[0] == kind and (who is None or ln.who == who)
    ]


def assert_clean(sim: Simulation) -> None:
    assert [v.line() for v in sim.violations] == []


def form(sim: Simulation) -> str:
    """Run until the cluster converged; returns the quorum owner's name."""
    assert sim.run_until_condition(sim.converged, sim.settle_bound_s()), "cluster did not form"
    holders = sim.quorum_holders()
    assert len(holders) == 1
    return holders[0]


def members_of(sim: Simulation, node: str) -> tuple[str, ...]:
    core = sim.core(node)
    assert core is not None
    return tuple(sim.config.node(m).name for m in sorted(core.members))


def all_members(sim: Simulation, names: list[str]) -> bool:
    """Every node in ``names`` is MEMBER of one epoch whose members are exactly ``names``."""
    cores = [sim.core(n) for n in names]
    if any(c is None or c.phase is not Phase.MEMBER for c in cores):
        return False
    return len({c.epoch for c in cores if c}) == 1 and all(
        members_of(sim, n) == tuple(sorted(names)) for n in names
    )


NAMES = ["NODE1", "NODE2", "NODE3"]


@pytest.mark.parametrize(
    ("quorum", "arbitration"), [("disk", "scsi2"), ("disk", "scsi3"), ("majority", "scsi2")]
)
def test_three_nodes_form_one_cluster(make_sim: MakeSim, quorum: str, arbitration: str) -> None:
    sim = make_sim(3, quorum=quorum, arbitration=arbitration)
    owner = form(sim)
    assert all_members(sim, NAMES)
    assert len(events(sim, "cluster_formed", who=owner)) == 1
    assert [ln.event_id for ln in events(sim, "cluster_formed")] == [1061]
    joined = sorted(ln.who for ln in events(sim, "cluster_joined"))
    assert joined == sorted(n for n in NAMES if n != owner)
    if quorum == "disk":
        assert sim.quorum_holder() == owner
    sim.run_for(5.0)  # and it stays that way
    assert sim.quorum_holders() == [owner]
    assert all_members(sim, NAMES)
    assert_clean(sim)


@pytest.mark.parametrize("arbitration", ["scsi2", "scsi3"])
def test_kill_a_non_owner(make_sim: MakeSim, arbitration: str) -> None:
    sim = make_sim(3, arbitration=arbitration)
    owner = form(sim)
    victim = next(n for n in NAMES if n != owner)
    survivors = [n for n in NAMES if n != victim]
    t0 = sim.now
    mark = len(sim.trace)
    sim.kill(victim)
    assert sim.run_until_condition(lambda: all_members(sim, survivors), t0 + sim.settle_bound_s())
    removed = events(sim, "node_removed", since=mark)
    assert sorted(ln.who for ln in removed) == sorted(survivors)
    assert all(ln.event_id == 1135 and f"peer={victim}" in ln.text for ln in removed)
    # The owner kept the quorum the whole time.
    assert sim.quorum_holders() == [owner]
    assert not events(sim, "halted", since=mark)
    assert not events(sim, "arbitration_started", since=mark)
    assert_clean(sim)


@pytest.mark.parametrize(
    ("quorum", "arbitration"), [("disk", "scsi2"), ("disk", "scsi3"), ("majority", "scsi2")]
)
def test_kill_the_quorum_owner(make_sim: MakeSim, quorum: str, arbitration: str) -> None:
    sim = make_sim(3, quorum=quorum, arbitration=arbitration)
    owner = form(sim)
    survivors = [n for n in NAMES if n != owner]
    t0 = sim.now
    mark = len(sim.trace)
    sim.kill(owner)
    assert sim.run_until_condition(
        lambda: all_members(sim, survivors) and len(sim.quorum_holders()) == 1, t0 + sim.settle_bound_s()
    )
    (new_owner,) = sim.quorum_holders()
    assert new_owner in survivors
    if quorum == "disk":
        assert sim.quorum_holder() == new_owner
        assert [ln.who for ln in events(sim, "arbitration_won", since=mark)] == [new_owner]
    # The killed node comes back and joins the survivors' cluster.
    sim.restart(owner)
    assert sim.run_until_condition(
        lambda: all_members(sim, NAMES) and len(sim.quorum_holders()) == 1, sim.now + sim.settle_bound_s()
    )
    assert sim.quorum_holders() == [new_owner]
    assert_clean(sim)


@pytest.mark.parametrize("arbitration", ["scsi2", "scsi3"])
def test_frozen_owner_loses_the_quorum_halts_at_thaw_and_rejoins(make_sim: MakeSim, arbitration: str) -> None:
    sim = make_sim(3, arbitration=arbitration)
    owner = form(sim)
    survivors = [n for n in NAMES if n != owner]
    lease = sim.config.timing.quorum_lease_s
    t0 = sim.now
    sim.freeze(owner)
    # A challenger takes the quorum over while the owner sleeps (never two owners: the checker watches).
    assert sim.run_until_condition(
        lambda: len(sim.quorum_holders()) == 1 and sim.quorum_holders()[0] in survivors,
        t0 + sim.settle_bound_s(),
    )
    (challenger,) = sim.quorum_holders()
    assert sim.now - t0 > lease
    assert sim.run_until_condition(lambda: all_members(sim, survivors), sim.now + sim.settle_bound_s())
    sim.run_for(1.0)
    t_thaw = sim.now
    mark_thaw = len(sim.trace)
    sim.thaw(owner)
    # The old owner finds its reservation gone (or itself pruned) and halts: event 1177.
    assert sim.run_until_condition(
        lambda: bool(events(sim, "halted", who=owner, since=mark_thaw)), t_thaw + 2.0
    )
    halted = events(sim, "halted", who=owner, since=mark_thaw)[0]
    assert halted.event_id == 1177
    assert sim.quorum_holders() == [challenger]
    # Its service restarts itself and joins the new owner's cluster.
    assert sim.run_until_condition(lambda: all_members(sim, NAMES), sim.now + sim.settle_bound_s())
    assert sim.quorum_holders() == [challenger]
    assert_clean(sim)


@pytest.mark.parametrize("pair", ["owner", "others"])
def test_cutting_only_the_private_link_changes_no_membership(make_sim: MakeSim, pair: str) -> None:
    sim = make_sim(3)
    owner = form(sim)
    others = [n for n in NAMES if n != owner]
    a, b = (owner, others[0]) if pair == "owner" else (others[0], others[1])
    core = sim.core(owner)
    assert core is not None
    epoch = core.epoch
    mark = len(sim.trace)
    fid = sim.cut(a, b, "private")
    sim.run_for(5 * sim.config.timing.node_down_after_s)
    assert not events(sim, "regroup_started", since=mark)
    assert all_members(sim, NAMES)
    assert {c.epoch for _, c in sim.live_cores()} == {epoch}
    failed = events(sim, "interface_failed", since=mark)
    assert sorted(ln.who for ln in failed) == sorted([a, b])
    assert all("net=private" in ln.text and ln.event_id == 1123 for ln in failed)
    mark1 = len(sim.trace)
    sim.heal(fid)
    sim.run_for(1.0)
    up = events(sim, "interface_up", since=mark1)
    assert sorted(ln.who for ln in up) == sorted([a, b])
    assert all("net=private" in ln.text and ln.event_id == 1122 for ln in up)
    assert sim.quorum_holders() == [owner]
    assert_clean(sim)


@pytest.mark.parametrize("owner_side", ["pair", "alone"])
@pytest.mark.parametrize(("quorum", "arbitration"), [("disk", "scsi2"), ("majority", "scsi2")])
def test_partition_two_against_one(make_sim: MakeSim, owner_side: str, quorum: str, arbitration: str) -> None:
    sim = make_sim(3, quorum=quorum, arbitration=arbitration)
    owner = form(sim)
    others = [n for n in NAMES if n != owner]
    if owner_side == "pair":
        pair, lone = [owner, others[0]], others[1]
    else:
        pair, lone = others, owner
    bound = sim.now + sim.settle_bound_s()
    fid = sim.partition([pair, [lone]])
    # The side with the majority (MNS) or with the disk owner keeps the cluster; under SCSI-2 disk
    # quorum the owner defends the disk, even alone, and the challengers lose.
    winners = sorted(pair) if quorum == "majority" or owner_side == "pair" else [lone]
    assert sim.run_until_condition(lambda: all_members(sim, winners), bound)
    sim.run_for(2.0)
    holders = sim.quorum_holders()
    assert len(holders) == 1 and holders[0] in winners
    for n in NAMES:
        if n not in winners:
            c = sim.core(n)
            assert c is not None and c.phase is not Phase.MEMBER and not c.holds_quorum(sim.now)
    assert all_members(sim, winners)
    # Healed, the cluster is whole again.
    sim.heal(fid)
    assert sim.run_until_condition(sim.converged, sim.now + sim.settle_bound_s())
    assert all_members(sim, NAMES)
    assert_clean(sim)


@pytest.mark.parametrize("owner_side", ["pair", "alone"])
def test_partition_two_against_one_scsi3(make_sim: MakeSim, owner_side: str) -> None:
    """SCSI-3 has no defense window (MSCS.md: the challenger preempts at once), so either side may take
    the disk, and the sides may take it from each other while the partition lasts; what must hold is
    that no two nodes ever hold the quorum at once (the checker, every step) and that the healed
    cluster converges."""
    sim = make_sim(3, arbitration="scsi3")
    owner = form(sim)
    others = [n for n in NAMES if n != owner]
    pair, lone = ([owner, others[0]], others[1]) if owner_side == "pair" else (others, owner)
    fid = sim.partition([pair, [lone]])
    held_by: set[str] = set()
    deadline = sim.now + sim.settle_bound_s()
    while sim.now < deadline:
        sim.run_for(0.05)
        holders = sim.quorum_holders()
        assert len(holders) <= 1
        held_by.update(holders)
    assert held_by  # somebody held the quorum during the partition
    sim.heal(fid)
    assert sim.run_until_condition(sim.converged, sim.now + sim.settle_bound_s())
    assert all_members(sim, NAMES)
    assert_clean(sim)


def test_majority_survives_losing_one_node_but_not_two(make_sim: MakeSim) -> None:
    sim = make_sim(3, quorum="majority")
    owner = form(sim)
    first = next(n for n in NAMES if n != owner)
    sim.kill(first)
    survivors = [n for n in NAMES if n != first]
    assert sim.run_until_condition(
        lambda: all_members(sim, survivors) and len(sim.quorum_holders()) == 1, sim.now + sim.settle_bound_s()
    )
    second = next(n for n in survivors if n != owner)
    t0 = sim.now
    mark = len(sim.trace)
    sim.kill(second)
    # One node of three is no majority: the survivor halts and never holds the quorum again.
    assert sim.run_until_condition(
        lambda: bool(events(sim, "halted", who=owner, since=mark)), t0 + sim.settle_bound_s()
    )
    assert "Majority" in events(sim, "halted", who=owner, since=mark)[0].text
    sim.run_for(sim.settle_bound_s())
    assert sim.quorum_holders() == []
    lone = sim.core(owner)
    assert lone is not None and lone.phase is not Phase.MEMBER
    # Bring one back: two of three is a majority again.
    sim.restart(second)
    assert sim.run_until_condition(
        lambda: all_members(sim, sorted([owner, second])) and len(sim.quorum_holders()) == 1,
        sim.now + sim.settle_bound_s(),
    )
    assert_clean(sim)


def test_a_restarted_node_joins_over_the_public_network_when_its_private_link_is_cut(
    make_sim: MakeSim,
) -> None:
    sim = make_sim(3)
    owner = form(sim)
    joiner = next(n for n in NAMES if n != owner)
    sim.kill(joiner)
    sim.cut(owner, joiner, "private")
    sim.run_for(3.0)
    sim.restart(joiner)
    assert sim.run_until_condition(lambda: all_members(sim, NAMES), sim.now + sim.settle_bound_s())
    assert_clean(sim)


@pytest.mark.parametrize(
    ("quorum", "arbitration"), [("disk", "scsi2"), ("disk", "scsi3"), ("majority", "scsi2")]
)
def test_every_message_of_a_faulty_run_survives_the_real_wire(quorum: str, arbitration: str) -> None:
    config = sim_config(21, 4, speed=10.0, quorum=quorum, arbitration=arbitration)
    sim = Simulation(config, 21, wire=True)
    sim.schedule(plan_faults(sim.rng, config.node_ids, 15.0, config.timing, speed=config.speed))
    sim.run_until(15.0)
    sim.end_faults()
    sim.settle()
    assert sim.network.stats.sent > 1000
    assert [v.line() for v in sim.violations if v.name == "wire_error"] == []


@pytest.mark.parametrize("nodes", [2, 3])
def test_majority_owner_holds_the_quorum_without_gaps(make_sim: MakeSim, nodes: int) -> None:
    sim = make_sim(nodes, quorum="majority", start_stagger_s=0.0)  # same heartbeat phase on every node
    form(sim)
    gaps = []
    end = sim.now + 3.0
    while sim.now < end:
        sim.run_for(0.0001)
        if len(sim.quorum_holders()) != 1:
            gaps.append(round(sim.now, 4))
    assert gaps == []
    assert_clean(sim)
