"""The DNS server's trio shell on real sockets: UDP, TCP with its length prefix, bad input survived."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import dns.asyncquery
import dns.message
import dns.rcode
import pytest
import trio

from nodeagent.core.clusterdb import ClusterDb
from nodeagent.core.dnszone import Zone, zone_from_db
from nodeagent.runtime.dnsserver import DnsServer

ADDRESS = "127.214.2.1"


def free_port() -> int:
    """A port free for both UDP and TCP on ADDRESS."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind((ADDRESS, 0))
            port = int(u.getsockname()[1])
            with socket.socket() as t:
                try:
                    t.bind((ADDRESS, port))
                except OSError:
                    continue
        return port


class Source:
    """The zone the server reads per query; a test may make it raise."""

    def __init__(self) -> None:
        self.zone: Zone = zone_from_db(ClusterDb(version=3), "wolfpack.lab", {"NODE1": ADDRESS}, 10.0)
        self.fail = False

    def __call__(self) -> Zone:
        if self.fail:
            raise RuntimeError("the database is broken")
        return self.zone


@pytest.fixture
async def server() -> AsyncIterator[tuple[DnsServer, Source]]:
    source = Source()
    srv = DnsServer(ADDRESS, free_port(), source)
    async with trio.open_nursery() as nursery:
        await nursery.start(srv.serve)
        assert srv.bound
        yield srv, source
        nursery.cancel_scope.cancel()


async def udp(srv: DnsServer, name: str) -> dns.message.Message:
    query = dns.message.make_query(name, "A")
    return await dns.asyncquery.udp(query, ADDRESS, port=srv.address[1], timeout=2)


async def test_udp_and_tcp_answer_and_tcp_takes_several_queries(server: tuple[DnsServer, Source]) -> None:
    srv, _ = server
    with trio.fail_after(10):
        reply = await udp(srv, "node1.wolfpack.lab")
        assert reply.answer[0][0].address == ADDRESS
        stream = await trio.open_tcp_stream(ADDRESS, srv.address[1])
        async with stream:
            for name in ("node1.wolfpack.lab", "nobody.wolfpack.lab"):
                wire = dns.message.make_query(name, "A").to_wire()
                await stream.send_all(len(wire).to_bytes(2, "big") + wire)
            got = b""
            replies = []
            while len(replies) < 2:
                got += await stream.receive_some(4096)
                while len(got) >= 2 and len(got) >= 2 + int.from_bytes(got[:2], "big"):
                    n = int.from_bytes(got[:2], "big")
                    replies.append(dns.message.from_wire(got[2 : 2 + n]))
                    got = got[2 + n :]
        assert [r.rcode() for r in replies] == [dns.rcode.NOERROR, dns.rcode.NXDOMAIN]


async def test_garbage_and_a_broken_zone_do_not_stop_the_server(server: tuple[DnsServer, Source]) -> None:
    srv, source = server
    with trio.fail_after(10):
        sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
        with sock:
            await sock.sendto(b"\xff" * 3, (ADDRESS, srv.address[1]))  # no header: dropped
            await sock.sendto(b"\x12\x34" + b"\x01" * 20, (ADDRESS, srv.address[1]))
            data, _ = await sock.recvfrom(4096)
            assert data[:2] == b"\x12\x34" and data[3] & 0xF == dns.rcode.FORMERR
        stream = await trio.open_tcp_stream(ADDRESS, srv.address[1])
        async with stream:
            await stream.send_all(b"\x00\x40" + b"half a message")
        source.fail = True
        wire = dns.message.make_query("node1.wolfpack.lab", "A").to_wire()
        with trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM) as probe:
            await probe.sendto(wire, (ADDRESS, srv.address[1]))  # no answer comes: wait for the count
            while srv.stats["error"] < 1:
                await trio.sleep(0.01)
        source.fail = False
        assert (await udp(srv, "node1.wolfpack.lab")).answer  # still serving


async def test_a_port_in_use_leaves_dns_off_without_raising() -> None:
    with trio.fail_after(5), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
        holder.bind((ADDRESS, 0))
        srv = DnsServer(ADDRESS, holder.getsockname()[1], Source())
        async with trio.open_nursery() as nursery:
            await nursery.start(srv.serve)
            assert not srv.bound
