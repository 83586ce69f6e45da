"""The event log: events.jsonl, written by each node and merged into one timeline by readers.

Theory of operation
-------------------
The core says what happened (``Event``: kind, MSCS event id, message, fields); the ``EventWriter``
adds when and who and appends one JSON object per line::

    {"time": "2026-11-25T09:41:02.123456Z", "mono_s": 81234.5678, "node": "NODE1", "incarnation": 3,
     "event_id": 1123, "kind": "interface_failed", "message": "...", "fields": {...}}

``time`` is the wall clock (UTC) for people; ``mono_s`` is ``time.monotonic()`` (CLOCK_MONOTONIC,
shared by every process on the machine) for ordering: the driver passes the same ``now_s`` it gave
the core call that produced the event, so events of several processes order exactly. Each line is
written with one ``write`` on an O_APPEND file and flushed at once, so a reader (``wolfpack log``, a
test) sees whole lines as soon as the node logged them, and a crash loses at most the line being
written. The writer runs on the event loop: appending one short line to a local file is cheap, and
doing it inline keeps the log in the exact order of the core's effects.

Bound: when the file passes ``MAX_LOG_BYTES`` it is renamed to ``events.jsonl.1`` (replacing the
previous one) and a new file is started, like cluster.log dropping its oldest half.

Every event is also logged on stderr (node.log) as one human line.

``read_events(paths)`` reads several files, skips lines that are not valid records (a torn last line
of a killed process, say) and returns every record sorted by ``mono_s`` (stable: a node's own order
is kept on ties). ``event_paths(cluster_dir)`` lists every node's files for it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from nodeagent.core.effects import Event

MAX_LOG_BYTES = 64 * 2**20
MAX_LINE_BYTES = 1 << 20  # a reader skips longer lines (damage, not events)
ROTATED_SUFFIX = ".1"

log = logging.getLogger("nodeagent.events")


def wall_time() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def event_record(event: Event, *, node: str, incarnation: int, mono_s: float, time: str) -> dict[str, Any]:
    return {
        "time": time,
        "mono_s": mono_s,
        "node": node,
        "incarnation": incarnation,
        "event_id": event.event_id,
        "kind": event.kind,
        "message": event.message,
        "fields": dict(event.fields),
    }


class EventWriter:
    def __init__(self, path: Path, node: str, incarnation: int, max_bytes: int = MAX_LOG_BYTES) -> None:
        self.path = path
        self.node = node
        self.incarnation = incarnation
        self.max_bytes = max_bytes
        self.written = 0
        self._file: IO[str] | None = None
        self._size = 0

    def open(self) -> None:
        self._file = self.path.open("a", encoding="utf-8")
        self._size = self._file.tell()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> EventWriter:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def write(self, event: Event, mono_s: float) -> dict[str, Any]:
        record = event_record(
            event, node=self.node, incarnation=self.incarnation, mono_s=mono_s, time=wall_time()
        )
        # default=str: a field the core filled with an enum or a tuple still makes a valid line.
        line = json.dumps(record, default=str, separators=(",", ":")) + "\n"
        ident = f"[{event.event_id}] " if event.event_id is not None else ""
        log.info("%s %s%s: %s", self.node, ident, event.kind, event.message)
        if self._file is None:
            return record
        try:
            if self._size + len(line) > self.max_bytes:
                self._rotate()
            self._file.write(line)
            self._file.flush()
            self._size += len(line.encode("utf-8"))
            self.written += 1
        except OSError as e:
            # A full disk must not stop the cluster service; the stderr line above still exists.
            log.warning("cannot append to %s: %s", self.path, e)
        return record

    def _rotate(self) -> None:
        assert self._file is not None
        self._file.close()
        os.replace(self.path, self.path.with_name(self.path.name + ROTATED_SUFFIX))
        self._file = self.path.open("a", encoding="utf-8")
        self._size = 0


# -- reading -------------------------------------------------------------------------------------


def _valid(record: Any) -> bool:
    return (
        isinstance(record, dict)
        and isinstance(record.get("mono_s"), int | float)
        and not isinstance(record.get("mono_s"), bool)
        and isinstance(record.get("kind"), str)
        and isinstance(record.get("node"), str)
    )


def read_event_file(path: Path) -> list[dict[str, Any]]:
    """Every valid record of one file, in file order; a missing file has none."""
    records: list[dict[str, Any]] = []
    with contextlib.suppress(FileNotFoundError), path.open("rb") as f:
        for raw in f:
            if len(raw) > MAX_LINE_BYTES:
                continue
            try:
                record = json.loads(raw)
            except ValueError:
                continue
            if _valid(record):
                records.append(record)
    return records


def read_events(paths: Iterable[Path]) -> list[dict[str, Any]]:
    """The records of every file, merged into one timeline by ``mono_s``."""
    records: list[dict[str, Any]] = []
    for path in paths:
        records.extend(read_event_file(path))
    records.sort(key=lambda r: float(r["mono_s"]))
    return records


def event_paths(cluster_dir: Path) -> list[Path]:
    """Every node's event files (rotated ones first), for ``read_events``."""
    paths: list[Path] = []
    nodes = cluster_dir / "nodes"
    if not nodes.is_dir():
        return paths
    for node in sorted(p for p in nodes.iterdir() if p.is_dir()):
        for name in ("events.jsonl" + ROTATED_SUFFIX, "events.jsonl"):
            if (node / name).exists():
                paths.append(node / name)
    return paths
