"""MembershipRecord: the quorum disk's first data block."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nodeagent.core.record import MembershipRecord

EMPTY = MembershipRecord(0, 0, ())


def test_layout_is_magic_version_epoch_owner_count_members_big_endian() -> None:
    data = MembershipRecord(0x0102030405060708, 2, (1, 2, 5)).encode()
    assert data == b"WPMR" + b"\x01" + bytes.fromhex("0102030405060708") + b"\x02" + b"\x03" + b"\x01\x02\x05"


@given(
    epoch=st.integers(0, 2**64 - 1),
    owner=st.integers(0, 255),
    members=st.lists(st.integers(0, 255), max_size=255).map(tuple),
    pad=st.integers(0, 4096),
)
def test_round_trip(epoch: int, owner: int, members: tuple[int, ...], pad: int) -> None:
    rec = MembershipRecord(epoch, owner, members)
    data = rec.encode()
    assert MembershipRecord.decode(data) == rec
    # On disk the record is padded with zeros to a whole block.
    assert MembershipRecord.decode(data + b"\0" * pad) == rec


@pytest.mark.parametrize("size", [0, 1, 14, 15, 512, 4096])
def test_zero_block_is_epoch_zero(size: int) -> None:
    assert MembershipRecord.decode(b"\0" * size) == EMPTY


def test_unreadable_blocks_count_as_an_empty_disk() -> None:
    good = MembershipRecord(7, 1, (1, 2, 3)).encode()
    assert MembershipRecord.decode(b"XPMR" + good[4:]) == EMPTY  # wrong magic
    assert MembershipRecord.decode(good[:4] + b"\x02" + good[5:]) == EMPTY  # unknown version
    assert MembershipRecord.decode(good[:-1]) == EMPTY  # members cut short
    assert MembershipRecord.decode(good[:10]) == EMPTY  # header cut short
    assert MembershipRecord.decode(b"\xff" * 4096) == EMPTY


@given(data=st.binary(max_size=300))
def test_decode_never_raises(data: bytes) -> None:
    rec = MembershipRecord.decode(data)
    assert rec.epoch >= 0
    assert all(0 <= m <= 255 for m in rec.members)


def test_out_of_range_values_cannot_be_encoded() -> None:
    with pytest.raises(struct.error):
        MembershipRecord(2**64, 1, (1,)).encode()
    with pytest.raises(ValueError):
        MembershipRecord(1, 1, (256,)).encode()
