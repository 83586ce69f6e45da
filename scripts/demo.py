"""scripts/demo: an Exchange 2003 virtual server fails over while a client watches (see README)."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from nodeagent.cli.lab import WOLFPACK, Lab

SHOWN = {
    "interface_failed", "regroup_started", "arbitration_started", "arbitration_won", "quorum_online",
    "node_removed", "halted", "cluster_joined", "node_joined", "group_owner", "group_moving",
    "resource_failed", "address_conflict",
}  # fmt: skip


def say(text: str) -> None:
    bold, plain = ("\033[1m", "\033[0m") if sys.stdout.isatty() else ("", "")
    print(f"\n{bold}== {text}{plain}", flush=True)


def timeline(lab: Lab, since: float, node: str | None = None) -> None:
    for e in lab.events():
        if e["mono_s"] < since:
            continue
        online = e["kind"] == "resource_state" and e["fields"].get("state") == "Online"
        if e["kind"] in SHOWN or online:
            if node is not None and e["node"] != node and e["kind"] == "resource_state":
                continue
            tag = f"[{e['event_id']}]" if e["event_id"] else ""
            print(f"  +{e['mono_s'] - since:7.3f}s  {e['node']:<6} {tag:<6} {e['message']}")


def client_lines(proc: subprocess.Popen[str]) -> list[dict[str, Any]]:
    out, _ = proc.communicate(timeout=60)
    return [json.loads(line) for line in out.splitlines() if line.strip().startswith("{")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("dir", nargs="?", default="lab", help="cluster directory (default ./lab)")
    ap.add_argument("--keep", action="store_true", help="leave the cluster running at the end")
    args = ap.parse_args()
    where = Path(args.dir).resolve()

    if (where / "cluster.toml").exists():
        say(f"stopping and clearing an earlier cluster in {where} (its cluster.toml, disks/ and nodes/)")
        Lab.down(where)
        (where / "cluster.toml").unlink()
        for sub in ("disks", "nodes"):
            shutil.rmtree(where / sub, ignore_errors=True)
    say("wolfpack up --nodes 2 --evs 1: two nodes, the quorum disk, MSDTC, Exchange 2003 on each node")
    print("(installed one node at a time, as setup requires) and the virtual server EVS1, online on NODE1.")
    t0 = time.monotonic()
    lab = Lab(2, "--evs", "1", directory=where)
    print(f"(built in {time.monotonic() - t0:.1f} s)")
    try:
        print(lab.cli("status", str(where)).stdout)
        s = lab.status()
        owner = next(g["owner"] for g in s["groups"] if g["name"] == "EVS1")
        pid = lab.node(s, owner)["pid"]

        say("a client talks to EVS1 by name: it resolves the name, then asks the virtual IP every 50 ms")
        command = [*WOLFPACK, "client", "EVS1", "--dir", str(where), "--interval-ms", "50"]
        command += ["--duration-s", "9"]
        client = subprocess.Popen(
            [*command, "--json"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        time.sleep(1.5)  # let the client run against the healthy server first (a pause, not a wait)

        say(f"kill -9 {owner}: the node that owns EVS1 and the quorum disk")
        print(f"$ kill -9 {pid}")
        killed = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        survivor = next(n["name"] for n in s["nodes"] if n["name"] != owner)
        lab.wait_status(
            f"EVS1 online on {survivor}",
            lambda st: any(g["name"] == "EVS1" and g["owner"] == survivor and g["state"] == "Online"
                           for g in st["groups"]),
            60,
        )  # fmt: skip
        print("Timeline, seconds after the kill (every resource coming online on the survivor):")
        timeline(lab, killed, survivor)

        say("what the client saw")
        lines = client_lines(client)
        served = [x for x in lines if x.get("event") == "reply" and x.get("ok")]
        outages = [x for x in lines if x.get("event") == "outage"]
        nodes = []
        for x in served:
            if not nodes or nodes[-1] != x.get("node"):
                nodes.append(x.get("node"))
        summary = next((x for x in lines if x.get("event") == "summary"), {})
        print(f"  replies from: {' -> '.join(str(n) for n in nodes)}")
        for o in outages:
            print(f"  outage: {o.get('length_s')} s, {o.get('node_before')} -> {o.get('node_after')}")
        if summary:
            print(f"  {summary.get('sent')} requests sent, {summary.get('answered')} answered, "
                  f"longest outage {summary.get('longest_outage_s')} s")  # fmt: skip

        say(f"wolfpack start {owner}: it joins again; EVS1 stays on {survivor} (failback is prevented)")
        lab.cli("start", owner)
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
