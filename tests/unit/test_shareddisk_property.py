"""Property: any sequence of commands from 3 initiators gives the same outcomes on MemoryDisk and FileDisk.

The two share rules.py, so this guards everything around the rules: the record codec, the slot
alternation, the fence checks in the I/O paths and the data layout.
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shareddisk import MemoryDisk, ReservationConflict, SharedDisk, create_disk

BS = 512
BLOCKS = 4
INITIATORS = ("NODE1", "NODE2", "NODE3")

Command = tuple[str, str, int, int]  # (verb, initiator, a, b)

_commands = st.tuples(
    st.sampled_from(
        ["reserve", "release", "reset", "register", "pr_reserve", "pr_release", "preempt", "read", "write"]
    ),
    st.sampled_from(INITIATORS),
    st.integers(0, 3),  # a key (small, so keys collide and match) or a block number
    st.integers(0, 3),  # a victim key or a fill byte
)


def run(disk: SharedDisk, cmd: Command) -> object:
    verb, who, a, b = cmd
    calls: dict[str, Callable[[], object]] = {
        "reserve": lambda: disk.reserve(who),
        "release": lambda: disk.release(who),
        "reset": lambda: disk.reset(who),
        "register": lambda: disk.register(who, a),
        "pr_reserve": lambda: disk.pr_reserve(who, a),
        "pr_release": lambda: disk.pr_release(who, a),
        "preempt": lambda: disk.preempt(who, a, b),
        "read": lambda: disk.read_block(who, a),
        "write": lambda: disk.write_block(who, a, bytes([b, a]) * (BS // 2)),
    }
    try:
        return calls[verb]()
    except ReservationConflict as e:
        return ("RESERVATION CONFLICT", e.holder)


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    d = tempfile.mkdtemp(prefix="wp", dir="/tmp")
    try:
        yield Path(d)
    finally:
        shutil.rmtree(d)


_serial = itertools.count()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(commands=st.lists(_commands, max_size=40))
def test_memory_and_file_disks_agree(workdir: Path, commands: list[Command]) -> None:
    memory = MemoryDisk("Q", block_count=BLOCKS, block_size=BS)
    path = workdir / f"Q{next(_serial)}.img"
    with create_disk(path, size_bytes=BLOCKS * BS, block_size=BS) as file:
        for cmd in commands:
            assert run(memory, cmd) == run(file, cmd), cmd
        assert memory.read_state() == file.read_state()
        assert memory.read_keys() == file.read_keys()
        assert memory.read_reservation() == file.read_reservation()
        # Compare the data too, as whoever may read it now.
        for n in range(BLOCKS):
            assert [run(memory, ("read", w, n, 0)) for w in INITIATORS] == [
                run(file, ("read", w, n, 0)) for w in INITIATORS
            ]
    path.unlink()
