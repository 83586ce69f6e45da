"""The membership record kept on the quorum disk (the checkpoint's first block).

Theory of operation
-------------------
Before a coordinator commits a new membership under disk quorum, it writes the record to the quorum
disk; the write is fenced, so it succeeds only while the coordinator holds the reservation. A
challenger that wins the disk reads the record and numbers its own membership above it. So two
different memberships never share an epoch, even when a stale owner committed one just before it
was fenced. Layout: magic ``WPMR``, version byte, epoch (u64), owner (u8), member count (u8), members
(u8 each), big-endian. An all-zero block (a new disk) reads as epoch 0.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

_MAGIC = b"WPMR"
_HEAD = struct.Struct(">4sBQBB")


@dataclass(frozen=True, slots=True)
class MembershipRecord:
    epoch: int
    owner: int
    members: tuple[int, ...]

    def encode(self) -> bytes:
        return _HEAD.pack(_MAGIC, 1, self.epoch, self.owner, len(self.members)) + bytes(self.members)

    @classmethod
    def decode(cls, data: bytes) -> MembershipRecord:
        """Parse a block; anything unreadable counts as an empty disk (epoch 0)."""
        if len(data) < _HEAD.size:
            return cls(0, 0, ())
        magic, version, epoch, owner, count = _HEAD.unpack_from(data)
        if magic != _MAGIC or version != 1 or len(data) < _HEAD.size + count:
            return cls(0, 0, ())
        return cls(epoch, owner, tuple(data[_HEAD.size : _HEAD.size + count]))
