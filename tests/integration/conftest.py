from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from nodeagent.cli.lab import Lab


@pytest.fixture
def lab_factory() -> Iterator[Callable[..., Lab]]:
    labs: list[Lab] = []

    def make(nodes: int = 3, *args: str) -> Lab:
        lab = Lab(nodes, *args)
        labs.append(lab)
        return lab

    yield make
    for lab in labs:
        lab.close()
