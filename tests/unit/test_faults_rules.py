"""Link fault rules (runtime/faults.py): kinds, combination, ids, validation, JSON, requests."""

from __future__ import annotations

import random

import pytest

from nodeagent.config import Net
from nodeagent.errors import ConfigError
from nodeagent.runtime.faults import (
    MAX_COPIES,
    MAX_DELAY_S,
    Direction,
    Fault,
    FaultKind,
    FaultTable,
    NetSelector,
    fault_from_request,
    fault_to_json,
    rule_to_json,
)

NAMES = {1: "NODE1", 2: "NODE2", 3: "NODE3"}
IN, OUT = Direction.IN, Direction.OUT


def id_of(name: str) -> int:
    for node_id, n in NAMES.items():
        if n == name.upper():
            return node_id
    raise ConfigError(f"unknown node {name!r}")


def table(*faults: Fault, seed: int = 1) -> FaultTable:
    t = FaultTable(random.Random(seed))
    for f in faults:
        t.add(f)
    return t


def rate(t: FaultTable, pred: str, n: int = 4000, direction: Direction = OUT) -> float:
    hits = 0
    for _ in range(n):
        v = t.decide(Net.PRIVATE, 2, direction)
        hits += {"drop": v.drop, "dup": v.copies > 1, "delay": v.delay_s > 0}[pred]
    return hits / n


def test_loss_drops_about_its_percentage_and_only_on_matching_paths() -> None:
    t = table(Fault(FaultKind.LOSS, NetSelector.PRIVATE, 2, pct=30))
    assert 0.26 < rate(t, "drop") < 0.34
    assert not t.decide(Net.PUBLIC, 2, OUT).drop
    assert not any(t.decide(Net.PRIVATE, 3, IN).drop for _ in range(200))


def test_two_loss_rules_each_roll() -> None:
    t = table(
        Fault(FaultKind.LOSS, NetSelector.ALL, None, pct=50),
        Fault(FaultKind.LOSS, NetSelector.ALL, 2, pct=50),
    )
    assert 0.71 < rate(t, "drop") < 0.79  # 1 - 0.5 * 0.5


def test_any_cut_drops_whatever_the_order() -> None:
    t = table(
        Fault(FaultKind.DELAY, NetSelector.ALL, None, delay_ms=50), Fault(FaultKind.CUT, NetSelector.ALL, 2)
    )
    v = t.decide(Net.PUBLIC, 2, IN)
    assert v.drop and v.fault is not None and v.fault.kind is FaultKind.CUT
    assert t.decide(Net.PUBLIC, 3, IN).delay_s == pytest.approx(0.05)


def test_delay_with_jitter_stays_in_its_bounds_and_delays_add() -> None:
    t = table(Fault(FaultKind.DELAY, NetSelector.ALL, None, delay_ms=100, jitter_ms=40))
    delays = [t.decide(Net.PRIVATE, 2, OUT).delay_s for _ in range(2000)]
    assert 0.060 <= min(delays) < 0.065 and 0.135 < max(delays) <= 0.140
    assert len(set(delays)) > 1000
    t.add(Fault(FaultKind.DELAY, NetSelector.PRIVATE, 2, delay_ms=1000))
    assert all(1.06 <= t.decide(Net.PRIVATE, 2, IN).delay_s <= 1.14 for _ in range(100))
    assert all(t.decide(Net.PUBLIC, 2, IN).delay_s <= 0.14 for _ in range(100))


def test_jitter_larger_than_the_delay_never_goes_negative() -> None:
    t = table(Fault(FaultKind.DELAY, NetSelector.ALL, None, delay_ms=5, jitter_ms=50))
    assert all(t.decide(Net.PRIVATE, 2, OUT).delay_s >= 0 for _ in range(500))


def test_total_delay_and_copies_are_capped() -> None:
    t = table(*(Fault(FaultKind.DELAY, NetSelector.ALL, p, delay_ms=10_000) for p in (None, 2)))
    t.add(Fault(FaultKind.DELAY, NetSelector.PRIVATE, None, delay_ms=10_000))
    assert t.decide(Net.PRIVATE, 2, OUT).delay_s == MAX_DELAY_S
    dups = table(
        *(Fault(FaultKind.DUP, NetSelector.ALL, None, Direction(d), pct=100) for d in ("both", "out"))
    )
    dups.add(Fault(FaultKind.DUP, NetSelector.ALL, 2, pct=100))
    dups.add(Fault(FaultKind.DUP, NetSelector.PRIVATE, 2, pct=100))
    dups.add(Fault(FaultKind.DUP, NetSelector.PRIVATE, 2, Direction.OUT, pct=100))
    assert dups.decide(Net.PRIVATE, 2, OUT).copies == MAX_COPIES


def test_dup_makes_about_its_percentage_of_copies() -> None:
    t = table(Fault(FaultKind.DUP, NetSelector.ALL, None, pct=25))
    assert 0.21 < rate(t, "dup", direction=IN) < 0.29
    v = table(Fault(FaultKind.DUP, NetSelector.ALL, None, pct=100)).decide(Net.PRIVATE, 2, IN)
    assert v.copies == 2 and v.delay_s == 0 and not v.drop


def test_reorder_holds_back_its_percentage_by_at_most_delay_ms() -> None:
    t = table(Fault(FaultKind.REORDER, NetSelector.ALL, None, pct=40, delay_ms=200))
    verdicts = [t.decide(Net.PRIVATE, 2, OUT) for _ in range(4000)]
    held = [v.delay_s for v in verdicts if v.delay_s > 0]
    assert 0.36 < len(held) / len(verdicts) < 0.44
    assert max(held) <= 0.2 and min(held) >= 0
    assert all(v.copies == 1 and not v.drop for v in verdicts)


def test_same_seed_same_decisions() -> None:
    rules = (
        Fault(FaultKind.LOSS, NetSelector.ALL, None, pct=30),
        Fault(FaultKind.DELAY, NetSelector.ALL, None, delay_ms=20, jitter_ms=10),
        Fault(FaultKind.DUP, NetSelector.ALL, None, pct=30),
    )
    a, b = table(*rules, seed=7), table(*rules, seed=7)
    assert [a.decide(Net.PRIVATE, 2, OUT) for _ in range(300)] == [
        b.decide(Net.PRIVATE, 2, OUT) for _ in range(300)
    ]


def test_direction_scopes_every_kind() -> None:
    t = table(Fault(FaultKind.DELAY, NetSelector.ALL, 2, Direction.IN, delay_ms=30))
    assert t.decide(Net.PRIVATE, 2, IN).delay_s == pytest.approx(0.03)
    assert t.decide(Net.PRIVATE, 2, OUT).delay_s == 0


def test_ids_are_monotonic_heal_one_or_all_and_identical_rules_share_one() -> None:
    t = table()
    loss = Fault(FaultKind.LOSS, NetSelector.ALL, None, pct=10)
    r1, new1 = t.install(loss)
    r2, _ = t.install(Fault(FaultKind.CUT, NetSelector.PRIVATE, 3))
    again, new_again = t.install(loss)
    assert (r1.id, r2.id, new1) == (1, 2, True)
    assert again == r1 and not new_again
    assert [r.id for r in t.heal(1)] == [1]
    assert t.heal(1) == []
    r3, _ = t.install(loss)
    assert r3.id == 3  # never reused
    assert [r.id for r in t.heal()] == [2, 3] and t.rules == ()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"kind": FaultKind.LOSS}, "pct"),
        ({"kind": FaultKind.LOSS, "pct": 101}, "pct"),
        ({"kind": FaultKind.DUP, "pct": -1}, "pct"),
        ({"kind": FaultKind.CUT, "pct": 10}, "takes no pct"),
        ({"kind": FaultKind.DELAY}, "needs a delay_ms"),
        ({"kind": FaultKind.DELAY, "delay_ms": 10_001}, "delay_ms"),
        ({"kind": FaultKind.DELAY, "delay_ms": -1}, "delay_ms"),
        ({"kind": FaultKind.DELAY, "delay_ms": 5, "jitter_ms": 20_000}, "jitter_ms"),
        ({"kind": FaultKind.LOSS, "pct": 5, "delay_ms": 5}, "takes no delay"),
        ({"kind": FaultKind.REORDER, "pct": 5, "jitter_ms": 5, "delay_ms": 5}, "takes no jitter"),
        ({"kind": FaultKind.REORDER, "pct": 5}, "reorder: needs a delay_ms"),
    ],
)
def test_validation(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        Fault(net=NetSelector.ALL, peer=None, **kwargs)  # type: ignore[arg-type]


def test_json_shapes() -> None:
    rule, _ = table().install(
        Fault(FaultKind.DELAY, NetSelector.PUBLIC, 2, Direction.OUT, delay_ms=50, jitter_ms=5)
    )
    assert rule_to_json(rule, NAMES.__getitem__) == {
        "id": 1, "kind": "delay", "net": "public", "peer": "NODE2", "direction": "out",
        "pct": 0.0, "delay_ms": 50.0, "jitter_ms": 5.0,
    }  # fmt: skip
    assert fault_to_json(rule.fault, NAMES.__getitem__) == {
        "kind": "delay", "net": "public", "peer": "NODE2", "direction": "out",
        "delay_ms": 50.0, "jitter_ms": 5.0,
    }  # fmt: skip


def test_fault_from_request() -> None:
    req = {"op": "fault_add", "kind": "loss", "net": "private", "peer": "node2", "direction": "in", "pct": 12}
    assert fault_from_request(req, id_of, 1) == Fault(
        FaultKind.LOSS, NetSelector.PRIVATE, 2, Direction.IN, pct=12
    )
    reorder = fault_from_request({"kind": "reorder", "pct": 10}, id_of, 1, reorder_default_ms=240)
    assert reorder.delay_ms == 240 and reorder.peer is None and reorder.net is NetSelector.ALL
    cut = fault_from_request({"kind": "loss", "net": "all"}, id_of, 1, kind="cut")
    assert cut.kind is FaultKind.CUT
    with pytest.raises(ConfigError, match="kind = 'jam'"):
        fault_from_request({"kind": "jam"}, id_of, 1)
    with pytest.raises(ConfigError, match="pct = 'lots'"):
        fault_from_request({"kind": "loss", "pct": "lots"}, id_of, 1)
    with pytest.raises(ConfigError, match="itself"):
        fault_from_request({"kind": "cut", "peer": "NODE1"}, id_of, 1)
    with pytest.raises(ConfigError, match="unknown node"):
        fault_from_request({"kind": "cut", "peer": "NODE7"}, id_of, 1)
