"""The on-disk layout of a wolfpack disk image, as pure encode/decode functions (no I/O here).

Theory of operation
-------------------
An image is one fixed-size, sparse file. All integers are big-endian.

```
offset 0        header (HEADER_AREA = 4 KiB, mostly zero)
                  magic "WOLFDISK" | version u16 | 0 u16 | block_size u32 | block_count u64
                  | data_offset u64 | crc32 u32 (of the 32 bytes before it)
offset 4096     reservation slot 0 (SLOT_SIZE = 8 KiB)
offset 12288    reservation slot 1 (8 KiB)
data_offset     block_count data blocks of block_size bytes (20480 rounded up to block_size)
```

A reservation slot holds one record: magic "WPRR" | seq u64 | length u32 | crc32 u32 | payload,
where the payload is the JSON form of ``rules.ReservationState`` and the crc covers magic, seq,
length and payload. The record is double-buffered: the current record is the valid slot with the
highest ``seq``; a new record (seq + 1) is written over the OTHER slot. A write torn by the death of
the writing process leaves that slot invalid (or still holding the older record), so the reader
falls back to the previous record, which is exactly the state before the unfinished command. The
header is written once, at creation, and never changes.
"""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass
from typing import Any

from shareddisk.errors import DiskFormatError
from shareddisk.rules import MAX_KEY, ReservationState

MAGIC = b"WOLFDISK"
FORMAT_VERSION = 1
HEADER_AREA = 4096
SLOT_SIZE = 8192
SLOT_OFFSETS = (HEADER_AREA, HEADER_AREA + SLOT_SIZE)
METADATA_END = HEADER_AREA + 2 * SLOT_SIZE
MIN_BLOCK_SIZE = 512
MAX_BLOCK_SIZE = 65536
MAX_SIZE_BYTES = 2**40  # sparse, but a limit all the same

_HEADER = struct.Struct(">8sHHIQQ")
_CRC = struct.Struct(">I")
RECORD_MAGIC = b"WPRR"
_RECORD_HEAD = struct.Struct(">4sQI")  # magic, seq, payload length; then crc32, then payload
_RECORD_FIXED = _RECORD_HEAD.size + _CRC.size


@dataclass(frozen=True, slots=True)
class Geometry:
    block_size: int
    block_count: int
    data_offset: int

    @property
    def size_bytes(self) -> int:
        """The data capacity (what ``create_disk`` was asked for), not counting the metadata."""
        return self.block_size * self.block_count

    @property
    def file_size(self) -> int:
        return self.data_offset + self.size_bytes

    def block_offset(self, n: int) -> int:
        return self.data_offset + n * self.block_size


def geometry_for(size_bytes: int, block_size: int) -> Geometry:
    """Validate a requested disk size; ValueError names what is wrong."""
    if block_size < MIN_BLOCK_SIZE or block_size > MAX_BLOCK_SIZE or block_size & (block_size - 1):
        raise ValueError(f"block size {block_size}: a power of two from {MIN_BLOCK_SIZE} to {MAX_BLOCK_SIZE}")
    if size_bytes <= 0 or size_bytes % block_size or size_bytes > MAX_SIZE_BYTES:
        raise ValueError(f"disk size {size_bytes}: a positive multiple of {block_size}, at most 1 TiB")
    data_offset = -(-METADATA_END // block_size) * block_size
    return Geometry(block_size, size_bytes // block_size, data_offset)


def encode_header(geometry: Geometry) -> bytes:
    body = _HEADER.pack(
        MAGIC, FORMAT_VERSION, 0, geometry.block_size, geometry.block_count, geometry.data_offset
    )
    return body + _CRC.pack(zlib.crc32(body))


def decode_header(raw: bytes, where: str) -> Geometry:
    """Parse and check the header; DiskFormatError (naming ``where``) when it is not a valid one."""
    size = _HEADER.size + _CRC.size
    if len(raw) < size:
        raise DiskFormatError(f"{where}: too short to be a wolfpack disk image")
    magic, version, _, block_size, block_count, data_offset = _HEADER.unpack_from(raw)
    if magic != MAGIC:
        raise DiskFormatError(f"{where}: not a wolfpack disk image (bad magic)")
    (crc,) = _CRC.unpack_from(raw, _HEADER.size)
    if crc != zlib.crc32(raw[: _HEADER.size]):
        raise DiskFormatError(f"{where}: disk header checksum mismatch (damaged header)")
    if version != FORMAT_VERSION:
        raise DiskFormatError(f"{where}: disk format version {version}, this wolfpack reads {FORMAT_VERSION}")
    try:
        expected = geometry_for(block_size * block_count, block_size)
    except ValueError as e:
        raise DiskFormatError(f"{where}: bad geometry in disk header: {e}") from None
    if expected.block_count != block_count or expected.data_offset != data_offset:
        raise DiskFormatError(f"{where}: inconsistent geometry in disk header")
    return expected


def encode_record(state: ReservationState, seq: int) -> bytes:
    payload = json.dumps(
        {
            "generation": state.generation,
            "scsi2_holder": state.scsi2_holder,
            "pr_holder": state.pr_holder,
            "registrations": [[i, k] for i, k in state.registrations],
        },
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode()
    if len(payload) > SLOT_SIZE - _RECORD_FIXED:
        # The limits in rules.py (names, registrations) make this impossible; the check keeps it so.
        raise ValueError(f"reservation record of {len(payload)} bytes does not fit a slot")
    head = _RECORD_HEAD.pack(RECORD_MAGIC, seq, len(payload))
    return head + _CRC.pack(zlib.crc32(head + payload)) + payload


def decode_record(raw: bytes) -> tuple[int, ReservationState] | None:
    """(seq, state) of a slot, or None if the slot does not hold a complete, valid record."""
    if len(raw) < _RECORD_FIXED:
        return None
    magic, seq, length = _RECORD_HEAD.unpack_from(raw)
    if magic != RECORD_MAGIC or length > len(raw) - _RECORD_FIXED:
        return None
    (crc,) = _CRC.unpack_from(raw, _RECORD_HEAD.size)
    payload = raw[_RECORD_FIXED : _RECORD_FIXED + length]
    if crc != zlib.crc32(raw[: _RECORD_HEAD.size] + payload):
        return None
    try:
        return seq, _state_from_json(json.loads(payload.decode()))
    except (ValueError, TypeError, KeyError):
        return None  # checksummed yet malformed: not ours; treat as a bad slot


def _state_from_json(obj: Any) -> ReservationState:
    if not isinstance(obj, dict) or set(obj) != {"generation", "scsi2_holder", "pr_holder", "registrations"}:
        raise ValueError("unexpected record fields")
    regs = obj["registrations"]
    if not isinstance(regs, list):
        raise ValueError("registrations must be a list")
    pairs: list[tuple[str, int]] = []
    for item in regs:
        if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)):
            raise ValueError("bad registration")
        if not isinstance(item[1], int) or isinstance(item[1], bool) or not 0 < item[1] <= MAX_KEY:
            raise ValueError("bad registration key")
        pairs.append((item[0], item[1]))
    for name in ("scsi2_holder", "pr_holder"):
        if obj[name] is not None and not isinstance(obj[name], str):
            raise ValueError(f"bad {name}")
    if not isinstance(obj["generation"], int) or isinstance(obj["generation"], bool):
        raise ValueError("bad generation")
    return ReservationState(obj["generation"], obj["scsi2_holder"], obj["pr_holder"], tuple(pairs))


def newest(slots: tuple[bytes, bytes]) -> tuple[int, ReservationState, int] | None:
    """(seq, state, slot index) of the current record: the valid slot with the highest seq."""
    best: tuple[int, ReservationState, int] | None = None
    for index, raw in enumerate(slots):
        decoded = decode_record(raw)
        if decoded is not None and (best is None or decoded[0] > best[0]):
            best = (decoded[0], decoded[1], index)
    return best
