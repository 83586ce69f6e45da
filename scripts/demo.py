"""scripts/demo: bring up a cluster, kill the quorum owner, watch the failover (see README)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

from nodeagent.cli.lab import Lab

SHOWN = {
    "interface_failed",
    "regroup_started",
    "arbitration_started",
    "arbitration_won",
    "quorum_online",
    "node_removed",
    "membership_installed",
    "halted",
    "cluster_joined",
    "node_joined",
    "service_started",
}


def say(text: str) -> None:
    bold, plain = ("\033[1m", "\033[0m") if sys.stdout.isatty() else ("", "")
    print(f"\n{bold}== {text}{plain}", flush=True)


def timeline(lab: Lab, since: float) -> None:
    for e in lab.events():
        if e["mono_s"] >= since and e["kind"] in SHOWN:
            tag = f"[{e['event_id']}]" if e["event_id"] else ""
            print(f"  +{e['mono_s'] - since:7.3f}s  {e['node']:<6} {tag:<6} {e['message']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("dir", nargs="?", default="lab", help="cluster directory (default ./lab)")
    ap.add_argument("--keep", action="store_true", help="leave the cluster running at the end")
    args = ap.parse_args()
    where = Path(args.dir).resolve()

    if (where / "cluster.toml").exists():
        say(f"stopping what is left of an earlier run in {where}")
        Lab.down(where)
    say("wolfpack up: three nodes, a quorum disk, speed 10 (every MSCS timing divided by 10)")
    t0 = time.monotonic()
    lab = Lab(3, directory=where)
    print(lab.up_output.stdout, end="")
    print(f"(formed in {time.monotonic() - t0:.1f} s)")
    try:
        s = lab.status()
        owner = s["quorum_owner"]
        say(f"kill -9 {owner}, the node that owns the quorum disk")
        print("MSCS would now: miss 6 heartbeats (7.2 s / 10 = 0.72 s), regroup, challenge the disk")
        print("(bus reset, wait 0.7 s, reserve) and bring the quorum online 1.0 s after the challenge began.")
        pid = lab.node(s, owner)["pid"]
        print(f"$ kill -9 {pid}")
        killed = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        s = lab.wait_status("a new quorum owner", lambda s: s["quorum_owner"] not in (None, owner), 60)
        took = time.monotonic() - killed
        print("Timeline, seconds after the kill:")
        timeline(lab, killed)
        print(
            f"\n{s['quorum_owner']} owns the quorum; `wolfpack status` saw the takeover after {took:.2f} s."
        )
        print(lab.cli("status", str(where)).stdout)

        say(f"wolfpack start {owner}: the killed node joins again through the new owner")
        restarted = time.monotonic()
        lab.cli("start", owner)
        timeline(lab, restarted)
        print(lab.cli("status", str(where)).stdout)
    except BaseException:
        lab.close()
        raise
    if args.keep:
        say(f"the cluster keeps running: try `wolfpack status {where}` and `wolfpack log {where}`")
        print(f"stop it with `wolfpack down {where}`")
    else:
        say("wolfpack down")
        lab.close()


if __name__ == "__main__":
    main()
