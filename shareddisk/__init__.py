"""File-backed shared disks with SCSI-2 and SCSI-3 reservation semantics (see README, "shareddisk").

``FileDisk`` (an image file shared by processes) and ``MemoryDisk`` (its in-memory twin) both
implement ``SharedDisk`` and take every reservation decision from the pure rules in ``rules.py``.
"""

from shareddisk.errors import (
    DiskError,
    DiskExists,
    DiskFormatError,
    DiskUnavailable,
    RegistrationsFull,
    ReservationConflict,
    WolfpackError,
)
from shareddisk.image import FileDisk, create_disk
from shareddisk.memory import MemoryDisk
from shareddisk.protocol import SharedDisk
from shareddisk.rules import Outcome, ReservationInfo, ReservationState, ReservationType
from shareddisk.show import describe

__all__ = [
    "DiskError",
    "DiskExists",
    "DiskFormatError",
    "DiskUnavailable",
    "FileDisk",
    "MemoryDisk",
    "Outcome",
    "RegistrationsFull",
    "ReservationConflict",
    "ReservationInfo",
    "ReservationState",
    "ReservationType",
    "SharedDisk",
    "WolfpackError",
    "create_disk",
    "describe",
]
