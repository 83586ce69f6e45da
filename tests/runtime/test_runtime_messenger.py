"""The messenger's checks and counters, faults in both directions, and bad datagrams on real UDP."""

from __future__ import annotations

import secrets
import socket
from pathlib import Path

import trio
from rt_support import free_cluster_number, wait_until, write_cluster

from nodeagent.config import ClusterConfig, Net, default_config_dict
from nodeagent.core.effects import Send
from nodeagent.core.messages import Heartbeat, Leave, Phase
from nodeagent.runtime.control_client import request
from nodeagent.runtime.faults import Direction, Fault, FaultKind, FaultTable, NetSelector
from nodeagent.runtime.messenger import Inbound, Messenger
from nodeagent.runtime.node import NodeOptions, NodeRuntime, serve_node
from nodeagent.runtime.transport import AddressInUse, MemoryNetwork, MemoryTransport, UdpTransport
from nodeagent.wire import MAX_DATAGRAM, encode

BEAT = Heartbeat(seq=1, phase=int(Phase.JOINING), epoch=0, members=(), quorum_owner=0, paused=False)


def config(number: int = 9, nodes: int = 3) -> ClusterConfig:
    return ClusterConfig.from_dict(
        default_config_dict(number=number, key=secrets.token_bytes(32), nodes=nodes)
    )


def messenger(cfg: ClusterConfig, node_id: int = 1) -> tuple[Messenger, trio.MemoryReceiveChannel[Inbound]]:
    send, recv = trio.open_memory_channel[Inbound](4)
    return Messenger(cfg, node_id, 1, FaultTable(), send), recv


async def test_accept_counts_every_kind_of_bad_datagram() -> None:
    cfg = config()
    m, _ = messenger(cfg)
    node2 = cfg.address(2, Net.PRIVATE)

    def data(key: bytes = cfg.key, cluster: int = cfg.number, sender: int = 2, inc: int = 5) -> bytes:
        return encode(key, cluster, sender, inc, BEAT)

    assert m.accept(Net.PRIVATE, b"\x00garbage", node2) is None
    assert m.accept(Net.PRIVATE, b"", node2) is None
    assert m.accept(Net.PRIVATE, data(key=b"k" * 32), node2) is None
    assert m.accept(Net.PRIVATE, data(cluster=cfg.number + 1), node2) is None
    assert m.accept(Net.PRIVATE, data(sender=7), cfg.address(7, Net.PRIVATE)) is None
    assert m.accept(Net.PRIVATE, data(sender=1), cfg.address(1, Net.PRIVATE)) is None  # ourselves
    assert m.accept(Net.PRIVATE, data(), ("127.0.0.1", 3343)) is None
    assert m.accept(Net.PRIVATE, data(), cfg.address(2, Net.PUBLIC)) is None  # other net's address
    assert m.accept(Net.PRIVATE, b"\x91" + b"\x00" * (MAX_DATAGRAM + 1), node2) is None
    item = m.accept(Net.PRIVATE, data(inc=5), node2)
    assert item == Inbound(net=Net.PRIVATE, sender=2, incarnation=5, msg=BEAT)
    assert m.accept(Net.PRIVATE, data(inc=4), node2) is None  # a previous life of node 2
    assert m.accept(Net.PRIVATE, data(inc=6), node2) is not None  # node 2 restarted
    assert dict(m.bad) == {
        "malformed": 2,
        "bad_auth": 1,
        "wrong_cluster": 1,
        "unknown_sender": 2,
        "wrong_source": 2,
        "oversize": 1,
        "stale_incarnation": 1,
    }


async def test_cut_drops_both_ways_on_the_cut_net_only() -> None:
    cfg = config()
    network = MemoryNetwork()
    transport = MemoryTransport(network)
    a, a_in = messenger(cfg, 1)
    b, b_in = messenger(cfg, 2)
    for node, m in ((1, a), (2, b)):
        for net in Net:
            m.endpoints[net] = await transport.open(cfg.address(node, net))
    a.faults.add(Fault(FaultKind.CUT, NetSelector.PRIVATE, 2))
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            for m in (a, b):
                await nursery.start(m.run_sender)
                for net, endpoint in m.endpoints.items():
                    await nursery.start(m.run_receiver, net, endpoint)
            a.send(Send(Net.PRIVATE, 2, Leave(epoch=1)))  # cut on A's way out
            b.send(Send(Net.PRIVATE, 1, Leave(epoch=2)))  # leaves B, cut on A's way in
            a.send(Send(Net.PUBLIC, 2, Leave(epoch=3)))  # public is not cut
            b.send(Send(Net.PUBLIC, 1, Leave(epoch=4)))
            got_b = await b_in.receive()
            got_a = await a_in.receive()
            await wait_until(lambda: a.fault_drops["in"] == 1, 5, "the cut inbound datagram")
            nursery.cancel_scope.cancel()
    assert (got_b.net, got_b.msg) == (Net.PUBLIC, Leave(epoch=3))
    assert (got_a.net, got_a.msg) == (Net.PUBLIC, Leave(epoch=4))
    assert dict(a.fault_drops) == {"out": 1, "in": 1}
    assert not b.fault_drops and not a.bad and not b.bad
    assert a.faults.decide(Net.PUBLIC, 2, Direction.IN).drop is False


async def test_full_inbound_queue_drops_and_counts_overload() -> None:
    cfg = config()
    m, _ = messenger(cfg)  # nobody reads the queue of 4
    network = MemoryNetwork()
    endpoint = await MemoryTransport(network).open(cfg.address(1, Net.PRIVATE))
    peer = await MemoryTransport(network).open(cfg.address(2, Net.PRIVATE))
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(m.run_receiver, Net.PRIVATE, endpoint)
            for _ in range(10):
                await peer.sendto(encode(cfg.key, cfg.number, 2, 1, BEAT), endpoint.local)
            await wait_until(lambda: m.received + m.bad["overload"] == 10, 5, "all ten datagrams")
            nursery.cancel_scope.cancel()
    assert m.received == 4 and m.bad["overload"] == 6


async def test_bad_datagrams_on_real_udp_are_counted_not_raised(short_tmp: Path) -> None:
    number = free_cluster_number()
    cfg = write_cluster(short_tmp, number=number, nodes=3)
    raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # stands in for NODE2
    raw.bind(cfg.address(2, Net.PRIVATE))
    imposter = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # right key, wrong address
    imposter.bind((f"127.{number}.1.3", 40000))
    target = cfg.address(1, Net.PRIVATE)
    sock_path = short_tmp / "nodes" / "NODE1" / "control.sock"
    try:
        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                runtime: NodeRuntime = await nursery.start(serve_node, short_tmp, "NODE1", NodeOptions())
                raw.sendto(b"\xc1 garbage", target)
                raw.sendto(encode(b"w" * 32, number, 2, 1, BEAT), target)  # wrongly keyed
                raw.sendto(encode(cfg.key, number, 2, 9, BEAT), target)  # good
                raw.sendto(encode(cfg.key, number, 2, 8, BEAT), target)  # older incarnation
                imposter.sendto(encode(cfg.key, number, 2, 9, BEAT), target)
                raw.sendto(b"\x00" * 61_000, target)
                expected = {
                    "malformed": 1,
                    "bad_auth": 1,
                    "stale_incarnation": 1,
                    "wrong_source": 1,
                    "oversize": 1,
                }

                def status() -> dict[str, object]:
                    reply = request(sock_path, {"op": "status"}, 5.0)
                    assert reply["ok"] is True
                    node = reply["node"]
                    assert isinstance(node, dict)
                    return node

                async def counted() -> dict[str, object]:
                    return await trio.to_thread.run_sync(status)

                with trio.fail_after(10):
                    while (await counted())["bad_datagrams"] != expected:
                        await trio.sleep(0.05)
                node = await counted()
                assert node["private_ip"] == f"127.{number}.1.1"
                assert node["public_ip"] == f"127.{number}.2.1"
                assert node["incarnation"] == 1 and node["name"] == "NODE1"
                assert runtime.messenger.highest_incarnation == {2: 9}

                # a second copy of NODE1 cannot start: its addresses are taken
                try:
                    await serve_node(short_tmp, "NODE1", NodeOptions(transport=UdpTransport()))
                except AddressInUse as e:
                    assert f"127.{number}.1.1:3343" in str(e)
                else:
                    raise AssertionError("a second NODE1 started")
                assert (short_tmp / "nodes" / "NODE1" / "incarnation").read_text() == "1\n"
                runtime.request_stop()
    finally:
        raw.close()
        imposter.close()
    assert not (short_tmp / "nodes" / "NODE1" / "pid").exists()
