"""The fault rule table (pure code): what a cut drops, and the control socket's JSON shape."""

from __future__ import annotations

import pytest

from nodeagent.config import Net
from nodeagent.errors import ConfigError
from nodeagent.runtime.faults import (
    MAX_FAULTS,
    Direction,
    Fault,
    FaultKind,
    FaultTable,
    NetSelector,
    cut_from_request,
    fault_to_json,
)

NAMES = {1: "NODE1", 2: "NODE2", 3: "NODE3"}


def id_of(name: str) -> int:
    for node_id, n in NAMES.items():
        if n == name.upper():
            return node_id
    raise ConfigError(f"unknown node {name!r}")


def cut(net: NetSelector, peer: int | None, direction: Direction = Direction.BOTH) -> Fault:
    return Fault(kind=FaultKind.CUT, net=net, peer=peer, direction=direction)


def test_empty_table_passes_everything() -> None:
    table = FaultTable()
    for net in Net:
        for direction in (Direction.IN, Direction.OUT):
            verdict = table.decide(net, 2, direction)
            assert not verdict.drop
            assert verdict.copies == 1 and verdict.delay_s == 0.0


def test_cut_one_peer_on_one_net_drops_both_directions_only_there() -> None:
    table = FaultTable()
    rule = cut(NetSelector.PRIVATE, 2)
    assert table.add(rule)
    assert table.decide(Net.PRIVATE, 2, Direction.OUT).drop
    assert table.decide(Net.PRIVATE, 2, Direction.IN).drop
    assert table.decide(Net.PRIVATE, 2, Direction.IN).fault == rule
    assert not table.decide(Net.PUBLIC, 2, Direction.OUT).drop
    assert not table.decide(Net.PRIVATE, 3, Direction.IN).drop


def test_cut_all_nets_every_peer() -> None:
    table = FaultTable()
    table.add(cut(NetSelector.ALL, None))
    for net in Net:
        for peer in (2, 3):
            assert table.decide(net, peer, Direction.IN).drop
            assert table.decide(net, peer, Direction.OUT).drop


def test_one_way_rule_drops_only_its_direction() -> None:
    table = FaultTable()
    table.add(cut(NetSelector.PUBLIC, 3, Direction.OUT))
    assert table.decide(Net.PUBLIC, 3, Direction.OUT).drop
    assert not table.decide(Net.PUBLIC, 3, Direction.IN).drop


def test_decide_rejects_both_as_a_datagram_direction() -> None:
    with pytest.raises(ValueError):
        FaultTable().decide(Net.PRIVATE, 2, Direction.BOTH)


def test_duplicates_are_ignored_heal_clears_and_the_table_is_bounded() -> None:
    table = FaultTable()
    assert table.add(cut(NetSelector.PRIVATE, 2))
    assert not table.add(cut(NetSelector.PRIVATE, 2))
    assert len(table.faults) == 1
    assert table.clear() == 1
    assert not table.decide(Net.PRIVATE, 2, Direction.IN).drop
    for i in range(MAX_FAULTS):
        table.add(cut(NetSelector.PRIVATE, i + 1))
    with pytest.raises(ConfigError):
        table.add(cut(NetSelector.PUBLIC, None))


def test_json_shape_matches_the_contract() -> None:
    assert fault_to_json(cut(NetSelector.PRIVATE, 2), NAMES.__getitem__) == {
        "kind": "cut",
        "net": "private",
        "peer": "NODE2",
    }
    assert fault_to_json(cut(NetSelector.ALL, None), NAMES.__getitem__) == {
        "kind": "cut",
        "net": "all",
        "peer": None,
    }
    one_way = fault_to_json(cut(NetSelector.PUBLIC, 3, Direction.IN), NAMES.__getitem__)
    assert one_way["direction"] == "in"


def test_cut_from_request_validates() -> None:
    assert cut_from_request({"op": "fault_cut", "net": "public", "peer": "node3"}, id_of, 1) == cut(
        NetSelector.PUBLIC, 3
    )
    assert cut_from_request({"op": "fault_cut", "net": "all", "peer": None}, id_of, 1) == cut(
        NetSelector.ALL, None
    )
    with pytest.raises(ConfigError, match="net"):
        cut_from_request({"net": "wifi", "peer": None}, id_of, 1)
    with pytest.raises(ConfigError, match="unknown node"):
        cut_from_request({"net": "all", "peer": "NODE9"}, id_of, 1)
    with pytest.raises(ConfigError, match="itself"):
        cut_from_request({"net": "all", "peer": "NODE1"}, id_of, 1)
    with pytest.raises(ConfigError, match="peer"):
        cut_from_request({"net": "all", "peer": 2}, id_of, 1)
    with pytest.raises(ConfigError, match="direction"):
        cut_from_request({"net": "all", "peer": None, "direction": "sideways"}, id_of, 1)
