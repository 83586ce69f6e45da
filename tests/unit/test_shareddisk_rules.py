"""Every reservation rule (SCSI-2 and SCSI-3) and the I/O fence, on both disk implementations.

Each test runs twice, on a MemoryDisk and on a FileDisk, through the public SharedDisk API.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from shareddisk import (
    MemoryDisk,
    Outcome,
    RegistrationsFull,
    ReservationConflict,
    ReservationType,
    SharedDisk,
    create_disk,
    describe,
    rules,
)
from shareddisk.rules import ReservationState

OK, CONFLICT = Outcome.OK, Outcome.CONFLICT
BS = 512


@pytest.fixture(params=["memory", "file"])
def disk(request: pytest.FixtureRequest) -> Iterator[SharedDisk]:
    if request.param == "memory":
        yield MemoryDisk("Q", block_count=8, block_size=BS)
        return
    tmp = tempfile.mkdtemp(prefix="wp", dir="/tmp")
    d = create_disk(Path(tmp) / "Q.img", size_bytes=8 * BS, block_size=BS)
    try:
        yield d
    finally:
        d.close()
        shutil.rmtree(tmp)


def block(fill: int) -> bytes:
    return bytes([fill]) * BS


# ---- SCSI-2 -------------------------------------------------------------------------------------


def test_fresh_disk_is_unreserved(disk: SharedDisk) -> None:
    info = disk.read_reservation()
    assert (info.holder, info.key, info.type, info.generation) == (None, 0, ReservationType.NONE, 0)
    assert disk.read_keys() == (0, {})
    assert disk.name == "Q" and disk.block_size == BS and disk.block_count == 8


def test_reserve_when_free_and_again_by_holder(disk: SharedDisk) -> None:
    assert disk.reserve("NODE1") is OK
    assert disk.read_reservation().holder == "NODE1"
    assert disk.read_reservation().type is ReservationType.SCSI2
    assert disk.reserve("NODE1") is OK  # a defender re-reserving: no change, no new generation
    assert disk.read_reservation().generation == 1


def test_reserve_held_by_another_conflicts(disk: SharedDisk) -> None:
    assert disk.reserve("NODE1") is OK
    assert disk.reserve("NODE2") is CONFLICT
    assert disk.read_reservation().holder == "NODE1"


def test_release_by_holder_clears(disk: SharedDisk) -> None:
    disk.reserve("NODE1")
    assert disk.release("NODE1") is OK
    assert disk.read_reservation().holder is None
    assert disk.reserve("NODE2") is OK


def test_release_by_non_holder_is_a_noop_returning_ok(disk: SharedDisk) -> None:
    disk.reserve("NODE1")
    gen = disk.read_reservation().generation
    assert disk.release("NODE2") is OK
    assert disk.read_reservation().holder == "NODE1"
    assert disk.read_reservation().generation == gen
    assert disk.release("NODE2") is OK  # and on an unreserved disk too
    assert disk.release("NODE1") is OK
    assert disk.release("NODE1") is OK


def test_bus_reset_breaks_the_reservation(disk: SharedDisk) -> None:
    disk.reserve("NODE1")
    disk.reset("NODE2")  # the challenger
    assert disk.read_reservation().holder is None
    assert disk.reserve("NODE2") is OK
    assert disk.reserve("NODE1") is CONFLICT  # the defender was too slow
    disk.reset("NODE2")  # a reset of an unreserved disk changes nothing
    gen = disk.read_reservation().generation
    disk.reset("NODE2")
    assert disk.read_reservation().generation == gen


def test_challenge_lost_when_defender_re_reserves(disk: SharedDisk) -> None:
    disk.reserve("NODE1")
    disk.reset("NODE2")
    assert disk.reserve("NODE1") is OK  # defender renews within the challenger's wait
    assert disk.reserve("NODE2") is CONFLICT


def test_scsi2_fence_blocks_reads_and_writes_of_others(disk: SharedDisk) -> None:
    disk.write_block("NODE2", 3, block(7))  # unreserved: anyone writes
    disk.reserve("NODE1")
    with pytest.raises(ReservationConflict) as e:
        disk.read_block("NODE2", 3)
    assert e.value.holder == "NODE1" and e.value.initiator == "NODE2" and e.value.disk == "Q"
    with pytest.raises(ReservationConflict) as e:
        disk.write_block("NODE2", 3, block(9))
    assert e.value.holder == "NODE1"
    assert disk.read_block("NODE1", 3) == block(7)  # the holder does both
    disk.write_block("NODE1", 3, block(8))
    assert disk.read_block("NODE1", 3) == block(8)
    disk.reset("NODE2")
    assert disk.read_block("NODE2", 3) == block(8)


def test_unreserved_disk_is_open_to_everyone(disk: SharedDisk) -> None:
    assert disk.read_block("NODE1", 0) == bytes(BS)  # never written: zeros
    disk.write_block("NODE1", 7, block(1))
    disk.write_block("NODE2", 7, block(2))
    assert disk.read_block("NODE3", 7) == block(2)


def test_generation_counts_scsi2_changes(disk: SharedDisk) -> None:
    disk.reserve("NODE1")  # 1
    disk.release("NODE1")  # 2
    disk.reserve("NODE2")  # 3
    disk.reset("NODE1")  # 4
    assert disk.read_reservation().generation == 4


# ---- SCSI-3 -------------------------------------------------------------------------------------


def test_register_unregister_and_generation(disk: SharedDisk) -> None:
    assert disk.register("NODE1", 1) is OK
    assert disk.register("NODE2", 2) is OK
    assert disk.read_keys() == (2, {"NODE1": 1, "NODE2": 2})
    assert disk.register("NODE1", 1) is OK  # same key again: nothing changes
    assert disk.read_keys()[0] == 2
    assert disk.register("NODE1", 11) is OK  # a new key replaces the old one
    assert disk.read_keys() == (3, {"NODE1": 11, "NODE2": 2})
    assert disk.register("NODE1", 0) is OK  # key 0 unregisters
    assert disk.read_keys() == (4, {"NODE2": 2})
    assert disk.register("NODE3", 0) is OK  # unregistering the unregistered: no-op
    assert disk.read_keys()[0] == 4


def test_pr_reserve_needs_registration_with_that_key(disk: SharedDisk) -> None:
    assert disk.pr_reserve("NODE1", 1) is CONFLICT  # not registered
    disk.register("NODE1", 1)
    assert disk.pr_reserve("NODE1", 5) is CONFLICT  # wrong key
    assert disk.pr_reserve("NODE1", 0) is CONFLICT
    assert disk.pr_reserve("NODE1", 1) is OK
    info = disk.read_reservation()
    assert (info.holder, info.key) == ("NODE1", 1)
    assert info.type is ReservationType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY


def test_pr_reserve_again_by_holder_and_conflict_for_others(disk: SharedDisk) -> None:
    disk.register("NODE1", 1)
    disk.register("NODE2", 2)
    assert disk.pr_reserve("NODE1", 1) is OK
    gen = disk.read_reservation().generation
    assert disk.pr_reserve("NODE1", 1) is OK
    assert disk.read_reservation().generation == gen
    assert disk.pr_reserve("NODE2", 2) is CONFLICT
    assert disk.read_reservation().holder == "NODE1"


def test_pr_release(disk: SharedDisk) -> None:
    disk.register("NODE1", 1)
    disk.register("NODE2", 2)
    disk.pr_reserve("NODE1", 1)
    assert disk.pr_release("NODE3", 3) is CONFLICT  # unregistered
    assert disk.pr_release("NODE2", 9) is CONFLICT  # wrong key
    assert disk.pr_release("NODE2", 2) is OK  # registrant, not holder: no-op
    assert disk.read_reservation().holder == "NODE1"
    assert disk.pr_release("NODE1", 1) is OK
    assert disk.read_reservation().holder is None
    assert disk.read_keys()[1] == {"NODE1": 1, "NODE2": 2}  # registrations stay
    assert disk.pr_reserve("NODE2", 2) is OK


def test_unregistering_the_holder_releases_the_reservation(disk: SharedDisk) -> None:
    disk.register("NODE1", 1)
    disk.pr_reserve("NODE1", 1)
    disk.register("NODE1", 0)
    assert disk.read_reservation().holder is None
    assert disk.read_keys()[1] == {}


def test_changing_the_holders_key_moves_the_reservation_key(disk: SharedDisk) -> None:
    disk.register("NODE1", 1)
    disk.pr_reserve("NODE1", 1)
    disk.register("NODE1", 7)
    assert (disk.read_reservation().holder, disk.read_reservation().key) == ("NODE1", 7)


def test_preempt_takes_the_reservation_and_fences_the_victim(disk: SharedDisk) -> None:
    disk.register("NODE1", 1)
    disk.register("NODE2", 2)
    disk.pr_reserve("NODE1", 1)
    disk.write_block("NODE1", 0, block(1))
    assert disk.preempt("NODE2", 2, 1) is OK
    info = disk.read_reservation()
    assert (info.holder, info.key) == ("NODE2", 2)
    assert disk.read_keys()[1] == {"NODE2": 2}
    with pytest.raises(ReservationConflict) as e:
        disk.write_block("NODE1", 0, block(9))  # fenced at once
    assert e.value.holder == "NODE2"
    assert disk.read_block("NODE1", 0) == block(1)  # ...but may still read
    assert disk.pr_reserve("NODE1", 1) is CONFLICT  # no longer registered
    disk.register("NODE1", 1)  # registering again lifts the write fence
    disk.write_block("NODE1", 0, block(3))
    assert disk.read_block("NODE2", 0) == block(3)


def test_preempt_removes_every_registration_with_the_victim_key(disk: SharedDisk) -> None:
    disk.register("NODE1", 1)
    disk.register("NODE1B", 1)  # a second path of the same host shares the key
    disk.register("NODE2", 2)
    disk.register("NODE3", 3)
    disk.pr_reserve("NODE3", 3)
    gen = disk.read_reservation().generation
    assert disk.preempt("NODE2", 2, 1) is OK
    assert disk.read_keys() == (gen + 1, {"NODE2": 2, "NODE3": 3})
    assert disk.read_reservation().holder == "NODE3"  # the victims did not hold it: it stays


def test_preempt_without_a_reservation_only_removes_registrations(disk: SharedDisk) -> None:
    disk.register("NODE1", 1)
    disk.register("NODE2", 2)
    assert disk.preempt("NODE2", 2, 1) is OK
    assert disk.read_reservation().holder is None
    assert disk.read_keys()[1] == {"NODE2": 2}


def test_preempt_conflicts(disk: SharedDisk) -> None:
    disk.register("NODE1", 1)
    disk.pr_reserve("NODE1", 1)
    assert disk.preempt("NODE2", 2, 1) is CONFLICT  # caller not registered
    disk.register("NODE2", 2)
    assert disk.preempt("NODE2", 5, 1) is CONFLICT  # caller's key wrong
    assert disk.preempt("NODE2", 2, 4) is CONFLICT  # victim key not registered
    assert disk.preempt("NODE2", 2, 0) is CONFLICT
    assert disk.read_reservation().holder == "NODE1"


def test_preempt_never_removes_the_caller(disk: SharedDisk) -> None:
    disk.register("NODE1", 1)
    disk.register("NODE2", 1)
    disk.pr_reserve("NODE1", 1)
    assert disk.preempt("NODE2", 1, 1) is OK  # shares the holder's key: NODE1 goes, NODE2 takes over
    assert disk.read_keys()[1] == {"NODE2": 1}
    assert disk.read_reservation().holder == "NODE2"
    gen = disk.read_reservation().generation
    assert disk.preempt("NODE2", 1, 1) is OK  # only itself left: nothing changes
    assert disk.read_reservation().generation == gen


def test_wero_fence(disk: SharedDisk) -> None:
    disk.register("NODE1", 1)
    disk.register("NODE2", 2)
    disk.pr_reserve("NODE1", 1)
    disk.write_block("NODE1", 1, block(1))
    disk.write_block("NODE2", 1, block(2))  # registrants only: every registrant writes
    with pytest.raises(ReservationConflict) as e:
        disk.write_block("NODE3", 1, block(3))  # a non-registrant does not
    assert e.value.holder == "NODE1"
    assert disk.read_block("NODE3", 1) == block(2)  # but reads


def test_registrations_alone_do_not_fence(disk: SharedDisk) -> None:
    disk.register("NODE1", 1)
    disk.write_block("NODE3", 2, block(3))
    assert disk.read_block("NODE3", 2) == block(3)


def test_reset_does_not_touch_persistent_reservations(disk: SharedDisk) -> None:
    disk.register("NODE1", 1)
    disk.pr_reserve("NODE1", 1)
    gen = disk.read_reservation().generation
    disk.reset("NODE2")
    assert disk.read_reservation().holder == "NODE1"
    assert disk.read_reservation().generation == gen


def test_the_flavours_exclude_each_other(disk: SharedDisk) -> None:
    disk.register("NODE1", 1)
    disk.register("NODE2", 2)
    disk.pr_reserve("NODE1", 1)
    assert disk.reserve("NODE2") is CONFLICT  # a PR reservation exists
    assert disk.reserve("NODE1") is CONFLICT  # even for its holder
    disk.pr_release("NODE1", 1)
    assert disk.reserve("NODE1") is OK  # registrations alone do not block RESERVE
    assert disk.pr_reserve("NODE1", 1) is CONFLICT  # a SCSI-2 reservation exists, even the caller's
    # Other PR commands conflict while ANOTHER initiator holds the SCSI-2 reservation...
    assert disk.register("NODE2", 22) is CONFLICT
    assert disk.preempt("NODE2", 2, 1) is CONFLICT
    assert disk.pr_release("NODE2", 2) is CONFLICT
    # ...but not for the holder itself.
    assert disk.register("NODE1", 11) is OK
    assert disk.read_keys()[1] == {"NODE1": 11, "NODE2": 2}


def test_registration_table_is_bounded(disk: SharedDisk) -> None:
    for i in range(rules.MAX_REGISTRATIONS):
        assert disk.register(f"N{i}", i + 1) is OK
    with pytest.raises(RegistrationsFull):
        disk.register("ONE-TOO-MANY", 99)
    assert disk.register("N0", 42) is OK  # changing an existing key still works
    assert len(disk.read_keys()[1]) == rules.MAX_REGISTRATIONS


def test_bad_arguments_are_value_errors(disk: SharedDisk) -> None:
    with pytest.raises(ValueError):
        disk.register("NODE1", -1)
    with pytest.raises(ValueError):
        disk.register("NODE1", 2**64)
    with pytest.raises(ValueError):
        disk.reserve("")
    with pytest.raises(ValueError):
        disk.reserve("x" * 65)
    with pytest.raises(ValueError):
        disk.read_block("NODE1", 8)
    with pytest.raises(ValueError):
        disk.read_block("NODE1", -1)
    with pytest.raises(ValueError):
        disk.write_block("NODE1", 0, b"short")
    assert disk.read_reservation().generation == 0


def test_describe_reports_like_sg_persist(disk: SharedDisk) -> None:
    disk.register("NODE1", 1)
    disk.register("NODE2", 2)
    disk.pr_reserve("NODE2", 2)
    assert describe(disk) == {
        "name": "Q",
        "size_bytes": 8 * BS,
        "block_size": BS,
        "block_count": 8,
        "generation": 3,
        "scsi2_holder": None,
        "pr_holder": {"initiator": "NODE2", "key": 2},
        "pr_type": "write_exclusive_registrants_only",
        "registrations": {"NODE1": 1, "NODE2": 2},
    }
    disk.pr_release("NODE2", 2)
    disk.reserve("NODE1")
    shown = describe(disk)
    assert (shown["scsi2_holder"], shown["pr_holder"], shown["pr_type"]) == ("NODE1", None, None)


# ---- the pure layer -----------------------------------------------------------------------------


def test_apply_returns_the_same_object_when_nothing_changes() -> None:
    state = ReservationState()
    new, outcome = rules.apply(state, rules.Release("NODE1"))
    assert new is state and outcome is OK
    new, outcome = rules.apply(state, rules.Reserve("NODE1"))
    assert new is not state and new.scsi2_holder == "NODE1" and new.generation == 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"generation": -1},
        {"scsi2_holder": "A", "pr_holder": "A", "registrations": (("A", 1),)},
        {"pr_holder": "A"},  # not registered
        {"registrations": (("B", 1), ("A", 2))},  # unsorted
        {"registrations": (("A", 1), ("A", 2))},  # duplicate
        {"registrations": (("A", 0),)},  # key 0 is "no key"
    ],
)
def test_state_invariants_are_enforced(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        ReservationState(**kwargs)  # type: ignore[arg-type]


def test_can_read_and_can_write() -> None:
    free = ReservationState()
    scsi2 = ReservationState(scsi2_holder="A")
    wero = ReservationState(pr_holder="A", registrations=(("A", 1), ("B", 2)))
    assert rules.can_read(free, "C") and rules.can_write(free, "C")
    assert rules.can_read(scsi2, "A") and rules.can_write(scsi2, "A")
    assert not rules.can_read(scsi2, "B") and not rules.can_write(scsi2, "B")
    assert rules.can_read(wero, "C") and not rules.can_write(wero, "C")
    assert rules.can_write(wero, "B") and rules.can_write(wero, "A")
