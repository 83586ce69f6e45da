"""FileDisk across real processes: SIGKILL at random instants loses nothing; contention has one winner.

The churning children are forked (multiprocessing, fast to start) and open the image themselves;
the racing children are separate interpreters (subprocess). Every child is killed in ``finally``, by
the pid we started, whatever happens.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from unittest import mock

import pytest

from shareddisk import FileDisk, Outcome, create_disk, layout

REPO = Path(__file__).resolve().parents[2]


def slow_pwrite(fd: int, data: bytes, offset: int) -> int:
    """``os.pwrite`` in 8-byte pieces with pauses: a write then takes most of a command's time, so
    a kill often lands in the middle of a record (the threat the double-buffered record defends)."""
    for i in range(0, len(data), 8):
        REAL_PWRITE(fd, data[i : i + 8], offset + i)
        time.sleep(0.0001)
    return len(data)


REAL_PWRITE = os.pwrite


def churn(path: str, me: str, key: int, other: int, out_fd: int) -> None:
    """Child body: churn the reservation record as fast as possible; after each COMPLETED command,
    write the generation the disk then had to ``out_fd`` (one line, one write: atomic on a pipe)."""
    disk = FileDisk.open(path)
    steps: list[Callable[[], object]] = [
        lambda: disk.register(me, key),
        lambda: disk.pr_reserve(me, key),
        lambda: disk.preempt(me, key, other),
        lambda: disk.register(me, key + 100),
        lambda: disk.pr_release(me, key + 100),
        lambda: disk.register(me, 0),
        lambda: disk.reserve(me),
        lambda: disk.release(me),
    ]
    with mock.patch.object(os, "pwrite", slow_pwrite):  # only in this forked child
        while True:
            for step in steps:
                step()
                os.write(out_fd, b"%d\n" % disk.read_keys()[0])
                # Real initiators pause between commands; without a pause the polled image lock
                # (not a fair one) would let the busier child starve the other for a while.
                time.sleep(0.0003)


def hang_mid_record(path: str, me: str, out_fd: int) -> None:
    """Child body: reserve, then start a register whose record write stops halfway, and hang there
    (holding the image lock) until killed."""
    disk = FileDisk.open(path)
    disk.reserve(me)

    def half_then_hang(fd: int, data: bytes, offset: int) -> int:
        REAL_PWRITE(fd, data[: len(data) // 2], offset)
        os.write(out_fd, b"torn\n")
        while True:
            time.sleep(1)  # the parent kills us here

    with mock.patch.object(os, "pwrite", half_then_hang):
        disk.register(me, 7)


# For each line on stdin ("reserve" or "pr_reserve"), race for the disk and print the outcome.
CONTEND = """
import sys
from shareddisk import FileDisk
disk = FileDisk.open(sys.argv[1])
me, key = sys.argv[2], int(sys.argv[3])
disk.register(me, key)
print("ready", flush=True)
for line in sys.stdin:
    outcome = disk.reserve(me) if line.strip() == "reserve" else disk.pr_reserve(me, key)
    print(outcome.value, flush=True)
"""


class Lines:
    """Lines read from a child's pipe without blocking, with deadlines."""

    def __init__(self, fd: int, pid: int) -> None:
        self._fd = fd
        self.pid = pid
        self._buffer = b""
        self._closed = False
        self.lines: list[str] = []

    def pump(self, timeout_s: float) -> bool:
        """Read what is available (waiting at most ``timeout_s``); False at end of file."""
        if self._closed:
            return False
        ready, _, _ = select.select([self._fd], [], [], timeout_s)
        if not ready:
            return True
        chunk = os.read(self._fd, 65536)
        if not chunk:
            return False
        self._buffer += chunk
        *complete, self._buffer = self._buffer.split(b"\n")
        self.lines.extend(line.decode() for line in complete)
        return True

    def wait_lines(self, count: int, timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.lines) < count:
            assert time.monotonic() < deadline, f"child {self.pid} reported only {len(self.lines)} lines"
            assert self.pump(0.05), f"child {self.pid} exited early"

    def drain(self) -> None:
        """After the child died: read every line it completed, up to end of file."""
        deadline = time.monotonic() + 5
        while self.pump(0.1):
            assert time.monotonic() < deadline, "pipe still open after the child died"
        self._closed = True


class ForkedChild(Lines):
    """``churn`` in a forked process (fast to start: it inherits the imported modules)."""

    def __init__(self, *args: str | int) -> None:
        read_fd, write_fd = os.pipe()
        self.proc = multiprocessing.get_context("fork").Process(target=churn, args=(*args, write_fd))
        try:
            self.proc.start()
        finally:
            os.close(write_fd)  # the child alone holds the write end: its death means end of file
        assert self.proc.pid is not None
        super().__init__(read_fd, self.proc.pid)

    def kill(self) -> None:
        """SIGKILL (only our own pid), reap, and collect every line completed before death."""
        if self._closed:
            return
        if self.proc.exitcode is None:
            os.kill(self.pid, signal.SIGKILL)
        self.proc.join(timeout=10)
        self.drain()
        os.close(self._fd)


class Child(Lines):
    """A separate Python interpreter running ``code``: its stdin is ours, its stdout is read by lines."""

    def __init__(self, code: str, *args: str) -> None:
        env = dict(os.environ, PYTHONPATH=str(REPO))
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env
        )
        assert self.proc.stdout is not None
        super().__init__(self.proc.stdout.fileno(), self.proc.pid)

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def kill(self) -> None:
        """SIGKILL (only our own pid), reap, and collect every line completed before death."""
        if self._closed:
            return
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.drain()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()


@pytest.fixture
def image() -> Iterator[Path]:
    d = tempfile.mkdtemp(prefix="wp", dir="/tmp")
    try:
        path = Path(d) / "Q.img"
        create_disk(path, size_bytes=64 * 1024, block_size=4096).close()
        yield path
    finally:
        shutil.rmtree(d)


def _torn_slots(image: Path) -> int:
    """Slots holding something that is not a valid record (a write cut short)."""
    raw = image.read_bytes()[layout.SLOT_OFFSETS[0] : layout.METADATA_END]
    slots = (raw[: layout.SLOT_SIZE], raw[layout.SLOT_SIZE :])
    return sum(1 for slot in slots if any(slot) and layout.decode_record(slot) is None)


def test_sigkill_at_random_instants_never_tears_or_loses_a_record(image: Path) -> None:
    """Two children contend for the record; each round both die by SIGKILL at random instants."""
    rng = random.Random(20031125)
    keys = {"NODE1": 1, "NODE2": 2}
    children: list[ForkedChild] = []
    kills = torn = 0
    last_seen = 0
    deadline = time.monotonic() + 15
    try:
        while kills < 30:
            assert time.monotonic() < deadline, "crash loop too slow"
            children = [ForkedChild(str(image), name, key, 3 - key) for name, key in keys.items()]
            rng.shuffle(children)
            for child in children:
                child.wait_lines(1)  # it is in its loop
            children[0].wait_lines(rng.randint(1, 10))
            time.sleep(rng.uniform(0, 0.003))  # not a wait for anything: it picks the kill instant
            for child in children:  # back to back: the survivor must not repair a torn slot
                os.kill(child.pid, signal.SIGKILL)
                kills += 1
            for child in children:
                child.kill()  # reap, and read every line completed before death
            reported = max(int(line) for child in children for line in child.lines)
            torn += _torn_slots(image)
            # The disk opens, its record is valid, and every completed change is still there.
            with FileDisk.open(image) as disk:
                state = disk.read_state()
            assert state.generation >= reported
            assert state.generation >= last_seen  # never goes back
            last_seen = state.generation
    finally:
        for child in children:
            child.kill()
    assert last_seen > 30  # the children really churned
    assert torn > 0, "no kill landed in the middle of a record write: the test proved nothing"


def test_killed_mid_write_keeps_the_old_record_and_frees_the_lock(image: Path) -> None:
    read_fd, write_fd = os.pipe()
    proc = multiprocessing.get_context("fork").Process(
        target=hang_mid_record, args=(str(image), "NODE1", write_fd)
    )
    try:
        proc.start()
        os.close(write_fd)
        assert proc.pid is not None
        child = Lines(read_fd, proc.pid)
        child.wait_lines(1)
        assert child.lines == ["torn"]  # it now holds the lock, half a record written
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(timeout=10)
        assert _torn_slots(image) == 1
        with FileDisk.open(image, lock_timeout_s=1.0) as disk:  # the lock died with the process
            state = disk.read_state()
            assert state.registrations == ()  # the unfinished REGISTER never happened
            assert state.scsi2_holder == "NODE1"  # and death does not release a SCSI-2 reservation
            assert disk.reserve("NODE2") is Outcome.CONFLICT
            disk.reset("NODE2")
            assert disk.reserve("NODE2") is Outcome.OK
    finally:
        if proc.exitcode is None and proc.pid is not None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.join(timeout=10)
        os.close(read_fd)


def test_two_processes_racing_for_a_reservation_exactly_one_wins(image: Path) -> None:
    racers: list[Child] = []
    try:
        racers = [Child(CONTEND, str(image), name, str(key)) for name, key in (("NODE1", 1), ("NODE2", 2))]
        for racer in racers:
            racer.wait_lines(1)
            assert racer.lines == ["ready"]
        with FileDisk.open(image) as disk:
            for round_no in range(20):
                verb = "reserve" if round_no % 2 == 0 else "pr_reserve"
                for racer in racers:
                    racer.send(verb)
                for racer in racers:
                    racer.wait_lines(round_no + 2)
                outcomes = sorted(racer.lines[-1] for racer in racers)
                assert outcomes == ["conflict", "ok"], (round_no, verb, outcomes)
                winner = next(r for r in racers if r.lines[-1] == "ok")
                holder = disk.read_reservation().holder
                assert holder == ("NODE1" if winner is racers[0] else "NODE2")
                # Clear the way for the next round, as the winner would.
                if verb == "reserve":
                    assert disk.release(holder) is Outcome.OK
                else:
                    assert disk.pr_release(holder, 1 if holder == "NODE1" else 2) is Outcome.OK
                assert disk.read_reservation().holder is None
    finally:
        for racer in racers:
            racer.kill()
