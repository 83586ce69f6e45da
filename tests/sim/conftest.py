"""Shared helpers for the simulator tests: build a Simulation of a lab cluster in one call."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from nodeagent.sim import Simulation, sim_config

MakeSim = Callable[..., Simulation]


@pytest.fixture
def make_sim() -> MakeSim:
    def make(
        nodes: int = 3,
        *,
        seed: int = 1,
        quorum: str = "disk",
        arbitration: str = "scsi2",
        speed: float = 10.0,
        **kwargs: Any,
    ) -> Simulation:
        config = sim_config(seed, nodes, speed=speed, quorum=quorum, arbitration=arbitration)
        return Simulation(config, seed, **kwargs)

    return make
