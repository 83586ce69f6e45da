"""``describe(disk)``: a disk's geometry and reservation state as one JSON-able dict.

Theory of operation
-------------------
This is what ``wolfpack disk show`` prints, the lab's equivalent of ``sg_persist -r`` (READ
RESERVATION) and ``sg_persist -k`` (READ KEYS) plus the SCSI-2 holder, read in one consistent
snapshot of the reservation record. Keys are plain integers; the CLI may print them in hex as
sg_persist does.
"""

from __future__ import annotations

from typing import Any

from shareddisk.protocol import SharedDisk
from shareddisk.rules import ReservationType


def describe(disk: SharedDisk) -> dict[str, Any]:
    """name, size_bytes, block_size, block_count, generation, scsi2_holder, pr_holder, pr_type and
    registrations of ``disk``, from one read of its reservation record."""
    state = disk.read_state()
    pr_holder = None if state.pr_holder is None else {"initiator": state.pr_holder, "key": state.pr_key}
    pr_type = None if state.pr_holder is None else ReservationType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY.value
    return {
        "name": disk.name,
        "size_bytes": disk.block_size * disk.block_count,
        "block_size": disk.block_size,
        "block_count": disk.block_count,
        "generation": state.generation,
        "scsi2_holder": state.scsi2_holder,
        "pr_holder": pr_holder,
        "pr_type": pr_type,
        "registrations": state.keys(),
    }
