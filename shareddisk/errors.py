"""Exceptions of wolfpack.

``WolfpackError`` is the one base of every error wolfpack raises on purpose; it lives here, in the
lowest layer, so that the shared-disk library (usable on its own) and the node agent share it.
Expected outcomes (a reservation that is refused, say) are enums, not exceptions; these are for
operations that cannot go on.
"""

from __future__ import annotations


class WolfpackError(Exception):
    """Base of every error wolfpack raises on purpose."""


class DiskError(WolfpackError):
    """Something is wrong with a shared disk."""


class DiskFormatError(DiskError):
    """The file is not a wolfpack disk image, or its header is damaged."""


class DiskUnavailable(DiskError):
    """The disk cannot be reached (the file is gone, the path to it failed); the cause is attached."""

    def __init__(self, disk: str, cause: BaseException | str) -> None:
        self.disk = disk
        self.cause = cause
        super().__init__(f"disk {disk} is unavailable: {cause}")


class ReservationConflict(DiskError):
    """I/O or a reservation change refused because another initiator holds the disk (SCSI status 0x18)."""

    def __init__(self, disk: str, initiator: str, holder: str | None) -> None:
        self.disk = disk
        self.initiator = initiator
        self.holder = holder
        who = holder if holder is not None else "no one"
        super().__init__(f"RESERVATION CONFLICT on disk {disk}: {initiator} may not do that, held by {who}")


class DiskExists(DiskError):
    """``create_disk`` refuses to overwrite an existing image (it may hold someone's data)."""

    def __init__(self, path: str) -> None:
        self.path = path
        super().__init__(f"disk image {path} already exists; remove it first to re-create it")


class RegistrationsFull(DiskError):
    """SCSI-3 REGISTER refused: the registration table is full (INSUFFICIENT REGISTRATION RESOURCES)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(f"no room on the disk for another registration (at most {limit})")
