"""Admin requests (the cluster.exe verbs), validated by the quorum owner and turned into updates.

Theory of operation
-------------------
``handle(db, cmd, args, ctx)`` runs on the quorum owner, the sequencer. It checks the request
against the database and the MSCS rules, and returns the updates to replicate (clusterdb.py) and a
result for the caller, or raises ``AdminRefused`` naming the rule that refused it. Nothing here
changes ``db``: the caller applies the updates through the global update path, so the owner's copy
and everyone else's go through the very same ``apply``.

Besides the operators' verbs, the owners of groups use three internal requests:
``resource.state`` (a resource changed state there), ``group.handover`` (a group it took offline
for a move is ready for its target) and ``group.failover`` (a resource failed past its threshold).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from nodeagent.config import is_disk_name
from nodeagent.core import evs, mounts
from nodeagent.core.clusterdb import (
    GROUP_DEFAULTS,
    RESOURCE_DEFAULTS,
    ClusterDb,
    Group,
    Resource,
    ResourceState,
    group_update,
    resource_update,
)
from nodeagent.core.effects import Event
from nodeagent.core.events import event
from nodeagent.core.failover import (
    Context,
    awaiting_fence,
    copy_group,
    count_failover,
    failover_order,
    mark_failed,
    next_owner,
    qualifies,
    reset_states,
)
from nodeagent.errors import AdminRefused

Update = tuple[str, dict[str, Any]]
Outcome = tuple[list[Update], dict[str, Any], list[Event]]

RESOURCE_TYPES = (
    "Physical Disk",
    "IP Address",
    "Network Name",
    "Generic Application",
    evs.DTC,
    *evs.EXCHANGE_TYPES,
)


def describe_group(db: ClusterDb, g: Group) -> dict[str, Any]:
    return {
        "name": g.name,
        "state": db.group_state(g.name).value,
        "owner": g.owner,
        "target": g.target,
        "preferred_owners": list(g.preferred_owners),
        "props": {k: g.prop(k) for k in GROUP_DEFAULTS},
        "resources": [describe_resource(r) for r in db.group_resources(g.name)],
    }


def describe_resource(r: Resource) -> dict[str, Any]:
    return {
        "name": r.name,
        "type": r.type,
        "group": r.group,
        "state": r.state,
        "depends_on": list(r.depends_on),
        "possible_owners": list(r.possible_owners),
        "props": {k: r.prop(k) for k in RESOURCE_DEFAULTS},
        "private": dict(r.private),
    }


def handle(db: ClusterDb, cmd: str, args: dict[str, Any], ctx: Context) -> Outcome:
    verb = _VERBS.get(cmd)
    if verb is None:
        raise AdminRefused("unknown request", f"{cmd!r} (known: {', '.join(sorted(_VERBS))})")
    return verb(db, args, ctx)


# -- helpers ----------------------------------------------------------------------------------------------
def _str(args: dict[str, Any], key: str) -> str:
    value = args.get(key)
    if not isinstance(value, str) or not value:
        raise AdminRefused("bad request", f"{key} must be a non-empty string")
    return value


def _group(db: ClusterDb, args: dict[str, Any], key: str = "name") -> Group:
    name = _str(args, key)
    for g in db.groups.values():
        if g.name.upper() == name.upper():
            return copy_group(g)
    raise AdminRefused("The group does not exist", name)


def _resource(db: ClusterDb, args: dict[str, Any], key: str = "name") -> Resource:
    name = _str(args, key)
    for r in db.resources.values():
        if r.name.upper() == name.upper():
            return replace(r, depends_on=list(r.depends_on), possible_owners=list(r.possible_owners))
    raise AdminRefused("The cluster resource could not be found", name)


def _node(args: dict[str, Any], ctx: Context, key: str = "node") -> str:
    name = _str(args, key).upper()
    if name not in ctx.nodes:
        raise AdminRefused("The cluster node is not valid", f"{name} (nodes: {', '.join(ctx.nodes)})")
    return name


def _props(args: dict[str, Any], allowed: dict[str, float | int]) -> dict[str, Any]:
    props = args.get("props") or {}
    if not isinstance(props, dict):
        raise AdminRefused("bad request", "props must be a table of name=value")
    for key, value in props.items():
        if key not in allowed:
            raise AdminRefused("The property is not valid", f"{key} (known: {', '.join(allowed)})")
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise AdminRefused("The property value is not valid", f"{key}={value!r}: a number")
    return dict(props)


def _ok(
    db: ClusterDb, updates: list[Update], result: dict[str, Any], events: list[Event] | None = None
) -> Outcome:
    return updates, result, events or []


# -- nodes ----------------------------------------------------------------------------------------------
def _node_pause(db: ClusterDb, args: dict[str, Any], ctx: Context) -> Outcome:
    node = _node(args, ctx)
    return _ok(
        db, [("set_node", {"node": node, "paused": True, "evicted": node in db.evicted})], {"node": node}
    )


def _node_resume(db: ClusterDb, args: dict[str, Any], ctx: Context) -> Outcome:
    node = _node(args, ctx)
    return _ok(
        db, [("set_node", {"node": node, "paused": False, "evicted": node in db.evicted})], {"node": node}
    )


def _node_evict(db: ClusterDb, args: dict[str, Any], ctx: Context) -> Outcome:
    node = _node(args, ctx)
    for name in db.evs:
        g = db.groups.get(name)
        if g is not None and g.owner == node and db.group_state(name).value != "Offline":
            raise AdminRefused(
                "A node cannot be removed while an Exchange virtual server runs on it",
                f"{name} runs on {node}",
            )
    return _ok(
        db, [("set_node", {"node": node, "paused": node in db.paused, "evicted": True})], {"node": node}
    )


# -- groups ---------------------------------------------------------------------------------------------
def _group_create(db: ClusterDb, args: dict[str, Any], ctx: Context) -> Outcome:
    name = _str(args, "name")
    if any(g.upper() == name.upper() for g in db.groups):
        raise AdminRefused("The group already exists", name)
    owners = [_node({"node": n}, ctx) for n in args.get("preferred_owners") or []]
    g = Group(name=name, preferred_owners=owners, is_cluster_group=bool(args.get("cluster_group")))
    return _ok(db, [group_update(g)], {"name": name, "preferred_owners": owners})


def _group_delete(db: ClusterDb, args: dict[str, Any], ctx: Context) -> Outcome:
    g = _group(db, args)
    if db.group_resources(g.name):
        raise AdminRefused("The group is not empty", f"{g.name} still holds resources")
    return _ok(db, [("del_group", {"name": g.name})], {"name": g.name})


def _group_status(db: ClusterDb, args: dict[str, Any], ctx: Context) -> Outcome:
    return _ok(db, [], describe_group(db, _group(db, args)))


def _group_online(db: ClusterDb, args: dict[str, Any], ctx: Context) -> Outcome:
    g = _group(db, args)
    updates: list[Update] = []
    for r in db.group_resources(g.name):
        if r.desired != "online":
            updates.append(resource_update(replace(r, desired="online")))
    g.desired, g.failed = "online", False
    if args.get("node"):
        node = _node(args, ctx)
        if not qualifies(db, g, node, ctx):
            raise AdminRefused("The node is not a possible owner of every resource in the group", node)
        if awaiting_fence(g, ctx):
            g.target = node  # the failover manager places it once its lost owner must have halted
        elif g.owner is None or g.owner not in ctx.members:
            g.owner, g.after_fence = node, False
        elif g.owner != node:
            g.target = node
    elif (g.owner is None or g.owner not in ctx.members) and not awaiting_fence(g, ctx):
        g.owner, g.after_fence = next_owner(db, g, None, ctx), False
        if g.owner is None:
            raise AdminRefused("No node can own the group", "no qualifying member")
    updates.append(group_update(g))
    return _ok(db, updates, {"name": g.name, "owner": g.target or g.owner})


def _group_offline(db: ClusterDb, args: dict[str, Any], ctx: Context) -> Outcome:
    g = _group(db, args)
    if g.is_cluster_group:
        raise AdminRefused("The Cluster Group cannot be taken offline", g.name)
    g.desired, g.target, g.failed = "offline", None, False
    return _ok(db, [group_update(g)], {"name": g.name, "owner": g.owner})


def _group_move(db: ClusterDb, args: dict[str, Any], ctx: Context) -> Outcome:
    g = _group(db, args)
    if g.is_cluster_group:
        why = "it goes where the quorum goes: stop its owner to hand the quorum over"
        raise AdminRefused("The Cluster Group follows the quorum owner", why)
    if g.owner is None:
        raise AdminRefused("The group is not owned by any node", f"{g.name}: bring it online first")
    if args.get("node"):
        node = _node(args, ctx)
        if not qualifies(db, g, node, ctx):
            raise AdminRefused(
                "The node is not a possible owner of every resource in the group, or is down", node
            )
    else:
        candidates = [n for n in failover_order(g, ctx) if n != g.owner and qualifies(db, g, n, ctx)]
        if not candidates:
            raise AdminRefused("No other node can own the group", g.name)
        node = candidates[0]
    if node == g.owner:
        return _ok(db, [], {"name": g.name, "owner": node})
    g.target = node
    ev = event(
        "group_moving", ctx.me, group=g.name, source=g.owner, target=node, reason="moved by the operator"
    )
    return _ok(db, [group_update(g)], {"name": g.name, "owner": g.owner, "target": node}, [ev])


def _group_owners(db: ClusterDb, args: dict[str, Any], ctx: Context) -> Outcome:
    g = _group(db, args)
    if "nodes" in args and args["nodes"] is not None:
        g.preferred_owners = [_node({"node": n}, ctx) for n in args["nodes"]]
        return _ok(db, [group_update(g)], {"name": g.name, "preferred_owners": g.preferred_owners})
    return _ok(db, [], {"name": g.name, "preferred_owners": g.preferred_owners})


def _group_prop(db: ClusterDb, args: dict[str, Any], ctx: Context) -> Outcome:
    g = _group(db, args)
    props = _props(args, GROUP_DEFAULTS)
    if not props:
        return _ok(db, [], describe_group(db, g)["props"])
    g.props.update(props)
    return _ok(db, [group_update(g)], {k: g.prop(k) for k in GROUP_DEFAULTS})


# -- resources ------------------------------------------------------------------------------------------
def _resource_create(db: ClusterDb, args: dict[str, Any], ctx: Context) -> Outcome:
    name = _str(args, "name")
    if any(r.upper() == name.upper() for r in db.resources):
        raise AdminRefused("The cluster resource already exists", name)
    g = _group(db, args, "group")
    rtype = _str(args, "type")
    if rtype not in RESOURCE_TYPES:
        raise AdminRefused("The resource type is not known", f"{rtype!r}")
    private = args.get("private") or {}
    if not isinstance(private, dict):
        raise AdminRefused("bad request", "private must be a table")
    disk = private.get("Disk")
    if rtype == "Physical Disk" and not is_disk_name(disk):
        raise AdminRefused("A Physical Disk names its shared disk", f"Disk = {disk!r}: letters and digits")
    if rtype == evs.SA:  # creating the System Attendant creates the virtual server (setup rules apply)
        updates, result = evs.create_system_attendant(db, g, {**private, **args, "name": name}, ctx.nodes)
        return _ok(db, updates, result)
    r = Resource(
        name=name,
        type=rtype,
        group=g.name,
        depends_on=mounts.mount_dependencies(db, g.name, rtype, private),
        private=dict(private),
        separate_monitor=bool(args.get("separate")),
    )
    if g.desired == "online" and args.get("online"):
        r.desired = "online"
    return _ok(db, [resource_update(r)], describe_resource(r))


def _resource_delete(db: ClusterDb, args: dict[str, Any], ctx: Context) -> Outcome:
    r = _resource(db, args)
    if r.state != ResourceState.OFFLINE.value and r.state != ResourceState.FAILED.value:
        raise AdminRefused("The resource must be offline to be deleted", f"{r.name} is {r.state}")
    users = [d.name for d in db.dependents(r.name)]
    if users:
        raise AdminRefused("Other resources depend on this resource", ", ".join(users))
    return _ok(db, [("del_resource", {"name": r.name})], {"name": r.name})


def _resource_status(db: ClusterDb, args: dict[str, Any], ctx: Context) -> Outcome:
    return _ok(db, [], describe_resource(_resource(db, args)))


def _resource_online(db: ClusterDb, args: dict[str, Any], ctx: Context) -> Outcome:
    r = _resource(db, args)
    updates: list[Update] = []
    # Bringing a resource online brings what it depends on online first.
    for name in sorted(_closure(r.name, lambda n: db.resources[n].depends_on)):
        res = db.resources[name]
        if res.desired != "online" or res.state == ResourceState.FAILED.value:
            updates.append(resource_update(replace(res, desired="online")))
    g = copy_group(db.groups[r.group])
    if g.desired != "online" or g.owner is None or g.failed:
        g.desired, g.failed = "online", False
        if (g.owner is None or g.owner not in ctx.members) and not awaiting_fence(g, ctx):
            g.owner, g.after_fence = next_owner(db, g, None, ctx), False
            if g.owner is None:
                raise AdminRefused("No node can own the group", g.name)
        updates.append(group_update(g))
    return _ok(db, updates, {"name": r.name, "group": r.group, "owner": g.owner})


def _resource_offline(db: ClusterDb, args: dict[str, Any], ctx: Context) -> Outcome:
    r = _resource(db, args)
    # Taking a resource offline takes what depends on it offline first.
    chain = sorted(_closure(r.name, lambda n: [d.name for d in db.dependents(n)]))
    updates = [resource_update(replace(db.resources[name], desired="offline")) for name in chain]
    return _ok(db, updates, {"name": r.name, "offline": chain})


def _closure(start: str, neighbours: Callable[[str], list[str]]) -> set[str]:
    """``start`` and every resource reachable from it through ``neighbours``."""
    seen: set[str] = set()
    todo = [start]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(neighbours(name))
    return seen


def _resource_deps(db: ClusterDb, args: dict[str, Any], ctx: Context) -> Outcome:
    r = _resource(db, args)
    if args.get("add"):
        dep = _resource(db, args, "add")
        if dep.group != r.group:
            raise AdminRefused("Dependencies must stay inside one group", f"{dep.name} is in {dep.group}")
        if dep.name == r.name or _depends(db, dep.name, r.name):
            raise AdminRefused("The dependency would create a circle", f"{dep.name} depends on {r.name}")
        if dep.name not in r.depends_on:
            r.depends_on.append(dep.name)
    elif args.get("remove"):
        dep = _resource(db, args, "remove")
        if dep.name not in r.depends_on:
            raise AdminRefused("The dependency does not exist", f"{r.name} does not depend on {dep.name}")
        mounts.check_dependency_removal(r, dep.name)
        r.depends_on.remove(dep.name)
    else:
        return _ok(db, [], {"name": r.name, "depends_on": r.depends_on})
    return _ok(db, [resource_update(r)], {"name": r.name, "depends_on": r.depends_on})


def _depends(db: ClusterDb, a: str, b: str) -> bool:
    """Does ``a`` depend on ``b``, directly or not?"""
    return b in _closure(a, lambda n: db.resources[n].depends_on)


def _resource_owners(db: ClusterDb, args: dict[str, Any], ctx: Context) -> Outcome:
    r = _resource(db, args)
    owners = list(r.possible_owners or ctx.nodes)
    if args.get("add"):
        node = _node(args, ctx, "add")
        if node not in owners:
            owners.append(node)
    elif args.get("remove"):
        node = _node(args, ctx, "remove")
        g = db.groups[r.group]
        if g.owner == node and r.state != ResourceState.OFFLINE.value:
            raise AdminRefused("The resource is online on that node", f"{r.name} on {node}")
        if node in owners:
            owners.remove(node)
    else:
        return _ok(db, [], {"name": r.name, "possible_owners": owners})
    r.possible_owners = [n for n in ctx.nodes if n in owners]
    return _ok(db, [resource_update(r)], {"name": r.name, "possible_owners": r.possible_owners})


def _resource_prop(db: ClusterDb, args: dict[str, Any], ctx: Context) -> Outcome:
    r = _resource(db, args)
    props = _props(args, RESOURCE_DEFAULTS)
    private = args.get("private") or {}
    if not isinstance(private, dict):
        raise AdminRefused("bad request", "private must be a table")
    if not props and not private:
        return _ok(db, [], describe_resource(r))
    mounts.check_private_change(r, private)
    r.props = {**r.props, **props}
    r.private = {**r.private, **private}
    return _ok(db, [resource_update(r)], describe_resource(r))


def _cluster_prop(db: ClusterDb, args: dict[str, Any], ctx: Context) -> Outcome:
    props = args.get("props") or {}
    if not isinstance(props, dict):
        raise AdminRefused("bad request", "props must be a table")
    return _ok(db, [("set_prop", {"name": k, "value": v}) for k, v in props.items()], {**db.props, **props})


# -- Exchange -------------------------------------------------------------------------------------------
def _msdtc_create(db: ClusterDb, args: dict[str, Any], ctx: Context) -> Outcome:
    updates, result = evs.msdtc_create(db, args, ctx.nodes)
    return _ok(db, updates, result)


def _exchange_install(db: ClusterDb, args: dict[str, Any], ctx: Context) -> Outcome:
    node = _node(args, ctx)
    updates, result = evs.exchange_install(db, node, str(args.get("version") or "2003"), ctx.nodes)
    ev = event("exchange_setup", ctx.me, target=node, version=result["version"], stage="started")
    return _ok(db, updates, result, [ev])


def _exchange_status(db: ClusterDb, args: dict[str, Any], ctx: Context) -> Outcome:
    return _ok(db, [], {"installed": dict(db.exchange), "installing": db.installing, "evs": dict(db.evs)})


def _evs_create(db: ClusterDb, args: dict[str, Any], ctx: Context) -> Outcome:
    address = evs.next_virtual_ip(db, lambda x: f"{ctx.vip_prefix}{x}")
    updates, result = evs.evs_create(db, args, ctx.nodes, address)
    return _ok(db, updates, result)


# -- internal requests from group owners ------------------------------------------------------------------
def _resource_state(db: ClusterDb, args: dict[str, Any], ctx: Context) -> Outcome:
    r = db.resources.get(_str(args, "name"))
    if r is None or db.groups[r.group].owner != args.get("node") or r.state == args.get("state"):
        return _ok(db, [], {})  # stale: the group moved on meanwhile
    return _ok(db, [resource_update(replace(r, state=_str(args, "state")))], {})


def _group_handover(db: ClusterDb, args: dict[str, Any], ctx: Context) -> Outcome:
    g = _group(db, args)
    if g.target is None or g.target != args.get("node"):
        return _ok(db, [], {})
    source, g.owner, g.target, g.after_fence = g.owner, g.target, None, False
    ev = event("group_owner", ctx.me, group=g.name, owner=g.owner, reason=f"moved from {source}")
    return _ok(db, [*reset_states(db, g), group_update(g)], {}, [ev])


def _group_failover(db: ClusterDb, args: dict[str, Any], ctx: Context) -> Outcome:
    g = _group(db, args)
    reason = f"resource {args.get('resource')} failed: {args.get('reason')}"
    if g.owner is None or g.target is not None or args.get("node") != g.owner:
        return _ok(db, [], {})  # stale, or from a node that does not own the group (any more)
    # The Cluster Group cannot leave the quorum owner: it is left Failed there, and tried again.
    target = None if g.is_cluster_group else next_owner(db, g, g.owner, ctx)
    if target is None or not count_failover(db, g, ctx):
        mark_failed(db, g, ctx, join_retry=target is None)
        why = (
            "it stays with the quorum owner"
            if g.is_cluster_group
            else "no other node can take it"
            if target is None
            else f"FailoverThreshold {g.prop('FailoverThreshold')}"
        )
        return _ok(
            db,
            [group_update(g)],
            {},
            [event("group_failed", ctx.me, group=g.name, owner=g.owner, reason=why)],
        )
    g.target = target
    ev = event("group_moving", ctx.me, group=g.name, source=g.owner, target=target, reason=reason)
    return _ok(db, [group_update(g)], {}, [ev])


_VERBS = {
    "node.pause": _node_pause,
    "node.resume": _node_resume,
    "node.evict": _node_evict,
    "group.create": _group_create,
    "group.delete": _group_delete,
    "group.status": _group_status,
    "group.online": _group_online,
    "group.offline": _group_offline,
    "group.move": _group_move,
    "group.owners": _group_owners,
    "group.prop": _group_prop,
    "resource.create": _resource_create,
    "resource.delete": _resource_delete,
    "resource.status": _resource_status,
    "resource.online": _resource_online,
    "resource.offline": _resource_offline,
    "resource.deps": _resource_deps,
    "resource.owners": _resource_owners,
    "resource.prop": _resource_prop,
    "cluster.prop": _cluster_prop,
    "msdtc.create": _msdtc_create,
    "exchange.install": _exchange_install,
    "evs.create": _evs_create,
    "exchange.status": _exchange_status,
    "resource.state": _resource_state,
    "group.handover": _group_handover,
    "group.failover": _group_failover,
}
INTERNAL_VERBS = frozenset({"resource.state", "group.handover", "group.failover"})
