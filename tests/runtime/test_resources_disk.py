"""Physical Disk on a file-backed shared disk: challenge, defense, release, a dead owner, the quorum disk."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio
from test_resources_kit import Harness, make_config

from nodeagent.config import ClusterConfig
from nodeagent.runtime.resources.monitor import ResourceMonitor
from shareddisk import FileDisk, Outcome, ReservationConflict, create_disk

DISK = "Physical Disk"


@dataclass
class Pair:
    config: ClusterConfig
    root: Path
    node1: Harness
    node2: Harness
    nursery: trio.Nursery

    def image(self, name: str) -> Path:
        return self.root / "disks" / f"{name}.img"


@pytest.fixture
async def pair(short_tmp: Path) -> AsyncIterator[Pair]:
    (short_tmp / "disks").mkdir()
    for name in ("DATA", "Q"):
        create_disk(short_tmp / "disks" / f"{name}.img", size_bytes=1 << 20).close()
    config = make_config()
    async with trio.open_nursery() as nursery:
        m1 = ResourceMonitor(config, "NODE1", cluster_dir=short_tmp)
        m2 = ResourceMonitor(config, "NODE2", cluster_dir=short_tmp)
        await nursery.start(m1.run)
        await nursery.start(m2.run)
        yield Pair(config, short_tmp, Harness(m1), Harness(m2), nursery)
        nursery.cancel_scope.cancel()


def holder(path: Path) -> str | None:
    disk = FileDisk.open(path)
    try:
        return disk.read_reservation().holder
    finally:
        disk.close()


async def test_the_owner_defends_and_the_other_node_gets_the_disk_once_released(pair: Pair) -> None:
    with trio.fail_after(10):
        t = pair.config.timing
        first = await pair.node1.do("Disk D:", DISK, "online", {"Disk": "DATA"})
        assert first.ok and first.detail == "disk DATA reserved"
        assert holder(pair.image("DATA")) == "NODE1"
        began = trio.current_time()
        second = await pair.node2.do("Disk D:", DISK, "online", {"Disk": "DATA"})
        assert not second.ok and second.detail == "disk DATA is defended by NODE1"
        assert trio.current_time() - began >= t.challenge_wait_s  # it challenged, and lost
        assert holder(pair.image("DATA")) == "NODE1"
        assert (await pair.node1.do("Disk D:", DISK, "looks_alive")).ok
        assert (await pair.node1.do("Disk D:", DISK, "is_alive")).ok
        fenced = FileDisk.open(pair.image("DATA"))
        with pytest.raises(ReservationConflict):
            fenced.write_block("NODE2", 1, b"x" * fenced.block_size)
        fenced.close()

        assert (await pair.node1.do("Disk D:", DISK, "offline")).ok
        assert holder(pair.image("DATA")) is None
        began = trio.current_time()
        third = await pair.node2.do("Disk D:", DISK, "online", {"Disk": "DATA"})
        assert third.ok and third.detail == "disk DATA reserved"
        assert trio.current_time() - began < t.challenge_wait_s  # a free disk needs no challenge
        assert holder(pair.image("DATA")) == "NODE2"
        assert (await pair.node2.do("Disk D:", DISK, "terminate")).ok
        assert holder(pair.image("DATA")) is None


async def test_a_crashed_owner_loses_the_disk_to_a_challenge(pair: Pair) -> None:
    with trio.fail_after(10):
        crasher = ResourceMonitor(pair.config, "NODE3", cluster_dir=pair.root)
        async with trio.open_nursery() as node3:
            await node3.start(crasher.run)
            assert (await Harness(crasher).do("Disk D:", DISK, "online", {"Disk": "DATA"})).ok
            node3.cancel_scope.cancel()  # NODE3 dies: its monitor is gone, no offline ran
        assert holder(pair.image("DATA")) == "NODE3"  # a dead host does not release its reservation
        won = await pair.node2.do("Disk D:", DISK, "online", {"Disk": "DATA"})
        assert won.ok and won.detail == "disk DATA reserved after a challenge (was held by NODE3)"
        assert holder(pair.image("DATA")) == "NODE2"
        assert (await pair.node2.do("Disk D:", DISK, "offline")).ok


@pytest.mark.parametrize("after_fence", [False, True])
async def test_after_a_fence_the_challenge_does_not_wait(pair: Pair, after_fence: bool) -> None:
    # The cluster service sets AfterFence when it took the group from a lost node after that node's fence:
    # the holder cannot defend any more, so the wait of the challenge would only repeat the fence.
    with trio.fail_after(10):
        wait = pair.config.timing.challenge_wait_s
        crasher = ResourceMonitor(pair.config, "NODE3", cluster_dir=pair.root)
        async with trio.open_nursery() as node3:
            await node3.start(crasher.run)
            assert (await Harness(crasher).do("Disk D:", DISK, "online", {"Disk": "DATA"})).ok
            node3.cancel_scope.cancel()
        began = trio.current_time()
        props = {"Disk": "DATA", "AfterFence": True} if after_fence else {"Disk": "DATA"}
        won = await pair.node2.do("Disk D:", DISK, "online", props)
        took = trio.current_time() - began
        assert won.ok and holder(pair.image("DATA")) == "NODE2"
        assert (took < wait) if after_fence else (took >= wait)
        assert (await pair.node2.do("Disk D:", DISK, "offline")).ok


async def test_a_lost_reservation_fails_the_resource(pair: Pair) -> None:
    with trio.fail_after(10):
        assert (await pair.node1.do("Disk D:", DISK, "online", {"Disk": "DATA"})).ok
        intruder = FileDisk.open(pair.image("DATA"))
        try:
            with trio.fail_after(2):  # steal it between two renewals (the defender renews every 50 ms)
                while True:
                    intruder.reset("INTRUDER")
                    if intruder.reserve("INTRUDER") is Outcome.OK:
                        break
                    await trio.sleep(0)
            failed = await pair.node1.failed("Disk D:")
            assert failed.detail == "disk DATA: reservation lost to INTRUDER"
            assert pair.node1.monitor.state_of("Disk D:") == "Failed"
            assert not (await pair.node1.do("Disk D:", DISK, "looks_alive")).ok
            assert holder(pair.image("DATA")) == "INTRUDER"  # the failed owner did not release it
        finally:
            intruder.release("INTRUDER")
            intruder.close()


async def test_the_quorum_disk_is_left_to_the_cluster_service(pair: Pair) -> None:
    with trio.fail_after(10):
        arbiter = FileDisk.open(pair.image("Q"))  # stands for NODE1's quorum arbiter
        try:
            assert arbiter.reserve("NODE1") is Outcome.OK
            mine = await pair.node1.do("Disk Q:", DISK, "online", {"Disk": "Q"})
            assert mine.ok and "held by this node's cluster service" in mine.detail
            assert (await pair.node1.do("Disk Q:", DISK, "looks_alive")).ok
            theirs = await pair.node2.do("Disk Q:", DISK, "online", {"Disk": "Q"})
            assert not theirs.ok and theirs.detail == "quorum disk Q is held by NODE1, not NODE2"
            assert (await pair.node1.do("Disk Q:", DISK, "offline")).ok
            assert holder(pair.image("Q")) == "NODE1"  # not released: the core does that
        finally:
            arbiter.release("NODE1")
            arbiter.close()


async def test_missing_or_bad_disks_fail_the_online(pair: Pair) -> None:
    with trio.fail_after(5):
        missing = await pair.node1.do("Disk X:", DISK, "online", {"Disk": "NOPE"})
        assert not missing.ok and missing.detail.startswith("disk NOPE is unavailable")
        bad = await pair.node1.do("Disk Y:", DISK, "online", {"Disk": "../etc"})
        assert not bad.ok and "letters and digits" in bad.detail
        unset = await pair.node1.do("Disk Z:", DISK, "online", {})
        assert not unset.ok and unset.detail == "private property Disk is not set"
