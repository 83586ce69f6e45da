"""The driver with a scripted fake core: timers, disk round trips, events, membership, failures.

These run on trio's autojump MockClock with the driver's clock set to ``trio.current_time``, so
timer behaviour is exact and instant.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
import trio.testing
from rt_support import FakeCore, write_cluster

from nodeagent.config import Net
from nodeagent.core.effects import DiskOp, DiskOpKind, DiskOutcome, DiskResult, Event, Ready, Send
from nodeagent.core.messages import Leave
from nodeagent.runtime.diskexec import DiskExecutor
from nodeagent.runtime.driver import Driver
from nodeagent.runtime.files import Membership
from nodeagent.runtime.messenger import Inbound
from nodeagent.runtime.node import STOP_BOUND_S, NodeOptions, NodeRuntime, serve_node
from nodeagent.runtime.transport import MemoryNetwork, MemoryTransport
from shareddisk import MemoryDisk


class Sink:
    def __init__(self) -> None:
        self.sends: list[Send] = []
        self.events: list[tuple[Event, float]] = []
        self.memberships: list[Membership] = []

    def send(self, send: Send) -> None:
        self.sends.append(send)

    def write(self, event: Event, mono_s: float) -> object:
        self.events.append((event, mono_s))
        return None


def build(core: FakeCore, sink: Sink, queue: int = 16) -> tuple[Driver, trio.MemorySendChannel[Inbound]]:
    send, recv = trio.open_memory_channel[Inbound](queue)
    driver = Driver(
        core, recv, sends=sink, events=sink, on_membership=sink.memberships.append, now=trio.current_time
    )
    return driver, send


async def test_ticks_at_the_deadline_never_before(autojump_clock: trio.testing.MockClock) -> None:
    core = FakeCore(tick_every_s=0.25)
    sink = Sink()
    driver, _ = build(core, sink)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await nursery.start(driver.run)
            t0 = core.calls[0][1]
            await trio.sleep(1.01)
            nursery.cancel_scope.cancel()
    ticks = [c[1] for c in core.of("tick")]
    assert len(ticks) == 4
    assert ticks == pytest.approx([t0 + 0.25, t0 + 0.5, t0 + 0.75, t0 + 1.0])
    # never early: each tick comes at or after the deadline the previous Ready gave
    previous = t0
    for t in ticks:
        assert t >= previous + 0.25 - 1e-9
        previous = t


async def test_a_new_deadline_rearms_the_waiting_timer(autojump_clock: trio.testing.MockClock) -> None:
    core = FakeCore(start_ready=Ready(next_deadline_s=None))
    sink = Sink()
    driver, inbound = build(core, sink)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await nursery.start(driver.run)
            await trio.sleep(5)
            assert core.of("tick") == []  # no deadline: no ticks
            core.tick_every_s = 0.1  # the next Ready carries a deadline 0.1 s after it
            await inbound.send(Inbound(Net.PRIVATE, 2, 1, Leave(epoch=1)))
            await trio.sleep(0.15)
            nursery.cancel_scope.cancel()
    message_at = core.of("message")[0][1]
    ticks = core.of("tick")
    assert ticks and ticks[0][1] == pytest.approx(message_at + 0.1)


async def test_effects_are_carried_out_in_order(autojump_clock: trio.testing.MockClock) -> None:
    disk = MemoryDisk("Q")
    beat = Leave(epoch=0)
    core = FakeCore(
        start_ready=Ready(
            sends=[Send(Net.PRIVATE, 2, beat), Send(Net.PUBLIC, 3, beat)],
            disk_ops=[DiskOp(op_id=1, disk="Q", kind=DiskOpKind.RESERVE)],
            events=[Event("service_started", None, "started")],
        )
    )
    sink = Sink()
    driver, _ = build(core, sink)
    executor = DiskExecutor("NODE1", lambda name: disk, driver.on_disk_result, in_thread=False)
    driver.disks = executor
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await nursery.start(executor.run)
            await nursery.start(driver.run)
            while not core.of("disk"):
                await trio.sleep(0.01)
            nursery.cancel_scope.cancel()
    assert [(s.net, s.dst) for s in sink.sends] == [(Net.PRIVATE, 2), (Net.PUBLIC, 3)]
    assert [e.kind for e, _ in sink.events] == ["service_started"]
    ((_, _, result),) = core.of("disk")
    assert result == DiskResult(op_id=1, outcome=DiskOutcome.OK)
    assert disk.read_reservation().holder == "NODE1"


async def test_every_disk_op_gets_a_result_even_when_the_queue_is_full(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ops = [DiskOp(op_id=i, disk="Q", kind=DiskOpKind.READ_RESERVATION) for i in range(1, 6)]
    core = FakeCore(start_ready=Ready(disk_ops=ops))
    sink = Sink()
    driver, _ = build(core, sink)
    disk = MemoryDisk("Q")
    executor = DiskExecutor("NODE1", lambda name: disk, driver.on_disk_result, in_thread=False, queue_size=2)
    driver.disks = executor
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await nursery.start(executor.run)
            await nursery.start(driver.run)
            while len(core.of("disk")) < 5:
                await trio.sleep(0.01)
            nursery.cancel_scope.cancel()
    results = [r for _, _, r in core.of("disk") if isinstance(r, DiskResult)]
    assert sorted(r.op_id for r in results) == [1, 2, 3, 4, 5]  # each op answered exactly once
    outcome = {r.op_id: r.outcome for r in results}
    assert outcome[1] is DiskOutcome.OK  # queued (or handed straight to the waiting executor)
    assert outcome[5] is DiskOutcome.UNAVAILABLE  # did not fit: answered by the driver itself


async def test_a_disk_that_cannot_be_opened_answers_unavailable(
    autojump_clock: trio.testing.MockClock,
) -> None:
    core = FakeCore(start_ready=Ready(disk_ops=[DiskOp(op_id=9, disk="Q", kind=DiskOpKind.RESERVE)]))
    sink = Sink()
    driver, _ = build(core, sink)

    def opener(name: str) -> MemoryDisk:
        raise FileNotFoundError(f"disks/{name}.img")

    executor = DiskExecutor("NODE1", opener, driver.on_disk_result, in_thread=True)
    driver.disks = executor
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await nursery.start(executor.run)
            await nursery.start(driver.run)
            while not core.of("disk"):
                await trio.sleep(0.01)
            nursery.cancel_scope.cancel()
    assert core.of("disk")[0][2] == DiskResult(op_id=9, outcome=DiskOutcome.UNAVAILABLE)
    assert executor.failed == 1


async def test_membership_changes_are_recorded_and_stop_exits(autojump_clock: trio.testing.MockClock) -> None:
    core = FakeCore(tick_every_s=0.1)
    sink = Sink()
    driver, _ = build(core, sink)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await nursery.start(driver.run)
            core.epoch, core.members, core.quorum_owner = 4, (1, 2), 1
            driver.set_paused(True)
            driver.set_paused(False)  # the same epoch again: recorded once
            driver.request_stop()
            driver.request_stop()  # idempotent
            assert driver.exited.is_set()
            with trio.fail_after(1):
                await driver.run()  # returns at once: the core is done
    assert sink.memberships == [Membership(epoch=4, members=(1, 2), quorum_owner=1)]
    assert len(core.of("stop")) == 1
    assert sink.events[-1][0].kind == "service_stopped"
    calls = len(core.calls)
    driver.set_paused(True)  # after exit every input is ignored
    assert len(core.calls) == calls


async def test_a_core_exception_stops_the_driver(autojump_clock: trio.testing.MockClock) -> None:
    core = FakeCore(tick_every_s=0.1, fail_on_tick=True)
    driver, _ = build(core, Sink())
    with pytest.RaisesGroup(pytest.RaisesExc(RuntimeError, match="core bug")), trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await nursery.start(driver.run)
    assert driver.exited.is_set()
    assert isinstance(driver.failure, RuntimeError)


async def test_a_stop_the_core_never_finishes_is_bounded(
    short_tmp: Path, autojump_clock: trio.testing.MockClock
) -> None:
    config = write_cluster(short_tmp, number=190, nodes=1, quorum_disk_file=False)
    core = FakeCore(tick_every_s=0.5, stop_exits=False)
    options = NodeOptions(
        transport=MemoryTransport(MemoryNetwork()),
        disk_opener=lambda name: MemoryDisk(name),
        disks_in_thread=False,
        control_socket=False,
        core_factory=lambda *args: core,
        now=trio.current_time,
    )
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            runtime: NodeRuntime = await nursery.start(serve_node, short_tmp, "NODE1", options, config)
            await trio.sleep(1)
            asked = trio.current_time()
            runtime.request_stop()
    assert trio.current_time() - asked == pytest.approx(STOP_BOUND_S, abs=0.01)
    assert runtime.forced_stop
    assert len(core.of("stop")) == 1 and core.of("tick")  # it ran, and was told to stop once
    assert not (runtime.node_dir / "pid").exists()
