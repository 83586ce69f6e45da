"""apply_disk_op: core DiskOps onto the SharedDisk API; CONFLICT and UNAVAILABLE are results, never raised."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from nodeagent.core.effects import DiskOp, DiskOpKind, DiskOutcome, DiskResult
from nodeagent.diskops import apply_disk_op
from shareddisk import MemoryDisk, Outcome, ReservationInfo, create_disk

BS = 512
OK, CONFLICT, UNAVAILABLE = DiskOutcome.OK, DiskOutcome.CONFLICT, DiskOutcome.UNAVAILABLE


def op(kind: DiskOpKind, **kw: object) -> DiskOp:
    return DiskOp(op_id=kw.pop("op_id", 1), disk="Q", kind=kind, **kw)  # type: ignore[arg-type]


@pytest.fixture
def disk() -> MemoryDisk:
    return MemoryDisk("Q", block_count=4, block_size=BS)


def test_scsi2_arbitration_sequence(disk: MemoryDisk) -> None:
    assert apply_disk_op(disk, "NODE1", op(DiskOpKind.RESERVE, op_id=7)) == DiskResult(7, OK)
    assert apply_disk_op(disk, "NODE2", op(DiskOpKind.RESERVE, op_id=8)) == DiskResult(8, CONFLICT, "NODE1")
    assert apply_disk_op(disk, "NODE2", op(DiskOpKind.RESET)) == DiskResult(1, OK)  # challenger
    assert apply_disk_op(disk, "NODE2", op(DiskOpKind.RESERVE)) == DiskResult(1, OK)
    assert apply_disk_op(disk, "NODE1", op(DiskOpKind.RESERVE)) == DiskResult(1, CONFLICT, "NODE2")
    assert apply_disk_op(disk, "NODE1", op(DiskOpKind.RELEASE)) == DiskResult(1, OK)  # non-holder: no-op
    assert disk.read_reservation().holder == "NODE2"
    assert apply_disk_op(disk, "NODE2", op(DiskOpKind.RELEASE)) == DiskResult(1, OK)
    assert disk.read_reservation().holder is None


def test_scsi3_arbitration_sequence(disk: MemoryDisk) -> None:
    read = op(DiskOpKind.READ_RESERVATION)
    assert apply_disk_op(disk, "NODE1", read) == DiskResult(1, OK, holder=None, key=0)
    assert apply_disk_op(disk, "NODE1", op(DiskOpKind.REGISTER, key=1)).outcome is OK
    assert apply_disk_op(disk, "NODE2", op(DiskOpKind.REGISTER, key=2)).outcome is OK
    assert apply_disk_op(disk, "NODE1", op(DiskOpKind.RESERVE, key=1, scsi3=True)).outcome is OK
    assert disk.read_reservation().key == 1  # a PR reservation, not a SCSI-2 one
    assert apply_disk_op(disk, "NODE2", op(DiskOpKind.RESERVE, key=2, scsi3=True)) == DiskResult(
        1, CONFLICT, "NODE1"
    )
    assert apply_disk_op(disk, "NODE2", read) == DiskResult(1, OK, holder="NODE1", key=1)
    assert apply_disk_op(disk, "NODE2", op(DiskOpKind.PREEMPT, key=2, victim_key=1)).outcome is OK
    assert apply_disk_op(disk, "NODE1", read) == DiskResult(1, OK, holder="NODE2", key=2)
    assert apply_disk_op(disk, "NODE1", op(DiskOpKind.PREEMPT, key=1, victim_key=2)) == DiskResult(
        1,
        CONFLICT,
        "NODE2",  # the preempted node is no longer registered
    )
    assert apply_disk_op(disk, "NODE2", op(DiskOpKind.RELEASE, key=2, scsi3=True)).outcome is OK
    assert apply_disk_op(disk, "NODE2", read) == DiskResult(1, OK, holder=None, key=0)


def test_read_reservation_of_a_scsi2_reservation_has_key_0(disk: MemoryDisk) -> None:
    disk.reserve("NODE1")
    assert apply_disk_op(disk, "NODE2", op(DiskOpKind.READ_RESERVATION)) == DiskResult(1, OK, "NODE1", 0)


def test_fenced_io(disk: MemoryDisk) -> None:
    data = b"\x42" * BS
    assert apply_disk_op(disk, "NODE1", op(DiskOpKind.WRITE, block=2, data=data)) == DiskResult(1, OK)
    assert apply_disk_op(disk, "NODE2", op(DiskOpKind.READ, block=2)) == DiskResult(1, OK, data=data)
    disk.reserve("NODE1")
    assert apply_disk_op(disk, "NODE2", op(DiskOpKind.READ, block=2)) == DiskResult(1, CONFLICT, "NODE1")
    write = op(DiskOpKind.WRITE, block=2, data=bytes(BS))
    assert apply_disk_op(disk, "NODE2", write) == DiskResult(1, CONFLICT, "NODE1")
    assert disk.read_block("NODE1", 2) == data


def test_preempted_node_reads_but_cannot_write(disk: MemoryDisk) -> None:
    disk.register("NODE1", 1)
    disk.register("NODE2", 2)
    disk.pr_reserve("NODE1", 1)
    disk.preempt("NODE2", 2, 1)
    assert apply_disk_op(disk, "NODE1", op(DiskOpKind.READ, block=0)).outcome is OK
    write = op(DiskOpKind.WRITE, block=0, data=bytes(BS))
    assert apply_disk_op(disk, "NODE1", write) == DiskResult(1, CONFLICT, "NODE2")


@pytest.mark.parametrize("kind", list(DiskOpKind))
def test_every_kind_reports_an_unavailable_disk(disk: MemoryDisk, kind: DiskOpKind) -> None:
    disk.set_unavailable("HBA cable pulled")
    result = apply_disk_op(disk, "NODE1", op(kind, op_id=5, key=1, victim_key=2, data=bytes(BS)))
    assert result == DiskResult(5, UNAVAILABLE)
    disk.set_unavailable(None)
    assert (
        apply_disk_op(disk, "NODE1", op(kind, key=1, victim_key=2, data=bytes(BS))).outcome is not UNAVAILABLE
    )


def test_a_vanished_or_damaged_image_is_unavailable() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="wp", dir="/tmp"))
    try:
        path = tmp / "Q.img"
        with create_disk(path, size_bytes=4 * BS, block_size=BS) as disk:
            assert apply_disk_op(disk, "NODE1", op(DiskOpKind.RESERVE)).outcome is OK
            with open(path, "r+b") as f:  # both reservation slots destroyed
                f.seek(4096)
                f.write(bytes(16384))
            assert apply_disk_op(disk, "NODE1", op(DiskOpKind.RESERVE)) == DiskResult(1, UNAVAILABLE)
            path.unlink()
            assert apply_disk_op(disk, "NODE1", op(DiskOpKind.READ)) == DiskResult(1, UNAVAILABLE)
    finally:
        shutil.rmtree(tmp)


class FlakyDisk(MemoryDisk):
    """Refuses reservations, and then cannot even say who holds the disk."""

    def reserve(self, initiator: str) -> Outcome:
        return Outcome.CONFLICT

    def read_reservation(self) -> ReservationInfo:
        raise OSError(5, "Input/output error")

    def read_block(self, initiator: str, n: int) -> bytes:
        raise OSError(5, "Input/output error")


def test_conflict_holder_is_none_when_it_cannot_be_read_and_oserror_is_unavailable() -> None:
    disk = FlakyDisk("Q", block_count=4, block_size=BS)
    assert apply_disk_op(disk, "NODE1", op(DiskOpKind.RESERVE)) == DiskResult(1, CONFLICT, None)
    assert apply_disk_op(disk, "NODE1", op(DiskOpKind.READ)) == DiskResult(1, UNAVAILABLE)


def test_a_short_write_is_padded_to_one_block(disk: MemoryDisk) -> None:
    assert apply_disk_op(disk, "NODE1", op(DiskOpKind.WRITE, block=1, data=b"record")).outcome is OK
    assert apply_disk_op(disk, "NODE2", op(DiskOpKind.READ, block=1)).data == b"record".ljust(BS, b"\0")


def test_programming_errors_still_raise(disk: MemoryDisk) -> None:
    with pytest.raises(ValueError):
        apply_disk_op(disk, "NODE1", op(DiskOpKind.READ, block=99))
    with pytest.raises(ValueError):
        apply_disk_op(disk, "NODE1", op(DiskOpKind.WRITE, block=-1, data=bytes(BS)))


def test_multi_block_writes_and_reads(disk: MemoryDisk) -> None:
    data = bytes(range(256)) * ((BS * 2) // 256) + b"tail"  # two blocks and a bit
    assert apply_disk_op(disk, "NODE1", op(DiskOpKind.WRITE, block=1, data=data)).outcome is DiskOutcome.OK
    back = apply_disk_op(disk, "NODE1", op(DiskOpKind.READ, block=1, count=3)).data
    assert back == data.ljust(3 * BS, b"\0")
    # A read past the end stops at the end; a write that cannot fit is refused, not half done.
    assert (
        len(apply_disk_op(disk, "NODE1", op(DiskOpKind.READ, block=1, count=10_000)).data)
        == (disk.block_count - 1) * BS
    )
    too_big = op(DiskOpKind.WRITE, block=0, data=bytes(BS * (disk.block_count + 1)))
    assert apply_disk_op(disk, "NODE1", too_big).outcome is DiskOutcome.UNAVAILABLE
    with pytest.raises(ValueError):
        apply_disk_op(disk, "NODE1", op(DiskOpKind.REGISTER, key=-1))
