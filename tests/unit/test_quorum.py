"""QuorumArbiter driven by hand: challenge, defense, the lease, SCSI-2 and SCSI-3, release, stale results."""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nodeagent.config import Timing
from nodeagent.core.effects import DiskOp, DiskOpKind, DiskOutcome, DiskResult
from nodeagent.core.quorum import RECORD_BLOCK, ArbiterOutput, ArbiterState, Notice, QuorumArbiter
from nodeagent.core.record import MembershipRecord
from nodeagent.diskops import apply_disk_op
from nodeagent.errors import LocalProtocolError
from shareddisk import MemoryDisk

T = Timing.for_speed(10)  # renew 0.3, challenge wait 0.7 (= lease), takeover 1.0
S = 5.0  # challenges start here, so nothing accidentally works only from t = 0
RESERVE_AT = S + 0.001 + T.challenge_wait_s  # the reset's result comes back at S + 0.001
EPS = 1e-6
RECORD = MembershipRecord(4, 1, (1, 2, 3)).encode().ljust(512, b"\0")


def make(key: int = 2, scsi3: bool = False, timing: Timing = T) -> QuorumArbiter:
    return QuorumArbiter("Q", key, scsi3, timing, itertools.count(1).__next__)


def ok(op: DiskOp, **kw: object) -> DiskResult:
    return DiskResult(op.op_id, DiskOutcome.OK, **kw)  # type: ignore[arg-type]


def conflict(op: DiskOp, holder: str | None = "NODE1") -> DiskResult:
    return DiskResult(op.op_id, DiskOutcome.CONFLICT, holder=holder)


def only(out: ArbiterOutput, kind: DiskOpKind) -> DiskOp:
    assert len(out.ops) == 1, out
    assert out.ops[0].kind is kind, out
    assert out.ops[0].disk == "Q"
    return out.ops[0]


def quiet(out: ArbiterOutput) -> None:
    assert out == ArbiterOutput(), out


def win_scsi2(a: QuorumArbiter, start: float = S) -> float:
    """Drive a SCSI-2 challenge on an uncontested disk to WON; returns the reserve's issue time."""
    reset = only(a.challenge(start), DiskOpKind.RESET)
    quiet(a.on_result(ok(reset), start + 0.001))
    at = start + 0.001 + T.challenge_wait_s  # counted from the reset's result
    reserve = only(a.on_tick(at), DiskOpKind.RESERVE)
    read = only(a.on_result(ok(reserve), at + 0.001), DiskOpKind.READ)
    quiet(a.on_result(ok(read, data=RECORD), at + 0.002))
    out = a.on_tick(start + T.challenge_takeover_s)
    assert out.notice is Notice.WON
    assert a.state is ArbiterState.OWNER
    return at


# -- SCSI-2 challenge ---------------------------------------------------------------------------------
def test_scsi2_challenge_timeline() -> None:
    a = make()
    assert a.state is ArbiterState.IDLE
    assert a.next_deadline() is None
    reset = only(a.challenge(S), DiskOpKind.RESET)
    assert a.state is ArbiterState.CHALLENGING
    assert a.owns(reset.op_id)
    quiet(a.on_result(ok(reset), S + 0.001))
    assert not a.owns(reset.op_id)
    # The bus reset gives a live defender challenge_wait_s to re-reserve, counted from the reset's
    # result (when it is known to have happened), not from its issue.
    assert a.next_deadline() == RESERVE_AT
    quiet(a.on_tick(RESERVE_AT - EPS))
    reserve = only(a.on_tick(RESERVE_AT), DiskOpKind.RESERVE)
    assert (reserve.scsi3, reserve.key) == (False, 0)
    quiet(a.on_tick(RESERVE_AT + 0.0005))  # the reserve is issued once
    read = only(a.on_result(ok(reserve), RESERVE_AT + 0.001), DiskOpKind.READ)
    assert read.block == RECORD_BLOCK
    assert a.state is ArbiterState.WON_PENDING
    assert a.lease_valid(RESERVE_AT + 0.001)
    assert not a.holds_quorum(RESERVE_AT + 0.001)  # not before the takeover instant
    quiet(a.on_result(ok(read, data=RECORD), RESERVE_AT + 0.002))
    assert a.record_read
    assert a.next_deadline() == S + T.challenge_takeover_s
    out = a.on_tick(S + T.challenge_takeover_s - EPS)
    assert out.notice is None
    assert not a.holds_quorum(S + T.challenge_takeover_s - EPS)
    out = a.on_tick(S + T.challenge_takeover_s)
    assert out.notice is Notice.WON
    assert a.state is ArbiterState.OWNER
    assert a.record == RECORD
    assert a.holds_quorum(S + T.challenge_takeover_s)
    assert a.challenge_started_s == S


def test_record_read_after_the_takeover_instant_wins_at_once() -> None:
    a = make()
    reset = only(a.challenge(S), DiskOpKind.RESET)
    quiet(a.on_result(ok(reset), S + 0.001))
    reserve = only(a.on_tick(RESERVE_AT), DiskOpKind.RESERVE)
    read = only(a.on_result(ok(reserve), RESERVE_AT + 0.001), DiskOpKind.READ)
    late = S + T.challenge_takeover_s + 0.05  # a slow disk
    assert a.on_tick(late).notice is None  # no WON before the record is read
    out = a.on_result(ok(read, data=b"\0" * 512), late + 0.01)
    assert out.notice is Notice.WON
    assert a.holds_quorum(late + 0.01)


def test_lost_challenge_on_conflict() -> None:
    a = make()
    reset = only(a.challenge(S), DiskOpKind.RESET)
    quiet(a.on_result(ok(reset), S + 0.001))
    reserve = only(a.on_tick(RESERVE_AT), DiskOpKind.RESERVE)
    out = a.on_result(conflict(reserve, "NODE1"), RESERVE_AT + 0.001)
    assert out.notice is Notice.LOST
    assert "NODE1" in out.reason
    assert out.ops == ()
    assert a.state is ArbiterState.IDLE
    assert a.next_deadline() is None
    assert not a.holds_quorum(S + 10)
    a.challenge(S + 20)  # it may try again later


@pytest.mark.parametrize("step", ["reset", "reserve", "read"])
def test_unavailable_disk_loses_the_challenge(step: str) -> None:
    a = make()
    reset = only(a.challenge(S), DiskOpKind.RESET)
    bad = DiskOutcome.UNAVAILABLE
    if step == "reset":
        out = a.on_result(DiskResult(reset.op_id, bad), S + 0.001)
    else:
        quiet(a.on_result(ok(reset), S + 0.001))
        reserve = only(a.on_tick(RESERVE_AT), DiskOpKind.RESERVE)
        if step == "reserve":
            out = a.on_result(DiskResult(reserve.op_id, bad), S + 0.8)
        else:
            read = only(a.on_result(ok(reserve), S + 0.8), DiskOpKind.READ)
            out = a.on_result(DiskResult(read.op_id, bad), S + 0.81)
            assert "cannot read" in out.reason
    assert out.notice is Notice.LOST
    assert a.state is ArbiterState.IDLE


def test_challenge_twice_is_a_local_protocol_error() -> None:
    a = make()
    a.challenge(S)
    with pytest.raises(LocalProtocolError):
        a.challenge(S + 1)


# -- defense: renewals and the lease -------------------------------------------------------------------
def test_renewals_every_interval_keep_the_quorum() -> None:
    a = make()
    reserve_at = win_scsi2(a)
    now = S + T.challenge_takeover_s
    issued: list[float] = []
    while now < S + 10:
        deadline = a.next_deadline()
        assert deadline is not None
        # Between calls the owner holds the quorum at every instant.
        for t in (now, (now + deadline) / 2, deadline - EPS):
            assert a.holds_quorum(t), t
        now = deadline
        out = a.on_tick(now)
        assert out.notice is None
        for op in out.ops:
            assert (op.kind, op.scsi3) == (DiskOpKind.RESERVE, False)
            issued.append(now)
            quiet(a.on_result(ok(op), now + 0.001))
    # The first renewal comes renew_interval after the winning reserve's result, then every interval.
    # The first renewal is counted from the winning reserve's issue, on the lease's own clock.
    assert issued[0] == pytest.approx(reserve_at + T.quorum_renew_interval_s)
    gaps = [b - a for a, b in itertools.pairwise(issued)]
    assert gaps == pytest.approx([T.quorum_renew_interval_s] * len(gaps))
    assert len(issued) >= 25


def test_lease_counts_from_the_issue_of_the_last_successful_renewal() -> None:
    a = make()
    win_scsi2(a)
    r1_at = a.next_deadline()
    assert r1_at is not None
    r1 = only(a.on_tick(r1_at), DiskOpKind.RESERVE)
    # A slow disk: the renewal's result comes 0.5 s later; the lease still counts from the issue.
    r2_at = r1_at + T.quorum_renew_interval_s
    r2 = only(a.on_tick(r2_at), DiskOpKind.RESERVE)
    quiet(a.on_result(ok(r1), r1_at + 0.5))
    assert a.lease_until_s == pytest.approx(r1_at + T.quorum_lease_s)
    assert a.holds_quorum(r1_at + T.quorum_lease_s - EPS)
    assert not a.holds_quorum(r1_at + T.quorum_lease_s)
    # r2's success moves the lease on, from r2's issue time.
    quiet(a.on_result(ok(r2), r2_at + 0.6))
    assert a.lease_until_s == pytest.approx(r2_at + T.quorum_lease_s)
    # A late result of an older renewal never moves the lease back.
    assert a.holds_quorum(r2_at + T.quorum_lease_s - EPS)


def test_lease_expiry_is_defense_lost() -> None:
    a = make()
    reserve_at = win_scsi2(a)
    # The disk stops answering: renewals go out but never come back.
    now = S + T.challenge_takeover_s
    pending: list[DiskOp] = []
    lease_end = reserve_at + T.quorum_lease_s
    while True:
        deadline = a.next_deadline()
        assert deadline is not None
        assert deadline <= lease_end
        now = deadline
        out = a.on_tick(now)
        pending.extend(out.ops)
        if out.notice is not None:
            break
    assert now == lease_end
    assert out.notice is Notice.DEFENSE_LOST
    assert "lease" in out.reason
    assert a.state is ArbiterState.IDLE
    assert not a.holds_quorum(now)
    assert pending  # it did try to renew
    for op in pending:  # the results arrive after all: ignored
        quiet(a.on_result(ok(op), now + 0.1))
    assert not a.holds_quorum(now + 0.1)
    assert a.next_deadline() is None


def test_renewal_conflict_is_defense_lost() -> None:
    a = make()
    win_scsi2(a)
    at = a.next_deadline()
    assert at is not None
    renew = only(a.on_tick(at), DiskOpKind.RESERVE)
    assert a.holds_quorum(at + 0.001)
    out = a.on_result(conflict(renew, "NODE3"), at + 0.001)
    assert out.notice is Notice.DEFENSE_LOST
    assert "NODE3" in out.reason
    assert not a.holds_quorum(at + 0.001)
    assert a.state is ArbiterState.IDLE


def test_renewals_start_while_waiting_for_the_takeover() -> None:
    # With a long takeover the defender must already renew while WON_PENDING, or its lease would lapse.
    t = Timing.for_speed(10, {"challenge_takeover_s": 3.0})
    a = make(timing=t)
    reset = only(a.challenge(S), DiskOpKind.RESET)
    quiet(a.on_result(ok(reset), S))
    reserve = only(a.on_tick(S + t.challenge_wait_s), DiskOpKind.RESERVE)
    read = only(a.on_result(ok(reserve), S + t.challenge_wait_s), DiskOpKind.READ)
    quiet(a.on_result(ok(read, data=RECORD), S + t.challenge_wait_s))
    now = S + t.challenge_wait_s
    won_at = None
    while won_at is None:
        deadline = a.next_deadline()
        assert deadline is not None
        now = deadline
        out = a.on_tick(now)
        assert out.notice in (None, Notice.WON)
        for op in out.ops:
            assert op.kind is DiskOpKind.RESERVE
            quiet(a.on_result(ok(op), now))
        if out.notice is Notice.WON:
            won_at = now
    assert won_at == S + t.challenge_takeover_s
    assert a.holds_quorum(won_at)


# -- SCSI-3 ------------------------------------------------------------------------------------------
def test_scsi3_challenge_on_a_free_disk() -> None:
    a = make(key=2, scsi3=True)
    reg = only(a.challenge(S), DiskOpKind.REGISTER)
    assert reg.key == 2
    rr = only(a.on_result(ok(reg), S + 0.001), DiskOpKind.READ_RESERVATION)
    reserve = only(a.on_result(ok(rr, key=0), S + 0.002), DiskOpKind.RESERVE)
    assert (reserve.scsi3, reserve.key) == (True, 2)
    read = only(a.on_result(ok(reserve), S + 0.003), DiskOpKind.READ)
    assert a.state is ArbiterState.WON_PENDING
    quiet(a.on_result(ok(read, data=RECORD), S + 0.004))
    # No bus reset and no 7 s wait, but the quorum still comes online at the takeover instant,
    # and meanwhile the new holder already renews its PR reservation.
    renewals: list[DiskOp] = []
    now = S + 0.004
    while True:
        deadline = a.next_deadline()
        assert deadline is not None
        assert not a.holds_quorum(deadline - EPS)
        now = deadline
        out = a.on_tick(now)
        for op in out.ops:
            renewals.append(op)
            quiet(a.on_result(ok(op), now))
        if out.notice is not None:
            break
    assert out.notice is Notice.WON
    assert now == S + T.challenge_takeover_s
    assert a.holds_quorum(now)
    assert len(renewals) == 3  # at +0.303, +0.603, +0.903
    for op in renewals:
        assert (op.kind, op.scsi3, op.key) == (DiskOpKind.RESERVE, True, 2)


def test_scsi3_preempts_the_holder() -> None:
    a = make(key=2, scsi3=True)
    reg = only(a.challenge(S), DiskOpKind.REGISTER)
    rr = only(a.on_result(ok(reg), S), DiskOpKind.READ_RESERVATION)
    pre = only(a.on_result(ok(rr, key=1, holder="NODE1"), S), DiskOpKind.PREEMPT)
    assert (pre.key, pre.victim_key) == (2, 1)
    only(a.on_result(ok(pre), S), DiskOpKind.READ)
    assert a.state is ArbiterState.WON_PENDING


def test_scsi3_reserves_when_it_already_holds_the_reservation() -> None:
    a = make(key=2, scsi3=True)
    reg = only(a.challenge(S), DiskOpKind.REGISTER)
    rr = only(a.on_result(ok(reg), S), DiskOpKind.READ_RESERVATION)
    reserve = only(a.on_result(ok(rr, key=2, holder="NODE2"), S), DiskOpKind.RESERVE)
    assert (reserve.scsi3, reserve.key) == (True, 2)


def test_scsi3_preempt_conflict_loses() -> None:
    a = make(key=2, scsi3=True)
    reg = only(a.challenge(S), DiskOpKind.REGISTER)
    rr = only(a.on_result(ok(reg), S), DiskOpKind.READ_RESERVATION)
    pre = only(a.on_result(ok(rr, key=1), S), DiskOpKind.PREEMPT)
    out = a.on_result(conflict(pre, "NODE3"), S)
    assert out.notice is Notice.LOST
    assert "NODE3" in out.reason
    assert a.state is ArbiterState.IDLE


def test_scsi3_on_a_memory_disk_fences_the_old_owner() -> None:
    disk = MemoryDisk("Q", block_count=4, block_size=512)
    a, b = make(key=1, scsi3=True), make(key=2, scsi3=True)
    run_to_owner(a, "NODE1", disk, S)
    assert disk.read_reservation().holder == "NODE1"
    won = run_to_owner(b, "NODE2", disk, S + 3)
    assert disk.read_reservation().holder == "NODE2"
    assert "NODE1" not in disk.read_keys()[1]
    # The old owner's next renewal fails at once: it was preempted.
    at = a.next_deadline()
    assert at is not None and at < won
    renew = only(a.on_tick(at), DiskOpKind.RESERVE)
    out = a.on_result(apply_disk_op(disk, "NODE1", renew), at)
    assert out.notice is Notice.DEFENSE_LOST


def run_to_owner(a: QuorumArbiter, name: str, disk: MemoryDisk, start: float) -> float:
    """Challenge at ``start`` with instant disk results until WON; returns the WON instant."""
    todo = list(a.challenge(start).ops)
    now = start
    while True:
        while todo:
            op = todo.pop(0)
            out = a.on_result(apply_disk_op(disk, name, op), now)
            todo.extend(out.ops)
            if out.notice is Notice.WON:
                return now
            assert out.notice is None, out
        deadline = a.next_deadline()
        assert deadline is not None
        now = deadline
        out = a.on_tick(now)
        todo.extend(out.ops)
        if out.notice is Notice.WON:
            return now
        assert out.notice is None, out


# -- release and abandon -----------------------------------------------------------------------------
@pytest.mark.parametrize("scsi3", [False, True])
def test_release_on_stop(scsi3: bool) -> None:
    disk = MemoryDisk("Q", block_count=4, block_size=512)
    a = make(key=1, scsi3=scsi3)
    won = run_to_owner(a, "NODE1", disk, S)
    rel = only(a.release(won + 0.1), DiskOpKind.RELEASE)
    assert (rel.scsi3, rel.key) == (scsi3, 1)
    assert a.state is ArbiterState.RELEASING
    assert not a.holds_quorum(won + 0.1)
    assert a.on_tick(won + 0.5).ops == ()  # no renewals while releasing
    out = a.on_result(apply_disk_op(disk, "NODE1", rel), won + 0.6)
    assert out.notice is Notice.RELEASED
    assert a.state is ArbiterState.IDLE
    assert disk.read_reservation().holder is None
    assert a.next_deadline() is None


def test_release_while_won_pending_releases_the_disk() -> None:
    a = make()
    reset = only(a.challenge(S), DiskOpKind.RESET)
    quiet(a.on_result(ok(reset), S))
    reserve = only(a.on_tick(S + T.challenge_wait_s), DiskOpKind.RESERVE)
    read = only(a.on_result(ok(reserve), S + T.challenge_wait_s), DiskOpKind.READ)
    rel = only(a.release(S + 0.8), DiskOpKind.RELEASE)
    quiet(a.on_result(ok(read, data=RECORD), S + 0.81))  # the read lands after the release began
    assert a.on_result(ok(rel), S + 0.82).notice is Notice.RELEASED
    assert a.on_tick(S + T.challenge_takeover_s).notice is None


def test_release_when_idle_or_challenging_needs_no_disk_op() -> None:
    a = make()
    assert a.release(S) == ArbiterOutput(notice=Notice.RELEASED)
    reset = only(a.challenge(S), DiskOpKind.RESET)
    assert a.release(S + 0.1) == ArbiterOutput(notice=Notice.RELEASED)
    quiet(a.on_result(ok(reset), S + 0.2))  # stale
    assert a.next_deadline() is None
    quiet(a.on_tick(S + T.challenge_wait_s))  # and no reserve goes out


def test_release_result_is_reported_even_if_a_renewal_in_flight_fails() -> None:
    a = make()
    win_scsi2(a)
    at = a.next_deadline()
    assert at is not None
    renew = only(a.on_tick(at), DiskOpKind.RESERVE)
    rel = only(a.release(at + 0.01), DiskOpKind.RELEASE)
    a.on_result(conflict(renew, "NODE2"), at + 0.02)
    assert a.on_result(ok(rel), at + 0.03).notice is Notice.RELEASED


def test_stale_results_after_abandon_are_ignored() -> None:
    a = make()
    reset = only(a.challenge(S), DiskOpKind.RESET)
    a.abandon()
    assert a.state is ArbiterState.IDLE
    quiet(a.on_result(ok(reset), S + 0.001))
    assert a.next_deadline() is None
    quiet(a.on_tick(S + T.challenge_wait_s))
    # An owner that halts ignores its renewal's conflict: no second notice.
    win_scsi2(a, S + 10)
    at = a.next_deadline()
    assert at is not None
    renew = only(a.on_tick(at), DiskOpKind.RESERVE)
    a.abandon()
    assert not a.holds_quorum(at)
    quiet(a.on_result(conflict(renew), at + 0.001))
    assert a.state is ArbiterState.IDLE


# -- two nodes on one disk: never two owners ------------------------------------------------------------
@dataclass
class Party:
    name: str
    arb: QuorumArbiter
    freeze_at: float = float("inf")
    thaw_at: float = float("inf")
    notices: list[tuple[float, Notice, str]] = field(default_factory=list)
    token: int = 0

    def frozen(self, now: float) -> bool:
        return self.freeze_at <= now < self.thaw_at


class DiskWorld:
    """Two arbiters, one MemoryDisk; ops execute ``latency`` after issue; frozen parties wait."""

    def __init__(self, latency: float = 0.001) -> None:
        self.disk = MemoryDisk("Q", block_count=4, block_size=512)
        self.latency = latency
        self.queue: list[tuple[float, int, str, Party, object]] = []
        self.seq = itertools.count()
        self.now = 0.0
        self.checked = 0

    def push(self, at: float, kind: str, p: Party, payload: object = None) -> None:
        heapq.heappush(self.queue, (at, next(self.seq), kind, p, payload))

    def apply(self, p: Party, out: ArbiterOutput) -> None:
        for op in out.ops:
            self.push(self.now + self.latency, "exec", p, op)
        if out.notice is not None:
            p.notices.append((self.now, out.notice, out.reason))
        deadline = p.arb.next_deadline()
        p.token += 1
        if deadline is not None:
            self.push(max(deadline, self.now), "tick", p, p.token)

    def run(self, parties: list[Party], until: float) -> None:
        while self.queue and self.queue[0][0] <= until:
            at, _, kind, p, payload = heapq.heappop(self.queue)
            self.now = at
            if kind == "exec":
                assert isinstance(payload, DiskOp)
                # The disk executes the op even if its issuer is frozen; the result waits.
                self.push(at, "result", p, apply_disk_op(self.disk, p.name, payload))
                continue
            if p.frozen(at):
                self.push(p.thaw_at, kind, p, payload)
                continue
            if kind == "tick":
                if payload == p.token:
                    self.apply(p, p.arb.on_tick(at))
            elif kind == "result":
                assert isinstance(payload, DiskResult)
                self.apply(p, p.arb.on_result(payload, at))
            elif kind == "challenge":
                self.apply(p, p.arb.challenge(at))
            holders = [q.name for q in parties if q.arb.holds_quorum(at)]
            assert len(holders) <= 1, f"two owners at {at}: {holders}"
            self.checked += 1
        self.now = until


@pytest.mark.parametrize("scsi3", [False, True])
@settings(max_examples=40, deadline=None)
@given(
    freeze_at=st.floats(1.5, 4.0),
    freeze_for=st.floats(0.0, 3.0),
    challenge_at=st.floats(1.5, 4.0),
)
def test_never_two_owners_when_the_owner_freezes(
    scsi3: bool, freeze_at: float, freeze_for: float, challenge_at: float
) -> None:
    world = DiskWorld()
    a = Party("NODE1", make(key=1, scsi3=scsi3), freeze_at=freeze_at, thaw_at=freeze_at + freeze_for)
    b = Party("NODE2", make(key=2, scsi3=scsi3))
    world.push(0.0, "challenge", a)
    world.push(challenge_at, "challenge", b)
    world.run([a, b], 10.0)
    assert world.checked > 20
    assert a.notices[0][1] is Notice.WON
    b_won = [t for t, n, _ in b.notices if n is Notice.WON]
    if b_won:
        # The challenger won: the old owner must have been silent for its whole lease, and it learns so.
        assert any(n is Notice.DEFENSE_LOST for _, n, _ in a.notices)
        assert a.arb.state is ArbiterState.IDLE
        assert b.arb.holds_quorum(10.0)
    else:
        assert [n for _, n, _ in b.notices] == [Notice.LOST]
    if freeze_for == 0.0 and not scsi3:
        assert not b_won  # a live SCSI-2 defender always beats a challenger
    holders = [p.name for p in (a, b) if p.arb.holds_quorum(10.0)]
    assert len(holders) <= 1


def _slow_challenge_setup(scsi3: bool) -> tuple[QuorumArbiter, QuorumArbiter, MemoryDisk, float, DiskOp]:
    """NODE1 owns the disk; NODE2 challenges at C; NODE2's disk op that breaks NODE1's hold is slow.

    Returns (a, b, disk, C, the slow op still to be executed).
    """
    disk = MemoryDisk("Q", block_count=4, block_size=512)
    a, b = make(key=1, scsi3=scsi3), make(key=2, scsi3=scsi3)
    run_to_owner(a, "NODE1", disk, 0.0)
    c = 2.0
    out = b.challenge(c)
    if scsi3:
        reg = only(out, DiskOpKind.REGISTER)
        rr = only(b.on_result(apply_disk_op(disk, "NODE2", reg), c), DiskOpKind.READ_RESERVATION)
        slow = only(b.on_result(apply_disk_op(disk, "NODE2", rr), c), DiskOpKind.PREEMPT)
    else:
        slow = only(out, DiskOpKind.RESET)
    return a, b, disk, c, slow


@pytest.mark.parametrize("scsi3", [False, True])
def test_never_two_owners_when_the_challengers_disk_op_is_slow(scsi3: bool) -> None:
    a, b, disk, c, slow = _slow_challenge_setup(scsi3)
    # The defender renews on schedule with instant results, up to its first renewal after c + 0.3 s.
    renewed_at = 0.0
    while renewed_at <= c + T.quorum_renew_interval_s:
        at = a.next_deadline()
        assert at is not None
        out = a.on_tick(at)
        assert out.notice is None
        for op in out.ops:
            assert a.on_result(apply_disk_op(disk, "NODE1", op), at).notice is None
            renewed_at = at
    assert a.holds_quorum(renewed_at)
    # Now the defender freezes (SIGSTOP) and the challenger's slow op finally executes. (This found a
    # bug: the wait was counted from the challenge start, so the frozen defender's lease outlived the
    # challenger's takeover.)
    executed = renewed_at + 0.001
    out = b.on_result(apply_disk_op(disk, "NODE2", slow), executed)
    now = executed
    notices: list[Notice] = []
    todo = list(out.ops)
    while b.state not in (ArbiterState.OWNER, ArbiterState.IDLE):
        while todo:
            out = b.on_result(apply_disk_op(disk, "NODE2", todo.pop(0)), now)
            todo.extend(out.ops)
            notices += [out.notice] if out.notice else []
            assert not (a.holds_quorum(now) and b.holds_quorum(now)), f"two owners at {now}"
        deadline = b.next_deadline()
        if deadline is None:
            break
        now = deadline
        out = b.on_tick(now)
        todo = list(out.ops)
        notices += [out.notice] if out.notice else []
        assert not (a.holds_quorum(now) and b.holds_quorum(now)), f"two owners at {now}"
    if not scsi3:
        assert notices == [Notice.WON]
        assert b.holds_quorum(now)
        assert now >= renewed_at + T.quorum_lease_s  # the defender's lease was over


@pytest.mark.parametrize("scsi3", [False, True])
def test_a_slow_winning_reserve_still_keeps_the_disk(scsi3: bool) -> None:
    disk = MemoryDisk("Q", block_count=4, block_size=512)
    b = make(key=2, scsi3=scsi3)
    out = b.challenge(S)
    now = S
    slow_kind = DiskOpKind.RESERVE
    notices: list[Notice] = []
    todo = list(out.ops)
    while b.state not in (ArbiterState.OWNER, ArbiterState.IDLE):
        while todo:
            op = todo.pop(0)
            result = apply_disk_op(disk, "NODE2", op)
            if op.kind is slow_kind and b.state is ArbiterState.CHALLENGING:
                now += 0.5  # the winning reserve takes 0.5 s (> lease 0.7 - renew 0.3)
            out = b.on_result(result, now)
            todo.extend(out.ops)
            notices += [out.notice] if out.notice else []  # (renewals answer at once)
        deadline = b.next_deadline()
        if deadline is None:
            break
        now = deadline
        out = b.on_tick(now)
        todo = list(out.ops)
        notices += [out.notice] if out.notice else []
    assert notices == [Notice.WON]
    assert b.holds_quorum(now)
