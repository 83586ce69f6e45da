"""Three real cores in one trio run over the in-memory network and a MemoryDisk.

The nodes are the real runtime (driver, messenger, faults, control sockets, event logs, db.json);
only the kernel's UDP and the disk image are replaced.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import trio
from rt_support import agreed, start_killable, wait_until, write_cluster

from nodeagent.runtime.control_client import request
from nodeagent.runtime.eventlog import read_event_file, read_events
from nodeagent.runtime.node import NodeOptions, NodeRuntime
from nodeagent.runtime.transport import MemoryNetwork, MemoryTransport
from shareddisk import MemoryDisk


def events_of(runtime: NodeRuntime, kind: str) -> list[dict[str, Any]]:
    return [r for r in read_event_file(runtime.node_dir / "events.jsonl") if r["kind"] == kind]


async def control(runtime: NodeRuntime, obj: dict[str, Any]) -> dict[str, Any]:
    return await trio.to_thread.run_sync(request, runtime.control_path, obj, 5.0)


async def test_three_nodes_form_ride_out_a_cut_link_and_remove_a_dead_node(short_tmp: Path) -> None:
    config = write_cluster(short_tmp, number=191, nodes=3, quorum_disk_file=False)
    network = MemoryNetwork()
    disk = MemoryDisk("Q")
    options = NodeOptions(
        transport=MemoryTransport(network), disk_opener=lambda name: disk, disks_in_thread=False
    )
    timing = config.timing
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nodes = [await start_killable(nursery, short_tmp, f"NODE{i}", options, config) for i in (1, 2, 3)]
            n1, n2, n3 = (k.runtime for k in nodes)
            everyone = [n1, n2, n3]

            # -- form: one cluster, one epoch, the quorum disk reserved by its owner
            await wait_until(agreed(everyone, (1, 2, 3)), 10 + timing.join_timeout_s, "the cluster to form")
            first = n1.driver.snapshot()
            owner = first.quorum_owner
            assert owner in (1, 2, 3)
            assert disk.read_reservation().holder == f"NODE{owner}"
            assert sum(len(events_of(n, "cluster_formed")) for n in everyone) == 1
            for n in everyone:
                assert json.loads((n.node_dir / "db.json").read_text())["epoch"] == first.epoch

            # -- cut NODE2's private link to everyone: heartbeats still flow on public (role ALL),
            #    so the membership holds, but the private interfaces fail (1123) and come back (1122)
            reply = await control(n2, {"op": "fault_cut", "net": "private", "peer": None})
            assert reply == {"ok": True, "faults": [{"kind": "cut", "net": "private", "peer": None}]}

            def private_failed() -> bool:
                views = {(i.peer, i.net): i.state.value for i in n2.driver.snapshot().interfaces}
                return views[(1, "private")] == views[(3, "private")] == "Failed"

            await wait_until(private_failed, 5, "NODE2's private interfaces to fail")
            assert {e["fields"].get("peer") for e in events_of(n2, "interface_failed")} >= {"NODE1", "NODE3"}
            await wait_until(
                lambda: any(
                    e["fields"].get("peer") in (2, "NODE2") for e in events_of(n1, "interface_failed")
                ),
                5,
                "NODE1 to log 1123 for NODE2",
            )
            status = (await control(n2, {"op": "status"}))["node"]
            assert status["fault_drops"]["out"] > 0 and status["fault_drops"]["in"] > 0
            assert status["faults"] == [{"kind": "cut", "net": "private", "peer": None}]
            views = {(i["peer"], i["net"]): i["state"] for i in status["interfaces"]}
            assert views[(1, "private")] == "Failed" and views[(1, "public")] == "Up"
            assert agreed(everyone, (1, 2, 3))() and n2.driver.snapshot().epoch == first.epoch
            assert await control(n2, {"op": "fault_heal"}) == {"ok": True, "removed": 1}
            await wait_until(lambda: events_of(n2, "interface_up"), 5, "NODE2 to log 1122")

            # -- pause and resume through the console: cluster state, replicated by the quorum owner
            assert await control(n3, {"op": "pause"}) == {"ok": True}
            await wait_until(lambda: n3.driver.snapshot().paused, 5, "NODE3 to be paused")
            assert all(n.driver.snapshot().node_states[3].value == "Paused" for n in everyone)
            assert await control(n3, {"op": "resume"}) == {"ok": True}
            await wait_until(lambda: not n3.driver.snapshot().paused, 5, "NODE3 to be resumed")

            # -- kill a node that does not own the quorum: the others remove it
            victim = next(k for k in nodes if k.runtime.node_id != owner)
            survivors = [n for n in everyone if n is not victim.runtime]
            victim.kill()
            await wait_until(
                agreed(survivors, tuple(n.node_id for n in survivors)),
                10 + timing.node_down_after_s,
                "the survivors to remove the dead node",
            )
            second = survivors[0].driver.snapshot()
            assert second.epoch > first.epoch
            for n in survivors:
                removed = events_of(n, "node_removed")
                assert removed and removed[-1]["event_id"] == 1135
                assert json.loads((n.node_dir / "db.json").read_text())["epoch"] == second.epoch
            for n in survivors:
                n.request_stop()

    # the merged timeline tells the story in order
    kinds = [r["kind"] for r in read_events(n.node_dir / "events.jsonl" for n in everyone)]
    assert kinds.index("cluster_formed") < kinds.index("interface_failed") < kinds.index("node_removed")
    for n in survivors:
        assert not (n.node_dir / "pid").exists()  # clean exits
    assert (victim.runtime.node_dir / "pid").exists()  # the killed one left its pid file, like a crash


async def test_killing_the_quorum_owner_moves_the_quorum_disk(short_tmp: Path) -> None:
    config = write_cluster(short_tmp, number=192, nodes=3, quorum_disk_file=False)
    disk = MemoryDisk("Q")
    options = NodeOptions(
        transport=MemoryTransport(MemoryNetwork()), disk_opener=lambda name: disk, disks_in_thread=False
    )
    with trio.fail_after(40):
        async with trio.open_nursery() as nursery:
            nodes = [await start_killable(nursery, short_tmp, f"NODE{i}", options, config) for i in (1, 2, 3)]
            everyone = [k.runtime for k in nodes]
            await wait_until(agreed(everyone, (1, 2, 3)), 15, "the cluster to form")
            owner = everyone[0].driver.snapshot().quorum_owner
            victim = next(k for k in nodes if k.runtime.node_id == owner)
            survivors = [k.runtime for k in nodes if k is not victim]
            victim.kill()
            await wait_until(
                lambda: (
                    agreed(survivors, tuple(n.node_id for n in survivors))()
                    and survivors[0].driver.snapshot().quorum_owner != owner
                ),
                20,
                "the survivors to take over the quorum",
            )
            new_owner = survivors[0].driver.snapshot().quorum_owner
            assert disk.read_reservation().holder == f"NODE{new_owner}"
            holder = next(n for n in survivors if n.node_id == new_owner)
            await wait_until(lambda: holder.driver.snapshot().holds_quorum, 10, "the new owner's lease")
            assert events_of(holder, "arbitration_won")
            for n in survivors:
                n.request_stop()
