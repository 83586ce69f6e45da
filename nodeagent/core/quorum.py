"""Quorum disk arbitration: challenge and defense, with a lease that keeps two owners apart.

Theory of operation
-------------------
SCSI-2 (Windows 2003). The owner (defender) re-issues RESERVE every ``quorum_renew_interval_s``. A
node that must form or keep a cluster without the owner (the challenger) issues a bus RESET, waits
``challenge_wait_s``, then RESERVEs: if the defender re-reserved in the meantime the reserve fails
with a conflict and the challenger has lost; otherwise it holds the disk, defends it from then on,
and ``challenge_takeover_s`` after the challenge began it brings the quorum online (WON).

SCSI-3 (Windows 2008). The challenger REGISTERs its key, reads the reservation, and either reserves
(none held) or PREEMPTs the holder's key, which fences the old owner at once; renewals are PR
RESERVEs, which fail once the key was preempted. It still waits until ``challenge_takeover_s``
before bringing the quorum online, for the lease below.

The lease. A defender may act as owner only while its last *successful* renewal was issued less
than ``quorum_lease_s`` (= ``challenge_wait_s``) ago. SCSI-2: a challenger that wins reserved
``challenge_wait_s`` after its reset, and the defender did not renew after that reset (else the
challenger would have lost), so the defender's lease ran out before the challenger's reserve.
SCSI-3: the preempt happens at or after the challenge start, the victim's last successful renewal
was before it, and the winner waits ``challenge_takeover_s`` > lease. Either way two nodes never hold
a fresh lease at once. A defender whose renewal fails, or whose lease runs out (it was frozen, or the
disk is too slow), has lost the quorum: DEFENSE_LOST.

Every ``DiskOp`` this module issues gets exactly one ``DiskResult`` back (the shell guarantees it).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from nodeagent.config import Timing
from nodeagent.core.effects import DiskOp, DiskOpKind, DiskOutcome, DiskResult
from nodeagent.errors import LocalProtocolError

RECORD_BLOCK = 0  # the quorum disk's data block that holds the membership record


class ArbiterState(enum.Enum):
    IDLE = "idle"  # neither owner nor challenger
    CHALLENGING = "challenging"  # reset/register sent, waiting, reserving
    WON_PENDING = "won_pending"  # holds the disk, defending, waiting for the takeover instant
    OWNER = "owner"  # quorum online here
    RELEASING = "releasing"  # graceful stop: release sent


class Notice(enum.Enum):
    WON = "won"  # challenge succeeded; quorum online; ``record`` holds the disk's membership record
    LOST = "lost"  # challenge failed: another node defends the disk
    DEFENSE_LOST = "defense_lost"  # the owner's renewal failed or its lease ran out
    RELEASED = "released"


@dataclass(frozen=True, slots=True)
class ArbiterOutput:
    ops: tuple[DiskOp, ...] = ()
    notice: Notice | None = None
    reason: str = ""


class QuorumArbiter:
    def __init__(
        self, disk: str, key: int, scsi3: bool, timing: Timing, next_op_id: Callable[[], int]
    ) -> None:
        self.disk = disk
        self.key = key  # SCSI-3 registration key
        self.scsi3 = scsi3
        self._t = timing
        self._next_op_id = next_op_id
        self.state = ArbiterState.IDLE
        self.challenge_started_s = 0.0
        self._reserve_at_s: float | None = None  # SCSI-2: when the challenger may reserve
        self._renew_at_s: float | None = None
        self._lease_until_s = 0.0
        self._pending: dict[int, tuple[str, float]] = {}  # op_id -> (purpose, issued at)
        self.record: bytes = b""
        self.record_read = False
        self._takeover_at_s = 0.0

    # -- queries -------------------------------------------------------------------------------------
    def owns(self, op_id: int) -> bool:
        return op_id in self._pending

    def lease_valid(self, now_s: float) -> bool:
        return self.state in (ArbiterState.OWNER, ArbiterState.WON_PENDING) and now_s < self._lease_until_s

    def holds_quorum(self, now_s: float) -> bool:
        return self.state == ArbiterState.OWNER and now_s < self._lease_until_s

    @property
    def lease_until_s(self) -> float:
        return self._lease_until_s

    def next_deadline(self) -> float | None:
        times = [t for t in (self._reserve_at_s, self._renew_at_s) if t is not None]
        if self.state in (ArbiterState.WON_PENDING, ArbiterState.OWNER):
            times.append(self._lease_until_s)
        if self.state == ArbiterState.WON_PENDING and self.record_read:
            times.append(self._takeover_at_s)
        return min(times) if times else None

    # -- commands ------------------------------------------------------------------------------------
    def challenge(self, now_s: float) -> ArbiterOutput:
        if self.state != ArbiterState.IDLE:
            raise LocalProtocolError(f"challenge while {self.state.value}")
        # IDLE -> CHALLENGING
        self.state = ArbiterState.CHALLENGING
        self.challenge_started_s = now_s
        self.record = b""
        self.record_read = False
        if self.scsi3:
            return ArbiterOutput((self._op(DiskOpKind.REGISTER, "register", now_s, key=self.key),))
        return ArbiterOutput((self._op(DiskOpKind.RESET, "reset", now_s),))

    def release(self, now_s: float) -> ArbiterOutput:
        """Graceful stop: give the disk up so a survivor wins it without a fight."""
        if self.state in (ArbiterState.OWNER, ArbiterState.WON_PENDING):
            # OWNER -> RELEASING
            self.state = ArbiterState.RELEASING
            self._renew_at_s = None
            op = self._op(DiskOpKind.RELEASE, "release", now_s, key=self.key, scsi3=self.scsi3)
            return ArbiterOutput((op,))
        self.abandon()
        return ArbiterOutput(notice=Notice.RELEASED)

    def abandon(self) -> None:
        """Forget everything (halt). Results still in flight are ignored when they arrive."""
        # any -> IDLE
        self.state = ArbiterState.IDLE
        self._reserve_at_s = None
        self._renew_at_s = None
        self._lease_until_s = 0.0
        self.record_read = False

    # -- inputs --------------------------------------------------------------------------------------
    def on_tick(self, now_s: float) -> ArbiterOutput:
        ops: list[DiskOp] = []
        if self._reserve_at_s is not None and now_s >= self._reserve_at_s:
            self._reserve_at_s = None
            ops.append(self._op(DiskOpKind.RESERVE, "challenge_reserve", now_s))
        if self.state in (ArbiterState.WON_PENDING, ArbiterState.OWNER) and now_s >= self._lease_until_s:
            self.abandon()
            return ArbiterOutput(notice=Notice.DEFENSE_LOST, reason="quorum lease expired before renewal")
        if self._renew_at_s is not None and now_s >= self._renew_at_s:
            self._renew_at_s = now_s + self._t.quorum_renew_interval_s
            ops.append(self._op(DiskOpKind.RESERVE, "renew", now_s, key=self.key, scsi3=self.scsi3))
        if self.state == ArbiterState.WON_PENDING and self.record_read and now_s >= self._takeover_at_s:
            # WON_PENDING -> OWNER
            self.state = ArbiterState.OWNER
            return ArbiterOutput(tuple(ops), Notice.WON)
        return ArbiterOutput(tuple(ops))

    def on_result(self, result: DiskResult, now_s: float) -> ArbiterOutput:
        purpose, issued_s = self._pending.pop(result.op_id)
        if purpose == "release":  # always answered, even if a renewal failed meanwhile
            self.abandon()
            return ArbiterOutput(notice=Notice.RELEASED)
        if self.state in (ArbiterState.IDLE, ArbiterState.RELEASING):
            return ArbiterOutput()  # stale: we halted meanwhile, or we are giving the disk up
        ok = result.outcome == DiskOutcome.OK
        if purpose == "renew":
            if ok:
                self._lease_until_s = max(self._lease_until_s, issued_s + self._t.quorum_lease_s)
                return ArbiterOutput()
            self.abandon()
            why = f"reservation held by {result.holder}" if result.holder else result.outcome.value
            return ArbiterOutput(notice=Notice.DEFENSE_LOST, reason=f"quorum renewal failed: {why}")
        if self.state != ArbiterState.CHALLENGING and purpose != "read_record":
            return ArbiterOutput()
        if not ok and purpose != "read_record":
            self.abandon()
            why = f"reservation held by {result.holder}" if result.holder else result.outcome.value
            return ArbiterOutput(notice=Notice.LOST, reason=why)
        if purpose == "reset":
            # SCSI-2: give a live defender challenge_wait_s to re-reserve, counted from when the reset is
            # known to have happened (its result), not from when it was issued: a slow disk must not
            # shorten the defender's chance.
            self._reserve_at_s = now_s + self._t.challenge_wait_s
            return ArbiterOutput()
        if purpose == "register":
            return ArbiterOutput((self._op(DiskOpKind.READ_RESERVATION, "read_reservation", now_s),))
        if purpose == "read_reservation":
            if result.key in (0, self.key):
                op = self._op(DiskOpKind.RESERVE, "challenge_reserve", now_s, key=self.key, scsi3=True)
            else:
                op = self._op(
                    DiskOpKind.PREEMPT, "challenge_reserve", now_s, key=self.key, victim_key=result.key
                )
            return ArbiterOutput((op,))
        if purpose == "challenge_reserve":
            # CHALLENGING -> WON_PENDING: we hold the disk; defend it from now on.
            self.state = ArbiterState.WON_PENDING
            # SCSI-2: the wait after the reset already outlasted the old owner's lease. SCSI-3: the old
            # owner's lease ends at most quorum_lease_s after its key was preempted (this result).
            self._takeover_at_s = self.challenge_started_s + self._t.challenge_takeover_s
            if self.scsi3:
                self._takeover_at_s = max(self._takeover_at_s, now_s + self._t.quorum_lease_s)
            self._lease_until_s = issued_s + self._t.quorum_lease_s
            # Renew on the lease's clock (from the issue), so a slow reserve does not lose what it won.
            self._renew_at_s = max(now_s, issued_s + self._t.quorum_renew_interval_s)
            return ArbiterOutput((self._op(DiskOpKind.READ, "read_record", now_s, block=RECORD_BLOCK),))
        if purpose == "read_record":
            if self.state != ArbiterState.WON_PENDING:
                return ArbiterOutput()
            if not ok:
                self.abandon()
                return ArbiterOutput(
                    notice=Notice.LOST, reason=f"cannot read the quorum disk: {result.outcome}"
                )
            self.record = result.data
            self.record_read = True
            return self.on_tick(now_s)
        raise LocalProtocolError(f"unexpected disk result for {purpose}")

    def _op(
        self,
        kind: DiskOpKind,
        purpose: str,
        now_s: float,
        *,
        key: int = 0,
        victim_key: int = 0,
        block: int = 0,
        scsi3: bool = False,
    ) -> DiskOp:
        op_id = self._next_op_id()
        self._pending[op_id] = (purpose, now_s)
        return DiskOp(op_id, self.disk, kind, key=key, victim_key=victim_key, block=block, scsi3=scsi3)
