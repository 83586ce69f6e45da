"""``FileDisk``: a shared disk kept in one sparse image file that many processes open at once.

Theory of operation
-------------------
The image (layout.py) is a header, two reservation record slots and the data blocks. Every
reservation command is a read-modify-write of the record under an exclusive ``flock`` on the image:
read both slots, take the valid one with the highest sequence number, run ``rules.apply`` (the same
pure function ``MemoryDisk`` runs), and, if the state changed, write the new record with seq + 1 over
the OTHER slot in a single ``pwrite``. Data I/O takes the lock shared, reads the record and checks the
fence (``rules.can_read`` / ``can_write``) before touching the block, so a fence and the I/O it guards
are atomic with respect to every reservation change, as they are inside a real SCSI target.

Crash safety. The threat model is the death of a process (SIGKILL at any instant), not the loss of
power: what a returned ``pwrite`` put in the page cache is visible to every other process and outlives
the writer, so no ``fsync`` is needed (and none is done; a power cut may lose recent changes). A
process killed in the middle of a command has not completed it; the lock dies with it (the kernel
drops an ``flock`` when the last descriptor of its open file goes away); and a record it was writing
is at worst torn in the slot that did NOT hold the current record: its crc32 fails, readers keep using
the other slot, which holds the state before that command. So the record is never torn and no
completed change is ever lost. A dead process does NOT release its SCSI-2 reservation: only RELEASE or
a bus reset does, exactly like a crashed host on a real SCSI bus.

Why ``flock`` and not ``lockf``: POSIX record locks belong to the process, so two ``FileDisk`` handles
in one process (the simulator, tests, threads) would not exclude each other, and closing either would
silently drop the other's lock. ``flock`` belongs to the open file description: each handle is its own
initiator. A per-handle mutex serializes the threads that share a handle.

Every change of the record is also appended to ``NAME.history.jsonl`` next to the image, under the
same lock (history.py): the reservation history the chaos checker reads.

Limits: the lock is polled until ``lock_timeout_s`` (a node frozen with SIGSTOP inside a command would
otherwise hang every other node); then the call raises ``DiskUnavailable``. Each call also checks that
the path still names the opened file: deleting or replacing the image makes the disk unavailable to
everyone, which is how a lab pulls a disk.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from shareddisk import history, rules
from shareddisk.errors import DiskExists, DiskFormatError, DiskUnavailable
from shareddisk.layout import (
    HEADER_AREA,
    SLOT_OFFSETS,
    SLOT_SIZE,
    Geometry,
    decode_header,
    encode_header,
    encode_record,
    geometry_for,
    newest,
)
from shareddisk.protocol import check_block
from shareddisk.rules import Outcome, ReservationInfo, ReservationState

DEFAULT_SIZE_BYTES = 16 * 2**20
DEFAULT_BLOCK_SIZE = 4096
DEFAULT_LOCK_TIMEOUT_S = 5.0
_LOCK_POLL_FIRST_S = 0.0002
_LOCK_POLL_MAX_S = 0.001


class FileDisk:
    """A handle on a disk image. Use ``FileDisk.open`` or ``create_disk``; one handle per process is usual."""

    def __init__(self, path: str, fd: int, geometry: Geometry, lock_timeout_s: float) -> None:
        """Internal: use ``FileDisk.open``. Takes ownership of ``fd``."""
        st = os.fstat(fd)
        self._path = path
        self._fd = fd
        self._identity = (st.st_dev, st.st_ino)
        self._geometry = geometry
        self._name = Path(path).stem
        self._lock_timeout_s = lock_timeout_s
        self._mutex = threading.Lock()

    @classmethod
    def open(cls, path: str | os.PathLike[str], lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S) -> FileDisk:
        """Open an existing image: DiskUnavailable if that fails, DiskFormatError if it is not valid."""
        if not 0 < lock_timeout_s <= 600:
            raise ValueError(f"lock_timeout_s {lock_timeout_s}: between 0 and 600 s")
        where = os.path.abspath(path)
        name = Path(where).stem
        try:
            fd = os.open(where, os.O_RDWR | os.O_CLOEXEC)
        except OSError as e:
            raise DiskUnavailable(name, e) from e
        try:
            geometry = decode_header(os.pread(fd, HEADER_AREA, 0), where)
            size = os.fstat(fd).st_size
            if size != geometry.file_size:
                raise DiskFormatError(f"{where}: image is {size} bytes, its header says {geometry.file_size}")
            disk = cls(where, fd, geometry, lock_timeout_s)
            disk.read_state()  # refuse an image without a valid reservation record now, not at first use
        except OSError as e:
            os.close(fd)
            raise DiskUnavailable(name, e) from e
        except BaseException:
            os.close(fd)
            raise
        return disk

    def __repr__(self) -> str:
        return f"FileDisk({self._path!r})"

    def __enter__(self) -> FileDisk:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def name(self) -> str:
        return self._name

    @property
    def path(self) -> str:
        return self._path

    @property
    def block_size(self) -> int:
        return self._geometry.block_size

    @property
    def block_count(self) -> int:
        return self._geometry.block_count

    # ---- locking and the record -----------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self, exclusive: bool) -> Iterator[int]:
        """Hold the handle's mutex and the image's flock; turn OSError into DiskUnavailable."""
        with self._mutex:
            fd = self._fd
            if fd < 0:
                raise DiskUnavailable(self._name, "the disk handle is closed")
            try:
                self._check_present()
                self._flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            except OSError as e:
                raise DiskUnavailable(self._name, e) from e
            try:
                yield fd
            except OSError as e:
                raise DiskUnavailable(self._name, e) from e
            finally:
                with contextlib.suppress(OSError):  # the lock goes with the descriptor anyway
                    fcntl.flock(fd, fcntl.LOCK_UN)

    def _check_present(self) -> None:
        try:
            st = os.stat(self._path)
        except FileNotFoundError:
            raise DiskUnavailable(self._name, f"image file {self._path} is gone") from None
        if (st.st_dev, st.st_ino) != self._identity:
            raise DiskUnavailable(self._name, f"image file {self._path} was replaced")

    def _flock(self, fd: int, mode: int) -> None:
        deadline = time.monotonic() + self._lock_timeout_s
        pause = _LOCK_POLL_FIRST_S
        while True:
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                pass
            if time.monotonic() >= deadline:
                why = f"image lock still busy after {self._lock_timeout_s} s (is its holder stopped?)"
                raise DiskUnavailable(self._name, why)
            time.sleep(pause)  # polling, not blocking, so that a frozen holder cannot hang us forever
            pause = min(pause * 2, _LOCK_POLL_MAX_S)

    def _load(self, fd: int) -> tuple[int, ReservationState, int]:
        raw = os.pread(fd, 2 * SLOT_SIZE, SLOT_OFFSETS[0])
        current = newest((raw[:SLOT_SIZE], raw[SLOT_SIZE:]))
        if current is None:
            raise DiskFormatError(f"{self._path}: no valid reservation record (damaged image)")
        return current

    def _change(self, op: rules.Op) -> Outcome:
        with self._locked(exclusive=True) as fd:
            seq, state, slot = self._load(fd)
            new_state, outcome = rules.apply(state, op)
            if new_state is not state:
                record = encode_record(new_state, seq + 1)
                written = os.pwrite(fd, record, SLOT_OFFSETS[1 - slot])
                if written != len(record):
                    why = f"short write of the reservation record ({written} bytes)"
                    raise DiskUnavailable(self._name, why)
                history.append(self._path, op, new_state)  # still under the lock: in change order
            return outcome

    # ---- reservation commands -------------------------------------------------------------------

    def reserve(self, initiator: str) -> Outcome:
        return self._change(rules.Reserve(initiator))

    def release(self, initiator: str) -> Outcome:
        return self._change(rules.Release(initiator))

    def reset(self, initiator: str) -> None:
        self._change(rules.Reset(initiator))

    def register(self, initiator: str, key: int) -> Outcome:
        return self._change(rules.Register(initiator, key))

    def pr_reserve(self, initiator: str, key: int) -> Outcome:
        return self._change(rules.PrReserve(initiator, key))

    def pr_release(self, initiator: str, key: int) -> Outcome:
        return self._change(rules.PrRelease(initiator, key))

    def preempt(self, initiator: str, key: int, victim_key: int) -> Outcome:
        return self._change(rules.Preempt(initiator, key, victim_key))

    def read_state(self) -> ReservationState:
        with self._locked(exclusive=False) as fd:
            return self._load(fd)[1]

    def read_keys(self) -> tuple[int, dict[str, int]]:
        state = self.read_state()
        return state.generation, state.keys()

    def read_reservation(self) -> ReservationInfo:
        return rules.info(self.read_state())

    # ---- fenced data I/O ------------------------------------------------------------------------

    def read_block(self, initiator: str, n: int) -> bytes:
        rules.check_initiator(initiator)
        check_block(self, n)
        with self._locked(exclusive=False) as fd:
            rules.check_io(self._load(fd)[1], self._name, initiator, write=False)
            data = os.pread(fd, self.block_size, self._geometry.block_offset(n))
            if len(data) != self.block_size:
                raise DiskUnavailable(self._name, f"short read of block {n} (image truncated?)")
            return data

    def write_block(self, initiator: str, n: int, data: bytes) -> None:
        rules.check_initiator(initiator)
        check_block(self, n, data)
        with self._locked(exclusive=False) as fd:
            rules.check_io(self._load(fd)[1], self._name, initiator, write=True)
            written = os.pwrite(fd, data, self._geometry.block_offset(n))
            if written != len(data):
                raise DiskUnavailable(self._name, f"short write of block {n} ({written} bytes)")

    def close(self) -> None:
        """Close the handle (idempotent). Reservations are NOT released: that takes RELEASE or a reset."""
        with self._mutex:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


def create_disk(
    path: str | os.PathLike[str],
    size_bytes: int = DEFAULT_SIZE_BYTES,
    block_size: int = DEFAULT_BLOCK_SIZE,
    lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S,
) -> FileDisk:
    """Create a new, unreserved, zeroed, sparse image holding ``size_bytes`` of data; DiskExists if present.

    The image is built under a temporary name and then hard-linked into place, which fails atomically
    if ``path`` exists: no process can ever open a half-made image, and two creators cannot both win.
    """
    geometry = geometry_for(size_bytes, block_size)
    target = os.path.abspath(path)
    name = Path(target).stem
    if not name:
        raise ValueError(f"{path}: a disk image needs a file name")
    if os.path.lexists(target):
        raise DiskExists(target)
    try:
        prefix = f".{Path(target).name}."
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(target), prefix=prefix, suffix=".tmp")
    except OSError as e:
        raise DiskUnavailable(name, e) from e
    try:
        try:
            os.pwrite(fd, encode_header(geometry), 0)
            os.pwrite(fd, encode_record(ReservationState(), 1), SLOT_OFFSETS[0])
            os.ftruncate(fd, geometry.file_size)  # sparse: the data blocks cost nothing until written
        finally:
            os.close(fd)
        try:
            os.link(tmp, target)
        except FileExistsError:
            raise DiskExists(target) from None
    except OSError as e:
        raise DiskUnavailable(name, e) from e
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    return FileDisk.open(target, lock_timeout_s)
