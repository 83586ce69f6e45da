"""Reading the groups out of `wolfpack status --json`, for the real-process tests of the EVS lab."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Status = dict[str, Any]


def group(s: Status, name: str) -> dict[str, Any]:
    return next(g for g in s["groups"] if g["name"] == name)


def resources(s: Status, name: str) -> dict[str, dict[str, Any]]:
    return {r["name"]: r for r in group(s, name)["resources"]}


def online_on(node: str, name: str = "EVS1") -> Callable[[Status], bool]:
    """The group is Online on ``node`` with every resource Online (not just the group's summary)."""

    def pred(s: Status) -> bool:
        g = group(s, name)
        return (
            g["state"] == "Online"
            and g["owner"] == node
            and g.get("target") is None
            and all(r["state"] == "Online" for r in g["resources"])
        )

    return pred
