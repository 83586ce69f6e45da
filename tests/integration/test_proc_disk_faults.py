"""Disk, resource and process faults on real node processes, driven through `wolfpack fault` (issue 4, §2).

Two labs: a 2-node cluster with EVS1 (slow disks, a resource failing N times, a data disk's path lost
on the EVS owner) and a plain 2-node cluster (the quorum owner's path to Q lost, then a crash loop).
Waits poll `status --json` and events.jsonl with deadlines; "nothing happens" is a watched window.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest
from evs_status import Status, online_on

from nodeagent.cli.lab import Lab
from nodeagent.runtime.control_client import request as control_request

pytestmark = pytest.mark.integration

Factory = Callable[..., Lab]

SMTP = "EVS1 SMTP Virtual Server"
SETTLE_S = 40.0
MOVE_S = 20.0  # the move itself takes about 2 s at speed 10 (three quick failed restarts, a challenge)
QUIET_S = 2.0  # 20 s of Windows time at speed 10: several renewals and health checks


def stays(lab: Lab, what: str, pred: Callable[[Status], bool], window_s: float) -> None:
    end = time.monotonic() + window_s
    while time.monotonic() < end:
        s = lab.status()
        assert pred(s), f"{what} no longer holds: {json.dumps(s)[:2000]}"


def test_slow_disks_resource_times_and_a_lost_data_disk_path(lab_factory: Factory) -> None:
    lab = lab_factory(2, "--evs", "1", "--exchange-setup-s", "5")
    s = lab.status()
    assert s["quorum_owner"] == "NODE1" and online_on("NODE1")(s)

    # 1. Slow disks (50 ms an operation on Q and EVS1, for the owner of both): the cluster stays up.
    start = time.monotonic()
    out = lab.cli("fault", "disk", "NODE1", "Q", "--slow-ms", "50", "--json").stdout
    assert json.loads(out)["faults"]["NODE1"] == [{"disk": "Q", "lost": False, "slow_ms": 50.0}]
    lab.cli("fault", "disk", "NODE1", "EVS1", "--slow-ms", "50")

    def all_up(s: Status) -> bool:
        return (
            s["quorum_owner"] == "NODE1"
            and all(n["state"] == "Up" for n in s["nodes"])
            and online_on("NODE1")(s)
            and online_on("NODE1", "Cluster Group")(s)
        )

    stays(lab, "the cluster with slow disks", all_up, QUIET_S)
    assert not lab.events_of("halted", since=start) and not lab.events_of("resource_failed", since=start)
    slowed = lab.events_of("disk_fault", "NODE1", start)
    assert [e["fields"] for e in slowed] == [
        {"disk": "Q", "lost": False, "slow_ms": 50.0},
        {"disk": "EVS1", "lost": False, "slow_ms": 50.0},
    ]
    assert "healed 2 disk faults" in lab.cli("fault", "disk-heal", "NODE1").stdout
    assert len(lab.events_of("disk_healed", "NODE1", start)) == 2

    # 2. A resource that fails twice more after the failure now: restarted in place, three times.
    start = time.monotonic()
    out = lab.cli("fault", "resource", SMTP, "--times", "2").stdout
    assert "FailMode times:2" in out and "made to fail on NODE1" in out

    def smtp_states() -> list[str]:
        return [
            e["fields"]["state"]
            for e in lab.events_of("resource_state", "NODE1", start)
            if e["fields"]["resource"] == SMTP
        ]

    lab.wait_for(
        "three SMTP failures, then Online",
        lambda: smtp_states().count("Failed") == 3 and smtp_states()[-1] == "Online",
        SETTLE_S,
    )
    lab.wait_status("EVS1 Online on NODE1", online_on("NODE1"), SETTLE_S)
    assert not lab.events_of("group_moving", since=start)
    lab.cli("fault", "resource", SMTP, "--none")

    # 3. The EVS owner loses its path to the EVS1 disk: the disk resource fails, the group moves.
    start = time.monotonic()
    lab.cli("fault", "disk", "NODE1", "EVS1", "--lost")
    # Needs the dependents of the failed disk to go offline first (leaves first), then the disk's
    # restarts to fail past RestartThreshold: /work/briefs/procdisk_core_resources.patch (core).
    lab.wait_status("EVS1 Online on NODE2", online_on("NODE2"), MOVE_S)
    failed = [
        e for e in lab.events_of("resource_failed", "NODE1", start) if e["fields"]["resource"] == "EVS1 Disk"
    ]
    assert failed and "path lost" in failed[0]["fields"]["reason"]
    s = lab.status()
    assert online_on("NODE1", "Cluster Group")(s) and s["quorum_owner"] == "NODE1"  # Q is fine
    lab.cli("fault", "disk-heal")


def test_quorum_owner_loses_its_path_then_a_crash_loop(lab_factory: Factory) -> None:
    lab = lab_factory(2)
    owner = lab.status()["quorum_owner"]
    other = next(n for n in ("NODE1", "NODE2") if n != owner)

    # 1. The quorum owner cannot reach Q any more: its renewal fails, it halts (1177), the other wins.
    start = time.monotonic()
    lab.cli("fault", "disk", owner, "Q", "--lost")
    lab.wait_for("the owner to halt", lambda: lab.events_of("halted", owner, start), 15)
    halted = lab.events_of("halted", owner, start)[0]
    assert halted["event_id"] == 1177 and "quorum" in halted["fields"]["reason"]
    lab.wait_status("the other node to own the quorum", lambda s: s["quorum_owner"] == other, 20)
    assert lab.events_of("arbitration_won", other, start)
    listed = control_request(lab.dir / "nodes" / owner / "control.sock", {"op": "faults"}, 5.0)
    assert listed["ok"] and listed["disk"] == [{"disk": "Q", "lost": True, "slow_ms": 0.0}]
    lab.cli("fault", "disk-heal", owner, "Q")

    # 2. Crash loop: the former owner is killed and started twice; each time it is a member again.
    start = time.monotonic()
    out = lab.cli("fault", "crashloop", owner, "--count", "2", "--every-s", "0.2", "--json", timeout=120)
    rounds = json.loads(out.stdout)["rounds"]
    assert [r["round"] for r in rounds] == [1, 2]
    assert all(r["killed_pid"] and r["started_pid"] and r["killed_pid"] != r["started_pid"] for r in rounds)
    assert rounds[1]["killed_pid"] == rounds[0]["started_pid"]
    joined = lab.events_of("cluster_joined", owner, start)
    assert len(joined) >= 2
    s = lab.status()
    assert all(n["state"] == "Up" for n in s["nodes"]) and s["quorum_owner"] == other
