"""The mailbox database and SMTP queue on the store log: durability, idempotent replay, limits."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_exchange_storelog import Crash, CrashingDisk  # beside this file (pytest puts it on the path)

from nodeagent.exchange.mailstore import (
    DELETED,
    MAX_DATABASES_PER_GROUP,
    MAX_STORAGE_GROUPS,
    DatabaseLimit,
    MailStore,
    NoSuchMessage,
    NotMounted,
    PublicStoreRule,
    SmtpQueue,
    StorageGroupLimit,
    StoreState,
    apply_record,
    check_node_storage_groups,
    check_public_stores,
)
from shareddisk import MemoryDisk, Outcome, ReservationConflict


def disk(blocks: int = 256) -> MemoryDisk:
    return MemoryDisk("EVS1", block_count=blocks, block_size=4096)


def clock() -> float:
    return 1_100_000_000.0  # 2004-11-09: a fixed internal date


def store(d: MemoryDisk, me: str = "NODE1") -> MailStore:
    s = MailStore(d, me, clock=clock)
    s.mount()
    return s


def test_deliver_flags_delete_expunge_survive_a_crash() -> None:
    d = disk()
    s = store(d)
    raws = [f"Subject: {i}\r\n\r\nbody {i}\r\n".encode() for i in range(4)]
    uids = [s.deliver("alice", r) for r in raws]
    assert uids == [1, 2, 3, 4]
    s.set_flags("alice", 2, ["\\Seen"])
    s.set_flags("alice", 3, [DELETED])
    s.delete("alice", 1)  # POP3 DELE
    assert s.expunge("alice") == [3]
    # No dismount: the node dies. The survivor's mount replays the log.
    t = MailStore(d, "NODE2", clock=clock)
    stats = t.mount()
    assert stats.records_replayed == 8 and stats.messages == 2
    assert [(m.uid, m.flags, m.raw, m.internal_date) for m in t.messages("alice")] == [
        (2, ["\\Seen"], raws[1], clock()),
        (4, [], raws[3], clock()),
    ]
    box = t.mailbox("alice")
    assert box.uidnext == 5 and box.uidvalidity == s.mailbox("alice").uidvalidity != 0
    assert t.deliver("alice", b"new") == 5  # UIDs are never reused
    with pytest.raises(NoSuchMessage):
        t.fetch("alice", 1)


def test_replaying_twice_gives_the_same_state() -> None:
    d = disk()
    s = store(d)
    for i in range(10):
        s.deliver(f"user{i % 3}", b"x" * i)
    s.set_flags("user0", 1, [DELETED])
    s.expunge("user0")
    records = s.log.mount().records
    once = StoreState()
    for lsn, rec in records:
        apply_record(once, lsn, rec)
    for lsn, rec in records:  # the second replay: every LSN is already in the state
        apply_record(once, lsn, rec)
    assert once.to_bytes() == s.state.to_bytes()
    assert store(d).state.to_bytes() == s.state.to_bytes()


def test_dismount_checkpoints_so_the_next_mount_replays_nothing() -> None:
    d = disk()
    s = store(d)
    s.deliver("bob", b"one")
    s.dismount()
    t = MailStore(d, "NODE2")
    assert t.mount().records_replayed == 0
    assert [m.raw for m in t.messages("bob")] == [b"one"]
    t.deliver("bob", b"two")
    u = MailStore(d, "NODE1")
    assert u.mount().records_replayed == 1 and len(u.messages("bob")) == 2


def test_log_full_wraps_through_a_checkpoint_and_loses_nothing() -> None:
    d = disk()  # a 500 KB log
    s = MailStore(d, "NODE1", checkpoint_depth_bytes=10**9)  # only a full log checkpoints
    s.mount()
    for i in range(400):
        s.deliver("carol", b"%d " % i + b"m" * 2000)
        if i >= 20:
            s.delete("carol", i - 19)  # keep the 20 newest: the database stays small
    assert s.log.wraps >= 1
    t = MailStore(d, "NODE2")
    t.mount()
    assert t.state.to_bytes() == s.state.to_bytes()
    assert [m.uid for m in t.messages("carol")] == list(range(381, 401))


def test_a_fenced_node_cannot_deliver_and_its_state_is_unchanged() -> None:
    d = disk()
    assert d.reserve("NODE1") is Outcome.OK
    s = store(d, "NODE1")
    s.deliver("dave", b"acked")
    d.reset("NODE2")
    assert d.reserve("NODE2") is Outcome.OK
    with pytest.raises(ReservationConflict):
        s.deliver("dave", b"never acknowledged")
    assert [m.raw for m in s.messages("dave")] == [b"acked"]
    assert [m.raw for m in store(d, "NODE2").messages("dave")] == [b"acked"]


def test_operations_need_a_mounted_store() -> None:
    with pytest.raises(NotMounted):
        MailStore(disk(), "NODE1").deliver("eve", b"x")


def test_smtp_queue_is_delivered_once_at_mount() -> None:
    d = disk()
    q = SmtpQueue(d, "NODE1", clock=clock)
    q.mount()
    q1 = q.enqueue("x@example.org", ["alice", "bob"], b"queued one")
    q.enqueue("x@example.org", ["alice"], b"queued two")
    # The node dies before the store mounts; the survivor's queue still holds both messages.
    q2 = SmtpQueue(d, "NODE2")
    assert q2.mount().messages == 2
    s = store(d, "NODE2")
    assert len(s.deliver_queued(q2)) == 2
    assert s.deliver_queued(q2) == []  # delivered ids are remembered by the store
    q2.dequeue([q1])
    assert list(q2.pending) == [q1 + 1]
    t = store(d, "NODE1")
    assert t.deliver_queued(q2) == []
    assert [m.raw for m in t.messages("alice")] == [b"queued one", b"queued two"]
    assert [m.raw for m in t.messages("bob")] == [b"queued one"]


def test_backlog_records_are_replayed_at_the_next_mount() -> None:
    d = disk()
    s = store(d)
    s.deliver("frank", b"before")
    s.append_backlog(300, payload_bytes=200)
    s.deliver("frank", b"after")
    stats = MailStore(d, "NODE2").mount()
    assert stats.records_replayed == 302 and stats.messages == 2
    assert stats.event_text().startswith("soft recovery replayed 302 log records in ")


def test_storage_group_and_database_limits() -> None:
    s = store(disk())
    for n in range(2, MAX_STORAGE_GROUPS + 1):
        s.create_storage_group(f"SG{n}")
    with pytest.raises(StorageGroupLimit):
        s.create_storage_group("SG5")
    for n in range(MAX_DATABASES_PER_GROUP):
        s.create_database("SG2", f"DB{n}", "mailbox")
    with pytest.raises(DatabaseLimit):
        s.create_database("SG2", "DB5", "mailbox")
    assert s.public_stores() == 1
    check_node_storage_groups(2, 2)
    with pytest.raises(StorageGroupLimit):
        check_node_storage_groups(3, 2)


def test_public_folder_store_rule_of_sp1() -> None:
    check_public_stores(0, 2, sp1=False)  # the first one is always allowed
    check_public_stores(1, 1, sp1=False)  # a single-node cluster is not the case the rule is for
    check_public_stores(1, 2, sp1=True)
    with pytest.raises(PublicStoreRule):
        check_public_stores(1, 2, sp1=False)


@settings(max_examples=60, deadline=None)
@given(
    ops=st.lists(
        st.tuples(st.sampled_from(["deliver", "flag", "delete", "dismount"]), st.integers(0, 2),
                  st.binary(max_size=3000)),
        max_size=40,
    ),
    crash_writes=st.integers(0, 60),
)
def test_a_crash_anywhere_keeps_exactly_the_acknowledged_operations(
    ops: list[tuple[str, int, bytes]], crash_writes: int
) -> None:
    """A model of what was acknowledged vs. the survivor's mount, with the writer dying (its block
    write torn in half) after ``crash_writes`` block writes."""
    d = disk(128)
    s = MailStore(CrashingDisk(d, crash_writes), "NODE1", clock=clock,  # type: ignore[arg-type]
                  checkpoint_depth_bytes=8192)
    model: dict[str, dict[int, tuple[bytes, list[str]]]] = {}
    in_flight: tuple[str, int, tuple[bytes, list[str]] | None] | None = None  # user, uid, new value
    try:
        s.mount()
        for op, who, raw in ops:
            user = f"user{who}"
            box = model.setdefault(user, {})
            if op == "deliver":
                in_flight = (user, s.mailbox(user).uidnext, (raw, []))
                box[s.deliver(user, raw)] = (raw, [])
            elif op == "flag" and box:
                uid = min(box)
                in_flight = (user, uid, (box[uid][0], ["\\Seen"]))
                s.set_flags(user, uid, ["\\Seen"])
                box[uid] = (box[uid][0], ["\\Seen"])
            elif op == "delete" and box:
                uid = max(box)
                in_flight = (user, uid, None)
                s.delete(user, uid)
                del box[uid]
            elif op == "dismount":
                in_flight = None
                s.dismount()
                s.mount()
            in_flight = None  # acknowledged
    except Crash:
        pass
    survivor = MailStore(d, "NODE2")
    survivor.mount()
    found = {u: {m.uid: (m.raw, m.flags) for m in survivor.messages(u)} for u in model}
    if found != model:
        # The record in flight at the crash may have reached the disk whole: it may count, or not.
        assert in_flight is not None, "an acknowledged operation is missing or changed"
        user, uid, value = in_flight
        if value is None:
            model[user].pop(uid)
        else:
            model[user][uid] = value
        assert found == model
