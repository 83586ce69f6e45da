"""Real node processes, driven as a user would: `wolfpack up`, kill, freeze, cut, status, events.

Bounds are generous on purpose (a busy 2-core CI machine): exact timings are measured by
scripts/bench, not asserted here.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import psutil
import pytest

from nodeagent.cli.lab import Lab

pytestmark = pytest.mark.integration

Factory = Callable[..., Lab]


def all_up(lab: Lab, names: list[str]) -> Callable[[dict[str, object]], bool]:
    def pred(s: dict[str, object]) -> bool:
        states = lab.states(s)  # type: ignore[arg-type]
        return all(states[n] == "Up" for n in names)

    return pred


def test_three_nodes_come_up(lab_factory: Factory) -> None:
    lab = lab_factory(3)
    s = lab.status()
    assert lab.states(s) == {"NODE1": "Up", "NODE2": "Up", "NODE3": "Up"}
    assert s["quorum_owner"] in ("NODE1", "NODE2", "NODE3")
    assert s["epoch"] >= 1
    for n in s["nodes"]:
        assert n["pid"] and n["control"] == "ok" and n["rss_bytes"] > 0
        assert n["private_ip"] == f"127.{s['cluster']['number']}.1.{n['id']}"
    formed = lab.events_of("cluster_formed")
    assert len(formed) == 1 and formed[0]["event_id"] == 1061
    assert len(lab.events_of("cluster_joined")) == 2


def test_kill_non_owner_is_detected_within_bound(lab_factory: Factory) -> None:
    lab = lab_factory(3)
    owner = lab.status()["quorum_owner"]
    victim = next(n for n in ("NODE1", "NODE2", "NODE3") if n != owner)
    killed_at = time.monotonic()
    lab.cli("kill", victim)
    removed = lab.wait_for(
        "the survivors to remove the victim",
        lambda: [e for e in lab.events_of("node_removed", since=killed_at) if e["fields"]["peer"] == victim],
    )
    t = lab.config_timing()
    detected = [e for e in lab.events_of("regroup_started", since=killed_at)]
    assert detected and all(e["event_id"] == 1126 for e in detected)
    delay = detected[0]["mono_s"] - killed_at
    # The configured bound is node_down_after_s (0.72 s at speed 10) after the last heartbeat.
    assert t.node_down_after_s - t.heartbeat_interval_s <= delay <= t.node_down_after_s + 2.0
    assert removed[0]["event_id"] == 1135
    s = lab.wait_status("victim Down", lambda s: lab.states(s)[victim] == "Down")
    assert s["quorum_owner"] == owner


def test_kill_quorum_owner_leaves_exactly_one_owner(lab_factory: Factory) -> None:
    lab = lab_factory(3)
    owner = lab.status()["quorum_owner"]
    lab.cli("kill", owner)
    survivors = [n for n in ("NODE1", "NODE2", "NODE3") if n != owner]
    s = lab.wait_status(
        "a survivor to own the quorum",
        lambda s: s["quorum_owner"] in survivors and lab.states(s)[owner] == "Down",
    )
    won = lab.events_of("arbitration_won")
    assert won[-1]["node"] == s["quorum_owner"]
    # The disk's SCSI-2 holder is the new owner, and only it holds quorum.
    show = lab.cli("disk", "show", "Q", "--json").stdout
    assert s["quorum_owner"] in show
    holders = [n for n in s["nodes"] if n.get("holds_quorum")]
    assert len(holders) <= 1


def test_private_link_cut_changes_no_membership(lab_factory: Factory) -> None:
    lab = lab_factory(3)
    epoch = lab.status()["epoch"]
    cut_at = time.monotonic()
    lab.cli("fault", "cut", "NODE1", "NODE2", "--net", "private")
    lab.wait_for(
        "interface 1123 events",
        lambda: [
            e for e in lab.events_of("interface_failed", since=cut_at) if e["fields"]["net"] == "private"
        ],
    )
    # Give detection three full windows to (wrongly) fire, watching the status all along.
    t = lab.config_timing()
    end = time.monotonic() + 3 * t.node_down_after_s
    while time.monotonic() < end:
        s = lab.status()
        assert s["epoch"] == epoch and set(lab.states(s).values()) == {"Up"}
    assert not lab.events_of("regroup_started", since=cut_at)
    lab.cli("fault", "heal")
    lab.wait_for("interface 1122 events", lambda: lab.events_of("interface_up", since=cut_at))


def test_total_cut_between_two_nodes_one_keeps_quorum_other_halts_then_rejoins(lab_factory: Factory) -> None:
    lab = lab_factory(2)
    owner = lab.status()["quorum_owner"]
    other = "NODE2" if owner == "NODE1" else "NODE1"
    cut_at = time.monotonic()
    lab.cli("fault", "cut", "NODE1", "NODE2", "--net", "all")
    halted = lab.wait_for("the other node to halt (1177)", lambda: lab.events_of("halted", other, cut_at))
    assert halted[0]["event_id"] == 1177
    assert not lab.events_of("halted", owner, cut_at)
    s = lab.status()
    assert s["quorum_owner"] == owner
    lab.cli("fault", "heal")
    lab.wait_status("both nodes Up again", all_up(lab, ["NODE1", "NODE2"]))


def test_frozen_owner_is_replaced_and_halts_after_thaw(lab_factory: Factory) -> None:
    lab = lab_factory(3)
    owner = lab.status()["quorum_owner"]
    frozen_at = time.monotonic()
    lab.cli("freeze", owner)
    s = lab.wait_status("a challenger to take over", lambda s: s["quorum_owner"] not in (None, owner))
    new_owner = s["quorum_owner"]
    assert lab.events_of("arbitration_won", new_owner, frozen_at)
    thawed_at = time.monotonic()
    lab.cli("thaw", owner)
    halted = lab.wait_for("the old owner to halt", lambda: lab.events_of("halted", owner, thawed_at))
    assert halted[0]["event_id"] == 1177
    # It does not fight: the new owner keeps the quorum, and the old one rejoins as a member.
    s = lab.wait_status("everyone Up again", all_up(lab, ["NODE1", "NODE2", "NODE3"]))
    assert s["quorum_owner"] == new_owner
    assert not lab.events_of("arbitration_won", owner, frozen_at)


def test_killed_node_started_again_rejoins(lab_factory: Factory) -> None:
    lab = lab_factory(3)
    lab.cli("kill", "NODE3")
    lab.wait_status("NODE3 Down", lambda s: lab.states(s)["NODE3"] == "Down")
    lab.cli("start", "NODE3")
    s = lab.wait_status("NODE3 back", all_up(lab, ["NODE1", "NODE2", "NODE3"]))
    assert lab.node(s, "NODE3")["incarnation"] == 2


def test_majority_node_set_survives_one_loss_not_two(lab_factory: Factory) -> None:
    lab = lab_factory(3, "--quorum", "majority")
    assert not (lab.dir / "disks" / "Q.img").exists()
    lab.cli("kill", "NODE3")
    lab.wait_status("NODE3 Down, majority kept", lambda s: lab.states(s)["NODE3"] == "Down")
    s = lab.status()
    assert lab.states(s)["NODE1"] == "Up" and lab.states(s)["NODE2"] == "Up"
    killed_at = time.monotonic()
    lab.cli("kill", "NODE2")
    halted = lab.wait_for(
        "NODE1 to halt without a majority", lambda: lab.events_of("halted", "NODE1", killed_at)
    )
    assert "Majority Node Set" in halted[0]["fields"]["reason"]


def test_cli_rejects_bad_input_and_leaves_nothing_behind(lab_factory: Factory) -> None:
    lab = lab_factory(2)
    assert lab.cli("kill", "NODE9", check=False).returncode != 0
    again = lab.cli("start", "NODE1", check=False)
    assert again.returncode != 0 and "running" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1
    pids = {n["pid"] for n in lab.status()["nodes"]}
    lab.cli("down", str(lab.dir))
    for pid in pids:
        assert not running(pid), f"pid {pid} is still running after down"


def running(pid: int) -> bool:
    # An orphaned node may linger as a zombie until init reaps it: that is not running.
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
