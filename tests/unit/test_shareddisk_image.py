"""FileDisk specifics: the image format, header validation, torn records, a vanished file, locking."""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from shareddisk import (
    DiskExists,
    DiskFormatError,
    DiskUnavailable,
    FileDisk,
    Outcome,
    ReservationState,
    create_disk,
    layout,
    rules,
)


@pytest.fixture
def tmp() -> Iterator[Path]:
    d = tempfile.mkdtemp(prefix="wp", dir="/tmp")
    try:
        yield Path(d)
    finally:
        shutil.rmtree(d)


def _patch(path: Path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def _slots(path: Path) -> tuple[bytes, bytes]:
    raw = path.read_bytes()[layout.SLOT_OFFSETS[0] : layout.METADATA_END]
    return raw[: layout.SLOT_SIZE], raw[layout.SLOT_SIZE :]


def test_create_makes_a_sparse_image_of_the_requested_size(tmp: Path) -> None:
    path = tmp / "Q.img"
    with create_disk(path) as disk:
        assert (disk.name, disk.block_size, disk.block_count) == ("Q", 4096, 4096)
        assert disk.path == str(path)
    st = path.stat()
    assert st.st_size == 16 * 2**20 + layout.METADATA_END
    assert st.st_blocks * 512 <= 256 * 1024  # sparse: the 16 MiB of data cost nothing
    assert [p.name for p in tmp.iterdir()] == ["Q.img"]  # no temporary file left behind


def test_create_refuses_an_existing_file(tmp: Path) -> None:
    path = tmp / "Q.img"
    path.write_bytes(b"precious data")
    with pytest.raises(DiskExists, match="already exists"):
        create_disk(path)
    assert path.read_bytes() == b"precious data"
    create_disk(tmp / "D.img").close()
    with pytest.raises(DiskExists):
        create_disk(tmp / "D.img")
    assert sorted(p.name for p in tmp.iterdir()) == ["D.img", "Q.img"]


def test_create_checks_its_arguments(tmp: Path) -> None:
    with pytest.raises(ValueError):
        create_disk(tmp / "A.img", size_bytes=1000, block_size=512)  # not a multiple
    with pytest.raises(ValueError):
        create_disk(tmp / "A.img", size_bytes=4096, block_size=1000)  # not a power of two
    with pytest.raises(ValueError):
        create_disk(tmp / "A.img", size_bytes=0)
    with pytest.raises(DiskUnavailable):
        create_disk(tmp / "missing-dir" / "A.img")
    assert list(tmp.iterdir()) == []


def test_state_and_data_persist_across_handles(tmp: Path) -> None:
    path = tmp / "Q.img"
    data = b"\xab" * 8192
    with create_disk(path, size_bytes=64 * 1024, block_size=8192) as disk:
        disk.register("NODE1", 1)
        disk.pr_reserve("NODE1", 1)
        disk.write_block("NODE1", 5, data)
    with FileDisk.open(path) as disk:
        assert disk.read_keys() == (2, {"NODE1": 1})
        assert disk.read_reservation().holder == "NODE1"
        assert disk.read_block("NODE1", 5) == data
    offset = 24576 + 5 * 8192  # data_offset: the 20 KiB of metadata rounded up to the block size
    assert path.read_bytes()[offset : offset + 8192] == data


def test_records_alternate_between_the_two_slots(tmp: Path) -> None:
    path = tmp / "Q.img"
    with create_disk(path, size_bytes=4096, block_size=512) as disk:
        seen = []
        for initiator in ("A", "B", "C"):
            disk.register(initiator, 7)
            current = layout.newest(_slots(path))
            assert current is not None
            seen.append(current[2])
        disk.reserve("A")
        disk.reserve("A")  # no change: nothing written
        current = layout.newest(_slots(path))
        assert current is not None and current[1].scsi2_holder == "A"
    assert seen == [1, 0, 1]
    assert current[2] == 0 and current[0] == 5  # seq 1 at creation, then 4 changes


@pytest.mark.parametrize(
    ("offset", "data", "message"),
    [
        (0, b"NOTADISK", "bad magic"),
        (12, b"\x00\x00\x10\x01", "checksum"),  # block size changed: the crc no longer matches
    ],
)
def test_damaged_header_is_a_format_error(tmp: Path, offset: int, data: bytes, message: str) -> None:
    path = tmp / "Q.img"
    create_disk(path, size_bytes=4096, block_size=512).close()
    _patch(path, offset, data)
    with pytest.raises(DiskFormatError, match=message):
        FileDisk.open(path)


def test_unknown_format_version_is_a_format_error(tmp: Path) -> None:
    path = tmp / "Q.img"
    create_disk(path, size_bytes=4096, block_size=512).close()
    geometry = layout.geometry_for(4096, 512)
    header = bytearray(layout.encode_header(geometry))
    header[8:10] = (2).to_bytes(2, "big")
    body = bytes(header[:32])
    _patch(path, 0, body + zlib.crc32(body).to_bytes(4, "big"))
    with pytest.raises(DiskFormatError, match="version 2"):
        FileDisk.open(path)


def test_not_an_image_or_truncated_is_a_format_error(tmp: Path) -> None:
    junk = tmp / "junk.img"
    junk.write_bytes(b"hello")
    with pytest.raises(DiskFormatError):
        FileDisk.open(junk)
    path = tmp / "Q.img"
    create_disk(path, size_bytes=4096, block_size=512).close()
    os.truncate(path, layout.METADATA_END + 1024)
    with pytest.raises(DiskFormatError, match="header says"):
        FileDisk.open(path)


def test_a_torn_newest_record_falls_back_to_the_previous_one(tmp: Path) -> None:
    path = tmp / "Q.img"
    with create_disk(path, size_bytes=4096, block_size=512) as disk:
        disk.register("NODE1", 1)
        disk.register("NODE2", 2)
        current = layout.newest(_slots(path))
        assert current is not None
        # Tear the newest slot (as a writer killed mid-pwrite would): flip a byte of its payload.
        _patch(path, layout.SLOT_OFFSETS[current[2]] + 40, b"\xff")
        assert disk.read_keys() == (1, {"NODE1": 1})  # the state before the unfinished command
        # The next change goes over the torn slot and becomes the newest.
        assert disk.register("NODE3", 3) is Outcome.OK
        assert disk.read_keys() == (2, {"NODE1": 1, "NODE3": 3})


def test_a_half_written_record_is_ignored(tmp: Path) -> None:
    path = tmp / "Q.img"
    with create_disk(path, size_bytes=4096, block_size=512) as disk:
        disk.reserve("NODE1")
        seq, _, slot = layout.newest(_slots(path)) or (0, ReservationState(), 0)
        record = layout.encode_record(ReservationState(generation=9, scsi2_holder="NODE2"), seq + 1)
        for cut in (1, 12, 20, len(record) - 1):
            # What a killed writer leaves: the first `cut` bytes of the new record over the old slot.
            _patch(path, layout.SLOT_OFFSETS[1 - slot], record[:cut])
            assert disk.read_reservation().holder == "NODE1"
        _patch(path, layout.SLOT_OFFSETS[1 - slot], record)  # complete: now it counts
        assert disk.read_reservation().holder == "NODE2"


def test_no_valid_record_is_a_format_error(tmp: Path) -> None:
    path = tmp / "Q.img"
    disk = create_disk(path, size_bytes=4096, block_size=512)
    try:
        disk.reserve("NODE1")
        _patch(path, layout.SLOT_OFFSETS[0], bytes(8))
        _patch(path, layout.SLOT_OFFSETS[1], bytes(8))
        with pytest.raises(DiskFormatError, match="no valid reservation record"):
            disk.reserve("NODE1")
        with pytest.raises(DiskFormatError):
            FileDisk.open(path)
    finally:
        disk.close()


def test_vanished_or_replaced_image_is_unavailable(tmp: Path) -> None:
    path = tmp / "Q.img"
    with create_disk(path, size_bytes=4096, block_size=512) as disk:
        disk.write_block("NODE1", 0, bytes(512))
        path.unlink()
        with pytest.raises(DiskUnavailable, match="gone") as e:
            disk.read_block("NODE1", 0)
        assert e.value.disk == "Q" and "gone" in str(e.value.cause)
        with pytest.raises(DiskUnavailable):
            disk.reserve("NODE1")
        create_disk(path, size_bytes=4096, block_size=512).close()
        with pytest.raises(DiskUnavailable, match="replaced"):
            disk.read_reservation()
    with pytest.raises(DiskUnavailable) as e2:
        FileDisk.open(tmp / "nothing.img")
    assert isinstance(e2.value.cause, FileNotFoundError)


def test_closed_handle_is_unavailable_and_close_is_idempotent(tmp: Path) -> None:
    disk = create_disk(tmp / "Q.img", size_bytes=4096, block_size=512)
    disk.reserve("NODE1")
    disk.close()
    disk.close()
    with pytest.raises(DiskUnavailable, match="closed"):
        disk.read_reservation()
    with FileDisk.open(tmp / "Q.img") as again:  # closing did not release the reservation
        assert again.read_reservation().holder == "NODE1"


def test_handles_in_one_process_exclude_each_other(tmp: Path) -> None:
    path = tmp / "Q.img"
    with create_disk(path, size_bytes=4096, block_size=512) as a, FileDisk.open(path) as b:
        assert a.reserve("NODE1") is Outcome.OK
        assert b.reserve("NODE2") is Outcome.CONFLICT
        b.close()  # closing one handle must not disturb the other
        assert a.release("NODE1") is Outcome.OK


def test_a_stuck_lock_holder_makes_the_disk_unavailable_not_hung(tmp: Path) -> None:
    path = tmp / "Q.img"
    with create_disk(path, size_bytes=4096, block_size=512) as disk, FileDisk.open(path, 0.2) as impatient:
        fd = os.open(path, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # a process frozen inside a command
            start = time.monotonic()
            with pytest.raises(DiskUnavailable, match="lock still busy"):
                impatient.reserve("NODE2")
            assert 0.15 < time.monotonic() - start < 2.0
            fcntl.flock(fd, fcntl.LOCK_UN)
            assert impatient.reserve("NODE2") is Outcome.OK
            assert disk.read_reservation().holder == "NODE2"
        finally:
            os.close(fd)


def test_the_largest_possible_record_fits_a_slot() -> None:
    names = [f"{i:02d}" + '"\\' * 31 for i in range(rules.MAX_REGISTRATIONS)]  # 64 bytes, all escaped
    state = ReservationState(
        generation=2**64,
        pr_holder=names[0],
        registrations=tuple((n, rules.MAX_KEY) for n in sorted(names)),
    )
    record = layout.encode_record(state, 2**63)
    assert len(record) <= layout.SLOT_SIZE
    assert layout.decode_record(record) == (2**63, state)
