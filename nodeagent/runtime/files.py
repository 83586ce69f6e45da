"""The small files of a node directory: incarnation, pid, and db.json.

Theory of operation
-------------------
``DIR/nodes/NAME/`` belongs to one node process at a time (the UDP bind of the node's addresses is
what makes it exclusive, so callers bind first and touch these files afterwards).

- ``incarnation``: decimal text, incremented at every start. Peers drop datagrams from an incarnation
  older than the highest they have seen, so a restarted node must never reuse a number.
- ``pid``: decimal text; written at start, removed at a clean exit. A pid file left behind means the
  process died (or was killed); the CLI checks whether that pid is still alive.
- ``db.json``: the node's local copy of the cluster database; for now the last installed membership
  ``{"epoch": int, "members": [ids], "quorum_owner": id|null}``. ``known_epoch`` seeds the core so a
  restarted node knows how recent its view is.

Every write goes through ``atomic_write_text``: write a temporary file in the same directory, flush and
fsync it, then ``os.replace`` it over the target, so a reader (or a crash) sees the old file or the
new one, never a torn one. A damaged file is a ``ConfigError`` naming it: the operator can delete it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nodeagent.errors import ConfigError

log = logging.getLogger("nodeagent.files")

INCARNATION_FILE = "incarnation"
PID_FILE = "pid"
DB_FILE = "db.json"
CLUSTER_DB_FILE = "clusterdb.json"  # the local copy of the cluster database (groups, resources)
EVENTS_FILE = "events.jsonl"
CONTROL_SOCKET = "control.sock"
MAX_SMALL_FILE = 1 << 20  # bytes; these files are tiny, anything bigger is damage


def node_dir(cluster_dir: Path, node_name: str) -> Path:
    return cluster_dir / "nodes" / node_name.upper()


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _read_small(path: Path) -> str | None:
    try:
        with path.open("r", encoding="utf-8") as f:
            text = f.read(MAX_SMALL_FILE + 1)
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read: {e}") from None
    if len(text) > MAX_SMALL_FILE:
        raise ConfigError(f"{path}: too large to be a wolfpack file; delete it")
    return text


def _read_int(path: Path) -> int | None:
    text = _read_small(path)
    if text is None:
        return None
    try:
        value = int(text.strip())
    except ValueError:
        raise ConfigError(f"{path}: not a whole number; delete it") from None
    if value < 0:
        raise ConfigError(f"{path}: negative; delete it")
    return value


def bump_incarnation(directory: Path) -> int:
    """Read the incarnation (missing: 0), add one, write it back atomically; returns the new value."""
    path = directory / INCARNATION_FILE
    value = (_read_int(path) or 0) + 1
    atomic_write_text(path, f"{value}\n")
    return value


def read_incarnation(directory: Path) -> int | None:
    return _read_int(directory / INCARNATION_FILE)


def write_pid(directory: Path, pid: int | None = None) -> None:
    atomic_write_text(directory / PID_FILE, f"{os.getpid() if pid is None else pid}\n")


def read_pid(directory: Path) -> int | None:
    return _read_int(directory / PID_FILE)


def remove_pid(directory: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        (directory / PID_FILE).unlink()


@dataclass(frozen=True, slots=True)
class Membership:
    """What db.json holds: the last membership this node installed."""

    epoch: int
    members: tuple[int, ...]
    quorum_owner: int | None

    def as_json(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "members": list(self.members), "quorum_owner": self.quorum_owner}


def read_db(directory: Path) -> Membership | None:
    path = directory / DB_FILE
    text = _read_small(path)
    if text is None:
        return None
    try:
        data = json.loads(text)
        epoch = data["epoch"]
        members = data["members"]
        owner = data.get("quorum_owner")
        valid = (
            _is_int(epoch)
            and epoch >= 0
            and isinstance(members, list)
            and all(_is_int(m) for m in members)
            and (owner is None or _is_int(owner))
        )
    except (ValueError, TypeError, KeyError):
        valid = False
    if not valid:
        raise ConfigError(f"{path}: not a wolfpack database copy; delete it (the node re-learns it)")
    return Membership(epoch=epoch, members=tuple(members), quorum_owner=owner)


def read_known_epoch(directory: Path) -> int:
    db = read_db(directory)
    return 0 if db is None else db.epoch


def write_db(directory: Path, membership: Membership) -> None:
    atomic_write_text(directory / DB_FILE, json.dumps(membership.as_json()) + "\n")


def read_cluster_db(directory: Path) -> dict[str, Any] | None:
    """The node's saved copy of the cluster database; None when there is none (or it is unreadable:
    the node then learns the database again from the cluster)."""
    path = directory / CLUSTER_DB_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        log.warning("%s is not JSON; ignoring it", directory / CLUSTER_DB_FILE)
        return None
    return data if isinstance(data, dict) else None


def write_cluster_db(directory: Path, database: dict[str, Any]) -> None:
    atomic_write_text(directory / CLUSTER_DB_FILE, json.dumps(database) + "\n")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
