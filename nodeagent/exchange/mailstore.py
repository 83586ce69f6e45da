"""The Information Store's mailbox database and the SMTP queue, on the ESE-style log of storelog.py.

Theory of operation
-------------------
The database is one in-memory value (``StoreState``: storage groups, databases, mailboxes and their
messages) changed only by ``apply_record(state, lsn, record)``, a pure function. Every operation
builds one record, appends it to the E00 log (durable when ``append`` returns: the caller may
acknowledge), then applies it. A mount reads the checkpoint's database image and applies every record
past it (soft recovery). ``apply_record`` skips LSNs the state already holds (``state.applied``), and
records carry every value they decide (the UIDs, the internal date), so replaying a log twice, or over
an image that already contains part of it, yields the same state.

When the log is full, or more than ``checkpoint_depth_bytes`` of it lies past the checkpoint, the
store writes its state as the new database image and checkpoints (storelog.py); a dismount does the
same, so a clean failover replays nothing. ``append_backlog`` appends records WITHOUT checkpointing
(the lab's ``wolfpack exchange backlog EVS1 --records N``), so that the next mount has N to replay.

Mailboxes (user -> messages): each message has a UID, flags, an internal date (seconds since the epoch),
its size and its raw RFC 5322 bytes. A mailbox is created by its first delivery (as Exchange creates
a mailbox at first logon or delivery); its UIDVALIDITY is the LSN of that record (unique, never 0),
UIDNEXT grows and UIDs are never reused. POP3 DELE -> ``delete``; IMAP STORE -> ``set_flags``; IMAP
EXPUNGE -> ``expunge`` (removes \\Deleted messages).

The SMTP queue (``SmtpQueue``) is a second log set on the same disk (Exchsrvr/mailroot): mail that the
SMTP virtual server accepts while the store is not mounted (the Exchange 2003 tree) is enqueued there
durably before the 250. Single writer per region: only the queue's owner writes the queue; the store
only reads it (``deliver_queued``), and remembers each delivered queue id in its own deliver record,
so delivering the queue twice delivers each message once. The queue's owner drops delivered entries
with ``SmtpQueue.dequeue``.

Storage groups and databases: at most 4 storage groups per server and 5 databases per storage group
(``StorageGroupLimit`` / ``DatabaseLimit``); ``check_node_storage_groups`` applies the per-node limit
to what a node would mount after a failover; ``check_public_stores`` is the Exchange 2003 SP1 rule.
All storage groups' records go to the one log region of this disk (E00): a simplification, the
product has a log per storage group.

API for the service host (synchronous, blocking: run each call in ``trio.to_thread.run_sync``, one at a
time per store):

    store = MailStore(disk, initiator="NODE1")      # no I/O yet
    stats = store.mount()                           # MountStats: records replayed, seconds
    uid = store.deliver("alice", raw_bytes)         # durable on return -> send the 250
    store.messages("alice"); store.fetch("alice", uid); store.set_flags(...); store.expunge(...)
    store.dismount()                                # checkpoint; then close() the disk yourself

Every write is fenced: a node that lost the disk's reservation gets ``ReservationConflict`` and the
state in memory is left unchanged (the record is applied only after it is durable).
"""

from __future__ import annotations

import abc
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack

from nodeagent.exchange.storelog import (
    DiskLayout,
    LogFull,
    StoreError,
    StoreLog,
    disk_layout,
)
from shareddisk import SharedDisk

MAX_STORAGE_GROUPS = 4  # per server (Exchange 2003)
MAX_DATABASES_PER_GROUP = 5
FIRST_GROUP = "First Storage Group"
MAILBOX_STORE = "Mailbox Store"  # priv1.edb
PUBLIC_STORE = "Public Folder Store"  # pub1.edb
DATABASE_KINDS = ("mailbox", "public")
DELETED = "\\Deleted"


class StorageGroupLimit(StoreError):
    """More than 4 storage groups on one server."""


class DatabaseLimit(StoreError):
    """More than 5 databases in one storage group."""


class PublicStoreRule(StoreError):
    """Exchange 2003 before SP1: one public folder store per cluster."""


class NoSuchMessage(StoreError):
    """The mailbox or the UID does not exist."""


class NotMounted(StoreError):
    """An operation on a store that is not mounted."""


@dataclass(slots=True)
class Message:
    uid: int
    internal_date: float
    flags: list[str]
    raw: bytes

    @property
    def size(self) -> int:
        return len(self.raw)


@dataclass(slots=True)
class Mailbox:
    uidvalidity: int
    uidnext: int = 1
    messages: dict[int, Message] = field(default_factory=dict)  # uid -> message, in UID order


@dataclass(slots=True)
class StoreState:
    applied: int = 0  # the highest LSN contained in this state
    groups: dict[str, dict[str, str]] = field(
        default_factory=lambda: {FIRST_GROUP: {MAILBOX_STORE: "mailbox", PUBLIC_STORE: "public"}}
    )
    mailboxes: dict[str, Mailbox] = field(default_factory=dict)
    delivered_qids: set[int] = field(default_factory=set)

    def to_bytes(self) -> bytes:
        obj = {
            "applied": self.applied,
            "groups": self.groups,
            "mailboxes": {
                u: [b.uidvalidity, b.uidnext, _messages(b)]
                for u, b in self.mailboxes.items()
            },
            "qids": sorted(self.delivered_qids),
        }
        return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]

    @classmethod
    def from_bytes(cls, raw: bytes) -> StoreState:
        obj = msgpack.unpackb(raw, raw=False, strict_map_key=False)
        boxes = {
            u: Mailbox(v, n, {m[0]: Message(m[0], m[1], list(m[2]), m[3]) for m in msgs})
            for u, (v, n, msgs) in obj["mailboxes"].items()
        }
        return cls(obj["applied"], obj["groups"], boxes, set(obj["qids"]))


def _messages(box: Mailbox) -> list[list[Any]]:
    return [[m.uid, m.internal_date, m.flags, m.raw] for m in box.messages.values()]


def apply_record(state: StoreState, lsn: int, rec: dict[str, Any]) -> None:
    """Apply one log record (idempotent by LSN). A record that cannot apply is a damaged log."""
    if lsn <= state.applied:
        return  # already in this state (replay over an image that contains it, or a second replay)
    op = rec["op"]
    if op == "deliver":
        for user, uid in zip(rec["users"], rec["uids"], strict=True):
            box = state.mailboxes.setdefault(user, Mailbox(uidvalidity=lsn % 2**32 or 1))
            box.messages[uid] = Message(uid, rec["date"], [], rec["raw"])
            box.uidnext = max(box.uidnext, uid + 1)
        if rec.get("qid"):
            state.delivered_qids.add(rec["qid"])
    elif op == "flags":
        msg = state.mailboxes[rec["user"]].messages[rec["uid"]]
        msg.flags = list(rec["flags"])
    elif op == "delete":
        for uid in rec["uids"]:
            state.mailboxes[rec["user"]].messages.pop(uid, None)
    elif op == "group":
        state.groups[rec["name"]] = {}
    elif op == "database":
        state.groups[rec["group"]][rec["name"]] = rec["kind"]
    elif op == "filler":
        pass  # a lab backlog record: replayed (read, checked, decoded) but changes nothing
    else:
        raise StoreError(f"log record {lsn}: unknown operation {op!r}")
    state.applied = lsn


@dataclass(frozen=True, slots=True)
class MountStats:
    """For the event log: 'replayed N records in S seconds'."""

    records_replayed: int
    seconds: float
    torn_tail_bytes: int
    formatted: bool
    mailboxes: int
    messages: int

    def event_text(self) -> str:
        """The event-log line of a mount (soft recovery), e.g. for the Information Store resource."""
        if self.formatted:
            return "the store was blank: new databases created, no log to replay"
        torn = f"; a torn record at the end of the log ({self.torn_tail_bytes} bytes) was dropped" \
            if self.torn_tail_bytes else ""
        return (
            f"soft recovery replayed {self.records_replayed} log records in {self.seconds:.3f} s "
            f"({self.mailboxes} mailboxes, {self.messages} messages){torn}"
        )


def check_node_storage_groups(mounted_on_node: int, adding: int) -> None:
    """The per-server limit applied to a node that would mount ``adding`` more storage groups."""
    if mounted_on_node + adding > MAX_STORAGE_GROUPS:
        raise StorageGroupLimit(
            f"{mounted_on_node} storage groups mounted on this node, {adding} more would exceed "
            f"{MAX_STORAGE_GROUPS} per server"
        )


def check_public_stores(existing_in_cluster: int, cluster_nodes: int, sp1: bool) -> None:
    """Exchange 2003: several public folder stores on a multi-node cluster need SP1; else one."""
    if existing_in_cluster >= 1 and cluster_nodes > 1 and not sp1:
        raise PublicStoreRule(
            "a multi-node cluster without Exchange 2003 SP1 supports one public folder store "
            f"({existing_in_cluster} exist; install SP1: exchange install --sp1)"
        )


class _Logged(abc.ABC):
    """A log set plus the state it rebuilds: append-then-apply, checkpoint on full or depth."""

    def __init__(self, log: StoreLog, checkpoint_depth_bytes: int | None) -> None:
        self.log = log
        self.depth = checkpoint_depth_bytes if checkpoint_depth_bytes is not None else log.log_bytes // 4
        self.mounted = False

    @abc.abstractmethod
    def _snapshot(self) -> bytes:
        """The whole state as a database image."""

    @abc.abstractmethod
    def _apply(self, lsn: int, rec: dict[str, Any]) -> None:
        """Apply one durable record to the state in memory."""

    def _commit(self, rec: dict[str, Any], *, checkpoints: bool = True) -> int:
        if not self.mounted:
            raise NotMounted(f"{self.log.regions.log.name} is not mounted")
        try:
            lsn = self.log.append(rec)
        except LogFull:
            self.log.checkpoint(self._snapshot(), wrap=True)
            lsn = self.log.append(rec)
        self._apply(lsn, rec)
        if checkpoints and self.log.used_bytes > self.depth:
            self.log.checkpoint(self._snapshot())
        return lsn


class MailStore(_Logged):
    """The mounted Information Store of one EVS disk (see the module docstring for the API)."""

    def __init__(
        self,
        disk: SharedDisk,
        initiator: str,
        *,
        clock: Callable[[], float] = time.time,
        checkpoint_depth_bytes: int | None = None,
        layout: DiskLayout | None = None,
    ) -> None:
        self.layout = layout or disk_layout(disk.block_count)
        super().__init__(StoreLog(disk, initiator, self.layout.storage_group), checkpoint_depth_bytes)
        self.clock = clock
        self.state = StoreState()

    def _snapshot(self) -> bytes:
        return self.state.to_bytes()

    def _apply(self, lsn: int, rec: dict[str, Any]) -> None:
        apply_record(self.state, lsn, rec)

    # ---- mount / dismount -----------------------------------------------------------------------
    def mount(self) -> MountStats:
        started = time.perf_counter()
        replay = self.log.mount()
        self.state = StoreState() if replay.database is None else StoreState.from_bytes(replay.database)
        for lsn, rec in replay.records:
            apply_record(self.state, lsn, rec)
        self.mounted = True
        return MountStats(
            len(replay.records),
            time.perf_counter() - started,
            replay.torn_tail_bytes,
            replay.formatted,
            len(self.state.mailboxes),
            sum(len(b.messages) for b in self.state.mailboxes.values()),
        )

    def dismount(self) -> None:
        """Clean dismount: checkpoint, so that the next mount replays nothing."""
        if self.mounted:
            self.log.checkpoint(self._snapshot())
            self.mounted = False

    # ---- mail -----------------------------------------------------------------------------------
    def deliver(self, user: str, raw: bytes) -> int:
        """Deliver to one mailbox; the UID. Durable when it returns."""
        return self.deliver_many([user], raw)[0]

    def deliver_many(self, users: Sequence[str], raw: bytes, qid: int = 0) -> list[int]:
        """Deliver one message to several mailboxes in one record (all or none)."""
        users = list(dict.fromkeys(users))  # one copy per mailbox, even if named twice
        uids = [self._uidnext(u) for u in users]
        rec: dict[str, Any] = {"op": "deliver", "users": list(users), "uids": uids,
                               "date": float(self.clock()), "raw": bytes(raw)}
        if qid:
            rec["qid"] = qid
        self._commit(rec)
        return uids

    def _uidnext(self, user: str) -> int:
        box = self.state.mailboxes.get(user)
        return 1 if box is None else box.uidnext

    def set_flags(self, user: str, uid: int, flags: Iterable[str]) -> None:
        self._message(user, uid)
        self._commit({"op": "flags", "user": user, "uid": uid, "flags": sorted(set(flags))})

    def delete(self, user: str, uid: int) -> None:
        """POP3 DELE (committed at QUIT by the protocol layer): remove one message."""
        self._message(user, uid)
        self._commit({"op": "delete", "user": user, "uids": [uid]})

    def expunge(self, user: str) -> list[int]:
        """IMAP EXPUNGE: remove every message flagged \\Deleted; their UIDs."""
        box = self.state.mailboxes.get(user)
        uids = [] if box is None else [m.uid for m in box.messages.values() if DELETED in m.flags]
        if uids:
            self._commit({"op": "delete", "user": user, "uids": uids})
        return uids

    def mailbox(self, user: str) -> Mailbox:
        """The mailbox (an empty one, not stored, if nothing was ever delivered to ``user``)."""
        box = self.state.mailboxes.get(user)
        return box if box is not None else Mailbox(uidvalidity=1)

    def messages(self, user: str) -> list[Message]:
        return sorted(self.mailbox(user).messages.values(), key=lambda m: m.uid)

    def fetch(self, user: str, uid: int) -> bytes:
        return self._message(user, uid).raw

    def _message(self, user: str, uid: int) -> Message:
        msg = self.mailbox(user).messages.get(uid)
        if msg is None:
            raise NoSuchMessage(f"mailbox {user}: no message with UID {uid}")
        return msg

    # ---- storage groups and databases -----------------------------------------------------------
    def create_storage_group(self, name: str) -> None:
        if name in self.state.groups:
            raise StoreError(f"storage group {name!r} exists")
        if len(self.state.groups) >= MAX_STORAGE_GROUPS:
            raise StorageGroupLimit(f"a server holds at most {MAX_STORAGE_GROUPS} storage groups")
        self._commit({"op": "group", "name": name})

    def create_database(self, group: str, name: str, kind: str) -> None:
        if kind not in DATABASE_KINDS:
            raise ValueError(f"database kind {kind!r}: one of {DATABASE_KINDS}")
        dbs = self.state.groups.get(group)
        if dbs is None:
            raise StoreError(f"no storage group {group!r}")
        if name in dbs:
            raise StoreError(f"database {name!r} exists in {group}")
        if len(dbs) >= MAX_DATABASES_PER_GROUP:
            raise DatabaseLimit(f"storage group {group} holds at most {MAX_DATABASES_PER_GROUP} databases")
        self._commit({"op": "database", "group": group, "name": name, "kind": kind})

    def public_stores(self) -> int:
        return sum(k == "public" for dbs in self.state.groups.values() for k in dbs.values())

    # ---- SMTP queue and lab backlog -------------------------------------------------------------
    def deliver_queued(self, queue: SmtpQueue) -> list[int]:
        """Deliver every queued message not delivered yet (each once, by queue id); their qids."""
        done: list[int] = []
        for qid, entry in sorted(queue.pending.items()):
            if qid not in self.state.delivered_qids:
                self.deliver_many(entry.recipients, entry.raw, qid=qid)
                done.append(qid)
        return done

    def append_backlog(self, records: int, payload_bytes: int = 1024) -> None:
        """Lab helper: append ``records`` filler records with no checkpoint (until the log is full:
        then ``LogFull``; the log region's size bounds the backlog)."""
        if not self.mounted:
            raise NotMounted(f"{self.log.regions.log.name} is not mounted")
        body = bytes(payload_bytes)
        for _ in range(records):
            lsn = self.log.append({"op": "filler", "pad": body})
            self.state.applied = lsn  # a filler changes nothing but the LSN


@dataclass(frozen=True, slots=True)
class QueueEntry:
    sender: str
    recipients: list[str]
    raw: bytes
    date: float


class SmtpQueue(_Logged):
    """The SMTP virtual server's durable queue on the EVS disk (Exchsrvr/mailroot)."""

    def __init__(self, disk: SharedDisk, initiator: str, *, clock: Callable[[], float] = time.time,
                 layout: DiskLayout | None = None) -> None:
        layout = layout or disk_layout(disk.block_count)
        super().__init__(StoreLog(disk, initiator, layout.queue), None)
        self.clock = clock
        self.pending: dict[int, QueueEntry] = {}
        self.applied = 0

    def _snapshot(self) -> bytes:
        items = [[q, e.sender, e.recipients, e.raw, e.date] for q, e in sorted(self.pending.items())]
        return msgpack.packb([self.applied, items], use_bin_type=True)  # type: ignore[no-any-return]

    def _apply(self, lsn: int, rec: dict[str, Any]) -> None:
        if lsn <= self.applied:
            return
        if rec["op"] == "enqueue":
            self.pending[lsn] = QueueEntry(rec["from"], list(rec["to"]), rec["raw"], rec["date"])
        elif rec["op"] == "dequeue":
            for qid in rec["qids"]:
                self.pending.pop(qid, None)
        else:
            raise StoreError(f"queue record {lsn}: unknown operation {rec['op']!r}")
        self.applied = lsn

    def mount(self) -> MountStats:
        started = time.perf_counter()
        replay = self.log.mount()
        self.pending, self.applied = {}, 0
        if replay.database is not None:
            applied, items = msgpack.unpackb(replay.database, raw=False)
            self.applied = applied
            self.pending = {q: QueueEntry(s, list(r), raw, d) for q, s, r, raw, d in items}
        for lsn, rec in replay.records:
            self._apply(lsn, rec)
        self.mounted = True
        return MountStats(len(replay.records), time.perf_counter() - started, replay.torn_tail_bytes,
                          replay.formatted, 0, len(self.pending))

    def enqueue(self, sender: str, recipients: Sequence[str], raw: bytes) -> int:
        """Queue a message durably (then the SMTP server may send 250); its queue id."""
        rec = {"op": "enqueue", "from": sender, "to": list(recipients), "raw": bytes(raw),
               "date": float(self.clock())}
        return self._commit(rec)

    def dequeue(self, qids: Iterable[int]) -> None:
        qids = [q for q in qids if q in self.pending]
        if qids:
            self._commit({"op": "dequeue", "qids": qids})

    def dismount(self) -> None:
        if self.mounted:
            self.log.checkpoint(self._snapshot())
            self.mounted = False
