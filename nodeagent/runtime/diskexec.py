"""Runs the core's disk operations one at a time, in order, off the event loop.

Theory of operation
-------------------
The driver ``submit``s each ``DiskOp`` of a Ready (synchronous, never blocks). The executor task takes
them from a bounded channel in order and runs ``nodeagent.diskops.apply_disk_op`` for each as this
node's initiator (its name) - in a worker thread (``trio.to_thread.run_sync``) for file-backed disks,
whose calls take a file lock and do real I/O, or inline (``in_thread`` False) for in-memory disks in
tests, which are instant and keep a test's trio run deterministic.
The ``DiskResult`` goes straight back to the driver (``on_result``), which feeds it to the core.

One operation at a time keeps the core's order: a bus reset issued before a reserve happens before it.
Disks are opened lazily through ``opener`` (by default ``FileDisk.open(DIR/disks/NAME.img)``) and kept
open until ``close`` (``MemoryDisk.close`` is a no-op, so in-process nodes can share one). The contract
"every DiskOp gets exactly one DiskResult" holds here: an opener or an operation that raises yields
``UNAVAILABLE`` (logged; the next op tries to open the disk again), and ``submit`` returns False when
the queue is full so the driver can answer UNAVAILABLE itself.

Disk faults (diskfaults.py): a lost path is the opener's business (the node wraps it with
``faulty_opener``, whose handles raise ``DiskUnavailable`` -> UNAVAILABLE). A slow disk is applied
here, once per operation, from ``faults``: the worker thread sleeps before the operation, or (inline)
the task awaits ``trio.sleep`` - never the event loop. Operations stay in order: a slow one delays the
ones behind it, as a slow device queue does.

A worker thread cannot be cancelled; the task waits for the operation in flight when the node stops,
so a reservation change is either done or not started, never half-reported.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import trio

from nodeagent.config import is_disk_name
from nodeagent.core.effects import DiskOp, DiskOutcome, DiskResult
from nodeagent.diskops import apply_disk_op
from nodeagent.runtime.diskfaults import DiskFaultTable
from shareddisk import FileDisk, SharedDisk

DISK_QUEUE = 256  # operations waiting; the core has only a handful outstanding at a time

log = logging.getLogger("nodeagent.disk")

DiskOpener = Callable[[str], SharedDisk]


def file_disk_opener(disks_dir: Path) -> DiskOpener:
    """Open ``disks_dir/NAME.img`` for disk NAME (a name of letters and digits only)."""

    def open_disk(name: str) -> SharedDisk:
        if not is_disk_name(name):
            raise ValueError(f"bad disk name {name!r}")
        return FileDisk.open(disks_dir / f"{name}.img")

    return open_disk


class DiskExecutor:
    def __init__(
        self,
        initiator: str,
        opener: DiskOpener,
        on_result: Callable[[DiskResult], None],
        *,
        in_thread: bool = True,
        queue_size: int = DISK_QUEUE,
        faults: DiskFaultTable | None = None,
    ) -> None:
        self.initiator = initiator
        self.faults = faults
        self._opener = opener
        self._on_result = on_result
        self._in_thread = in_thread
        self._send, self._recv = trio.open_memory_channel[DiskOp](queue_size)
        self._disks: dict[str, SharedDisk] = {}
        self.done = 0
        self.failed = 0  # ops that raised (reported as UNAVAILABLE)

    def submit(self, op: DiskOp) -> bool:
        try:
            self._send.send_nowait(op)
        except (trio.WouldBlock, trio.ClosedResourceError):
            return False
        return True

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        async for op in self._recv:
            delay_s = self.faults.delay_s(op.disk) if self.faults is not None else 0.0
            if self._in_thread:
                result = await trio.to_thread.run_sync(self._execute, op, delay_s)
            else:
                await trio.sleep(delay_s)  # 0: a plain checkpoint
                result = self._execute(op)
            self.done += 1
            self._on_result(result)

    def _execute(self, op: DiskOp, delay_s: float = 0.0) -> DiskResult:
        if delay_s > 0 and self._in_thread:
            time.sleep(delay_s)  # a slow disk (diskfaults.py), in the worker thread
        try:
            disk = self._disks.get(op.disk)
            if disk is None:
                disk = self._opener(op.disk)
                self._disks[op.disk] = disk
            return apply_disk_op(disk, self.initiator, op)
        except Exception as e:
            self.failed += 1
            log.warning("disk %s: %s failed: %s", op.disk, op.kind.value, e)
            stale = self._disks.pop(op.disk, None)
            if stale is not None:
                self._close_one(op.disk, stale)
            return DiskResult(op_id=op.op_id, outcome=DiskOutcome.UNAVAILABLE)

    def close(self) -> None:
        self._send.close()
        for name, disk in self._disks.items():
            self._close_one(name, disk)
        self._disks.clear()

    @staticmethod
    def _close_one(name: str, disk: SharedDisk) -> None:
        try:
            disk.close()
        except Exception as e:
            log.warning("disk %s: close failed: %s", name, e)
