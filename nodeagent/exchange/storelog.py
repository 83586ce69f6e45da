"""ESE-style write-ahead log, checkpoint and database image in regions of an EVS shared disk.

Theory of operation
-------------------
The EVS disk has no file system, so the storage group's "files" are named regions of its data blocks
(``DiskLayout``; sizes scale with the disk, block 0 is left alone for the Physical Disk's IsAlive read):

```
block 0                       volume label (untouched)
Exchsrvr/mdbdata/E00.chk      2 blocks: the checkpoint, double-buffered
Exchsrvr/mdbdata/E00.log      50% of the rest: the transaction log (one circular region)
Exchsrvr/mdbdata/priv1.edb    30% of the rest, two halves: the databases' image (priv1 + pub1 content)
Exchsrvr/mailroot/Queue.chk   2 blocks, Queue.log 10%, Queue.edb 10%: the SMTP queue (same format)
```

Every byte goes through ``SharedDisk.write_block(initiator, ...)``, the fenced I/O that the Physical
Disk and the cluster database checkpoint use: the reservation is checked inside the disk under its
lock for each block, so a node that lost the reservation gets ``ReservationConflict`` before its first
block and writes nothing. "Durable" means what shareddisk guarantees: a returned ``write_block`` is in
the image (the page cache) and survives the death of any process (FileDisk does no fsync; a power cut
is outside the lab's threat model, see shareddisk/image.py).

Log record (big-endian): ``magic "E00R" | lsn u64 | length u32 | crc32 u32 | payload (msgpack)``; the
crc covers magic, lsn, length and payload. LSNs are global and consecutive (they survive wraps), so a
record left over from an earlier lap of the circular region is recognisable: its LSN is lower than the
one expected. ``append`` writes the record's blocks in order (the first block re-written with the bytes
before the record, kept in memory: we are the region's only writer) and returns once every block is
written: only then may the caller acknowledge.

Checkpoint (E00.chk, like the reservation record of shareddisk): ``magic "E00K" | seq u64 | length u32 |
crc32 u32 | msgpack {next_lsn, log_offset, db_half, db_length, db_crc}``, written over the older of its
two slots; the valid slot with the highest seq wins, so a torn checkpoint write falls back to the
previous one. ``checkpoint(db)`` writes the database image into the half the current checkpoint does
NOT point at, then the checkpoint record: at no instant is the only valid checkpoint's image damaged.

Mount = soft recovery (``mount``): read the checkpoint and its database image, then read records from
``log_offset`` on, expecting ``next_lsn``, ``next_lsn + 1``, ... The first position that does not hold
the expected record ends the log. That is a torn tail (dropped, and the next append overwrites it)
UNLESS a valid record with an LSN at or past the expected one starts within the next
``MAX_RECORD_BYTES`` (a record is never longer, so a record following a damaged one would start there):
then the log is damaged in the middle and ``LogCorrupt`` stops the mount, as ESE stops with a bad
checksum or a gap in generations. Replay is idempotent by LSN: the consumer skips LSNs its database
image already contains (mailstore.py), so replaying twice yields the same state.

Log full: ``append`` raises ``LogFull``; the owner checkpoints (``checkpoint(db, wrap=True)`` restarts
the log at offset 0 with the next LSN) and appends again. The database image must fit half of its
region (``DatabaseFull``). Synchronous and blocking (flock + pread/pwrite per block): call it from a
worker thread (``trio.to_thread.run_sync``), one thread at a time per ``StoreLog``.
"""

from __future__ import annotations

import struct
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import msgpack

from shareddisk import SharedDisk
from shareddisk.errors import DiskError

RECORD_MAGIC = b"E00R"
CHECKPOINT_MAGIC = b"E00K"
_HEAD = struct.Struct(">4sQI")  # magic, lsn (or seq), payload length; then crc32
_CRC = struct.Struct(">I")
HEADER_BYTES = _HEAD.size + _CRC.size  # 20
MAX_RECORD_BYTES = 12 * 2**20  # a 10 MB message (Exchange 2003's default size limit) plus its fields


class StoreError(DiskError):
    """The store cannot go on (a damaged log, a full region); the message says what and where."""


class LogCorrupt(StoreError):
    """A damaged record with valid records after it, or no valid checkpoint: the mount stops."""


class LogFull(StoreError):
    """No room left in the log region for this record: checkpoint (wrap) and append again."""


class DatabaseFull(StoreError):
    """The database image no longer fits half of its region."""


@dataclass(frozen=True, slots=True)
class Region:
    """``count`` consecutive data blocks from ``start``, with a name for messages and the README."""

    name: str
    start: int
    count: int


@dataclass(frozen=True, slots=True)
class LogSet:
    """The three regions of one log: checkpoint (2 blocks), log, database image (two halves)."""

    chk: Region
    log: Region
    db: Region


@dataclass(frozen=True, slots=True)
class DiskLayout:
    storage_group: LogSet  # E00: the first storage group's log and databases
    queue: LogSet  # the SMTP virtual server's queue (messages accepted before the store mounts)


def _logset(prefix: str, log_name: str, db_name: str, start: int, log_blocks: int, db_blocks: int) -> LogSet:
    db_blocks -= db_blocks % 2  # two equal halves
    return LogSet(
        Region(f"{prefix}/{log_name}.chk", start, 2),
        Region(f"{prefix}/{log_name}.log", start + 2, log_blocks),
        Region(f"{prefix}/{db_name}", start + 2 + log_blocks, db_blocks),
    )


def disk_layout(block_count: int) -> DiskLayout:
    """The regions of a disk of ``block_count`` blocks (see the module docstring for the shares)."""
    rest = block_count - 1 - 4  # block 0 and the two checkpoints
    if rest < 40:
        raise ValueError(f"a disk of {block_count} blocks is too small for an Exchange store")
    log, db, qlog = rest * 50 // 100, rest * 30 // 100, rest * 10 // 100
    qdb = rest - log - db - qlog
    sg = _logset("Exchsrvr/mdbdata", "E00", "priv1.edb", 1, log, db)
    queue = _logset("Exchsrvr/mailroot", "Queue", "Queue.edb", sg.db.start + sg.db.count, qlog, qdb)
    return DiskLayout(sg, queue)


@dataclass(frozen=True, slots=True)
class Checkpoint:
    seq: int
    next_lsn: int  # the first LSN not contained in the database image
    log_offset: int  # byte offset in the log region where record next_lsn starts
    db_half: int
    db_length: int
    db_crc: int


@dataclass(frozen=True, slots=True)
class Replay:
    """What soft recovery found: the database image and the records past the checkpoint, in order."""

    database: bytes | None  # the checkpoint's image (opaque to the log); None while it is empty
    records: list[tuple[int, Any]]  # (lsn, payload)
    seconds: float  # time to read and check them (the consumer adds its apply time)
    torn_tail_bytes: int  # bytes of a dropped torn record at the end (0: clean end)
    formatted: bool  # True when this mount found a blank region and formatted it


def encode_record(lsn: int, payload: bytes, magic: bytes = RECORD_MAGIC) -> bytes:
    head = _HEAD.pack(magic, lsn, len(payload))
    return head + _CRC.pack(zlib.crc32(head + payload)) + payload


def decode_at(buf: bytes | bytearray, off: int, magic: bytes = RECORD_MAGIC) -> tuple[int, bytes] | None:
    """(lsn, payload) of a complete, valid record starting at ``off`` of ``buf``; None otherwise."""
    if off + HEADER_BYTES > len(buf) or buf[off : off + 4] != magic:
        return None
    _, lsn, length = _HEAD.unpack_from(buf, off)
    end = off + HEADER_BYTES + length
    if length > MAX_RECORD_BYTES or end > len(buf):
        return None
    (crc,) = _CRC.unpack_from(buf, off + _HEAD.size)
    payload = bytes(buf[off + HEADER_BYTES : end])
    if crc != zlib.crc32(bytes(buf[off : off + _HEAD.size]) + payload):
        return None
    return lsn, payload


def _pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]


def _unpack(raw: bytes) -> Any:
    return msgpack.unpackb(raw, raw=False, strict_map_key=False)


class StoreLog:
    """One log set on one disk, used by one initiator (the owning node). See the module docstring."""

    def __init__(self, disk: SharedDisk, initiator: str, regions: LogSet) -> None:
        self.disk = disk
        self.initiator = initiator
        self.regions = regions
        self._bs = disk.block_size
        self._chk: Checkpoint | None = None
        self._next_lsn = 1
        self._offset = 0  # where the next record goes, in the log region
        self._tail = b""  # the bytes of the log's current last block before ``_offset``
        self.appended = 0  # records appended since mount (for status)
        self.wraps = 0  # times the log restarted at offset 0 since mount

    # ---- geometry -------------------------------------------------------------------------------
    @property
    def log_bytes(self) -> int:
        return self.regions.log.count * self._bs

    @property
    def db_half_bytes(self) -> int:
        return self.regions.db.count // 2 * self._bs

    @property
    def next_lsn(self) -> int:
        return self._next_lsn

    @property
    def used_bytes(self) -> int:
        """Log bytes written since the last checkpoint (what the next mount replays)."""
        return self._offset - (self._chk.log_offset if self._chk else 0)

    # ---- block I/O (fenced) ---------------------------------------------------------------------
    def _read(self, region: Region, first: int, count: int) -> bytes:
        return b"".join(self.disk.read_block(self.initiator, region.start + first + i) for i in range(count))

    def _write(self, region: Region, first: int, data: bytes) -> None:
        bs = self._bs
        for i in range(0, len(data), bs):
            chunk = data[i : i + bs]
            self.disk.write_block(self.initiator, region.start + first + i // bs, chunk.ljust(bs, b"\0"))

    # ---- checkpoint -----------------------------------------------------------------------------
    def _read_checkpoint(self) -> Checkpoint | None:
        best: Checkpoint | None = None
        for slot in (0, 1):
            raw = self._read(self.regions.chk, slot, 1)
            decoded = decode_at(raw, 0, CHECKPOINT_MAGIC)
            if decoded is None:
                continue
            try:
                f = _unpack(decoded[1])
                chk = Checkpoint(decoded[0], f["next_lsn"], f["log_offset"], f["db_half"], f["db_length"],
                                 f["db_crc"])
            except (ValueError, KeyError, TypeError, msgpack.UnpackException):
                continue
            if best is None or chk.seq > best.seq:
                best = chk
        return best

    def checkpoint(self, database: bytes, *, wrap: bool = False) -> None:
        """Record that ``database`` contains every record appended so far; ``wrap`` restarts the log
        at offset 0 (the old records stay on disk but are behind the checkpoint, so never replayed)."""
        if len(database) > self.db_half_bytes:
            raise DatabaseFull(
                f"{self.regions.db.name}: database image of {len(database)} bytes exceeds "
                f"{self.db_half_bytes} (half of the region)"
            )
        half = 0 if self._chk is None else 1 - self._chk.db_half
        self._write(self.regions.db, half * (self.regions.db.count // 2), database)
        offset = 0 if wrap else self._offset
        seq = 1 if self._chk is None else self._chk.seq + 1
        chk = Checkpoint(seq, self._next_lsn, offset, half, len(database), zlib.crc32(database))
        fields = {"next_lsn": chk.next_lsn, "log_offset": chk.log_offset, "db_half": chk.db_half,
                  "db_length": chk.db_length, "db_crc": chk.db_crc}
        slot = seq % 2  # alternate: the previous checkpoint stays valid until this one is complete
        self._write(self.regions.chk, slot, encode_record(seq, _pack(fields), CHECKPOINT_MAGIC))
        self._chk = chk
        if wrap:
            self._offset, self._tail = 0, b""
            self.wraps += 1

    # ---- append ---------------------------------------------------------------------------------
    def append(self, payload: Any) -> int:
        """Append one record durably; its LSN. ``LogFull`` when it does not fit before the region end."""
        body = _pack(payload)
        if len(body) > MAX_RECORD_BYTES:
            raise StoreError(f"log record of {len(body)} bytes exceeds {MAX_RECORD_BYTES}")
        record = encode_record(self._next_lsn, body)
        if self._offset + len(record) > self.log_bytes:
            raise LogFull(f"{self.regions.log.name}: no room for a record of {len(record)} bytes")
        bs = self._bs
        first_block = self._offset // bs
        data = self._tail + record
        self._write(self.regions.log, first_block, data)  # raises ReservationConflict when fenced
        # Only now is the record durable: advance. A failure above leaves the state as before, and
        # whatever part of the record reached the disk is a torn tail the next append overwrites.
        self._offset += len(record)
        self._tail = data[len(data) - self._offset % bs :] if self._offset % bs else b""
        lsn = self._next_lsn
        self._next_lsn += 1
        self.appended += 1
        return lsn

    # ---- mount ----------------------------------------------------------------------------------
    def mount(self, *, format_blank: bool = True) -> Replay:
        """Soft recovery; see the module docstring. ``LogCorrupt`` stops it with the reason."""
        started = time.perf_counter()
        chk = self._read_checkpoint()
        if chk is None:
            if not format_blank or self._read(self.regions.log, 0, 1)[:4] == RECORD_MAGIC:
                raise LogCorrupt(f"{self.regions.chk.name}: no valid checkpoint, yet the log is not blank")
            self._chk, self._next_lsn, self._offset, self._tail = None, 1, 0, b""
            self.checkpoint(b"")  # a new, empty store: an empty database image means "nothing yet"
            return Replay(None, [], time.perf_counter() - started, 0, True)
        base = chk.db_half * (self.regions.db.count // 2)
        raw_db = self._read(self.regions.db, base, -(-chk.db_length // self._bs))[: chk.db_length]
        if zlib.crc32(raw_db) != chk.db_crc:
            raise LogCorrupt(f"{self.regions.db.name}: database image checksum mismatch (seq {chk.seq})")
        self._chk = chk
        reader = _LogReader(self, chk.log_offset)
        records: list[tuple[int, Any]] = []
        expected, offset = chk.next_lsn, chk.log_offset
        for lsn, body, end in reader.records(offset):
            if lsn != expected:
                break
            records.append((lsn, _unpack(body)))
            expected, offset = expected + 1, end
        torn = reader.check_end(offset, expected)
        self._next_lsn, self._offset = expected, offset
        self._tail = reader.tail(offset)
        return Replay(raw_db or None, records, time.perf_counter() - started, torn, False)


class _LogReader:
    """Sequential reads of the log region, a few blocks at a time, as records are parsed."""

    CHUNK_BLOCKS = 64

    def __init__(self, log: StoreLog, start: int) -> None:
        self._log = log
        self._bs = log.disk.block_size
        self._base = start // self._bs * self._bs  # byte offset of buf[0] in the region
        self._buf = bytearray()

    def _ensure(self, end: int) -> None:
        """Have the region's bytes up to ``end`` (clipped to the region) in the buffer."""
        end = min(end, self._log.log_bytes)
        while self._base + len(self._buf) < end:
            first = (self._base + len(self._buf)) // self._bs
            count = min(self.CHUNK_BLOCKS, self._log.regions.log.count - first)
            self._buf += self._log._read(self._log.regions.log, first, count)

    def records(self, offset: int) -> Iterator[tuple[int, bytes, int]]:
        """(lsn, payload, end offset) of each valid record from ``offset`` on, until one is not."""
        while True:
            self._ensure(offset + HEADER_BYTES)
            rel = offset - self._base
            if rel + HEADER_BYTES > len(self._buf) or self._buf[rel : rel + 4] != RECORD_MAGIC:
                return
            (length,) = struct.unpack_from(">I", self._buf, rel + 12)
            if length > MAX_RECORD_BYTES:
                return
            self._ensure(offset + HEADER_BYTES + length)
            decoded = decode_at(self._buf, rel)
            if decoded is None:
                return
            yield decoded[0], decoded[1], offset + HEADER_BYTES + length
            offset += HEADER_BYTES + length
            self._drop_before(offset)

    def _drop_before(self, offset: int) -> None:
        """Forget whole blocks before ``offset`` (keeps memory bounded on a long replay)."""
        keep_from = offset // self._bs * self._bs
        if keep_from - self._base >= self.CHUNK_BLOCKS * self._bs:
            del self._buf[: keep_from - self._base]
            self._base = keep_from

    def check_end(self, offset: int, expected: int) -> int:
        """The log ends at ``offset``. Torn tail (its length, 0 if clean) or ``LogCorrupt``."""
        limit = min(offset + HEADER_BYTES + MAX_RECORD_BYTES, self._log.log_bytes)
        self._ensure(limit)
        rel, stop = offset - self._base, limit - self._base
        torn = 0
        if rel + _HEAD.size <= len(self._buf) and self._buf[rel : rel + 4] == RECORD_MAGIC:
            _, lsn, length = _HEAD.unpack_from(self._buf, rel)
            # A header of the expected record whose body did not make it: the append that was in
            # flight when its writer died. (A header from an earlier lap has a lower LSN: clean end.)
            torn = min(HEADER_BYTES + length, self._log.log_bytes - offset) if lsn == expected else 0
        at = self._buf.find(RECORD_MAGIC, rel + 1, stop)
        while at >= 0:
            found = decode_at(self._buf, at)
            if found is not None and found[0] >= expected:
                where = self._log.regions.log.name
                raise LogCorrupt(
                    f"{where}: record {expected} at offset {offset} is damaged but record {found[0]} "
                    f"follows at offset {self._base + at}: the log is damaged in the middle"
                )
            at = self._buf.find(RECORD_MAGIC, at + 1, stop)
        return torn

    def tail(self, offset: int) -> bytes:
        """The bytes of the block holding ``offset`` that precede it (the next append keeps them)."""
        start = offset // self._bs * self._bs
        self._ensure(start + self._bs)
        return bytes(self._buf[start - self._base : offset - self._base])
