"""The global update manager: one ordered stream of cluster-database updates, from the quorum owner.

Theory of operation
-------------------
The quorum owner is the sequencer. ``commit`` applies updates to its own copy and returns one
``DbUpdate`` per update, numbered by the database version, for every member. A member applies an
update only when it is the next version. When it sees a gap (a datagram was lost), it asks the
sender with ``DbRequest`` and receives a whole ``DbSnapshot``; a copy adopts any snapshot newer than
itself. Heartbeats carry each node's version, so the owner notices a member that lags and sends it a
snapshot, and a new owner that is behind one of its members asks that member. A joining node gets
the snapshot the same way, which hands it everything it missed while it was down.

Payloads are msgpack, decoded with size limits and validated by ``ClusterDb``; a bad payload is a
``RemoteProtocolError``, counted and dropped like any bad datagram.

The checkpoint. Under disk quorum the sequencer also keeps the whole database on the quorum disk
(blocks 1..CHECKPOINT_BLOCKS, after the membership record), rewritten after every change; the fenced
write only succeeds while it holds the disk. A node that wins the quorum reads it before it may
sequence anything and adopts it when it is newer than its own copy, so a change is not lost when
its sequencer dies before every member had it. (MSCS keeps a checkpoint plus a quorum log of the
changes since; wolfpack's database is small enough to rewrite whole, so the log is folded in.)
"""

from __future__ import annotations

from typing import Any

import msgpack

from nodeagent.core.clusterdb import ClusterDb
from nodeagent.core.messages import DbRequest, DbSnapshot, DbUpdate
from nodeagent.errors import RemoteProtocolError

_MAX_PENDING = 256  # out-of-order updates kept while waiting for a gap to fill
CHECKPOINT_BLOCK = 1  # the quorum disk's block where the checkpoint starts (block 0: the record)
CHECKPOINT_BLOCKS = 64  # blocks it may span (256 KiB with 4 KiB blocks)
CHECKPOINT_MAX = CHECKPOINT_BLOCKS * 4096
_CHECKPOINT_MAGIC = b"WPDB"


def pack(value: Any) -> bytes:
    data: bytes = msgpack.packb(value, use_bin_type=True)
    return data


def unpack(data: bytes) -> Any:
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=True, max_str_len=65536, max_array_len=4096)
    except Exception:  # msgpack raises many types
        raise RemoteProtocolError("bad_payload") from None


class Replica:
    def __init__(self, db: ClusterDb) -> None:
        self.db = db
        self._pending: dict[int, tuple[str, dict[str, Any]]] = {}

    def commit(self, updates: list[tuple[str, dict[str, Any]]]) -> list[DbUpdate]:
        """Sequencer: apply in order and number them."""
        out = []
        for op, args in updates:
            self.db.apply(op, args)
            out.append(DbUpdate(self.db.version, pack([op, args])))
        return out

    def on_update(self, msg: DbUpdate) -> tuple[bool, DbRequest | None]:
        """Member: (applied anything, a request for what is missing)."""
        if msg.version <= self.db.version:
            return False, None
        op, args = unpack_operation(msg.payload)
        self._pending[msg.version] = (op, args)
        applied = False
        while self.db.version + 1 in self._pending:
            op, args = self._pending.pop(self.db.version + 1)
            self.db.apply(op, args)
            applied = True
        if len(self._pending) > _MAX_PENDING:
            self._pending.clear()
        if self._pending:
            return applied, DbRequest(self.db.version)
        return applied, None

    def on_snapshot(self, msg: DbSnapshot) -> bool:
        if msg.version <= self.db.version:
            return False
        db = ClusterDb.from_dict(unpack(msg.payload))
        if db.version != msg.version:
            raise RemoteProtocolError("bad_payload")
        self.db = db
        self._pending = {v: u for v, u in self._pending.items() if v > db.version}
        return True

    def snapshot(self) -> DbSnapshot:
        return DbSnapshot(self.db.version, pack(self.db.to_dict()))


def unpack_operation(payload: bytes) -> tuple[str, dict[str, Any]]:
    """An ``[op, args]`` payload (a database update, or an admin request); RemoteProtocolError if not."""
    value = unpack(payload)
    if not (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], str)
        and isinstance(value[1], dict)
    ):
        raise RemoteProtocolError("bad_payload")
    return value[0], value[1]


def encode_checkpoint(db: ClusterDb) -> bytes | None:
    """The checkpoint's bytes, or None when the database no longer fits its blocks."""
    payload = pack(db.to_dict())
    data = _CHECKPOINT_MAGIC + len(payload).to_bytes(4, "big") + payload
    return data if len(data) <= CHECKPOINT_MAX else None


def decode_checkpoint(data: bytes) -> ClusterDb | None:
    """The database in a checkpoint; None for a new disk or anything unreadable."""
    if len(data) < 8 or data[:4] != _CHECKPOINT_MAGIC:
        return None
    size = int.from_bytes(data[4:8], "big")
    try:
        return ClusterDb.from_dict(unpack(data[8 : 8 + size]))
    except RemoteProtocolError:
        return None
