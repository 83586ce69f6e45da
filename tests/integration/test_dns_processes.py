"""DNS on real node processes: every node answers for EVS1, before and after a kill -9 failover.

dnspython is the client here (a resolver nobody in this project wrote the wire format of); the
README shows the same query with ``dig``.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable

import dns.message
import dns.query
import dns.rcode
import pytest
from evs_status import group, online_on

from nodeagent.cli.lab import Lab
from nodeagent.config import ClusterConfig

pytestmark = pytest.mark.integration

Factory = Callable[..., Lab]
GROUP_SETTLE_S = 60.0


def lookup(server: str, port: int, name: str, *, tcp: bool = False) -> tuple[int, list[str], int]:
    """(rcode, addresses, ttl) of ``name`` A, asked of ``server:port``."""
    query = dns.message.make_query(name, "A")
    ask = dns.query.tcp if tcp else dns.query.udp
    reply = ask(query, server, port=port, timeout=2.0)
    addresses = [r.address for rrset in reply.answer for r in rrset]
    ttl = reply.answer[0].ttl if reply.answer else 0
    return reply.rcode(), addresses, ttl


def test_every_node_resolves_evs1_before_and_after_a_kill_9_failover(lab_factory: Factory) -> None:
    lab = lab_factory(2, "--evs", "1", "--exchange-setup-s", "5")
    config = ClusterConfig.from_dict(tomllib.loads((lab.dir / "cluster.toml").read_text()))
    port = config.dns_port(os.geteuid() == 0)  # the nodes run as the same user as this test
    name = f"evs1.{config.dns_domain}"
    node1, node2 = (f"127.{config.number}.2.{i}" for i in (1, 2))

    s = lab.wait_status("EVS1 Online on NODE1", online_on("NODE1"), GROUP_SETTLE_S)
    ip = next(r["private"]["Address"] for r in group(s, "EVS1")["resources"] if r["type"] == "IP Address")
    ttl = round(1200 / config.speed)
    for server in (node1, node2):  # every node answers alike, from its copy of the database
        assert lookup(server, port, name) == (dns.rcode.NOERROR, [ip], ttl)
    assert lookup(node2, port, name, tcp=True) == (dns.rcode.NOERROR, [ip], ttl)
    assert lookup(node2, port, f"nobody.{config.dns_domain}")[0] == dns.rcode.NXDOMAIN
    assert lookup(node2, port, "example.com")[0] == dns.rcode.REFUSED
    listing = lab.cli("directory", "list").stdout  # RequireKerberos=1 made EVS1's computer object
    assert any(line.split()[:2] == ["EVS1", name] for line in listing.splitlines()), listing

    lab.cli("kill", "NODE1")
    lab.wait_status("EVS1 Online on NODE2", online_on("NODE2"), GROUP_SETTLE_S)
    assert lab.wait_for(
        "NODE2 to answer for EVS1 again", lambda: lookup(node2, port, name)[1] == [ip], GROUP_SETTLE_S
    )
    assert lookup(node2, port, name, tcp=True) == (dns.rcode.NOERROR, [ip], ttl)
