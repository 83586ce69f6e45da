"""Link faults on a real cluster: what loss, delay, duplication, reordering, a one-way cut and an
isolated node do to the membership. One 3-node cluster, the harmless faults first (no membership
change while they last), then the ones that make the cluster regroup.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest

from nodeagent.cli.lab import Lab

pytestmark = pytest.mark.integration

Factory = Callable[..., Lab]
NODES = ["NODE1", "NODE2", "NODE3"]


def watch_membership_stable(lab: Lab, epoch: int, since: float, duration_s: float) -> None:
    """Assert no membership change for ``duration_s``, polling the status all along."""
    end = time.monotonic() + duration_s
    while time.monotonic() < end:
        s = lab.status()
        assert s["epoch"] == epoch and set(lab.states(s).values()) == {"Up"}, lab.states(s)
    assert not lab.events_of("regroup_started", since=since)
    assert not lab.events_of("node_removed", since=since)


def counters(lab: Lab, key: str) -> int:
    return sum(sum(n["fault_counters"].get(key, {}).values()) for n in lab.status()["nodes"])


def all_up(lab: Lab) -> Callable[[dict[str, object]], bool]:
    return lambda s: set(lab.states(s).values()) == {"Up"}  # type: ignore[arg-type, unused-ignore]


def test_link_faults_on_a_real_cluster(lab_factory: Factory) -> None:
    lab = lab_factory(3)
    t = lab.config_timing()
    window = 3 * t.node_down_after_s  # give detection three full windows to (wrongly) fire
    epoch = lab.status()["epoch"]

    # 20% loss on every link (each datagram crosses one rule: its sender's, on the way out).
    since = time.monotonic()
    for node in NODES:
        lab.cli("fault", "loss", node, "--pct", "20", "--direction", "out")
    listing = json.loads(lab.cli("fault", "list", "--json").stdout)
    assert [(f["kind"], f["pct"], f["direction"]) for f in listing["faults"]["NODE1"]] == [
        ("loss", 20.0, "out")
    ]
    watch_membership_stable(lab, epoch, since, window)
    assert counters(lab, "fault_drops") > 0
    lab.cli("fault", "heal")

    # Delay with jitter well below the detection window: late heartbeats, no membership change.
    since = time.monotonic()
    delay_ms = t.heartbeat_interval_s * 1000 / 2
    for node in NODES:
        lab.cli("fault", "delay", node, "--ms", f"{delay_ms:g}", "--jitter-ms", f"{delay_ms / 2:g}",
                "--direction", "out")  # fmt: skip
    # Duplication and reordering on top: the core must shrug off copies and overtaken datagrams.
    lab.cli("fault", "dup", "NODE1", "--pct", "50")
    lab.cli("fault", "reorder", "NODE2", "--pct", "30")
    s = lab.status()
    text = lab.cli("status", str(lab.dir)).stdout
    assert "(fault: delay" in text  # the interfaces under a fault are marked
    assert any(f["kind"] == "reorder" and f["delay_ms"] > 0 for f in lab.node(s, "NODE2")["faults"])
    watch_membership_stable(lab, epoch, since, window)
    assert counters(lab, "fault_delayed") > 0 and counters(lab, "fault_duplicated") > 0
    lab.cli("fault", "heal")
    healed = lab.events_of("fault_healed", since=since)
    assert {e["fields"]["kind"] for e in healed} == {"delay", "dup", "reorder"}

    # One-way cut: NODE1's datagrams to NODE2 are dropped; NODE2 stops hearing NODE1 and regroups.
    since = time.monotonic()
    lab.cli("fault", "oneway", "NODE1->NODE2")
    added = lab.events_of("fault_added", since=since)
    assert {(e["node"], e["fields"]["peer"], e["fields"]["direction"]) for e in added} == {
        ("NODE1", "NODE2", "out"),
        ("NODE2", "NODE1", "in"),
    }
    lab.wait_for(
        "a regroup (1126) after the one-way cut", lambda: lab.events_of("regroup_started", since=since)
    )
    lab.cli("fault", "heal")
    lab.wait_status("every node Up after healing the one-way cut", all_up(lab), timeout_s=30)

    # Isolate a node that does not own the quorum: the others remove it (1135); heal: it rejoins.
    owner = lab.status()["quorum_owner"]
    victim = next(n for n in NODES if n != owner)
    since = time.monotonic()
    lab.cli("fault", "isolate", victim)
    removed = lab.wait_for(
        f"{victim} removed (1135)",
        lambda: [e for e in lab.events_of("node_removed", since=since) if e["fields"].get("peer") == victim],
    )
    assert removed[0]["event_id"] == 1135
    # Out of the membership: Down, or Joining once it has halted and its service tries to join again.
    lab.wait_status(f"{victim} out of the membership", lambda s: lab.states(s)[victim] != "Up")
    lab.cli("fault", "heal")
    lab.wait_status(f"{victim} back Up", all_up(lab), timeout_s=30)
