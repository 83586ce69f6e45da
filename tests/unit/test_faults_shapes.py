"""Named partition shapes (cli/faultshapes.py): pure planning, validation, per-node rules."""

from __future__ import annotations

import itertools
import random

import pytest

from nodeagent.cli import faultshapes
from nodeagent.cli.faultshapes import CutRule, plan
from nodeagent.config import ClusterConfig, default_config_dict
from nodeagent.errors import ConfigError


def cfg(n: int) -> ClusterConfig:
    return ClusterConfig.from_dict(default_config_dict(number=5, key=bytes(32), nodes=n))


def names(n: int) -> list[str]:
    return [f"NODE{i}" for i in range(1, n + 1)]


def test_isolate_blocks_both_ways_and_rules_sit_on_both_ends() -> None:
    p = plan(cfg(3), "isolate node2", random.Random(0))
    assert p.blocked == {("NODE2", "NODE1"), ("NODE1", "NODE2"), ("NODE2", "NODE3"), ("NODE3", "NODE2")}
    assert p.visible["NODE2"] == {"NODE2"} and p.visible["NODE1"] == {"NODE1", "NODE3"}
    assert p.rules() == [
        CutRule("NODE1", "NODE2", "both"),
        CutRule("NODE2", "NODE1", "both"),
        CutRule("NODE2", "NODE3", "both"),
        CutRule("NODE3", "NODE2", "both"),
    ]


def test_split_sides() -> None:
    p = plan(cfg(4), "split NODE1,node2 | NODE3,NODE4", random.Random(0))
    assert p.description == "NODE1,NODE2 | NODE3,NODE4"
    assert p.visible == {
        "NODE1": {"NODE1", "NODE2"}, "NODE2": {"NODE1", "NODE2"},
        "NODE3": {"NODE3", "NODE4"}, "NODE4": {"NODE3", "NODE4"},
    }  # fmt: skip
    three = plan(cfg(3), "split NODE1|NODE2|NODE3", random.Random(0))
    assert all(v == {n} for n, v in three.visible.items())


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("split NODE1,NODE2", "at least two sides"),
        ("split NODE1|NODE2", "NODE3 not named"),
        ("split NODE1,NODE1|NODE2,NODE3", "named twice"),
        ("split NODE1,|NODE2,NODE3", "empty"),
        ("split NODE1|NODE2,NODE9", "unknown node"),
        ("NODE1->NODE1", "itself"),
        ("NODE1->", "A->B"),
        ("isolate NODE7", "unknown node"),
        ("", "empty fault shape"),
        ("zigzag", "must be"),
        ("ring NODE1", "must be"),
    ],
)
def test_bad_shapes_are_one_line_errors(text: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        plan(cfg(3), text, random.Random(0))


def test_oneway_blocks_one_direction_with_rules_on_both_ends() -> None:
    p = plan(cfg(3), "NODE1 -> NODE2", random.Random(0))
    assert p.blocked == {("NODE1", "NODE2")}
    assert p.rules() == [CutRule("NODE1", "NODE2", "out"), CutRule("NODE2", "NODE1", "in")]
    assert p.visible["NODE2"] == {"NODE2", "NODE3"} and p.visible["NODE1"] == {"NODE1", "NODE2", "NODE3"}


def test_one_isolates_a_random_node_from_the_seed() -> None:
    victims = {plan(cfg(5), "one", random.Random(s)).description.split(" ")[0] for s in range(40)}
    assert victims == set(names(5))
    assert plan(cfg(5), "one", random.Random(3)) == plan(cfg(5), "one", random.Random(3))


@pytest.mark.parametrize("n", [3, 4, 5, 6, 7])
def test_majority_splits_a_minority_from_a_majority(n: int) -> None:
    for seed in range(10):
        p = plan(cfg(n), "majority", random.Random(seed))
        sides = {frozenset(v) for v in p.visible.values()}
        assert len(sides) == 2
        small, big = sorted(sides, key=len)
        assert len(small) == (n - 1) // 2 and len(big) > n / 2 and small | big == set(names(n))


@pytest.mark.parametrize("n", [3, 4, 5, 6, 7, 8])
def test_ring_every_node_sees_a_different_majority(n: int) -> None:
    for seed in range(10):
        p = plan(cfg(n), "ring", random.Random(seed))
        views = list(p.visible.values())
        assert all(len(v) > n / 2 for v in views)
        assert all(node in p.visible[node] for node in names(n))
        assert len(set(views)) == n  # no two the same
        # the rules say the same as the blocked pairs: an in/out/both rule on each end
        for src, dst in itertools.permutations(names(n), 2):
            on_src = [r for r in p.rules() if r.node == src and r.peer == dst]
            blocked = (src, dst) in p.blocked
            assert blocked == any(r.direction in ("out", "both") for r in on_src)


def test_jepsen_shapes_need_enough_nodes() -> None:
    with pytest.raises(ConfigError, match="at least 3 nodes"):
        plan(cfg(2), "ring", random.Random(0))
    with pytest.raises(ConfigError, match="at least 3 nodes"):
        plan(cfg(2), "majority", random.Random(0))
    assert plan(cfg(2), "one", random.Random(0)).blocked
    assert faultshapes.JEPSEN_SHAPES == ("one", "majority", "ring")
