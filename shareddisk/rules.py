"""The reservation rules of a shared disk: one piece of pure code shared by every disk flavour.

Theory of operation
-------------------
A disk's reservation state is one frozen value, ``ReservationState``: the SCSI-2 holder, the SCSI-3
registrations (initiator -> key), the SCSI-3 reservation holder and a generation counter. Every
command that may change it is a frozen op value (``Reserve``, ``Register``, ``Preempt``, ...), and
``apply(state, op) -> (new_state, Outcome)`` is the whole rulebook. ``can_read`` / ``can_write`` say
whether an initiator's data I/O passes the fence. ``FileDisk`` (image.py) runs these functions inside a
read-modify-write under a file lock; ``MemoryDisk`` (memory.py) under a thread lock. Because both
call the same functions, they cannot disagree (a property test checks it anyway).

SCSI-2 (RESERVE(6) / RELEASE(6), what Windows 2003 MSCS uses):
- RESERVE succeeds when the disk is unreserved or already reserved by the caller.
- RELEASE by the holder clears the reservation; RELEASE by anyone else is a no-op that returns OK,
  as in SCSI.
- A bus reset (``Reset``) breaks any SCSI-2 reservation; it does not touch persistent reservations
  (they are persistent precisely because they survive resets).
- Reserved: every other initiator's reads AND writes fail with RESERVATION CONFLICT.

SCSI-3 persistent reservations (PR; what Windows 2008 and later use), type "write exclusive,
registrants only" (WERO) only:
- REGISTER key (key 0 = unregister). Registering when already registered replaces the key (REGISTER
  AND IGNORE EXISTING KEY). Unregistering the reservation holder also releases the reservation.
  Several initiators may share a key (as several paths of one host do).
- PR RESERVE: the caller must be registered with that key; succeeds if there is no PR reservation or
  the caller already holds it.
- PR RELEASE: the caller must be registered with that key; releases if it holds the reservation,
  otherwise a no-op returning OK.
- PREEMPT AND ABORT victim_key: the caller must be registered with its key and victim_key must be
  registered (else CONFLICT); every OTHER initiator registered with victim_key loses its
  registration; if one of them held the reservation, the caller takes it over.
- Reserved (WERO): everyone may read; only registered initiators may write. A preempted node is
  therefore fenced at once from writing, and can still read.

Choices where SCSI leaves room or the lab simplifies (documented in the README):
- The two flavours exclude each other: RESERVE conflicts while a PR reservation exists, and PR
  commands conflict while another initiator holds a SCSI-2 reservation (PR RESERVE conflicts while
  any SCSI-2 reservation exists, even the caller's). So at most one reservation exists at a time.
  Plain registrations do not block RESERVE, and RELEASE(6) never conflicts (SPC-3 would refuse
  both while any key is registered).
- ``generation`` counts every change of this record: registrations AND reservations of both flavours
  (real PRgeneration counts registrations only). A command that changes nothing (re-reserving what you
  hold, releasing what you do not hold) leaves it alone, so a defender renewing every 3 s costs no write.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

from shareddisk.errors import RegistrationsFull, ReservationConflict

MAX_INITIATOR_BYTES = 64  # UTF-8 bytes of an initiator name (a node name is at most 15)
MAX_KEY = 2**64 - 1  # SCSI-3 reservation keys are 8 bytes
MAX_REGISTRATIONS = 32  # the cluster has at most 8 nodes; a real LUN allows a few dozen


class Outcome(enum.StrEnum):
    """What a reservation command returned: GOOD status or RESERVATION CONFLICT."""

    OK = "ok"
    CONFLICT = "conflict"


class ReservationType(enum.StrEnum):
    NONE = "none"
    SCSI2 = "scsi2"  # RESERVE(6)
    WRITE_EXCLUSIVE_REGISTRANTS_ONLY = "write_exclusive_registrants_only"  # PR type 5


def check_initiator(initiator: str) -> None:
    """A non-empty printable name of at most MAX_INITIATOR_BYTES; ValueError (a programming error) if not."""
    if not isinstance(initiator, str) or not initiator or not initiator.isprintable():
        raise ValueError(f"initiator must be a non-empty printable string, not {initiator!r}")
    if len(initiator.encode()) > MAX_INITIATOR_BYTES:
        raise ValueError(f"initiator {initiator[:20]!r}...: longer than {MAX_INITIATOR_BYTES} bytes")


def check_key(key: int, what: str = "key") -> None:
    """Reservation keys are unsigned 64-bit integers; 0 means "none"."""
    if not isinstance(key, int) or isinstance(key, bool) or not 0 <= key <= MAX_KEY:
        raise ValueError(f"{what} must be an integer in 0..2**64-1, not {key!r}")


@dataclass(frozen=True, slots=True)
class ReservationState:
    """The reservation record of one disk. Invariants are checked at construction."""

    generation: int = 0
    scsi2_holder: str | None = None
    pr_holder: str | None = None  # holds the WERO persistent reservation; always a registrant
    registrations: tuple[tuple[str, int], ...] = ()  # (initiator, key), sorted by initiator, key != 0

    def __post_init__(self) -> None:
        if not isinstance(self.generation, int) or self.generation < 0:
            raise ValueError(f"generation must be a non-negative integer, not {self.generation!r}")
        for holder in (self.scsi2_holder, self.pr_holder):
            if holder is not None:
                check_initiator(holder)
        if len(self.registrations) > MAX_REGISTRATIONS:
            raise ValueError(f"more than {MAX_REGISTRATIONS} registrations")
        for initiator, key in self.registrations:
            check_initiator(initiator)
            check_key(key)
            if key == 0:
                raise ValueError(f"registration of {initiator!r} with key 0")
        names = [i for i, _ in self.registrations]
        if names != sorted(set(names)):
            raise ValueError("registrations must be sorted by initiator, one per initiator")
        if self.pr_holder is not None and self.pr_holder not in names:
            raise ValueError(f"PR holder {self.pr_holder!r} is not registered")
        if self.scsi2_holder is not None and self.pr_holder is not None:
            raise ValueError("a SCSI-2 and a persistent reservation cannot both exist")

    def key_of(self, initiator: str) -> int | None:
        for name, key in self.registrations:
            if name == initiator:
                return key
        return None

    def keys(self) -> dict[str, int]:
        return dict(self.registrations)

    @property
    def pr_key(self) -> int:
        """The PR holder's key (0 when there is no persistent reservation)."""
        return 0 if self.pr_holder is None else (self.key_of(self.pr_holder) or 0)


@dataclass(frozen=True, slots=True)
class ReservationInfo:
    """What READ RESERVATION reports: who holds the disk, with what key and reservation type."""

    holder: str | None  # the initiator holding a SCSI-2 or persistent reservation; None if unreserved
    key: int  # the PR holder's key; 0 for SCSI-2 or no reservation
    type: ReservationType
    generation: int


# ---- the commands -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reserve:
    """SCSI-2 RESERVE(6)."""

    initiator: str

    def __post_init__(self) -> None:
        check_initiator(self.initiator)


@dataclass(frozen=True, slots=True)
class Release:
    """SCSI-2 RELEASE(6)."""

    initiator: str

    def __post_init__(self) -> None:
        check_initiator(self.initiator)


@dataclass(frozen=True, slots=True)
class Reset:
    """SCSI bus reset (or LUN reset) issued by ``initiator``: breaks the SCSI-2 reservation."""

    initiator: str

    def __post_init__(self) -> None:
        check_initiator(self.initiator)


@dataclass(frozen=True, slots=True)
class Register:
    """PERSISTENT RESERVE OUT, REGISTER AND IGNORE EXISTING KEY (key 0 = unregister)."""

    initiator: str
    key: int

    def __post_init__(self) -> None:
        check_initiator(self.initiator)
        check_key(self.key)


@dataclass(frozen=True, slots=True)
class PrReserve:
    """PERSISTENT RESERVE OUT, RESERVE, type write exclusive - registrants only."""

    initiator: str
    key: int

    def __post_init__(self) -> None:
        check_initiator(self.initiator)
        check_key(self.key)


@dataclass(frozen=True, slots=True)
class PrRelease:
    """PERSISTENT RESERVE OUT, RELEASE."""

    initiator: str
    key: int

    def __post_init__(self) -> None:
        check_initiator(self.initiator)
        check_key(self.key)


@dataclass(frozen=True, slots=True)
class Preempt:
    """PERSISTENT RESERVE OUT, PREEMPT AND ABORT ``victim_key``."""

    initiator: str
    key: int
    victim_key: int

    def __post_init__(self) -> None:
        check_initiator(self.initiator)
        check_key(self.key)
        check_key(self.victim_key, "victim_key")


Op = Reserve | Release | Reset | Register | PrReserve | PrRelease | Preempt


# ---- the rules ----------------------------------------------------------------------------------


def _changed(state: ReservationState) -> ReservationState:
    """``state`` (already carrying its changes) with the generation bumped: every change counts."""
    return replace(state, generation=state.generation + 1)


def _pr_blocked(state: ReservationState, initiator: str) -> bool:
    """PR commands conflict while ANOTHER initiator holds a SCSI-2 reservation (SPC-2 table)."""
    return state.scsi2_holder is not None and state.scsi2_holder != initiator


def apply(state: ReservationState, op: Op) -> tuple[ReservationState, Outcome]:
    """Run one reservation command. Returns the new state (``state`` itself if nothing changed)."""
    match op:
        case Reserve(initiator=who):
            if state.pr_holder is not None:
                return state, Outcome.CONFLICT
            if state.scsi2_holder is None:
                return _changed(replace(state, scsi2_holder=who)), Outcome.OK
            return state, Outcome.OK if state.scsi2_holder == who else Outcome.CONFLICT

        case Release(initiator=who):
            if state.scsi2_holder == who:
                return _changed(replace(state, scsi2_holder=None)), Outcome.OK
            return state, Outcome.OK  # a non-holder's RELEASE is a no-op with GOOD status

        case Reset():
            if state.scsi2_holder is None:
                return state, Outcome.OK
            return _changed(replace(state, scsi2_holder=None)), Outcome.OK

        case Register(initiator=who, key=key):
            if _pr_blocked(state, who):
                return state, Outcome.CONFLICT
            current = state.key_of(who)
            if current == (key or None):
                return state, Outcome.OK
            others = tuple(r for r in state.registrations if r[0] != who)
            if key == 0:
                holder = None if state.pr_holder == who else state.pr_holder
                return _changed(replace(state, registrations=others, pr_holder=holder)), Outcome.OK
            if current is None and len(state.registrations) >= MAX_REGISTRATIONS:
                raise RegistrationsFull(MAX_REGISTRATIONS)
            return _changed(replace(state, registrations=tuple(sorted((*others, (who, key)))))), Outcome.OK

        case PrReserve(initiator=who, key=key):
            if state.scsi2_holder is not None or key == 0 or state.key_of(who) != key:
                return state, Outcome.CONFLICT
            if state.pr_holder is None:
                return _changed(replace(state, pr_holder=who)), Outcome.OK
            return state, Outcome.OK if state.pr_holder == who else Outcome.CONFLICT

        case PrRelease(initiator=who, key=key):
            if _pr_blocked(state, who) or key == 0 or state.key_of(who) != key:
                return state, Outcome.CONFLICT
            if state.pr_holder == who:
                return _changed(replace(state, pr_holder=None)), Outcome.OK
            return state, Outcome.OK  # a registrant that does not hold it: no-op, GOOD status

        case Preempt(initiator=who, key=key, victim_key=victim):
            if _pr_blocked(state, who) or key == 0 or state.key_of(who) != key:
                return state, Outcome.CONFLICT
            if victim == 0 or all(k != victim for _, k in state.registrations):
                return state, Outcome.CONFLICT  # SPC: the victim key must identify a registrant
            # The caller never preempts itself, even when it shares the victim's key.
            victims = {i for i, k in state.registrations if k == victim and i != who}
            if not victims:
                return state, Outcome.OK
            kept = tuple(r for r in state.registrations if r[0] not in victims)
            holder = who if state.pr_holder in victims else state.pr_holder
            return _changed(replace(state, registrations=kept, pr_holder=holder)), Outcome.OK

    raise TypeError(f"not a reservation command: {op!r}")


def can_read(state: ReservationState, initiator: str) -> bool:
    """SCSI-2 reserved by another: no. WERO: everyone reads. Unreserved: everyone."""
    return state.scsi2_holder is None or state.scsi2_holder == initiator


def can_write(state: ReservationState, initiator: str) -> bool:
    """SCSI-2 reserved by another: no. WERO: registrants only. Unreserved: everyone."""
    if not can_read(state, initiator):
        return False
    return state.pr_holder is None or state.key_of(initiator) is not None


def holder(state: ReservationState) -> str | None:
    """Whoever holds a reservation of either flavour (at most one exists)."""
    return state.scsi2_holder if state.scsi2_holder is not None else state.pr_holder


def check_io(state: ReservationState, disk: str, initiator: str, write: bool) -> None:
    """Raise ReservationConflict (naming the holder) when the fence stops this I/O."""
    allowed = can_write(state, initiator) if write else can_read(state, initiator)
    if not allowed:
        raise ReservationConflict(disk, initiator, holder(state))


def info(state: ReservationState) -> ReservationInfo:
    """READ RESERVATION."""
    if state.scsi2_holder is not None:
        return ReservationInfo(state.scsi2_holder, 0, ReservationType.SCSI2, state.generation)
    if state.pr_holder is not None:
        return ReservationInfo(
            state.pr_holder, state.pr_key, ReservationType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY, state.generation
        )
    return ReservationInfo(None, 0, ReservationType.NONE, state.generation)
