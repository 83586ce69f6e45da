"""``wolfpack log``: every node's events.jsonl merged into one timeline.

Theory of operation
-------------------
Each node appends JSON records to its own ``events.jsonl`` stamped with ``mono_s``
(CLOCK_MONOTONIC, shared by every process on the machine), so sorting by ``mono_s`` orders the
events of all nodes exactly (``runtime.eventlog.read_events``). ``--since-s S`` keeps the events of
the last S seconds by the same clock.

One line per event::

    09:41:02.123  +12.345s  NODE2  [1123] Cluster network interface ...

local wall time, seconds since the first event shown, node, MSCS event id (blank when the event has
none), message.

``--follow`` tails the files (``Tailer``): it remembers an offset per file, reads only whole new
lines, starts over when a file shrinks (rotated), and holds each event back for ``HOLD_BACK_S`` so
that lines two nodes write at nearly the same moment still come out in ``mono_s`` order.
"""

from __future__ import annotations

import datetime
import json
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TextIO

from nodeagent.cli.clusterdir import ClusterDir
from nodeagent.config import ClusterConfig

HOLD_BACK_S = 0.3
FOLLOW_POLL_S = 0.2
MAX_READ_BYTES = 4 * 2**20  # per file per poll; the rest comes on the next poll
MAX_LINE_BYTES = 1 << 20
ROTATED_SUFFIX = ".1"


def event_files(cdir: ClusterDir, config: ClusterConfig, node: str | None = None) -> list[Path]:
    """The event files of every node (or one), rotated ones first; only files that exist."""
    names = [config.node(node).name] if node is not None else [n.name for n in config.nodes]
    paths = []
    for name in names:
        current = cdir.events_file(name)
        for path in (current.with_name(current.name + ROTATED_SUFFIX), current):
            if path.exists():
                paths.append(path)
    return paths


def select(
    events: Iterable[dict[str, Any]], node: str | None, since_mono_s: float | None
) -> list[dict[str, Any]]:
    out = []
    for ev in events:
        if node is not None and str(ev.get("node", "")).upper() != node.upper():
            continue
        mono = ev.get("mono_s")
        if since_mono_s is not None and (not isinstance(mono, int | float) or mono < since_mono_s):
            continue
        out.append(ev)
    return out


def _clock(wall: Any) -> str:
    if isinstance(wall, str):
        try:
            parsed = datetime.datetime.fromisoformat(wall.replace("Z", "+00:00"))
        except ValueError:
            return wall[:12].ljust(12)
        if parsed.tzinfo is not None:
            parsed = parsed.astimezone()  # local time, like every other log on this machine
        return parsed.strftime("%H:%M:%S.") + f"{parsed.microsecond // 1000:03d}"
    return "??:??:??.???"


def format_event(ev: dict[str, Any], first_mono_s: float, node_width: int = 5) -> str:
    mono = ev.get("mono_s")
    rel = f"+{float(mono) - first_mono_s:.3f}s" if isinstance(mono, int | float) else "?"
    event_id = ev.get("event_id")
    tag = f"[{event_id}]" if event_id is not None else ""
    message = ev.get("message") or ev.get("kind") or ""
    node = str(ev.get("node", "?"))
    return f"{_clock(ev.get('time'))}  {rel:>8}  {node:<{node_width}}  {tag:<6} {message}".rstrip()


class Printer:
    """Writes events as text lines (relative to the first one printed) or as JSON lines / one array."""

    def __init__(self, out: TextIO, as_json: bool, node_width: int) -> None:
        self.out = out
        self.as_json = as_json
        self.node_width = node_width
        self.first_mono_s: float | None = None

    def line(self, ev: dict[str, Any]) -> str:
        if self.as_json:
            return json.dumps(ev, separators=(",", ":"))
        mono = ev.get("mono_s")
        if self.first_mono_s is None and isinstance(mono, int | float):
            self.first_mono_s = float(mono)
        return format_event(ev, self.first_mono_s or 0.0, self.node_width)

    def write(self, events: Iterable[dict[str, Any]]) -> None:
        for ev in events:
            self.out.write(self.line(ev) + "\n")
        self.out.flush()


class Tailer:
    """Incremental reader of several JSON-lines files; ``poll`` returns new events in mono_s order."""

    def __init__(self, paths: Sequence[Path], clock: Callable[[], float] = time.monotonic) -> None:
        self._offsets = {p: 0 for p in paths}
        self._partial = {p: b"" for p in paths}
        self._pending: list[dict[str, Any]] = []
        self._clock = clock

    def _read(self, path: Path) -> list[dict[str, Any]]:
        try:
            with path.open("rb") as f:
                size = f.seek(0, 2)
                if size < self._offsets[path]:  # rotated or truncated: start over
                    self._offsets[path], self._partial[path] = 0, b""
                f.seek(self._offsets[path])
                data = f.read(MAX_READ_BYTES)
        except FileNotFoundError:
            return []
        self._offsets[path] += len(data)
        lines = (self._partial[path] + data).split(b"\n")
        self._partial[path] = lines.pop()
        if len(self._partial[path]) > MAX_LINE_BYTES:
            self._partial[path] = b""
        records = []
        for raw in lines:
            try:
                record = json.loads(raw)
            except ValueError:
                continue  # a torn line of a killed process
            if isinstance(record, dict) and isinstance(record.get("mono_s"), int | float):
                records.append(record)
        return records

    def poll(self, flush: bool = False) -> list[dict[str, Any]]:
        for path in self._offsets:
            self._pending.extend(self._read(path))
        self._pending.sort(key=lambda r: float(r["mono_s"]))
        horizon = self._clock() - HOLD_BACK_S
        ready = [r for r in self._pending if flush or float(r["mono_s"]) <= horizon]
        self._pending = self._pending[len(ready) :]
        return ready


def all_event_paths(cdir: ClusterDir, config: ClusterConfig, node: str | None) -> list[Path]:
    """Paths to tail, existing or not yet (a node that has never run creates its file later)."""
    names = [config.node(node).name] if node is not None else [n.name for n in config.nodes]
    return [cdir.events_file(name) for name in names]


def show(
    cdir: ClusterDir,
    config: ClusterConfig,
    out: TextIO,
    *,
    node: str | None = None,
    since_s: float | None = None,
    as_json: bool = False,
) -> int:
    """Print the merged log once; returns the number of events shown."""
    from nodeagent.runtime.eventlog import read_events

    since = time.monotonic() - since_s if since_s is not None else None
    events = select(read_events(event_files(cdir, config, node)), node, since)
    width = max(len(n.name) for n in config.nodes)
    if as_json:
        json.dump({"events": events}, out, indent=1)
        out.write("\n")
    else:
        Printer(out, False, width).write(events)
    return len(events)


def follow(
    cdir: ClusterDir,
    config: ClusterConfig,
    out: TextIO,
    *,
    node: str | None = None,
    since_s: float | None = None,
    as_json: bool = False,
    max_polls: int | None = None,
) -> None:
    """Print the merged log, then new events as they come, until Ctrl-C (or ``max_polls``, for tests).

    Only the current files are followed (not the rotated ``.1`` ones); ``since_s`` applies to the
    backlog shown first.
    """
    since = time.monotonic() - since_s if since_s is not None else None
    tailer = Tailer(all_event_paths(cdir, config, node))
    printer = Printer(out, as_json, max(len(n.name) for n in config.nodes))
    printer.write(select(tailer.poll(flush=True), node, since))
    polls = 0
    while max_polls is None or polls < max_polls:
        time.sleep(FOLLOW_POLL_S)
        printer.write(select(tailer.poll(), node, None))
        polls += 1
