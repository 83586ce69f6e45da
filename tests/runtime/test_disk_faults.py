"""Disk faults in-process: the disk executor, Physical Disk resources, and real cores on a MemoryDisk.

A lost path fails every I/O of that node on that disk (the others still see it); a slow disk delays
each operation. The cluster reacts as MSCS does: a data disk's resource fails and a challenger wins
it; a quorum owner that cannot renew halts and a survivor takes the quorum.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio
from rt_support import agreed, start_killable, wait_until, write_cluster
from test_resources_kit import Harness, make_config

from nodeagent.config import ClusterConfig
from nodeagent.core.effects import DiskOp, DiskOpKind, DiskOutcome, DiskResult
from nodeagent.runtime.control_client import request
from nodeagent.runtime.diskexec import DiskExecutor, file_disk_opener
from nodeagent.runtime.diskfaults import DiskFaultTable, faulty_opener, make_fault
from nodeagent.runtime.eventlog import read_event_file
from nodeagent.runtime.node import NodeOptions, NodeRuntime
from nodeagent.runtime.resources.monitor import ResourceMonitor
from nodeagent.runtime.transport import MemoryNetwork, MemoryTransport
from shareddisk import FileDisk, MemoryDisk, create_disk

DISK = "Physical Disk"


# -- the disk executor ------------------------------------------------------------------------------------


@pytest.mark.parametrize("in_thread", [False, True])
async def test_executor_answers_unavailable_while_lost_and_waits_while_slow(in_thread: bool) -> None:
    disk = MemoryDisk("Q")
    table = DiskFaultTable()
    results: list[DiskResult] = []
    executor = DiskExecutor(
        "NODE1", faulty_opener(lambda name: disk, table), results.append, in_thread=in_thread, faults=table
    )

    async def run(op: DiskOp) -> tuple[DiskResult, float]:
        began = trio.current_time()
        assert executor.submit(op)
        with trio.fail_after(5):
            while not results or results[-1].op_id != op.op_id:
                await trio.sleep(0.001)
        return results[-1], trio.current_time() - began

    async with trio.open_nursery() as nursery:
        await nursery.start(executor.run)
        first, _ = await run(DiskOp(1, "Q", DiskOpKind.RESERVE))
        assert first.outcome is DiskOutcome.OK and disk.read_reservation().holder == "NODE1"
        table.set(make_fault("Q", lost=True))
        lost, _ = await run(DiskOp(2, "Q", DiskOpKind.RELEASE))
        assert lost.outcome is DiskOutcome.UNAVAILABLE
        assert disk.read_reservation().holder == "NODE1"  # the release never reached the disk
        table.set(make_fault("Q", slow_ms=120))
        slow, took = await run(DiskOp(3, "Q", DiskOpKind.READ_RESERVATION))
        assert slow.outcome is DiskOutcome.OK and slow.holder == "NODE1" and took >= 0.12
        table.heal("Q")
        fast, took = await run(DiskOp(4, "Q", DiskOpKind.READ_RESERVATION))
        assert fast.outcome is DiskOutcome.OK and took < 0.1
        nursery.cancel_scope.cancel()
    executor.close()


async def test_a_slow_executor_never_blocks_the_event_loop() -> None:
    disk = MemoryDisk("Q")
    table = DiskFaultTable()
    table.set(make_fault("Q", slow_ms=300))
    results: list[DiskResult] = []
    executor = DiskExecutor("NODE1", faulty_opener(lambda n: disk, table), results.append, faults=table)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await trio.sleep(0.01)
            ticks += 1

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            await nursery.start(executor.run)
            nursery.start_soon(ticker)
            executor.submit(DiskOp(1, "Q", DiskOpKind.RESERVE))
            await wait_until(lambda: bool(results), 3, "the slow reserve")
            assert ticks >= 10  # the loop ran on while the worker thread waited
            nursery.cancel_scope.cancel()
    executor.close()


# -- Physical Disk resources ---------------------------------------------------------------------------------


@dataclass
class Pair:
    config: ClusterConfig
    root: Path
    node1: Harness
    node2: Harness
    faults1: DiskFaultTable

    def holder(self, name: str) -> str | None:
        disk = FileDisk.open(self.root / "disks" / f"{name}.img")
        try:
            return disk.read_reservation().holder
        finally:
            disk.close()


@pytest.fixture
async def pair(short_tmp: Path) -> AsyncIterator[Pair]:
    (short_tmp / "disks").mkdir()
    create_disk(short_tmp / "disks" / "DATA.img", size_bytes=1 << 20).close()
    config = make_config()
    faults1 = DiskFaultTable()
    m1 = ResourceMonitor(
        config, "NODE1", disk_opener=faulty_opener(file_disk_opener(short_tmp / "disks"), faults1)
    )
    m1.host.disk_faults = faults1
    m2 = ResourceMonitor(config, "NODE2", cluster_dir=short_tmp)
    async with trio.open_nursery() as nursery:
        await nursery.start(m1.run)
        await nursery.start(m2.run)
        yield Pair(config, short_tmp, Harness(m1), Harness(m2), faults1)
        nursery.cancel_scope.cancel()


async def test_a_lost_path_fails_the_disk_resource_and_the_other_node_wins_the_challenge(pair: Pair) -> None:
    with trio.fail_after(10):
        assert (await pair.node1.do("Disk D:", DISK, "online", {"Disk": "DATA"})).ok
        pair.faults1.set(make_fault("data", lost=True))
        failed = await pair.node1.failed("Disk D:")
        assert failed.detail.startswith("disk DATA: renewal failed: disk DATA is unavailable: path lost")
        assert pair.node1.monitor.state_of("Disk D:") == "Failed"
        assert pair.holder("DATA") == "NODE1"  # NODE1 could not even release it
        again = await pair.node1.do("Disk D:", DISK, "online", {"Disk": "DATA"})
        assert not again.ok and "path lost" in again.detail  # the restart fails on this node too
        won = await pair.node2.do("Disk D:", DISK, "online", {"Disk": "DATA"})
        assert won.ok and "after a challenge (was held by NODE1)" in won.detail
        assert pair.holder("DATA") == "NODE2"
        pair.faults1.heal(None)
        lost = await pair.node1.do("Disk D:", DISK, "online", {"Disk": "DATA"})
        assert not lost.ok and lost.detail == "disk DATA is defended by NODE2"  # healed: a fair fight
        assert (await pair.node2.do("Disk D:", DISK, "offline")).ok


async def test_a_slow_disk_slows_the_resource_but_it_stays_online(pair: Pair) -> None:
    with trio.fail_after(10):
        pair.faults1.set(make_fault("DATA", slow_ms=40))  # the renewal every 50 ms now takes 40 ms more
        began = trio.current_time()
        assert (await pair.node1.do("Disk D:", DISK, "online", {"Disk": "DATA"})).ok
        assert trio.current_time() - began >= 0.08  # open + reserve, each 40 ms later
        await trio.sleep(0.5)  # ten renewal intervals: the lease (0.3 s) must hold throughout
        assert pair.node1.monitor.state_of("Disk D:") == "Online"
        assert not [r for r in pair.node1.reports if r.action == "failed"]
        assert (await pair.node1.do("Disk D:", DISK, "is_alive")).ok
        assert (await pair.node1.do("Disk D:", DISK, "offline")).ok
        assert pair.holder("DATA") is None


# -- real cores: the quorum owner loses its path to Q --------------------------------------------------------


def events_of(runtime: NodeRuntime, kind: str) -> list[dict[str, Any]]:
    return [r for r in read_event_file(runtime.node_dir / "events.jsonl") if r["kind"] == kind]


async def control(runtime: NodeRuntime, obj: dict[str, Any]) -> dict[str, Any]:
    return await trio.to_thread.run_sync(request, runtime.control_path, obj, 5.0)


async def test_quorum_owner_that_loses_its_path_halts_and_a_survivor_takes_the_quorum(
    short_tmp: Path,
) -> None:
    config = write_cluster(short_tmp, number=193, nodes=3, quorum_disk_file=False)
    disk = MemoryDisk("Q")
    options = NodeOptions(
        transport=MemoryTransport(MemoryNetwork()), disk_opener=lambda name: disk, disks_in_thread=False
    )
    with trio.fail_after(45):
        async with trio.open_nursery() as nursery:
            nodes = [
                (await start_killable(nursery, short_tmp, f"NODE{i}", options, config)).runtime
                for i in (1, 2, 3)
            ]
            await wait_until(agreed(nodes), 15, "the cluster to form")
            owner_id = nodes[0].driver.snapshot().quorum_owner
            owner = next(n for n in nodes if n.node_id == owner_id)
            others = [n for n in nodes if n is not owner]

            # A slow quorum disk (50 ms an operation, renewals every 0.3 s): nothing changes.
            reply = await control(owner, {"op": "disk_fault", "disk": "Q", "slow_ms": 50})
            assert reply == {"ok": True, "disk": [{"disk": "Q", "lost": False, "slow_ms": 50.0}]}
            epoch = owner.driver.snapshot().epoch
            done = owner.executor.done
            await trio.sleep(4 * config.timing.quorum_renew_interval_s)
            assert agreed(nodes)() and owner.driver.snapshot().epoch == epoch
            assert owner.driver.snapshot().holds_quorum and owner.executor.done > done
            assert not events_of(owner, "halted")
            assert (await control(owner, {"op": "disk_heal", "disk": "q"}))["removed"] == 1

            # The path is lost: the next renewal fails, the owner halts, a survivor wins the challenge.
            await control(owner, {"op": "disk_fault", "disk": "Q", "lost": True})
            listing = await control(owner, {"op": "faults"})
            assert listing["disk"] == [{"disk": "Q", "lost": True, "slow_ms": 0.0}]
            await wait_until(lambda: bool(events_of(owner, "halted")), 5, "the owner to halt")
            halted = events_of(owner, "halted")[0]
            assert halted["event_id"] == 1177 and "lost the quorum disk" in halted["fields"]["reason"]
            await wait_until(
                lambda: agreed(others)() and others[0].driver.snapshot().quorum_owner != owner_id,
                20,
                "a survivor to take the quorum",
            )
            new_owner = others[0].driver.snapshot().quorum_owner
            assert disk.read_reservation().holder == f"NODE{new_owner}"

            # Healed, the old owner rejoins as an ordinary member.
            assert (await control(owner, {"op": "disk_heal", "disk": None}))["removed"] == 1
            await wait_until(agreed(nodes), 20, "the old owner to rejoin")
            assert nodes[0].driver.snapshot().quorum_owner == new_owner
            kinds = [e["kind"] for e in read_event_file(owner.node_dir / "events.jsonl")]
            assert kinds.count("disk_fault") == 2 and kinds.count("disk_healed") == 2
            fault_event = events_of(owner, "disk_fault")[1]
            assert fault_event["fields"] == {"disk": "Q", "lost": True, "slow_ms": 0.0}
            for n in nodes:
                n.request_stop()


# -- resource faults (FailMode of the emulated services) -----------------------------------------------------


async def test_failmode_times_n_fails_n_onlines_and_failarm_rearms_it() -> None:
    monitor = ResourceMonitor(make_config(), "NODE1")
    h = Harness(monitor)
    smtp = "SMTP Virtual Server Instance"
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(monitor.run)

            async def outcomes(props: dict[str, Any], n: int) -> list[bool]:
                return [(await h.do("SMTP", smtp, "online", props)).ok for _ in range(n)]

            props: dict[str, Any] = {"StartupTime": 0.0, "FailMode": "times:2", "FailArm": "a"}
            first = await h.do("SMTP", smtp, "online", props)
            assert not first.ok and first.detail == "service SMTP failed to start (FailMode times:2)"
            assert await outcomes(props, 3) == [False, True, True]
            assert await outcomes({**props, "FailArm": "b"}, 3) == [False, False, True]  # re-armed
            assert await outcomes({**props, "FailMode": "once", "FailArm": "b"}, 2) == [False, True]
            assert await outcomes({**props, "FailMode": "forever"}, 2) == [False, False]
            assert await outcomes({**props, "FailMode": "none"}, 1) == [True]
            assert await outcomes(props, 3) == [False, False, True]  # none in between re-arms too
            bad = await h.do("SMTP", smtp, "online", {**props, "FailMode": "times:0"})
            assert not bad.ok and "times:N needs N from 1 to 1000" in bad.detail
            nursery.cancel_scope.cancel()


async def test_failmode_hang_stays_online_pending_until_terminated() -> None:
    monitor = ResourceMonitor(make_config(), "NODE1")
    h = Harness(monitor)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(monitor.run)
            online = h.act("IS", "Microsoft Exchange Information Store", "online", {"FailMode": "hang"})
            await trio.sleep(0.2)  # a window in which nothing may happen
            assert monitor.state_of("IS") == "Online Pending" and not h.reports
            # The core's PendingTimeout ends it with terminate (core/resources.py _check_deadline).
            assert (await h.do("IS", "Microsoft Exchange Information Store", "terminate")).ok
            assert not (await h.report(online)).ok
            nursery.cancel_scope.cancel()
