"""Carry out one core ``DiskOp`` on a ``SharedDisk`` and describe what happened as a ``DiskResult``.

Theory of operation
-------------------
The core asks for disk commands as values (``DiskOp``) and learns their results as values
(``DiskResult``); this module is the one translation between those values and the ``shareddisk`` API,
used by the runtime (in a worker thread, the calls block briefly) and by the simulator (on a
``MemoryDisk``). Expected failures never raise: a RESERVATION CONFLICT (as an ``Outcome`` or as the
``ReservationConflict`` of fenced I/O) becomes ``DiskOutcome.CONFLICT`` with the holder when it is
known, and a disk that cannot be reached (``DiskUnavailable``, a damaged image, any ``OSError``)
becomes ``DiskOutcome.UNAVAILABLE``. Programming errors (a bad block number, a key outside 64 bits,
a write longer than a block) still raise ``ValueError``. A WRITE shorter than a block is padded with
zeros to one block (the core writes short records; the disk API itself takes whole blocks only).

RESERVE / RELEASE are SCSI-2 commands unless ``op.scsi3``; then they are the persistent-reservation
commands with ``op.key`` (the node's registration key). READ_RESERVATION returns the holder's key
in ``DiskResult.key`` (0: none; also 0 for a SCSI-2 reservation) and the holder in ``holder``.
"""

from __future__ import annotations

from typing import assert_never

from nodeagent.core.effects import DiskOp, DiskOpKind, DiskOutcome, DiskResult
from shareddisk import DiskError, Outcome, ReservationConflict, SharedDisk


def apply_disk_op(disk: SharedDisk, initiator: str, op: DiskOp) -> DiskResult:
    """Run ``op`` on ``disk`` as ``initiator``; CONFLICT and UNAVAILABLE are results, not exceptions."""
    try:
        return _run(disk, initiator, op)
    except ReservationConflict as e:
        return DiskResult(op.op_id, DiskOutcome.CONFLICT, holder=e.holder)
    except (DiskError, OSError):
        # DiskUnavailable, a damaged image (DiskFormatError), a full registration table: the path
        # to the disk cannot do what the node needs, which is what UNAVAILABLE tells the core.
        return DiskResult(op.op_id, DiskOutcome.UNAVAILABLE)


def _run(disk: SharedDisk, initiator: str, op: DiskOp) -> DiskResult:
    kind = op.kind
    if kind is DiskOpKind.RESERVE:
        outcome = disk.pr_reserve(initiator, op.key) if op.scsi3 else disk.reserve(initiator)
    elif kind is DiskOpKind.RELEASE:
        outcome = disk.pr_release(initiator, op.key) if op.scsi3 else disk.release(initiator)
    elif kind is DiskOpKind.RESET:
        disk.reset(initiator)
        outcome = Outcome.OK
    elif kind is DiskOpKind.REGISTER:
        outcome = disk.register(initiator, op.key)
    elif kind is DiskOpKind.PREEMPT:
        outcome = disk.preempt(initiator, op.key, op.victim_key)
    elif kind is DiskOpKind.READ_RESERVATION:
        info = disk.read_reservation()
        return DiskResult(op.op_id, DiskOutcome.OK, holder=info.holder, key=info.key)
    elif kind is DiskOpKind.READ:
        # A multi-block read stops at the end of the disk (a small disk holds a shorter checkpoint).
        count = max(1, min(op.count, disk.block_count - op.block))
        data = b"".join(disk.read_block(initiator, op.block + i) for i in range(count))
        return DiskResult(op.op_id, DiskOutcome.OK, data=data)
    elif kind is DiskOpKind.WRITE:
        # The core writes records of any length from ``block`` on; a block write takes exactly one
        # block, so the data is cut into blocks and the last one padded with zeros.
        size = disk.block_size
        chunks = [op.data[i : i + size] for i in range(0, max(len(op.data), 1), size)]
        if op.block + len(chunks) > disk.block_count:
            return DiskResult(op.op_id, DiskOutcome.UNAVAILABLE)  # the disk is too small for it
        for i, chunk in enumerate(chunks):
            disk.write_block(initiator, op.block + i, chunk.ljust(size, b"\0"))
        outcome = Outcome.OK
    else:
        assert_never(kind)
    if outcome is Outcome.OK:
        return DiskResult(op.op_id, DiskOutcome.OK)
    return DiskResult(op.op_id, DiskOutcome.CONFLICT, holder=_holder(disk))


def _holder(disk: SharedDisk) -> str | None:
    """Who holds the disk, for a CONFLICT result; None when even that read fails."""
    try:
        return disk.read_reservation().holder
    except (DiskError, OSError):
        return None
