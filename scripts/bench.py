"""scripts/bench: measure failure detection, quorum takeover and idle cost with real processes.

Detection: kill -9 a node that does not own the quorum, time until the first survivor logs the
regroup (event 1126) and until the node is removed (1135); the configured bound is
node_down_after_s (heartbeat_misses x heartbeat_interval_s) after the victim's last heartbeat.
Takeover: kill -9 the quorum owner, time until a survivor brings the quorum online; the floor is
node_down_after_s + regroup_activity_s + challenge_takeover_s. Idle: CPU % and RSS per node over a
few seconds of an idle formed cluster, with 3 and with 8 nodes.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import time
from typing import Any

import psutil

from nodeagent.cli.lab import Lab


def kill_and_time(lab: Lab, victim: str, until_kind: str, node_filter: str | None = None) -> dict[str, float]:
    s = lab.status()
    pid = lab.node(s, victim)["pid"]
    killed = time.monotonic()
    os.kill(pid, signal.SIGKILL)

    def first(kind: str) -> float | None:
        evs = [e for e in lab.events_of(kind, since=killed) if e["node"] != victim]
        return evs[0]["mono_s"] - killed if evs else None

    lab.wait_for(until_kind, lambda: first(until_kind) is not None, 30)
    out = {k: first(k) for k in ("regroup_started", "node_removed", "quorum_online")}
    lab.cli("start", victim, timeout=60)
    return {k: v for k, v in out.items() if v is not None}


def progress(line: str) -> None:
    print(line, file=sys.stderr)


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {
        "median_s": round(statistics.median(ordered), 4),
        "p95_s": round(p95, 4),
        "max_s": round(ordered[-1], 4),
    }


def idle(nodes: int, seconds: float) -> dict[str, Any]:
    lab = Lab(nodes)
    try:
        procs = [psutil.Process(n["pid"]) for n in lab.status()["nodes"]]
        for p in procs:
            p.cpu_percent(None)
        time.sleep(seconds)  # a measurement window, not a wait for a condition
        cpu = [p.cpu_percent(None) for p in procs]
        rss = [p.memory_info().rss for p in procs]
        return {
            "nodes": nodes,
            "cpu_percent_per_node_mean": round(statistics.mean(cpu), 2),
            "cpu_percent_per_node_max": round(max(cpu), 2),
            "rss_mib_per_node_mean": round(statistics.mean(rss) / 2**20, 1),
        }
    finally:
        lab.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=20, help="kills per measurement (default 20)")
    ap.add_argument("--idle-s", type=float, default=5.0, help="idle measurement window (default 5 s)")
    ap.add_argument("--json", action="store_true", help="print the results as one JSON object")
    args = ap.parse_args()
    if args.runs < 1:
        ap.error("--runs must be at least 1")

    results: dict[str, Any] = {"runs": args.runs}
    lab = Lab(3)
    try:
        t = lab.config_timing()
        # The kill lands anywhere within one heartbeat interval after the victim's last heartbeat.
        lo, hi = t.node_down_after_s - t.heartbeat_interval_s, t.node_down_after_s
        extra = t.regroup_activity_s + t.challenge_takeover_s
        results["configured"] = {
            "detection_window_s": [round(lo, 4), round(hi, 4)],
            "takeover_window_s": [round(lo + extra, 4), round(hi + extra, 4)],
        }
        regroup, removed, takeover = [], [], []
        for i in range(args.runs):
            owner = lab.status()["quorum_owner"]
            victim = next(n for n in ("NODE1", "NODE2", "NODE3") if n != owner)
            r = kill_and_time(lab, victim, "node_removed")
            regroup.append(r["regroup_started"])
            removed.append(r["node_removed"])
            progress(
                f"detection run {i + 1}/{args.runs}: regroup {r['regroup_started']:.3f} s, "
                f"removed {r['node_removed']:.3f} s"
            )
        for i in range(args.runs):
            owner = lab.status()["quorum_owner"]
            r = kill_and_time(lab, owner, "quorum_online")
            takeover.append(r["quorum_online"])
            progress(f"takeover run {i + 1}/{args.runs}: quorum online after {r['quorum_online']:.3f} s")
    finally:
        lab.close()
    results["detection_regroup"] = summary(regroup)
    results["detection_removed"] = summary(removed)
    results["owner_takeover"] = summary(takeover)
    results["idle"] = [idle(3, args.idle_s), idle(8, args.idle_s)]
    if args.json:
        print(json.dumps(results, indent=2))
        return
    c = results["configured"]
    print(
        f"\nkill -9 of a non-owner -> first regroup (1126): {results['detection_regroup']}  "
        f"(window {c['detection_window_s'][0]}-{c['detection_window_s'][1]} s after the kill)"
    )
    print(f"kill -9 of a non-owner -> node removed (1135):  {results['detection_removed']}")
    print(
        f"kill -9 of the quorum owner -> quorum online:   {results['owner_takeover']}  "
        f"(window {c['takeover_window_s'][0]}-{c['takeover_window_s'][1]} s)"
    )
    for row in results["idle"]:
        print(
            f"idle, {row['nodes']} nodes: CPU {row['cpu_percent_per_node_mean']} % per node "
            f"(max {row['cpu_percent_per_node_max']} %), RSS {row['rss_mib_per_node_mean']} MiB per node"
        )


if __name__ == "__main__":
    main()
