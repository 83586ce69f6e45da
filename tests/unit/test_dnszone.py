"""The cluster's DNS zone and the pure resolver, with queries and answers built by dnspython."""

from __future__ import annotations

import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdatatype
from hypothesis import given
from hypothesis import strategies as st

from nodeagent.core.clusterdb import ClusterDb, Resource
from nodeagent.core.dnszone import Zone, answer, ttl_for, zone_from_db

NODES = {"NODE1": "127.7.2.1", "NODE2": "127.7.2.2"}


def db_with(state: str = "Online", **private: object) -> ClusterDb:
    db = ClusterDb(version=42)
    db.resources["EVS1 IP Address"] = Resource(
        "EVS1 IP Address", "IP Address", "EVS1", private={"Address": "127.7.3.2", "Port": 3344}
    )
    db.resources["EVS1 Network Name"] = Resource(
        "EVS1 Network Name", "Network Name", "EVS1", depends_on=["EVS1 IP Address"],
        private={"Name": "EVS1", "Address": "127.7.3.99", **private}, state=state,
    )  # fmt: skip
    return db


def zone(db: ClusterDb | None = None, speed: float = 10.0) -> Zone:
    return zone_from_db(db if db is not None else db_with(), "wolfpack.lab", NODES, speed)


def ask(name: str, rdtype: str = "A", z: Zone | None = None, *, udp: bool = True) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype)
    wire = answer(query.to_wire(), z if z is not None else zone(), udp=udp)
    assert wire is not None
    reply = dns.message.from_wire(wire)
    assert reply.id == query.id and reply.flags & dns.flags.QR and reply.flags & dns.flags.AA
    return reply


def test_an_online_network_name_resolves_to_its_ip_address_with_the_host_record_ttl() -> None:
    reply = ask("EVS1.wolfpack.lab")
    assert reply.rcode() == dns.rcode.NOERROR
    (rrset,) = reply.answer
    assert [r.address for r in rrset] == ["127.7.3.2"]  # the dependency's address, not its own
    assert rrset.ttl == 120  # 1200 s / speed 10
    assert ask("evs1.WOLFPACK.lab.").answer[0][0].address == "127.7.3.2"  # case-insensitive


def test_host_record_ttl_is_a_windows_value_divided_by_speed() -> None:
    assert ask("evs1.wolfpack.lab", z=zone(db_with(HostRecordTTL=300), speed=2)).answer[0].ttl == 150
    assert ttl_for("junk", 10) == 120 and ttl_for(float("nan"), 10) == 120 and ttl_for(1, 1000) == 1


def test_a_name_not_online_has_no_record() -> None:
    for state in ("Offline", "Online Pending", "Failed"):
        reply = ask("evs1.wolfpack.lab", z=zone(db_with(state)))
        assert reply.rcode() == dns.rcode.NXDOMAIN and not reply.answer
        assert reply.authority[0].rdtype == dns.rdatatype.SOA


def test_nodes_have_host_records_and_the_apex_has_soa_and_ns() -> None:
    assert ask("node2.wolfpack.lab").answer[0][0].address == "127.7.2.2"
    soa = ask("wolfpack.lab", "SOA").answer[0][0]
    assert str(soa.mname) == "node1.wolfpack.lab." and soa.serial == 42
    ns = ask("wolfpack.lab", "NS")
    assert sorted(str(r.target) for r in ns.answer[0]) == ["node1.wolfpack.lab.", "node2.wolfpack.lab."]
    assert {rr[0].address for rr in ns.additional} == {"127.7.2.1", "127.7.2.2"}
    empty = ask("wolfpack.lab", "A")
    assert empty.rcode() == dns.rcode.NOERROR and not empty.answer and empty.authority


def test_unknown_names_other_types_and_foreign_names() -> None:
    assert ask("nobody.wolfpack.lab").rcode() == dns.rcode.NXDOMAIN
    assert ask("a.evs1.wolfpack.lab").rcode() == dns.rcode.NXDOMAIN
    mx = ask("evs1.wolfpack.lab", "MX")
    assert mx.rcode() == dns.rcode.NOERROR and not mx.answer
    assert ask("example.com").rcode() == dns.rcode.REFUSED
    assert ask("evs1.wolfpack.lab", "ANY").answer[0][0].address == "127.7.3.2"


def test_malformed_queries_get_formerr_or_nothing() -> None:
    z = zone()
    query = dns.message.make_query("evs1.wolfpack.lab", "A").to_wire()
    reply = answer(query[:-3], z, udp=True)  # truncated question
    assert reply is not None and dns.message.from_wire(reply).rcode() == dns.rcode.FORMERR
    assert answer(b"\x00\x01", z, udp=True) is None  # not even a header
    response = dns.message.make_response(dns.message.make_query("evs1.wolfpack.lab", "A"))
    assert answer(response.to_wire(), z, udp=True) is None  # never answer an answer


def test_other_opcodes_are_not_implemented() -> None:
    update = dns.message.make_query("evs1.wolfpack.lab", "A")
    update.set_opcode(dns.opcode.UPDATE)
    wire = answer(update.to_wire(), zone(), udp=True)
    assert wire is not None and dns.message.from_wire(wire).rcode() == dns.rcode.NOTIMP


def test_a_udp_answer_too_large_is_truncated() -> None:
    db = ClusterDb()
    nodes = {f"NODE{i}-{'x' * 50}": f"127.7.2.{i}" for i in range(1, 9)}
    big = zone_from_db(db, "wolfpack.lab", nodes, 10)
    udp = ask("wolfpack.lab", "NS", big, udp=True)
    assert udp.flags & dns.flags.TC and not udp.answer
    tcp = ask("wolfpack.lab", "NS", big, udp=False)
    assert not tcp.flags & dns.flags.TC and len(tcp.answer[0]) == 8


@given(st.binary(max_size=600))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    answer(data, zone(), udp=True)


@given(st.binary(min_size=1, max_size=40), st.integers(0, 60))
def test_corrupted_queries_never_raise(noise: bytes, at: int) -> None:
    wire = bytearray(dns.message.make_query("evs1.wolfpack.lab", "A").to_wire())
    wire[at % len(wire) : at % len(wire) + len(noise)] = noise
    answer(bytes(wire), zone(), udp=True)
