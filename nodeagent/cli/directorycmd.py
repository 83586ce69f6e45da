"""``wolfpack directory list``: the computer objects in the lab's directory (runtime/directory.py).

A Network Name with RequireKerberos=1 creates its computer object when it first comes online; the
System Attendant will not start without one. This command only reads ``DIR/directory.json``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from nodeagent.cli.clusterdir import ClusterDir
from nodeagent.config import ClusterConfig
from nodeagent.runtime.directory import DIRECTORY_FILE, Directory

Sub = Callable[..., argparse.ArgumentParser]
Opener = Callable[[argparse.Namespace], tuple[ClusterDir, ClusterConfig]]


def render(computers: dict[str, dict[str, Any]]) -> str:
    if not computers:
        return "no computer objects (a Network Name with RequireKerberos=1 creates one when it comes online)"
    lines = [f"{'NAME':<16} {'DNS NAME':<32} {'CREATED BY':<12} CREATED AT"]
    for name in sorted(computers, key=str.upper):
        c = computers[name]
        lines.append(
            f"{name:<16} {c.get('dns_name', ''):<32} {c.get('created_by', ''):<12} {c.get('created_at', '')}"
        )
    return "\n".join(lines)


def add_parsers(subs: Any, sub: Sub, opener: Opener) -> None:
    p = sub(subs, "directory", "the lab's directory: computer objects of Network Names (RequireKerberos)",
            "  wolfpack directory list\n  wolfpack directory list --json")  # fmt: skip
    p.add_argument("action", choices=("list",))
    p.add_argument("--json", action="store_true", help='one JSON document {"computers": {...}}')

    def go(args: argparse.Namespace) -> int:
        cdir, _config = opener(args)
        computers = Directory(cdir.root / DIRECTORY_FILE).computers()
        print(json.dumps({"computers": computers}, indent=2) if args.json else render(computers))
        return 0

    p.set_defaults(func=go)
