"""The ESE-style store log on a shared disk: replay, torn tails, corruption, wrap, fencing, crashes."""

from __future__ import annotations

import multiprocessing
import os
import select
import signal
import time
from pathlib import Path

import pytest

from nodeagent.exchange.storelog import (
    HEADER_BYTES,
    LogCorrupt,
    LogFull,
    StoreLog,
    decode_at,
    disk_layout,
    encode_record,
)
from shareddisk import FileDisk, MemoryDisk, Outcome, ReservationConflict, SharedDisk, create_disk

BS = 512


def small_disk(blocks: int = 64) -> MemoryDisk:
    return MemoryDisk("EVS1", block_count=blocks, block_size=BS)


def new_log(disk: SharedDisk, me: str = "NODE1") -> StoreLog:
    return StoreLog(disk, me, disk_layout(disk.block_count).storage_group)


def mounted(disk: SharedDisk, me: str = "NODE1") -> tuple[StoreLog, list[tuple[int, object]]]:
    log = new_log(disk, me)
    return log, log.mount().records


def clone(disk: MemoryDisk) -> MemoryDisk:
    copy = MemoryDisk(disk.name, block_count=disk.block_count, block_size=disk.block_size)
    for n in range(disk.block_count):
        copy.write_block("LAB", n, disk.read_block("LAB", n))
    return copy


def write_log_bytes(disk: SharedDisk, offset: int, data: bytes) -> None:
    """Put raw bytes into the log region (a torn or damaged write), block by block."""
    region = disk_layout(disk.block_count).storage_group.log
    while data:
        n, within = divmod(offset, disk.block_size)
        block = bytearray(disk.read_block("LAB", region.start + n))
        piece = data[: disk.block_size - within]
        block[within : within + len(piece)] = piece
        disk.write_block("LAB", region.start + n, bytes(block))
        offset, data = offset + len(piece), data[len(piece) :]


def test_record_encoding_round_trip_and_checksum() -> None:
    raw = encode_record(7, b"payload")
    assert decode_at(raw, 0) == (7, b"payload")
    for i in range(len(raw)):
        damaged = bytearray(raw)
        damaged[i] ^= 0x40
        assert decode_at(bytes(damaged), 0) is None, f"a flipped byte {i} went unnoticed"
    assert decode_at(raw[:-1], 0) is None


def test_blank_disk_formats_then_append_replay_round_trip() -> None:
    disk = small_disk()
    log = new_log(disk)
    first = log.mount()
    assert first.formatted and first.records == [] and first.database is None
    lsns = [log.append({"n": i, "body": b"x" * (i * 37)}) for i in range(20)]
    assert lsns == list(range(1, 21))
    again, records = mounted(disk)
    assert records == [(i + 1, {"n": i, "body": b"x" * (i * 37)}) for i in range(20)]
    assert again.next_lsn == 21


def test_replay_is_repeatable() -> None:
    disk = small_disk()
    log = new_log(disk)
    log.mount()
    for i in range(5):
        log.append([i])
    assert mounted(disk)[1] == mounted(disk)[1]  # mounting reads; it never changes what it reads


def test_torn_tail_at_every_byte_offset_is_dropped_and_overwritten() -> None:
    disk = small_disk()
    log = new_log(disk)
    log.mount()
    log.append({"n": 1})
    log.append({"n": 2, "pad": b"a" * 300})
    start = log._offset
    base = clone(disk)  # two records, nothing after them
    log.append({"n": 3, "pad": b"b" * 700})  # spans block boundaries (512-byte blocks)
    last = new_log(disk)._read(log.regions.log, 0, 4)[start : log._offset]
    assert decode_at(last, 0) is not None
    for cut in range(len(last)):  # every proper prefix of the last record: a torn write
        torn = clone(base)
        write_log_bytes(torn, start, last[:cut])
        survivor, records = mounted(torn)
        assert [r[0] for r in records] == [1, 2], f"cut at {cut}"
        assert survivor.append({"n": "new"}) == 3  # the next append takes the torn record's place
        assert mounted(torn)[1][-1] == (3, {"n": "new"})
    whole = clone(base)
    write_log_bytes(whole, start, last)
    assert [r[0] for r in mounted(whole)[1]] == [1, 2, 3]


def test_torn_tail_with_a_bad_checksum_is_dropped() -> None:
    disk = small_disk()
    log = new_log(disk)
    log.mount()
    log.append("one")
    at = log._offset
    log.append("two")
    write_log_bytes(disk, at + HEADER_BYTES, b"T")  # same length, wrong payload: crc fails
    replay = new_log(disk).mount()
    assert [r[1] for r in replay.records] == ["one"] and replay.torn_tail_bytes > 0


@pytest.mark.parametrize("where", ["magic", "length", "payload", "crc"])
def test_damage_in_the_middle_stops_the_mount(where: str) -> None:
    disk = small_disk()
    log = new_log(disk)
    log.mount()
    offsets = []
    for i in range(5):
        offsets.append(log._offset)
        log.append({"i": i, "pad": b"p" * 50})
    spot = {"magic": 0, "length": 12, "payload": HEADER_BYTES + 3, "crc": 16}[where]
    raw = new_log(disk)._read(log.regions.log, 0, 4)
    write_log_bytes(disk, offsets[2] + spot, bytes([raw[offsets[2] + spot] ^ 0xFF]))
    with pytest.raises(LogCorrupt, match="damaged in the middle"):
        new_log(disk).mount()


def test_checkpoint_then_more_records_replays_only_the_new_ones() -> None:
    disk = small_disk()
    log = new_log(disk)
    log.mount()
    log.append("a")
    log.append("b")
    log.checkpoint(b"image-after-b")
    log.append("c")
    replay = new_log(disk).mount()
    assert replay.database == b"image-after-b"
    assert replay.records == [(3, "c")]


def test_torn_checkpoint_falls_back_to_the_previous_one() -> None:
    disk = small_disk()
    log = new_log(disk)
    log.mount()
    log.append("a")
    log.checkpoint(b"one")
    log.append("b")
    log.checkpoint(b"two")
    chk = log.regions.chk
    slot = log._chk.seq % 2 if log._chk else 0
    disk.write_block("LAB", chk.start + slot, bytes(BS))  # the newest checkpoint never made it
    replay = new_log(disk).mount()
    assert replay.database == b"one" and replay.records == [(2, "b")]


def test_log_full_then_wrap_keeps_lsns_and_ignores_the_old_lap() -> None:
    disk = small_disk()
    log = new_log(disk)
    log.mount()
    appended = 0
    with pytest.raises(LogFull):
        while True:
            log.append(b"r" * 200)
            appended += 1
    log.checkpoint(b"all-so-far", wrap=True)
    assert log.append("after wrap") == appended + 1
    replay = new_log(disk).mount()
    assert replay.database == b"all-so-far"
    assert replay.records == [(appended + 1, "after wrap")]  # old-lap records have lower LSNs


def test_a_node_that_lost_the_scsi2_reservation_cannot_write_a_byte() -> None:
    disk = small_disk()
    assert disk.reserve("NODE1") is Outcome.OK
    log, _ = mounted(disk, "NODE1")
    log.append("acknowledged")
    before = [disk.read_block("NODE1", n) for n in range(disk.block_count)]
    disk.reset("NODE2")  # the challenge: bus reset, then NODE2 reserves
    assert disk.reserve("NODE2") is Outcome.OK
    with pytest.raises(ReservationConflict):
        log.append("written by the fenced node")
    assert [disk.read_block("NODE2", n) for n in range(disk.block_count)] == before
    assert [r[1] for r in mounted(disk, "NODE2")[1]] == ["acknowledged"]


def test_a_preempted_node_cannot_append_on_a_file_disk(tmp_path: Path) -> None:
    with create_disk(tmp_path / "EVS1.img", size_bytes=256 * 4096) as disk:
        assert disk.register("NODE1", 1) is Outcome.OK
        assert disk.pr_reserve("NODE1", 1) is Outcome.OK
        log, _ = mounted(disk, "NODE1")
        log.append("acknowledged")
        assert disk.register("NODE2", 2) is Outcome.OK
        assert disk.preempt("NODE2", 2, 1) is Outcome.OK  # NODE1's key is gone: it is fenced
        image_before = (tmp_path / "EVS1.img").read_bytes()
        with pytest.raises(ReservationConflict):
            log.append("written by the fenced node")
        assert (tmp_path / "EVS1.img").read_bytes() == image_before
        assert [r[1] for r in mounted(disk, "NODE2")[1]] == ["acknowledged"]


class Crash(Exception):
    """The process died here."""


class CrashingDisk:
    """A disk whose writer dies during its ``after``-th block write, which lands torn (half new)."""

    def __init__(self, disk: MemoryDisk, after: int) -> None:
        self.inner, self.left = disk, after
        self.name, self.block_size, self.block_count = disk.name, disk.block_size, disk.block_count

    def read_block(self, initiator: str, n: int) -> bytes:
        return self.inner.read_block(initiator, n)

    def write_block(self, initiator: str, n: int, data: bytes) -> None:
        if self.left == 0:
            old = self.inner.read_block(initiator, n)
            self.inner.write_block(initiator, n, data[: len(data) // 2] + old[len(data) // 2 :])
            raise Crash
        self.left -= 1
        self.inner.write_block(initiator, n, data)


def test_a_crash_in_the_middle_of_an_append_loses_at_most_that_record() -> None:
    for dies_at in range(3):  # the record below takes 3 block writes
        disk = small_disk()
        log = new_log(disk)
        log.mount()
        acked = [log.append({"i": i}) for i in range(3)]
        crashing = StoreLog(CrashingDisk(disk, dies_at), "NODE1", log.regions)  # type: ignore[arg-type]
        crashing.mount()
        with pytest.raises(Crash):
            crashing.append({"i": "big", "pad": b"z" * 1100})
        survivor, records = mounted(disk, "NODE2")
        assert [r[0] for r in records][:3] == acked
        assert len(records) in (3, 4)
        assert survivor.append("next") == len(records) + 1


def _append_forever(path: str, out_fd: int) -> None:
    """Child body: append records to the store log as fast as possible; after each acknowledged one
    (``append`` returned), write its LSN to ``out_fd`` (one line, one write: atomic on a pipe)."""
    log = new_log(FileDisk.open(path), "NODE1")
    log.mount()
    while True:
        lsn = log.append({"pad": b"k" * 3000})  # spans blocks: kills land inside appends
        os.write(out_fd, b"%d\n" % lsn)


def test_sigkill_during_appends_loses_no_acknowledged_record(tmp_path: Path) -> None:
    path = tmp_path / "EVS1.img"
    create_disk(path, size_bytes=4096 * 4096).close()
    for kill_after in (1, 40, 300):  # acknowledged records before the kill: it lands mid-stream
        read_fd, write_fd = os.pipe()
        fork = multiprocessing.get_context("fork")
        child = fork.Process(target=_append_forever, args=(str(path), write_fd))
        child.start()
        os.close(write_fd)
        got = b""
        try:
            deadline = time.monotonic() + 20
            while got.count(b"\n") < kill_after and time.monotonic() < deadline:
                if select.select([read_fd], [], [], 0.1)[0]:
                    chunk = os.read(read_fd, 65536)
                    if not chunk:
                        break  # the child died on its own: the assertions below say why
                    got += chunk
        finally:
            assert child.pid is not None
            os.kill(child.pid, signal.SIGKILL)  # only the pid we started
            child.join(10)
        acked = [int(x) for x in (got + _read_all(read_fd)).split()]
        log = StoreLog(FileDisk.open(path), "NODE2", disk_layout(4096).storage_group)
        replayed = [lsn for lsn, _ in log.mount().records]
        assert len(acked) >= kill_after, "the child stopped before the kill"
        assert set(acked) <= set(replayed)  # at most the unacknowledged record is lost
        assert len(replayed) <= len(acked) + 1
        assert replayed == list(range(replayed[0], replayed[0] + len(replayed)))
        log.checkpoint(b"", wrap=True)  # the next round starts on a short log again


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks)
