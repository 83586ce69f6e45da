"""Exchange 2003 virtual servers: the setup rules of MSCS.md and the resources the SA creates.

Theory of operation
-------------------
The workflow follows the Exchange 2003 cluster setup:

1. ``msdtc.create``: the Distributed Transaction Coordinator comes first (in the Cluster Group,
   depending on the Cluster Name and the quorum disk, or in a group named by the admin).
2. ``exchange.install NODE``: Exchange is installed on each node, one node at a time. While an
   install runs (``exchange_setup_s``), another is refused.
3. The EVS group holds a Physical Disk, an IP Address and a Network Name that depends on the IP.
4. Creating the System Attendant (``resource.create`` of that type, or ``evs.create``, which does
   steps 3 and 4 at once) checks:
   - MSDTC exists;
   - Exchange is installed on every possible owner;
   - the group has its disk, IP and name;
   - the EVS count rules: at most N-1 virtual servers with more than 2 nodes; active/active only
     on 2 nodes.
   The SA then depends on the name and every disk of the group, and it creates the other Exchange
   resources with the 2003 dependency tree (or the 2000 one), all Offline. The MTA exists only in
   the first EVS; POP3 and IMAP4 only on request. The administrative and routing groups are
   recorded.

``storage_groups_ok`` enforces the limit of 4 storage groups per node whenever a failover or move
would bring an EVS to a node (failover.py asks it).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from nodeagent.core.clusterdb import ClusterDb, Group, Resource, group_update, resource_update
from nodeagent.errors import AdminRefused

Update = tuple[str, dict[str, Any]]

SA = "Microsoft Exchange System Attendant"
STORE = "Microsoft Exchange Information Store"
DTC = "Distributed Transaction Coordinator"
MAX_STORAGE_GROUPS_PER_NODE = 4
MAX_STORAGE_GROUPS_PER_SERVER = 4

# (type, suffix, service, start-up time in lab seconds at speed 10; scaled by the core's speed)
EXCHANGE_SERVICES: tuple[tuple[str, str, str, float], ...] = (
    (STORE, "Information Store", "IS", 0.4),
    ("Microsoft Exchange Message Transfer Agent", "Message Transfer Agent", "MTA", 0.3),
    ("Microsoft Exchange Routing Service", "Routing Service", "ROUTING", 0.2),
    ("Microsoft Search", "Microsoft Search", "SEARCH", 0.3),
    ("SMTP Virtual Server Instance", "SMTP Virtual Server", "SMTP", 0.2),
    ("HTTP Virtual Server Instance", "HTTP Virtual Server", "HTTP", 0.2),
    ("POP3 Virtual Server Instance", "POP3 Virtual Server", "POP3", 0.2),
    ("IMAP4 Virtual Server Instance", "IMAP4 Virtual Server", "IMAP4", 0.2),
)
EXCHANGE_TYPES: tuple[str, ...] = (SA, *(rtype for rtype, *_ in EXCHANGE_SERVICES))
# Exchange 2003: protocols and search depend on the SA (they start in parallel with the store);
# Exchange 2000: they depend on the Information Store.
_ON_STORE_IN_2000 = {"SEARCH", "SMTP", "HTTP", "POP3", "IMAP4"}
LOG_REPLAY_S = 0.01  # lab seconds per outstanding transaction log at speed 10 (model)


def evs_groups(db: ClusterDb) -> list[str]:
    return [g for g in db.groups if g in db.evs]


def storage_groups(db: ClusterDb, group: str) -> int:
    return sum(int(r.private.get("StorageGroups", 1)) for r in db.group_resources(group) if r.type == STORE)


def storage_groups_ok(db: ClusterDb, group: str, node: str) -> bool:
    """Would ``group`` on ``node`` keep the node within 4 storage groups over every EVS it hosts?"""
    if group not in db.evs:
        return True
    hosted = sum(
        storage_groups(db, g)
        for g in evs_groups(db)
        if g != group and (db.groups[g].owner == node or db.groups[g].target == node)
    )
    return hosted + storage_groups(db, group) <= MAX_STORAGE_GROUPS_PER_NODE


def msdtc_create(
    db: ClusterDb, args: dict[str, Any], nodes: tuple[str, ...]
) -> tuple[list[Update], dict[str, Any]]:
    if any(r.type == DTC for r in db.resources.values()):
        raise AdminRefused(
            "MSDTC already exists in this cluster", "one Distributed Transaction Coordinator per cluster"
        )
    group = str(args.get("group") or "Cluster Group")
    if group not in db.groups:
        raise AdminRefused("The group does not exist", group)
    deps = [r.name for r in db.group_resources(group) if r.type in ("Network Name", "Physical Disk")]
    if not any(db.resources[d].type == "Network Name" for d in deps) or not any(
        db.resources[d].type == "Physical Disk" for d in deps
    ):
        raise AdminRefused("MSDTC needs a disk and a network name in its group", group)
    r = Resource("MSDTC", DTC, group, depends_on=deps, private={"StartupTime": 0.3, "Service": "MSDTC"})
    r.desired = "online" if db.groups[group].desired == "online" else "offline"
    return [resource_update(r)], {"name": r.name, "group": group, "depends_on": deps}


def exchange_install(
    db: ClusterDb, node: str, version: str, nodes: tuple[str, ...]
) -> tuple[list[Update], dict[str, Any]]:
    if version not in ("2003", "2000"):
        raise AdminRefused("Unknown Exchange version", f"{version!r} (2003 or 2000)")
    if db.installing is not None:
        raise AdminRefused(
            "Exchange setup runs on one node at a time", f"setup is running on {db.installing}; wait for it"
        )
    if db.exchange.get(node) == version:
        raise AdminRefused("Exchange is already installed on this node", f"Exchange {version} on {node}")
    return [
        ("set_exchange", {"node": node, "version": "", "installing": node, "installing_version": version})
    ], {
        "node": node,
        "version": version,
        "installing": True,
    }


def create_system_attendant(
    db: ClusterDb, g: Group, args: dict[str, Any], nodes: tuple[str, ...]
) -> tuple[list[Update], dict[str, Any]]:
    """Validate the setup rules and create the SA with every other Exchange resource, all Offline."""
    name = str(args.get("name") or f"{g.name} System Attendant")
    version = str(args.get("exchange_version") or "2003")
    if not any(r.type == DTC for r in db.resources.values()):
        raise AdminRefused("MSDTC must exist before an Exchange virtual server", "run msdtc.create first")
    if g.name in db.evs or any(r.type == SA for r in db.group_resources(g.name)):
        raise AdminRefused("The group already holds a System Attendant", g.name)
    owners = [n.upper() for n in (args.get("possible_owners") or nodes)]
    missing = [n for n in owners if db.exchange.get(n) != version]
    if missing:
        raise AdminRefused(
            f"Exchange {version} must be installed on every possible owner", f"not on {', '.join(missing)}"
        )
    resources = db.group_resources(g.name)
    disks = [r.name for r in resources if r.type == "Physical Disk"]
    ips = [r for r in resources if r.type == "IP Address"]
    names = [r for r in resources if r.type == "Network Name"]
    if not disks or not ips or not names:
        raise AdminRefused(
            "An Exchange virtual server needs a disk, an IP address and a network name", g.name
        )
    if not any(ip.name in names[0].depends_on for ip in ips):
        raise AdminRefused("The network name must depend on the IP address", names[0].name)
    count = len(evs_groups(db)) + 1
    if len(nodes) > 2 and count > len(nodes) - 1:
        raise AdminRefused(
            "At most N-1 Exchange virtual servers on a cluster of more than 2 nodes (active/passive)",
            f"{len(nodes)} nodes allow {len(nodes) - 1}",
        )
    if len(nodes) <= 2 and count > 2:
        raise AdminRefused("Active/active Exchange is limited to two virtual servers on two nodes", g.name)
    first = not evs_groups(db)
    sa = Resource(
        name, SA, g.name, depends_on=[names[0].name, *disks], possible_owners=owners,
        private={"StartupTime": 0.3, "Service": "SA", "ExchangeVersion": version},
    )  # fmt: skip
    updates = [resource_update(sa)]
    created = [sa.name]
    wanted = {"POP3": bool(args.get("pop3")), "IMAP4": bool(args.get("imap4")), "MTA": first}
    for rtype, suffix, service, startup in EXCHANGE_SERVICES:
        if not wanted.get(service, True):
            continue
        on_store = version == "2000" and service in _ON_STORE_IN_2000
        deps = [f"{g.name} Information Store"] if on_store else [sa.name]
        private: dict[str, Any] = {"StartupTime": startup, "Service": service, "ExchangeVersion": version}
        if rtype == STORE:
            private.update(LogBacklog=int(args.get("log_backlog", 20)), LogReplayTime=LOG_REPLAY_S)
            private["StorageGroups"] = min(int(args.get("storage_groups", 1)), MAX_STORAGE_GROUPS_PER_SERVER)
        r = Resource(
            f"{g.name} {suffix}", rtype, g.name, depends_on=deps, possible_owners=owners, private=private
        )
        updates.append(resource_update(r))
        created.append(r.name)
    record = {
        "version": version,
        "admin_group": str(args.get("admin_group") or "First Administrative Group"),
        "routing_group": str(args.get("routing_group") or "First Routing Group"),
        "mta": first,
        "resources": created,
    }
    updates.append(("put_evs", {"name": g.name, "record": record}))
    for r in resources:  # the EVS's own disk, IP and name take the SA's possible owners too
        updates.append(resource_update(replace(r, possible_owners=owners)))
    return updates, {"group": g.name, "created": created, **record}


def evs_create(
    db: ClusterDb, args: dict[str, Any], nodes: tuple[str, ...], address: str
) -> tuple[list[Update], dict[str, Any]]:
    """The whole group at once: disk, IP, name, then the SA (which creates the rest). All Offline."""
    name = str(args.get("name") or "")
    if not name.replace("-", "").isalnum() or len(name) > 15:
        raise AdminRefused(
            "A virtual server name is a NetBIOS name", f"{name!r}: letters, digits, '-', at most 15"
        )
    if any(g.upper() == name.upper() for g in db.groups) or db.find_name(name) is not None:
        raise AdminRefused("The name is already in use in the cluster", name)
    preferred = [str(args["preferred_owner"]).upper()] if args.get("preferred_owner") else []
    g = Group(name=name, preferred_owners=preferred)
    disk = Resource(f"{name} Disk", "Physical Disk", name, private={"Disk": str(args.get("disk") or name)})
    ip = Resource(f"{name} IP Address", "IP Address", name, private={"Address": address, "Port": 3344})
    net = Resource(f"{name} Network Name", "Network Name", name, depends_on=[ip.name],
                   private={"Name": name, "Address": address, "RequireKerberos": 1})  # fmt: skip
    staged = ClusterDb.from_dict(db.to_dict())
    base = [group_update(g), resource_update(disk), resource_update(ip), resource_update(net)]
    for op, op_args in base:
        staged.apply(op, op_args)
    sa_args = {k: v for k, v in args.items() if k != "name"}  # the SA gets its own name
    more, result = create_system_attendant(staged, g, sa_args, nodes)
    return base + more, {"address": address, "disk": disk.private["Disk"], **result}


def next_virtual_ip(db: ClusterDb, make: Any) -> str:
    """The lowest free 127.C.3.X (X from 2; 1 is the Cluster IP Address)."""
    used = {str(r.private.get("Address")) for r in db.resources.values() if r.type == "IP Address"}
    for x in range(2, 255):
        address = str(make(x))
        if address not in used:
            return address
    raise AdminRefused("No virtual IP address is left", "127.C.3.2-254 are all in use")
