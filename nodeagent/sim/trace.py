"""Trace lines: one per event-log record and one per fault action, deterministic to the byte.

Theory of operation
-------------------
A line is ``TIME WHO ID TEXT``: the virtual time with four decimals in a 10-wide column, the node name
(or ``----`` for the simulator's own actions) padded to 6, the MSCS event id right-aligned in 5 (blank
when the event has none), then the text. For a core event the text is the event kind followed by its
fields as ``key=value``, sorted by key:

    ``   12.3456 NODE2  1123 interface_failed net=private peer=NODE1``
    ``   12.3456 ----        fault partition NODE1,NODE2|NODE3``

Values are rendered without anything that could differ between two processes: no ``repr`` of objects
with addresses, no iteration over sets or dicts in insertion order (sorted instead), floats with a
fixed number of digits. Strings containing spaces or ``=`` are quoted JSON-style.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nodeagent.core.effects import Event

ACTOR = "----"
MAX_VALUE_CHARS = 200  # a runaway field must not make one line unreadable


def line(time_s: float, who: str, event_id: int | None, text: str) -> str:
    eid = "" if event_id is None else str(event_id)
    return f"{time_s:10.4f} {who:<6}{eid:>5} {text}"


def event_line(time_s: float, node_name: str, event: Event) -> str:
    parts = [event.kind]
    parts.extend(f"{k}={format_value(event.fields[k])}" for k in sorted(event.fields))
    return line(time_s, node_name, event.event_id, " ".join(parts))


def action_line(time_s: float, text: str) -> str:
    return line(time_s, ACTOR, None, text)


def format_value(value: Any) -> str:
    text = _format(value, depth=0)
    if len(text) > MAX_VALUE_CHARS:
        text = text[: MAX_VALUE_CHARS - 3] + "..."
    return text


def _format(value: Any, depth: int) -> str:
    if depth > 4:
        return "..."
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, enum.Enum):
        return value.name.lower()
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, str):
        if value == "" or any(c.isspace() or c in '=",' for c in value):
            return json.dumps(value)
        return value
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, Mapping):
        items = sorted(value.items(), key=lambda kv: str(kv[0]))
        return "{" + ",".join(f"{_format(k, depth + 1)}:{_format(v, depth + 1)}" for k, v in items) + "}"
    if isinstance(value, set | frozenset):
        return "[" + ",".join(sorted(_format(v, depth + 1) for v in value)) + "]"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_format(v, depth + 1) for v in value) + "]"
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        inner = ",".join(
            f"{f.name}={_format(getattr(value, f.name), depth + 1)}" for f in dataclasses.fields(value)
        )
        return f"{type(value).__name__}({inner})"
    # Anything else: its type name only; its repr may hold an address.
    return f"<{type(value).__name__}>"


def describe_exception(e: BaseException) -> str:
    """Type, message and innermost frame of an exception, without absolute paths (deterministic)."""
    frames = traceback.extract_tb(e.__traceback__)
    where = ""
    if frames:
        last = frames[-1]
        where = f" at {Path(last.filename).name}:{last.lineno} in {last.name}"
    return f"{type(e).__name__}: {e}{where}"
