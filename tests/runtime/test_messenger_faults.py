"""The messenger obeys delay, duplication and reordering verdicts both ways (memory transport)."""

from __future__ import annotations

import random
import secrets

import trio
from rt_support import wait_until

from nodeagent.config import ClusterConfig, Net, default_config_dict
from nodeagent.core.effects import Send
from nodeagent.core.messages import Leave
from nodeagent.runtime.faults import Direction, Fault, FaultKind, FaultTable, NetSelector
from nodeagent.runtime.messenger import Inbound, Messenger
from nodeagent.runtime.transport import MemoryNetwork, MemoryTransport

CFG = ClusterConfig.from_dict(default_config_dict(number=11, key=secrets.token_bytes(32), nodes=2))


class Pair:
    def __init__(self) -> None:
        self.recv: dict[int, trio.MemoryReceiveChannel[Inbound]] = {}
        self.m: dict[int, Messenger] = {}
        for node in (1, 2):
            send, recv = trio.open_memory_channel[Inbound](256)
            self.m[node] = Messenger(CFG, node, 1, FaultTable(random.Random(node)), send)
            self.recv[node] = recv

    async def start(self, nursery: trio.Nursery) -> None:
        transport = MemoryTransport(MemoryNetwork())
        for node, m in self.m.items():
            for net in Net:
                m.endpoints[net] = await transport.open(CFG.address(node, net))
            await nursery.start(m.run_sender)
            await nursery.start(m.run_delays)
            for net, endpoint in m.endpoints.items():
                await nursery.start(m.run_receiver, net, endpoint)

    async def received(self, node: int, count: int) -> list[tuple[int, float]]:
        """``count`` datagrams at ``node``: (epoch of the Leave, arrival time)."""
        out = []
        for _ in range(count):
            item = await self.recv[node].receive()
            assert isinstance(item.msg, Leave)
            out.append((item.msg.epoch, trio.current_time()))
        return out


async def test_outbound_delay_holds_datagrams_and_counts_them() -> None:
    pair = Pair()
    a = pair.m[1]
    a.faults.add(Fault(FaultKind.DELAY, NetSelector.PRIVATE, 2, Direction.OUT, delay_ms=300))
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await pair.start(nursery)
            t0 = trio.current_time()
            a.send(Send(Net.PRIVATE, 2, Leave(epoch=1)))
            a.send(Send(Net.PUBLIC, 2, Leave(epoch=2)))  # public: not delayed
            got = await pair.received(2, 2)
            nursery.cancel_scope.cancel()
    assert [e for e, _ in got] == [2, 1]
    assert got[0][1] - t0 < 0.2 and got[1][1] - t0 >= 0.3
    assert dict(a.fault_delayed) == {"out": 1} and a.held == 0


async def test_inbound_delay_and_duplication() -> None:
    pair = Pair()
    a, b = pair.m[1], pair.m[2]
    a.faults.add(Fault(FaultKind.DELAY, NetSelector.ALL, 2, Direction.IN, delay_ms=200))
    a.faults.add(Fault(FaultKind.DUP, NetSelector.ALL, 2, Direction.IN, pct=100))
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await pair.start(nursery)
            t0 = trio.current_time()
            b.send(Send(Net.PRIVATE, 1, Leave(epoch=7)))
            got = await pair.received(1, 2)
            await trio.sleep(0.1)  # nothing more may arrive (a third copy would be a bug)
            assert pair.recv[1].statistics().current_buffer_used == 0
            nursery.cancel_scope.cancel()
    assert [e for e, _ in got] == [7, 7]
    assert all(t - t0 >= 0.2 for _, t in got)
    assert dict(a.fault_delayed) == {"in": 1} and dict(a.fault_duplicated) == {"in": 1}
    assert not b.fault_delayed and a.received == 2


async def test_outbound_duplication_without_delay() -> None:
    pair = Pair()
    a = pair.m[1]
    a.faults.add(Fault(FaultKind.DUP, NetSelector.ALL, None, pct=100))
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await pair.start(nursery)
            for epoch in range(5):
                a.send(Send(Net.PUBLIC, 2, Leave(epoch=epoch)))
            got = await pair.received(2, 10)
            nursery.cancel_scope.cancel()
    assert sorted(e for e, _ in got) == sorted(list(range(5)) * 2)
    assert a.fault_duplicated["out"] == 5 and a.sent == 10 and not a.fault_delayed


async def test_reorder_lets_later_datagrams_overtake_held_ones() -> None:
    pair = Pair()
    a = pair.m[1]
    a.faults.add(Fault(FaultKind.REORDER, NetSelector.PRIVATE, 2, pct=50, delay_ms=400))
    n = 40
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await pair.start(nursery)
            for epoch in range(n):
                a.send(Send(Net.PRIVATE, 2, Leave(epoch=epoch)))
                await trio.sleep(0.005)
            got = await pair.received(2, n)
            nursery.cancel_scope.cancel()
    order = [e for e, _ in got]
    assert sorted(order) == list(range(n))  # every datagram arrives, exactly once
    assert order != list(range(n))  # but not in the order sent
    assert 5 < a.fault_delayed["out"] < n - 5


async def test_held_datagrams_are_bounded() -> None:
    pair = Pair()
    a = pair.m[1]
    a.max_held = 3
    a.faults.add(Fault(FaultKind.DELAY, NetSelector.ALL, None, delay_ms=200))
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await pair.start(nursery)
            for epoch in range(5):
                a.send(Send(Net.PRIVATE, 2, Leave(epoch=epoch)))
            assert a.held == 3 and a.fault_drops["held_overflow"] == 2
            got = await pair.received(2, 3)
            await wait_until(lambda: a.held == 0, 5, "the held datagrams released")
            nursery.cancel_scope.cancel()
    assert sorted(e for e, _ in got) == [0, 1, 2]  # equal delays: any order


async def test_a_held_datagram_without_the_delay_task_is_dropped_and_counted() -> None:
    send, _recv = trio.open_memory_channel[Inbound](4)
    m = Messenger(CFG, 1, 1, FaultTable(random.Random(1)), send)
    m.faults.add(Fault(FaultKind.DELAY, NetSelector.ALL, None, delay_ms=10))
    m.send(Send(Net.PRIVATE, 2, Leave(epoch=1)))
    assert m.fault_drops["held_overflow"] == 1 and not m.fault_delayed
