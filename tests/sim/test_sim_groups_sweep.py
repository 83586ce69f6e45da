"""Seed sweep with the standard Exchange lab: random faults while an EVS runs, every invariant checked.

Each case builds the lab through admin requests (2 or 3 nodes, one EVS online), then runs a random
fault schedule (``plan_faults`` from the simulation's rng, shifted to start after the build) for
``DURATION_S``, heals, settles, and asserts that no invariant was violated, the group rules
(one_group_owner, one_address, online_needs_quorum) included. Seeds that find a core bug are listed
in ``KNOWN_CORE_BUGS`` with the diagnosis and run as strict xfails (remove the entry once fixed).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from test_sim_groups_lab import build_lab, new_sim

from nodeagent.sim import plan_faults

DURATION_S = 20.0
SEEDS = range(1, 16)
FLAVOURS = [("disk", "scsi2"), ("disk", "scsi3"), ("majority", "scsi2")]
NODES = {"disk": 2, "majority": 3}  # a 2-node Majority Node Set cannot lose a node

KNOWN_CORE_BUGS: dict[tuple[str, str, int, int], str] = {}


def cases() -> Iterator[Any]:
    for quorum, arbitration in FLAVOURS:
        nodes = NODES[quorum]
        for seed in SEEDS:
            reason = KNOWN_CORE_BUGS.get((quorum, arbitration, nodes, seed))
            marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
            yield pytest.param(
                quorum, arbitration, nodes, seed, id=f"{quorum}-{arbitration}-n{nodes}-s{seed}", marks=marks
            )


def run(quorum: str, arbitration: str, nodes: int, seed: int) -> list[str]:
    sim = new_sim(nodes, seed, quorum=quorum, arbitration=arbitration)
    build_lab(sim)
    start = sim.now
    plan = plan_faults(sim.rng, sim.config.node_ids, DURATION_S, sim.config.timing, speed=sim.config.speed)
    sim.schedule(replace(a, at_s=a.at_s + start) for a in plan)
    sim.run_until(start + DURATION_S)
    sim.end_faults()
    sim.settle()
    return [v.line() for v in sim.violations]


@pytest.mark.parametrize(("quorum", "arbitration", "nodes", "seed"), list(cases()))
def test_group_sweep(quorum: str, arbitration: str, nodes: int, seed: int) -> None:
    assert run(quorum, arbitration, nodes, seed) == []
