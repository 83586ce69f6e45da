"""The reservation history of a disk image: one JSON line per reservation change, for checkers.

Theory of operation
-------------------
``FileDisk`` calls ``append`` from inside the read-modify-write of a reservation command, under the
image's exclusive ``flock`` and only when the command changed the record (a reserve that changed
the holder, a release, a reset that broke a reservation, a register, a preempt, ...). So the lines
of ``DIR/disks/NAME.history.jsonl`` are in the exact order the changes took effect, whatever the
process, and a change that did not happen is never logged::

    {"t": 81234.567891, "op": "reserve", "initiator": "NODE2", "holder": "NODE2", "type": "scsi2"}

``t`` is ``time.monotonic()`` (CLOCK_MONOTONIC, comparable with the event logs' ``mono_s``);
``holder`` is the reservation holder after the change (null: unreserved); PR commands add ``key``
(and ``victim_key`` for preempt). Each record is padded with spaces to ``RECORD_BYTES`` (JSON allows
trailing blanks), so the file's size says how many lines it has without reading it: at
``MAX_LINES`` it is renamed to ``NAME.history.jsonl.1`` (replacing the previous one) and a new file
begins. A process killed mid-append leaves at most one torn last line, which ``read_history`` skips.
Writing is best effort: the history is evidence, and a failed append never fails the disk command.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any

from shareddisk import rules

MAX_LINES = 10_000
RECORD_BYTES = 128  # every line is padded to this (longer lines are written as they are)
SUFFIX = ".history.jsonl"
ROTATED = ".1"


def history_path(image: str | os.PathLike[str]) -> Path:
    """DIR/disks/NAME.img -> DIR/disks/NAME.history.jsonl."""
    p = Path(image)
    return p.with_name(p.stem + SUFFIX)


def record_of(op: rules.Op, after: rules.ReservationState, t: float) -> dict[str, Any]:
    info = rules.info(after)
    doc: dict[str, Any] = {
        "t": round(t, 6),
        "op": _op_name(op),
        "initiator": getattr(op, "initiator", None),
        "holder": info.holder,
        "type": info.type.value,
    }
    for name in ("key", "victim_key"):
        if hasattr(op, name):
            doc[name] = getattr(op, name)
    return doc


def _op_name(op: rules.Op) -> str:
    names = {"Reserve": "reserve", "Release": "release", "Reset": "reset", "Register": "register",
             "PrReserve": "pr_reserve", "PrRelease": "pr_release", "Preempt": "preempt"}  # fmt: skip
    cls = type(op).__name__
    return names.get(cls, cls.lower())


def append(image: str | os.PathLike[str], op: rules.Op, after: rules.ReservationState) -> None:
    """Log one change; call it under the image's exclusive lock. Never raises OSError."""
    path = history_path(image)
    line = json.dumps(record_of(op, after, time.monotonic()), separators=(",", ":"))
    data = (line.ljust(RECORD_BYTES - 1) + "\n").encode("utf-8")
    with contextlib.suppress(OSError):
        with contextlib.suppress(FileNotFoundError):
            if path.stat().st_size >= MAX_LINES * RECORD_BYTES:
                os.replace(path, path.with_name(path.name + ROTATED))
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)


def read_history(image: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every valid record of a disk's history (the rotated file first), in the order of the changes."""
    path = history_path(image)
    out: list[dict[str, Any]] = []
    for p in (path.with_name(path.name + ROTATED), path):
        with contextlib.suppress(FileNotFoundError), p.open("rb") as f:
            for raw in f:
                try:
                    doc = json.loads(raw)
                except ValueError:
                    continue
                if isinstance(doc, dict) and isinstance(doc.get("t"), int | float) and "op" in doc:
                    out.append(doc)
    return out


__all__ = ["MAX_LINES", "append", "history_path", "read_history", "record_of"]
