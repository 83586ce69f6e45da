"""The failover manager: where each group runs. It is the quorum owner's job, computed from its copy.

Theory of operation
-------------------
Failover order (MSCS.md): the group's preferred owners in their order, then every other node by
node id. A node qualifies when it is a member, not paused, not evicted, and a possible owner of
every resource in the group. A failover goes to the next qualifying node after the current owner,
wrapping around; a move to "best possible" takes the first qualifying node. Where no preferred
list is set, any surviving possible owner will do. The Cluster Group ignores preferred owners and
always follows the quorum owner.

``place`` runs after every membership or database change and on every tick:
- A group that should be online but whose owner is gone (or that has none) gets a new owner.
  Losing the owner counts as a failover: at most FailoverThreshold within FailoverPeriod, after
  which the group is left Failed.
- Failback: a group that allows it moves back to its first preferred owner when that node is
  back, immediately or only between FailbackWindowStart and FailbackWindowEnd.

A move of a live group is two steps: the database names a ``target``, the owner takes the group
offline and hands it over (``group.handover``), then the target brings it online.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from nodeagent.core.clusterdb import ClusterDb, Group, ResourceState, group_update, resource_update
from nodeagent.core.effects import Event
from nodeagent.core.events import event
from nodeagent.core.evs import storage_groups_ok

Update = tuple[str, dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Context:
    me: str  # the quorum owner doing the placing
    nodes: tuple[str, ...]  # every configured node, by node id
    members: frozenset[str]
    speed: float
    now_s: float
    wall_hour: int | None  # local hour of day, for failback windows (None: unknown, windows closed)
    vip_prefix: str = "127.0.3."  # virtual IPs of this cluster: prefix + X


def qualifies(db: ClusterDb, g: Group, node: str, ctx: Context) -> bool:
    return (
        node in ctx.members
        and node not in db.paused
        and node not in db.evicted
        and all(r.can_run_on(node) for r in db.group_resources(g.name))
        and storage_groups_ok(db, g.name, node)
    )


def failover_order(g: Group, ctx: Context) -> list[str]:
    preferred = [] if g.is_cluster_group else [n for n in g.preferred_owners if n in ctx.nodes]
    return preferred + [n for n in ctx.nodes if n not in preferred]


def next_owner(db: ClusterDb, g: Group, after: str | None, ctx: Context) -> str | None:
    """The next qualifying node after ``after`` in failover order (the top when ``after`` is None)."""
    order = failover_order(g, ctx)
    if after in order:
        i = order.index(after)
        order = order[i + 1 :] + order[:i]
    for node in order:
        if qualifies(db, g, node, ctx):
            return node
    return None


def count_failover(db: ClusterDb, g: Group, ctx: Context) -> bool:
    """Record one failover; False when FailoverThreshold within FailoverPeriod is already reached."""
    period = float(g.prop("FailoverPeriod")) / ctx.speed
    g.failovers = [t for t in g.failovers if ctx.now_s - t < period]
    if len(g.failovers) >= int(g.prop("FailoverThreshold")):
        return False
    g.failovers.append(ctx.now_s)
    return True


def reset_states(db: ClusterDb, g: Group) -> list[Update]:
    """The group's resources are not running anywhere (their node died): Offline in the database."""
    out = []
    for r in db.group_resources(g.name):
        if r.state != ResourceState.OFFLINE.value:
            out.append(resource_update(replace(r, state=ResourceState.OFFLINE.value)))
    return out


def copy_group(g: Group) -> Group:
    return replace(g, failovers=list(g.failovers), preferred_owners=list(g.preferred_owners))


def place(db: ClusterDb, ctx: Context) -> tuple[list[Update], list[Event]]:
    updates: list[Update] = []
    events: list[Event] = []
    for original in list(db.groups.values()):
        g = copy_group(original)
        changed = False
        if g.target is not None and g.target not in ctx.members:
            g.target = None  # the target of a move died: the failover manager chooses again
            changed = True
        if g.is_cluster_group:
            if g.owner != ctx.me:
                reason = "the Cluster Group follows the quorum"
                g.owner, g.target, g.desired, changed = ctx.me, None, "online", True
                updates.extend(reset_states(db, g))
                events.append(event("group_owner", ctx.me, group=g.name, owner=ctx.me, reason=reason))
        elif g.desired == "online" and not g.failed and (g.owner is None or g.owner not in ctx.members):
            lost = g.owner
            target = next_owner(db, g, lost, ctx)
            if lost is not None:
                updates.extend(reset_states(db, g))
            if target is None:
                if g.owner is not None:
                    g.owner, changed = None, True
            elif lost is not None and not count_failover(db, g, ctx):
                g.owner, g.failed, changed = None, True, True
                reason = f"FailoverThreshold {g.prop('FailoverThreshold')} reached"
                events.append(event("group_failed", ctx.me, group=g.name, owner=lost, reason=reason))
            else:
                why = f"{lost} is no longer in the cluster" if lost else "brought online"
                g.owner, changed = target, True
                events.append(event("group_owner", ctx.me, group=g.name, owner=target, reason=why))
        elif _failback_due(db, g, ctx):
            g.target, changed = g.preferred_owners[0], True
            events.append(
                event(
                    "group_moving", ctx.me, group=g.name, source=g.owner, target=g.target, reason="failback"
                )
            )
        if changed:
            updates.append(group_update(g))
    return updates, events


def _failback_due(db: ClusterDb, g: Group, ctx: Context) -> bool:
    if int(g.prop("AutoFailbackType")) != 1 or not g.preferred_owners or g.owner is None or g.target:
        return False
    home = g.preferred_owners[0]
    if g.owner == home or g.desired != "online" or not qualifies(db, g, home, ctx):
        return False
    start, end = int(g.prop("FailbackWindowStart")), int(g.prop("FailbackWindowEnd"))
    if start < 0 or end < 0:
        return True  # allowed immediately
    if ctx.wall_hour is None:
        return False
    h = ctx.wall_hour
    return start <= h < end if start <= end else (h >= start or h < end)
