"""The cluster's DNS zone: which names it holds, and the answer to one DNS query (pure, no I/O).

Theory of operation
-------------------
On Windows a Network Name registers an A record with the domain's DNS server when it comes online.
The lab has no DNS server of its own, so every node serves the zone itself (runtime/dnsserver.py)
and all of them answer with the same data because the zone is computed from what every node
already holds: its copy of the replicated cluster database (``zone_from_db``).

The zone ``<domain>`` (``[dns] domain`` in cluster.toml, default ``wolfpack.lab``) holds:

- ``NAME.<domain> A <virtual IP>`` for every Network Name resource whose state in the database is
  Online: NAME is its ``Name`` private property (lower case on the wire; DNS compares names without
  regard to case), the address that of the IP Address it depends on (else its own ``Address``), the
  TTL its ``HostRecordTTL`` private property (Windows seconds, default 1200, divided by the
  cluster's speed like every MSCS time, at least 1 s). A name that is offline, failed or pending has
  no record: offline removes it. During a failover the record disappears while the group is
  pending and comes back, with the same address, once the new owner has it online.
- ``NODEn.<domain> A 127.C.2.n``: each node's public address (the nodes' own host records).
- At the apex: ``SOA`` (primary: the first node; serial: the database version, so it moves with every
  change) and one ``NS`` per node.

``answer(query, zone)`` maps the bytes of one query to the bytes of its answer (dnspython does the
wire format): A (and ANY) for names in the zone; NOERROR with no data (and the SOA) for other types
of an existing name; NXDOMAIN (and the SOA) for unknown names in the zone; REFUSED for names
outside it or a class other than IN; NOTIMP for opcodes other than QUERY; FORMERR for a message
that does not parse but has a header, no answer at all (``None``) for one without a header or for
a response (never answer an answer: no loops). Over UDP an answer larger than the client's limit
(512 bytes, or its EDNS size) is sent truncated (TC) so the client retries over TCP. Every answer
is authoritative (AA).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from nodeagent.core.clusterdb import ClusterDb, ResourceState

DEFAULT_DOMAIN = "wolfpack.lab"
DEFAULT_HOST_RECORD_TTL_S = 1200.0  # MSCS HostRecordTTL default (Windows seconds)
MAX_TTL_S = 7 * 24 * 3600
UDP_LIMIT = 512  # without EDNS
HEADER_LEN = 12


@dataclass(frozen=True, slots=True)
class Zone:
    domain: str  # e.g. "wolfpack.lab" (no trailing dot)
    serial: int
    hosts: dict[str, tuple[str, int]] = field(default_factory=dict)  # label (lower) -> (IPv4, TTL s)
    nameservers: tuple[str, ...] = ()  # labels of hosts that serve the zone, primary first
    ttl: int = 120  # the SOA's and the NS records' TTL, and the negative-answer TTL


def ttl_for(raw: object, speed: float) -> int:
    """HostRecordTTL (Windows seconds; absent or unreadable: the default) in lab seconds."""
    seconds = DEFAULT_HOST_RECORD_TTL_S
    if isinstance(raw, int | float | str) and not isinstance(raw, bool):
        try:
            seconds = float(raw)
        except ValueError:
            seconds = DEFAULT_HOST_RECORD_TTL_S
    if math.isnan(seconds) or math.isinf(seconds) or seconds < 0:
        seconds = DEFAULT_HOST_RECORD_TTL_S
    return max(1, min(MAX_TTL_S, round(seconds / speed)))


def zone_from_db(db: ClusterDb, domain: str, nodes: dict[str, str], speed: float) -> Zone:
    """The zone as this copy of the database says: ``nodes`` is node name -> public address."""
    hosts: dict[str, tuple[str, int]] = {
        name.lower(): (address, ttl_for(None, speed)) for name, address in nodes.items()
    }
    for r in sorted(db.resources.values(), key=lambda r: r.name):
        if r.type != "Network Name" or r.state != ResourceState.ONLINE.value:
            continue
        label = str(r.private.get("Name", "")).strip().lower()
        if not label or not _is_label(label):
            continue
        address = str(r.private.get("Address", ""))
        for dep in r.depends_on:
            ip = db.resources.get(dep)
            if ip is not None and ip.type == "IP Address" and ip.private.get("Address"):
                address = str(ip.private["Address"])
                break
        if address:
            hosts[label] = (address, ttl_for(r.private.get("HostRecordTTL"), speed))
    return Zone(
        domain=domain.strip(".").lower(),
        serial=db.version % 2**32,
        hosts=hosts,
        nameservers=tuple(name.lower() for name in nodes),
        ttl=ttl_for(None, speed),
    )


def _is_label(label: str) -> bool:
    return 0 < len(label) <= 63 and label.isascii() and label.replace("-", "").isalnum()


def answer(query: bytes, zone: Zone, *, udp: bool) -> bytes | None:
    """The answer's bytes to ``query`` (None: send nothing). Never raises for any input."""
    if len(query) >= HEADER_LEN and (query[2] >> 3) & 0xF != dns.opcode.QUERY:
        return _header_only(query, dns.rcode.NOTIMP)  # UPDATE, NOTIFY, ...: not parsed at all
    try:
        msg = dns.message.from_wire(query)
    except Exception:  # dnspython's parser is not ours: whatever it raises, a bad query stays one
        return _header_only(query, dns.rcode.FORMERR)
    if msg.flags & dns.flags.QR:
        return None  # a response: never answer it
    response = dns.message.make_response(msg)
    response.flags |= dns.flags.AA
    response.flags &= ~dns.flags.RA  # this server does not recurse
    if msg.opcode() != dns.opcode.QUERY:
        response.set_rcode(dns.rcode.NOTIMP)
    elif len(msg.question) != 1:
        response.set_rcode(dns.rcode.FORMERR)
    else:
        _resolve(msg.question[0], zone, response)
    limit = 65535
    if udp:
        limit = max(UDP_LIMIT, msg.payload) if msg.edns >= 0 else UDP_LIMIT
    try:
        return response.to_wire(max_size=limit)
    except dns.exception.TooBig:
        response.answer, response.authority, response.additional = [], [], []
        response.flags |= dns.flags.TC
        return response.to_wire(max_size=limit)


def _header_only(query: bytes, rcode: dns.rcode.Rcode) -> bytes | None:
    """An answer of just a header (no sections) to a query we cannot or will not parse."""
    if len(query) < HEADER_LEN or query[2] & 0x80:
        return None  # no header to answer to, or a response
    header = bytearray(query[:HEADER_LEN])
    header[2] = 0x80 | (query[2] & 0x79) | 0x04  # QR, keep opcode and RD, set AA
    header[3] = int(rcode)  # RA 0, Z 0
    header[4:12] = bytes(8)  # no sections
    return bytes(header)


def _resolve(question: dns.rrset.RRset, zone: Zone, response: dns.message.Message) -> None:
    origin = dns.name.from_text(zone.domain)
    qname: dns.name.Name = question.name
    if question.rdclass != dns.rdataclass.IN or not qname.is_subdomain(origin):
        response.set_rcode(dns.rcode.REFUSED)
        return
    qtype = question.rdtype
    relative = qname.relativize(origin)
    if relative == dns.name.empty:
        if qtype in (dns.rdatatype.SOA, dns.rdatatype.ANY):
            response.answer.append(_soa(zone, origin))
        if qtype in (dns.rdatatype.NS, dns.rdatatype.ANY):
            response.answer.append(_ns(zone, origin))
            response.additional.extend(_glue(zone, origin))
        if not response.answer:
            response.authority.append(_soa(zone, origin))
        return
    labels = relative.labels
    host = zone.hosts.get(labels[0].decode("ascii", "replace").lower()) if len(labels) == 1 else None
    if host is None:
        response.set_rcode(dns.rcode.NXDOMAIN)
        response.authority.append(_soa(zone, origin))
        return
    address, ttl = host
    if qtype in (dns.rdatatype.A, dns.rdatatype.ANY):
        response.answer.append(dns.rrset.from_text(qname, ttl, "IN", "A", address))
    else:
        response.authority.append(_soa(zone, origin))  # the name exists, not with that type


def _soa(zone: Zone, origin: dns.name.Name) -> dns.rrset.RRset:
    primary = f"{zone.nameservers[0]}.{zone.domain}." if zone.nameservers else f"{zone.domain}."
    t = zone.ttl  # refresh, retry, expire, minimum (the negative-answer TTL)
    soa = f"{primary} hostmaster.{zone.domain}. {zone.serial} {t} {t} {t * 10} {t}"
    return dns.rrset.from_text(origin, zone.ttl, "IN", "SOA", soa)


def _ns(zone: Zone, origin: dns.name.Name) -> dns.rrset.RRset:
    return dns.rrset.from_text_list(
        origin, zone.ttl, "IN", "NS", [f"{ns}.{zone.domain}." for ns in zone.nameservers]
    )


def _glue(zone: Zone, origin: dns.name.Name) -> list[dns.rrset.RRset]:
    glue = []
    for ns in zone.nameservers:
        if ns in zone.hosts:
            address, ttl = zone.hosts[ns]
            glue.append(dns.rrset.from_text(f"{ns}.{zone.domain}.", ttl, "IN", "A", address))
    return glue
