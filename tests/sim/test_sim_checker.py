"""The invariant checker must be able to fail: crafted states that break each rule are reported."""

from __future__ import annotations

from collections.abc import Callable

from nodeagent.config import ClusterConfig, default_config_dict
from nodeagent.core.messages import Phase
from nodeagent.sim.invariants import MAX_VIOLATIONS, InvariantChecker, NodeView, converged


def config(quorum: str = "disk", nodes: int = 3) -> ClusterConfig:
    return ClusterConfig.from_dict(default_config_dict(number=1, key=bytes(16), nodes=nodes, quorum=quorum))


def view(
    node_id: int,
    *,
    phase: Phase | None = Phase.MEMBER,
    epoch: int = 1,
    members: tuple[int, ...] = (1, 2, 3),
    owner: int | None = 1,
    holds: bool = False,
    frozen: bool = False,
    incarnation: int = 1,
) -> NodeView:
    return NodeView(
        node_id, f"NODE{node_id}", phase is not None, frozen, incarnation, phase, epoch, members, owner, holds
    )


def const(holder: str | None) -> Callable[[], str | None]:
    return lambda: holder


def healthy() -> list[NodeView]:
    return [view(1, holds=True), view(2), view(3)]


def test_healthy_cluster_passes() -> None:
    c = InvariantChecker(config())
    assert c.check_step(1.0, healthy(), lambda: "NODE1") == []
    assert c.check_final(2.0, healthy()) == []
    assert converged(healthy())
    assert c.installs == 3


def test_two_owners_reported_once_per_episode() -> None:
    c = InvariantChecker(config())
    two = [view(1, holds=True, frozen=True), view(2, holds=True), view(3)]
    found = c.check_step(1.0, two, lambda: "NODE1")
    assert [v.name for v in found] == ["one_owner"]
    assert "NODE1,NODE2 all hold the quorum" in found[0].evidence
    assert "frozen: NODE1" in found[0].evidence
    assert c.check_step(1.1, two, lambda: "NODE1") == []  # same episode
    assert c.check_step(1.2, healthy(), lambda: "NODE1") == []
    again = c.check_step(1.3, two, lambda: "NODE1")
    assert [v.name for v in again] == ["one_owner"]
    assert len(c.violations) == 2


def test_dead_nodes_do_not_count_as_owners() -> None:
    c = InvariantChecker(config())
    dead = view(2, phase=None, holds=True)  # a view of a dead node never holds, but be strict anyway
    assert c.check_step(1.0, [view(1, holds=True), dead, view(3)], lambda: "NODE1") == []


def test_different_member_sets_for_one_epoch() -> None:
    c = InvariantChecker(config())
    c.check_step(
        1.0, [view(1, epoch=5, members=(1, 2), holds=True), view(2, epoch=5, members=(1, 2))], lambda: "NODE1"
    )
    found = c.check_step(
        2.0,
        [view(1, epoch=5, members=(1, 2), holds=True), view(3, epoch=5, members=(2, 3), owner=3)],
        lambda: "NODE1",
    )
    names = [v.name for v in found]
    assert "agreement" in names
    ev = next(v for v in found if v.name == "agreement").evidence
    assert "NODE3 installed epoch 5 with members NODE2,NODE3" in ev and "NODE1,NODE2" in ev


def test_a_restarted_node_reinstalling_the_same_membership_is_not_new() -> None:
    c = InvariantChecker(config())
    c.check_step(1.0, healthy(), lambda: "NODE1")
    n = c.installs
    c.check_step(2.0, [view(1, holds=True), view(2, incarnation=2), view(3)], lambda: "NODE1")
    assert c.installs == n


def test_membership_not_backed_by_the_disk() -> None:
    c = InvariantChecker(config())
    stale = [view(1), view(2), view(3)]  # owner NODE1 named, but it holds no fresh lease
    found = c.check_step(1.0, stale, lambda: "NODE2")
    assert [v.name for v in found] == ["quorum_backed"] * 3
    assert "quorum owner NODE1 holds no fresh lease and disk Q is held by NODE2" in found[0].evidence
    # No owner named at all.
    c2 = InvariantChecker(config())
    found2 = c2.check_step(1.0, [view(1, owner=None)], lambda: None)
    assert [v.name for v in found2] == ["quorum_backed"]


def test_a_fresh_lease_backs_the_owner_while_a_challenger_moves_the_disk() -> None:
    # SCSI-2 bus reset (unreserved) or SCSI-3 preempt (held by the challenger): the owner's lease
    # still backs it until it runs out.
    for holder in (None, "NODE3"):
        c = InvariantChecker(config())
        assert c.check_step(1.0, healthy(), lambda h=holder: h) == []  # type: ignore[misc]
        strict = InvariantChecker(config(), strict_backing=True)
        found = strict.check_step(1.0, healthy(), const(holder))
        assert [v.name for v in found] == ["quorum_backed"] * 3
        assert f"quorum owner NODE1 but disk Q held by {holder or 'no one'}" in found[0].evidence
    c3 = InvariantChecker(config())
    found3 = c3.check_step(1.0, [view(1), view(2), view(3)], lambda: None)
    assert {v.name for v in found3} == {"quorum_backed"}
    assert "no fresh lease" in found3[0].evidence


def test_majority_membership_must_be_a_majority() -> None:
    c = InvariantChecker(config("majority", nodes=5))
    ok = [view(i, members=(1, 2, 3), holds=i == 1) for i in (1, 2, 3)]
    assert c.check_step(1.0, ok, lambda: None) == []
    small = [view(4, epoch=2, members=(4, 5), owner=4, holds=True), view(5, epoch=2, members=(4, 5), owner=4)]
    found = c.check_step(2.0, small, lambda: None)
    assert [v.name for v in found] == ["quorum_backed", "quorum_backed"]
    assert "2 members, majority is 3" in found[0].evidence


def test_final_rule() -> None:
    c = InvariantChecker(config())
    split = [
        view(1, members=(1, 2), holds=True),
        view(2, members=(1, 2)),
        view(3, phase=Phase.JOINING, epoch=0),
    ]
    found = c.check_final(9.0, split)
    assert [v.name for v in found] == ["final"]
    ev = found[0].evidence
    assert "NODE1 has members NODE1,NODE2, live are NODE1,NODE2,NODE3" in ev
    assert "NODE3 is JOINING" in ev
    assert "epochs differ" in ev
    assert not converged(split)
    nobody = [view(1), view(2), view(3)]
    assert "0 nodes hold the quorum" in c.check_final(9.0, nobody)[0].evidence
    assert not converged(nobody)
    # Dead nodes are left out of "all live nodes".
    gone = [view(1, members=(1, 2), holds=True), view(2, members=(1, 2)), view(3, phase=None)]
    assert c.check_final(9.0, gone) == []
    assert converged(gone)


def test_violations_are_capped() -> None:
    c = InvariantChecker(config())
    for i in range(MAX_VIOLATIONS + 5):
        c.record(float(i), "x", "y")
    assert len(c.violations) == MAX_VIOLATIONS
    assert c.suppressed == 5
