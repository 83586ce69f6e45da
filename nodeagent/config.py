"""Cluster configuration: what ``cluster.toml`` holds, validated in one place.

Theory of operation
-------------------
``ClusterConfig.from_dict`` takes the parsed TOML (or any dict of the same shape), checks every value
and raises ``ConfigError`` with one line naming the bad key. The result is frozen; the core, the
runtime, the simulator and the CLI all read the same object.

Timing: every duration is the Windows Server 2003 default (MSCS.md) divided by ``speed``; any single
value can be overridden in ``[timing]`` (already in lab seconds, not divided), like ``cluster /prop``.
Values marked (model) in ``TIMING_DEFAULTS_2003`` have no exact MSCS number; the README documents them.

Address plan (DESIGN.md): cluster number C (1-250) gives private 127.C.1.N, public 127.C.2.N and
virtual IPs 127.C.3.X; cluster traffic on UDP 3343. Linux routes all of 127/8 to loopback.
"""

from __future__ import annotations

import enum
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeGuard

from nodeagent.errors import ConfigError

CLUSTER_PORT = 3343
MAX_NODES = 8
DNS_ROOT_PORT = 53  # the DNS server's port on every node's public address when the node runs as root
DNS_USER_PORT = 8053  # ... and otherwise (binding a port below 1024 needs root)
DNS_DEFAULT_DOMAIN = "wolfpack.lab"
DNS_KEYS = ("port", "domain")  # the keys of [dns]


class NetRole(enum.IntEnum):
    """MSCS network roles (``cluster network /prop Role=N``)."""

    NONE = 0  # not used by the cluster
    INTERNAL = 1  # private: cluster traffic only
    CLIENT = 2  # public: client access only
    ALL = 3  # mixed: cluster traffic and clients (the MSCS default)

    @property
    def carries_cluster_traffic(self) -> bool:
        return self in (NetRole.INTERNAL, NetRole.ALL)


class Net(enum.IntEnum):
    """The two links every node has. The value is the third octet of its addresses."""

    PRIVATE = 1
    PUBLIC = 2

    @property
    def label(self) -> str:
        return self.name.lower()


class QuorumType(enum.StrEnum):
    DISK = "disk"  # standard quorum: a shared disk decides
    MAJORITY = "majority"  # Majority Node Set: floor(N/2)+1 of the configured nodes


class Arbitration(enum.StrEnum):
    SCSI2 = "scsi2"  # reserve / release / bus reset, challenge and defense (Windows 2003)
    SCSI3 = "scsi3"  # persistent reservations: register / preempt-and-abort (Windows 2008)


# Edition name -> most nodes it allows; 0 means the edition cannot run a cluster at all.
EDITIONS: dict[str, int] = {
    "enterprise": 8,
    "datacenter": 8,
    "standard": 0,
    "web": 0,
    "win2000-advanced": 2,
    "win2000-datacenter": 4,
}

# Windows Server 2003 defaults in real seconds (counts are plain numbers). Divided by speed.
TIMING_DEFAULTS_2003: dict[str, float] = {
    "heartbeat_interval_s": 1.2,  # a heartbeat on every interface every 1.2 s
    "quorum_renew_interval_s": 3.0,  # the defender re-reserves every 3 s
    "challenge_wait_s": 7.0,  # the challenger waits 7 s after the bus reset
    "challenge_takeover_s": 10.0,  # quorum online 10 s after the challenge began
    "regroup_activity_s": 2.4,  # (model) how long regroup collects votes: two heartbeats
    "regroup_stage_timeout_s": 6.0,  # (model) how long a stage waits for an answer before giving up
    "join_timeout_s": 7.2,  # (model) how long a starting node looks for a cluster before forming
    "restart_delay_s": 6.0,  # (model) a halted cluster service restarts itself after this
}
COUNT_DEFAULTS: dict[str, int] = {
    "heartbeat_misses": 6,  # missed on every cluster network: node down (7.2 s)
    "interface_misses": 2,  # missed on one interface: event 1123
}


@dataclass(frozen=True, slots=True)
class Timing:
    """All durations in lab seconds (already divided by speed)."""

    heartbeat_interval_s: float
    heartbeat_misses: int
    interface_misses: int
    quorum_renew_interval_s: float
    challenge_wait_s: float
    challenge_takeover_s: float
    regroup_activity_s: float
    regroup_stage_timeout_s: float
    join_timeout_s: float
    restart_delay_s: float

    @property
    def node_down_after_s(self) -> float:
        """Silence on every cluster network after which a node is declared down."""
        return self.heartbeat_interval_s * self.heartbeat_misses

    @property
    def interface_failed_after_s(self) -> float:
        return self.heartbeat_interval_s * self.interface_misses

    @property
    def quorum_lease_s(self) -> float:
        """How long after issuing a successful renewal the defender may still act as owner.

        A challenger reserves ``challenge_wait_s`` after its bus reset, and only if the defender did not
        renew in between; so a defender whose last successful renewal was issued less than
        ``challenge_wait_s`` ago cannot have lost the disk yet. See core/quorum.py.
        """
        return self.challenge_wait_s

    def fence_s(self, disk_quorum: bool) -> float:
        """How long after it was last heard a removed node may still be running its groups.

        A node that stops hearing the cluster detects it within ``node_down_after_s``, regroups for
        ``regroup_activity_s``, and then halts, stopping every resource: at once under Majority Node
        Set (it has no majority), after its lost quorum challenge with a disk (bus reset, then
        ``challenge_wait_s``, then a reserve that conflicts). Two heartbeat intervals cover disk
        latency and tick granularity. The failover manager starts a removed node's groups elsewhere
        only after this (core/failover.py).
        """
        arbitration = self.challenge_wait_s if disk_quorum else 0.0
        return self.node_down_after_s + self.regroup_activity_s + arbitration + 2 * self.heartbeat_interval_s

    @property
    def settle_bound_s(self) -> float:
        """How long a healed cluster may take to converge: three rounds of (join, restart after a
        halt, quorum takeover, regroup with two stage timeouts, failure detection)."""
        return 3 * (
            self.join_timeout_s
            + self.restart_delay_s
            + self.challenge_takeover_s
            + self.regroup_activity_s
            + 2 * self.regroup_stage_timeout_s
            + self.node_down_after_s
        )

    @classmethod
    def for_speed(cls, speed: float, overrides: dict[str, Any] | None = None) -> Timing:
        values: dict[str, Any] = {k: v / speed for k, v in TIMING_DEFAULTS_2003.items()}
        values.update(COUNT_DEFAULTS)
        for key, value in (overrides or {}).items():
            if key not in values:
                raise ConfigError(f"[timing] {key}: unknown setting (known: {', '.join(sorted(values))})")
            if key in COUNT_DEFAULTS:
                if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 100:
                    raise ConfigError(f"[timing] {key} = {value!r}: must be a whole number from 1 to 100")
            elif not isinstance(value, int | float) or isinstance(value, bool) or not 0.001 <= value <= 3600:
                raise ConfigError(f"[timing] {key} = {value!r}: must be a number of seconds, 0.001 to 3600")
            values[key] = value
        timing = cls(**values)
        timing.check()
        return timing

    def check(self) -> None:
        if not self.quorum_renew_interval_s < self.challenge_wait_s:
            raise ConfigError(
                "[timing] quorum_renew_interval_s must be shorter than challenge_wait_s, "
                "or a live defender could lose the quorum disk"
            )
        if not self.challenge_wait_s < self.challenge_takeover_s:
            raise ConfigError("[timing] challenge_wait_s must be shorter than challenge_takeover_s")
        if self.interface_misses > self.heartbeat_misses:
            raise ConfigError("[timing] interface_misses may not exceed heartbeat_misses")

    def as_dict(self) -> dict[str, float | int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


MAX_DISK_NAME = 64


def is_disk_name(name: object) -> TypeGuard[str]:
    """A shared disk's name: the image file DIR/disks/NAME.img, so letters and digits only (1-64)."""
    return isinstance(name, str) and name.isascii() and name.isalnum() and len(name) <= MAX_DISK_NAME


@dataclass(frozen=True, slots=True)
class NodeConfig:
    name: str
    id: int  # 1..8; also the last octet of the node's addresses


@dataclass(frozen=True, slots=True)
class NetworkConfig:
    net: Net
    name: str  # as Cluster Administrator shows it: "Private", "Public"
    role: NetRole
    priority: int  # lower is tried first for cluster traffic


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    name: str
    number: int  # C in the address plan, 1..250; also the wire's cluster_id
    key: bytes  # HMAC key for every datagram
    edition: str
    speed: float
    quorum: QuorumType
    arbitration: Arbitration
    quorum_disk: str  # disk name, the file disks/NAME.img
    nodes: tuple[NodeConfig, ...]
    networks: tuple[NetworkConfig, ...]
    timing: Timing
    timing_overrides: dict[str, Any] = field(default_factory=dict, compare=False)
    dns_domain: str = DNS_DEFAULT_DOMAIN  # [dns] domain: the zone the Network Names register in
    dns_port_setting: int | None = None  # [dns] port; None: 53 as root, else DNS_USER_PORT

    # -- lookups -----------------------------------------------------------------------------------
    @property
    def node_ids(self) -> tuple[int, ...]:
        return tuple(n.id for n in self.nodes)

    def node(self, key: str | int) -> NodeConfig:
        for n in self.nodes:
            if n.id == key or (isinstance(key, str) and n.name.upper() == key.upper()):
                return n
        known = ", ".join(n.name for n in self.nodes)
        raise ConfigError(f"unknown node {key!r} (this cluster has {known})")

    def network(self, net: Net) -> NetworkConfig:
        for n in self.networks:
            if n.net == net:
                return n
        raise ConfigError(f"no network {net.label} configured")

    def cluster_nets(self) -> tuple[Net, ...]:
        """Networks that carry heartbeats and cluster traffic, in priority order."""
        usable = [n for n in self.networks if n.role.carries_cluster_traffic]
        return tuple(n.net for n in sorted(usable, key=lambda n: (n.priority, n.net)))

    def address(self, node_id: int, net: Net) -> tuple[str, int]:
        return (f"127.{self.number}.{int(net)}.{node_id}", CLUSTER_PORT)

    def dns_port(self, as_root: bool) -> int:
        """The DNS server's port on each node's public address (``[dns] port``, else by privilege)."""
        if self.dns_port_setting is not None:
            return self.dns_port_setting
        return DNS_ROOT_PORT if as_root else DNS_USER_PORT

    def virtual_ip(self, index: int) -> str:
        return f"127.{self.number}.3.{index}"

    @property
    def majority(self) -> int:
        return len(self.nodes) // 2 + 1

    # -- parsing ------------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClusterConfig:
        c = _section(data, "cluster")
        name = _str(c, "cluster", "name", "WOLFPACK")
        number = _int(c, "cluster", "number", None, 1, 250)
        key_hex = _str(c, "cluster", "key", None)
        try:
            key = bytes.fromhex(key_hex)
        except ValueError:
            raise ConfigError("[cluster] key: must be hex digits") from None
        if len(key) < 16:
            raise ConfigError("[cluster] key: must be at least 16 bytes (32 hex digits)")
        edition = _str(c, "cluster", "edition", "enterprise").lower()
        speed = _float(c, "cluster", "speed", 10.0, 0.01, 1000.0)
        try:
            quorum = QuorumType(_str(c, "cluster", "quorum", "disk"))
        except ValueError:
            raise ConfigError("[cluster] quorum: must be 'disk' or 'majority'") from None
        try:
            arbitration = Arbitration(_str(c, "cluster", "arbitration", "scsi2"))
        except ValueError:
            raise ConfigError("[cluster] arbitration: must be 'scsi2' or 'scsi3'") from None
        quorum_disk = _str(c, "cluster", "quorum_disk", "Q")
        if not is_disk_name(quorum_disk):
            raise ConfigError(f"[cluster] quorum_disk = {quorum_disk!r}: letters and digits only")

        raw_nodes = data.get("nodes")
        if not isinstance(raw_nodes, list) or not raw_nodes:
            raise ConfigError("[[nodes]]: at least one node is needed")
        nodes = tuple(_node(i, n) for i, n in enumerate(raw_nodes))
        check_node_set(nodes, edition)

        networks = _networks(data.get("networks", {}))
        overrides = data.get("timing", {})
        if not isinstance(overrides, dict):
            raise ConfigError("[timing]: must be a table")
        timing = Timing.for_speed(speed, overrides)
        dns_domain, dns_port = _dns(data.get("dns", {}))
        return cls(
            name=name,
            number=number,
            key=key,
            edition=edition,
            speed=speed,
            quorum=quorum,
            arbitration=arbitration,
            quorum_disk=quorum_disk,
            nodes=nodes,
            networks=networks,
            timing=timing,
            timing_overrides=dict(overrides),
            dns_domain=dns_domain,
            dns_port_setting=dns_port,
        )

    def to_dict(self) -> dict[str, Any]:
        """The TOML shape, the inverse of ``from_dict``."""
        return {
            "cluster": {
                "name": self.name,
                "number": self.number,
                "key": self.key.hex(),
                "edition": self.edition,
                "speed": self.speed,
                "quorum": self.quorum.value,
                "arbitration": self.arbitration.value,
                "quorum_disk": self.quorum_disk,
            },
            "timing": dict(self.timing_overrides),
            "networks": {
                n.net.label: {"name": n.name, "role": int(n.role), "priority": n.priority}
                for n in self.networks
            },
            "nodes": [{"name": n.name, "id": n.id} for n in self.nodes],
            "dns": {"domain": self.dns_domain}
            | ({"port": self.dns_port_setting} if self.dns_port_setting is not None else {}),
        }


def load_cluster_file(path: Path) -> ClusterConfig:
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path.parent} is not a wolfpack cluster directory (no cluster.toml)") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    try:
        return ClusterConfig.from_dict(data)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def check_node_set(nodes: tuple[NodeConfig, ...], edition: str) -> None:
    """The edition rules of MSCS.md: Standard/Web cannot cluster; 2, 4 or 8 nodes at most."""
    if edition not in EDITIONS:
        raise ConfigError(f"[cluster] edition = {edition!r}: unknown (known: {', '.join(EDITIONS)})")
    limit = EDITIONS[edition]
    if limit == 0:
        raise ConfigError(
            f"edition {edition!r} does not support server clusters (use enterprise or datacenter)"
        )
    if len(nodes) > limit:
        raise ConfigError(f"edition {edition!r} allows at most {limit} nodes, {len(nodes)} configured")
    ids = [n.id for n in nodes]
    names = [n.name.upper() for n in nodes]
    if len(set(ids)) != len(ids):
        raise ConfigError("[[nodes]]: node ids must be unique")
    if len(set(names)) != len(names):
        raise ConfigError("[[nodes]]: node names must be unique")


def _section(data: dict[str, Any], name: str) -> dict[str, Any]:
    value = data.get(name)
    if not isinstance(value, dict):
        raise ConfigError(f"[{name}]: missing section")
    return value


def _str(table: dict[str, Any], sect: str, key: str, default: str | None) -> str:
    value = table.get(key, default)
    if not isinstance(value, str) or not value:
        raise ConfigError(f"[{sect}] {key}: must be a non-empty string")
    return value


def _int(table: dict[str, Any], sect: str, key: str, default: int | None, lo: int, hi: int) -> int:
    value = table.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise ConfigError(f"[{sect}] {key} = {value!r}: must be a whole number from {lo} to {hi}")
    return value


def _float(table: dict[str, Any], sect: str, key: str, default: float, lo: float, hi: float) -> float:
    value = table.get(key, default)
    if not isinstance(value, int | float) or isinstance(value, bool) or not lo <= value <= hi:
        raise ConfigError(f"[{sect}] {key} = {value!r}: must be a number from {lo} to {hi}")
    return float(value)


def _node(index: int, raw: Any) -> NodeConfig:
    if not isinstance(raw, dict):
        raise ConfigError(f"[[nodes]] entry {index + 1}: must be a table with name and id")
    name = _str(raw, "nodes", "name", None)
    if not name.replace("-", "").isalnum() or len(name) > 15:
        raise ConfigError(f"[[nodes]] name = {name!r}: letters, digits and '-', at most 15 (a NetBIOS name)")
    node_id = _int(raw, "nodes", "id", None, 1, MAX_NODES)
    return NodeConfig(name=name.upper(), id=node_id)


def _dns(raw: Any) -> tuple[str, int | None]:
    if not isinstance(raw, dict):
        raise ConfigError("[dns]: must be a table")
    for key in raw:
        if key not in DNS_KEYS:
            raise ConfigError(f"[dns] {key}: unknown setting (known: {', '.join(DNS_KEYS)})")
    domain = _str(raw, "dns", "domain", DNS_DEFAULT_DOMAIN).strip(".").lower()
    labels = domain.split(".")
    if len(domain) > 200 or not all(0 < len(x) <= 63 and x.replace("-", "").isalnum() for x in labels):
        raise ConfigError(f"[dns] domain = {domain!r}: must be a DNS name such as wolfpack.lab")
    port = _int(raw, "dns", "port", 0, 0, 65535) if "port" in raw else None
    return domain, port or None


def _networks(raw: Any) -> tuple[NetworkConfig, ...]:
    if not isinstance(raw, dict):
        raise ConfigError("[networks]: must be a table")
    defaults = {
        Net.PRIVATE: ("Private", NetRole.INTERNAL, 1),
        Net.PUBLIC: ("Public", NetRole.ALL, 2),
    }
    for key in raw:
        if key not in ("private", "public"):
            raise ConfigError(f"[networks.{key}]: unknown network (private, public)")
    result = []
    for net, (dname, drole, dprio) in defaults.items():
        table = raw.get(net.label, {})
        if not isinstance(table, dict):
            raise ConfigError(f"[networks.{net.label}]: must be a table")
        name = _str(table, f"networks.{net.label}", "name", dname)
        role_value = _int(table, f"networks.{net.label}", "role", int(drole), 0, 3)
        priority = _int(table, f"networks.{net.label}", "priority", dprio, 1, 99)
        result.append(NetworkConfig(net=net, name=name, role=NetRole(role_value), priority=priority))
    if not any(n.role.carries_cluster_traffic for n in result):
        raise ConfigError("[networks]: at least one network must carry cluster traffic (role 1 or 3)")
    return tuple(result)


def default_config_dict(
    *,
    number: int,
    key: bytes,
    nodes: int,
    speed: float = 10.0,
    quorum: str = "disk",
    arbitration: str = "scsi2",
    edition: str = "enterprise",
    name: str = "WOLFPACK",
) -> dict[str, Any]:
    """What ``wolfpack up`` writes into a new cluster.toml."""
    return {
        "cluster": {
            "name": name,
            "number": number,
            "key": key.hex(),
            "edition": edition,
            "speed": speed,
            "quorum": quorum,
            "arbitration": arbitration,
            "quorum_disk": "Q",
        },
        "timing": {},
        "networks": {
            "private": {"name": "Private", "role": int(NetRole.INTERNAL), "priority": 1},
            "public": {"name": "Public", "role": int(NetRole.ALL), "priority": 2},
        },
        "nodes": [{"name": f"NODE{i}", "id": i} for i in range(1, nodes + 1)],
        "dns": {"domain": DNS_DEFAULT_DOMAIN},  # port: 53 as root, else DNS_USER_PORT (README: DNS)
    }
