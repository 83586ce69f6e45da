"""Exchange virtual server failover: kill -9 of the owner to the first client reply from the survivor.

For each case (the EVS owner is / is not the quorum owner) and each dependency tree (2003, 2000),
``runs`` times: make the case hold (move the group if needed), start `wolfpack client EVS1
--service SMTP` (a reply counts only while SMTP is Online on the serving node), kill -9 the owner,
and take the client's first good reply from the survivor. The floor is computed from the configured
timings: the instant the group may start on the survivor (the fence, ``Timing.fence_s``, after the
owner was last heard: up to one heartbeat interval before the kill; or the quorum takeover when the
quorum owner died, whichever is later), plus the longest start-up path through the dependency tree
to SMTP (each resource's StartupTime and the store's log replay; the disk breaks the dead owner's
reservation without the challenge's wait, since the fence already was that wait).
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import time
from typing import Any

from bench import progress, summary  # scripts/bench.py, beside this file

from nodeagent.cli.lab import WOLFPACK, Lab

TARGET = "SMTP Virtual Server Instance"


def critical_path_s(group: dict[str, Any], timing: Any) -> float:
    """The longest start-up path to the SMTP resource, from each resource's private StartupTime."""
    resources = {r["name"]: r for r in group["resources"]}

    def own(r: dict[str, Any]) -> float:
        p = r.get("private", {})
        if r["type"] == "Physical Disk":
            return 0.0  # after the fence the dead owner's reservation is broken at once (AfterFence)
        extra = float(p.get("LogBacklog", 0)) * float(p.get("LogReplayTime", 0))
        return float(p.get("StartupTime", 0.0)) + extra

    memo: dict[str, float] = {}

    def done(name: str) -> float:
        if name not in memo:
            r = resources[name]
            memo[name] = own(r) + max((done(d) for d in r["depends_on"]), default=0.0)
        return memo[name]

    smtp = next(r["name"] for r in group["resources"] if r["type"] == TARGET)
    return done(smtp)


def evs(status: dict[str, Any]) -> dict[str, Any]:
    return next(g for g in status["groups"] if g["name"] == "EVS1")


def settle(lab: Lab) -> dict[str, Any]:
    s = lab.wait_status(
        "EVS1 Online and every node Up",
        lambda s: evs(s)["state"] == "Online" and all(n["state"] == "Up" for n in s["nodes"]),
        60,
    )
    return s


def one_run(lab: Lab, owner_is_quorum_owner: bool) -> tuple[float, float]:
    s = settle(lab)
    quorum, owner = s["quorum_owner"], evs(s)["owner"]
    if (owner == quorum) != owner_is_quorum_owner:
        target = (
            quorum if owner_is_quorum_owner else next(n["name"] for n in s["nodes"] if n["name"] != quorum)
        )
        lab.cli("group", "EVS1", "move", "--to", target, timeout=90)
        s = settle(lab)
        owner = evs(s)["owner"]
    floor = lab.floor_s(owner == s["quorum_owner"], evs(s))  # type: ignore[attr-defined]
    client = subprocess.Popen(
        [*WOLFPACK, "client", "EVS1", "--dir", str(lab.dir), "--service", "SMTP", "--interval-ms", "10",
         "--duration-s", "12", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        first_reply = _first_line(client, lambda d: d.get("event") == "reply" and d.get("ok"))
        if first_reply is None:
            raise RuntimeError("the client got no reply before the kill")
        pid = lab.node(s, owner)["pid"]
        killed = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        back = _first_line(
            client, lambda d: d.get("event") == "reply" and d.get("ok") and d.get("node") != owner
        )
        if back is None:
            raise RuntimeError("the client never got a reply from the survivor")
        took = float(back["mono_s"]) - killed
    finally:
        client.kill()
        client.wait()
    lab.cli("start", owner, timeout=90)
    return took, floor


def _first_line(proc: subprocess.Popen[str], pred: Any) -> dict[str, Any] | None:
    assert proc.stdout is not None
    for line in proc.stdout:
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if pred(doc):
            return doc  # type: ignore[no-any-return]
    return None


def measure(runs: int, version: str, progress: Any) -> list[dict[str, Any]]:
    out = []
    lab = Lab(2, "--evs", "1", "--exchange-version", version)
    t = lab.config_timing()
    # Forty kills in a row would exhaust FailoverThreshold (10 within 6 h, 36 min at speed 10), after
    # which MSCS leaves the group failed: lift it for the measurement.
    lab.cli("group", "EVS1", "prop", "FailoverThreshold=1000")

    def floor_s(quorum_died: bool, group: dict[str, Any]) -> float:
        # The kill lands up to one heartbeat interval after the owner was last heard. The group starts
        # on the survivor after the quorum takeover when the quorum owner died, and in any case not
        # before the fence (the lost owner must have halted, core/failover.py).
        last_heard = -t.heartbeat_interval_s
        takeover = t.node_down_after_s + t.regroup_activity_s + t.challenge_takeover_s if quorum_died else 0.0
        start = last_heard + max(t.fence_s(disk_quorum=True), takeover)
        return start + critical_path_s(group, t)

    lab.floor_s = floor_s  # type: ignore[attr-defined]
    try:
        for case in (False, True):
            took, floors = [], []
            for i in range(runs):
                x, f = one_run(lab, case)
                took.append(x)
                floors.append(f)
                progress(f"Exchange {version}, EVS owner {'is' if case else 'is not'} the quorum owner, "
                         f"run {i + 1}/{runs}: {x:.3f} s (floor {f:.3f} s)")  # fmt: skip
            floor = statistics.median(floors)
            stats = summary(took)
            out.append({
                "tree": version,
                "evs_owner_is_quorum_owner": case,
                **stats,
                "floor_s": round(floor, 4),
                "overhead_median_s": round(stats["median_s"] - floor, 4),
            })  # fmt: skip
    finally:
        lab.close()
    return out


if __name__ == "__main__":
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    results = measure(runs, "2003", progress) + measure(runs, "2000", progress)
    print(json.dumps(results, indent=2))
