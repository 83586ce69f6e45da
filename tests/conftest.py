"""Suite-wide pytest configuration.

``scripts/test`` runs pytest with two workers (pytest-xdist, ``--dist loadgroup``). Every test that
starts real node processes (tests/integration) goes to ONE worker, in order, so that no two real
clusters compete for the two cores at speed 10; the pure and in-process tests share the rest.
"""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in item.path.parts:
            item.add_marker(pytest.mark.xdist_group("real-processes"))
