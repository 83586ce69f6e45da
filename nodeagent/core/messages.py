"""Cluster messages: the bodies of the datagrams nodes exchange on the private and public links.

Theory of operation
-------------------
Each message is a frozen, slotted dataclass with a ``TYPE`` (``MsgType``, only ever appended to) and
fields of a few plain types (int, bool, str, bytes, tuples of int). ``nodeagent.wire`` packs a body as
the list of field values in declaration order and unpacks it strictly against the same declaration,
so adding a message means adding a class here and registering it in ``MESSAGE_TYPES``.

Membership protocol in one paragraph (core/membership.py has the detail): every node sends
``Heartbeat`` on every cluster network to every other node; a starting node sends ``JoinRequest``;
when a member is missed, the survivors exchange ``RegroupVote`` (who do I hear); the coordinator
sends ``Propose`` with the new membership, collects ``Ack`` and sends ``Commit``; a node stopping
gracefully sends ``Leave``. The sender's id and incarnation travel in the envelope, not the body.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import ClassVar


class MsgType(enum.IntEnum):
    """Wire message types. Append only: never renumber or reuse a value."""

    HEARTBEAT = 1
    JOIN_REQUEST = 2
    REGROUP_VOTE = 3
    PROPOSE = 4
    ACK = 5
    COMMIT = 6
    LEAVE = 7
    DB_UPDATE = 8
    DB_SNAPSHOT = 9
    DB_REQUEST = 10
    ADMIN = 11
    ADMIN_RESULT = 12


class Phase(enum.IntEnum):
    """Where a node's cluster service is; travels in heartbeats."""

    JOINING = 1  # looking for the cluster (or waiting to form it)
    ARBITRATING = 2  # forming: challenging for the quorum
    MEMBER = 3  # in the installed membership
    REGROUPING = 4  # a member taking part in a regroup
    HALTED = 5  # cluster service stopped after losing quorum or being pruned; restarts itself
    STOPPED = 6  # stopped by the operator


@dataclass(frozen=True, slots=True)
class Heartbeat:
    TYPE: ClassVar[MsgType] = MsgType.HEARTBEAT
    seq: int
    phase: int  # Phase
    epoch: int  # the sender's installed membership epoch (0: none yet)
    members: tuple[int, ...]
    quorum_owner: int  # node id, 0 for none known
    paused: bool
    db_version: int = 0  # the version of the sender's copy of the cluster database
    owner_seq: int = 0  # the latest heartbeat seq the sender got from quorum_owner: the leader's lease echo


@dataclass(frozen=True, slots=True)
class JoinRequest:
    TYPE: ClassVar[MsgType] = MsgType.JOIN_REQUEST
    known_epoch: int  # highest epoch the joiner has seen (its local copy of the database)


@dataclass(frozen=True, slots=True)
class RegroupVote:
    TYPE: ClassVar[MsgType] = MsgType.REGROUP_VOTE
    epoch: int  # the membership epoch being regrouped (the sender's installed one)
    round: int  # regroup round within that epoch; a higher round restarts the regroup
    hears: tuple[int, ...]  # nodes the sender currently hears on some cluster network (itself included)
    quorum_owner: int  # who the sender believes owns the quorum


@dataclass(frozen=True, slots=True)
class Propose:
    TYPE: ClassVar[MsgType] = MsgType.PROPOSE
    epoch: int  # the new epoch
    members: tuple[int, ...]
    incarnations: tuple[int, ...]  # parallel to members
    quorum_owner: int


@dataclass(frozen=True, slots=True)
class Ack:
    TYPE: ClassVar[MsgType] = MsgType.ACK
    epoch: int


@dataclass(frozen=True, slots=True)
class Commit:
    TYPE: ClassVar[MsgType] = MsgType.COMMIT
    epoch: int
    members: tuple[int, ...]
    incarnations: tuple[int, ...]
    quorum_owner: int


@dataclass(frozen=True, slots=True)
class Leave:
    TYPE: ClassVar[MsgType] = MsgType.LEAVE
    epoch: int


@dataclass(frozen=True, slots=True)
class DbUpdate:
    """One cluster-database update from the sequencer (the quorum owner), in version order."""

    TYPE: ClassVar[MsgType] = MsgType.DB_UPDATE
    version: int  # the database version after this update
    payload: bytes  # msgpack [op, args]


@dataclass(frozen=True, slots=True)
class DbSnapshot:
    TYPE: ClassVar[MsgType] = MsgType.DB_SNAPSHOT
    version: int
    payload: bytes  # msgpack of ClusterDb.to_dict()


@dataclass(frozen=True, slots=True)
class DbRequest:
    """'My copy is at ``version``: send me yours if it is newer.'"""

    TYPE: ClassVar[MsgType] = MsgType.DB_REQUEST
    version: int


@dataclass(frozen=True, slots=True)
class Admin:
    """An admin (or internal) request, sent to the quorum owner to be validated and replicated."""

    TYPE: ClassVar[MsgType] = MsgType.ADMIN
    request_id: int  # 0: no answer wanted
    payload: bytes  # msgpack [cmd, args]


@dataclass(frozen=True, slots=True)
class AdminResult:
    TYPE: ClassVar[MsgType] = MsgType.ADMIN_RESULT
    request_id: int
    ok: bool
    payload: bytes  # msgpack of the result dict
    error: str
    rule: str


Message = (
    Heartbeat
    | JoinRequest
    | RegroupVote
    | Propose
    | Ack
    | Commit
    | Leave
    | DbUpdate
    | DbSnapshot
    | DbRequest
    | Admin
    | AdminResult
)

MESSAGE_TYPES: dict[MsgType, type[Message]] = {
    cls.TYPE: cls
    for cls in (
        Heartbeat,
        JoinRequest,
        RegroupVote,
        Propose,
        Ack,
        Commit,
        Leave,
        DbUpdate,
        DbSnapshot,
        DbRequest,
        Admin,
        AdminResult,
    )
}
