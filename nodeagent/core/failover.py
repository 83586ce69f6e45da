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
- Fencing. A node removed from the membership may still be running (cut off, not dead), with the
  group Online, until its own regroup fails and it halts. Its groups are therefore placed elsewhere
  only from ``ctx.fence_until[node]`` on: the instant by which a running node that stopped hearing
  the cluster must have halted (``Timing.fence_s`` after the placer last heard it, see config.py).
  MSCS lets the Physical Disk challenge and the address-conflict check catch the overlap instead;
  wolfpack waits, so that no group is ever Online on two nodes. Such a group is marked
  ``after_fence``: its Physical Disks break the lost owner's stale reservation without the
  challenge's wait (the fence was that wait), as runtime/resources/disk.py explains.
- Retry (MSCS RetryPeriodOnFailure). A group left Failed is tried again, where it is, once
  ``RetryPeriodOnFailure`` (the shortest of its resources') has passed since it failed; one that
  failed because no other node could take it is also tried again as soon as a node joins.
- Failback: a group that allows it moves back to its first preferred owner when that node is
  back, immediately or only between FailbackWindowStart and FailbackWindowEnd.

A move of a live group is two steps: the database names a ``target``, the owner takes the group
offline and hands it over (``group.handover``), then the target brings it online.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from nodeagent.core.clusterdb import (
    RESOURCE_DEFAULTS,
    ClusterDb,
    Group,
    ResourceState,
    group_update,
    resource_update,
)
from nodeagent.core.effects import Event
from nodeagent.core.events import event
from nodeagent.core.evs import storage_groups_ok

Update = tuple[str, dict[str, Any]]
_NEVER = float("-inf")


@dataclass(frozen=True, slots=True)
class Context:
    me: str  # the quorum owner doing the placing
    nodes: tuple[str, ...]  # every configured node, by node id
    members: frozenset[str]
    speed: float
    now_s: float
    wall_hour: int | None  # local hour of day, for failback windows (None: unknown, windows closed)
    vip_prefix: str = "127.0.3."  # virtual IPs of this cluster: prefix + X
    fence_until: dict[str, float] = field(default_factory=dict)  # lost node -> its groups may move from


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
    return replace(
        g,
        failovers=list(g.failovers),
        preferred_owners=list(g.preferred_owners),
        failed_members=list(g.failed_members),
    )


def place(db: ClusterDb, ctx: Context) -> tuple[list[Update], list[Event]]:
    updates: list[Update] = []
    events: list[Event] = []
    for original in list(db.groups.values()):
        g = copy_group(original)
        changed = False
        if g.target is not None and g.target not in ctx.members:
            g.target = None  # the target of a move died: the failover manager chooses again
            changed = True
        if g.is_cluster_group and g.owner != ctx.me:
            reason = "the Cluster Group follows the quorum"
            g.owner, g.target, g.desired, changed = ctx.me, None, "online", True
            updates.extend(reset_states(db, g))
            events.append(event("group_owner", ctx.me, group=g.name, owner=ctx.me, reason=reason))
        elif g.failed and (why := _retry_due(g, ctx)):
            g.failed, g.desired, g.retry_at_s, g.failed_members, changed = False, "online", None, [], True
            events.append(event("group_retry", ctx.me, group=g.name, owner=g.owner or "any node", reason=why))
        elif g.is_cluster_group:
            pass  # it follows the quorum owner, and nothing else moves it
        elif awaiting_fence(g, ctx):
            pass  # its lost owner may still be running it: wait until that node must have halted
        elif g.desired == "online" and not g.failed and (g.owner is None or g.owner not in ctx.members):
            lost = g.owner
            target = next_owner(db, g, lost, ctx)
            if lost is not None:
                updates.extend(reset_states(db, g))
            if target is None:
                if g.owner is not None:
                    g.owner, changed = None, True
            elif lost is not None and not count_failover(db, g, ctx):
                g.owner, changed = None, True
                mark_failed(db, g, ctx, join_retry=False)
                reason = f"FailoverThreshold {g.prop('FailoverThreshold')} reached"
                events.append(event("group_failed", ctx.me, group=g.name, owner=lost, reason=reason))
            else:
                why = f"{lost} is no longer in the cluster" if lost else "brought online"
                g.owner, g.after_fence, changed = target, lost is not None, True
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


def awaiting_fence(g: Group, ctx: Context) -> bool:
    lost = g.owner is not None and g.owner not in ctx.members
    return lost and ctx.now_s < ctx.fence_until.get(g.owner or "", _NEVER)


def mark_failed(db: ClusterDb, g: Group, ctx: Context, *, join_retry: bool) -> None:
    """Leave ``g`` Failed where it is, with its retry arranged (RetryPeriodOnFailure, a node joining)."""
    g.failed, g.desired = True, "offline"
    periods = [float(r.prop("RetryPeriodOnFailure")) for r in db.group_resources(g.name)]
    g.retry_at_s = ctx.now_s + min(periods or [float(RESOURCE_DEFAULTS["RetryPeriodOnFailure"])]) / ctx.speed
    g.failed_members = sorted(ctx.members) if join_retry else []


def _retry_due(g: Group, ctx: Context) -> str:
    """Why a failed group is due to be tried again ("" when it is not)."""
    if g.retry_at_s is not None and ctx.now_s >= g.retry_at_s:
        return "RetryPeriodOnFailure has passed"
    joined = sorted(m for m in ctx.members if m not in g.failed_members)
    return f"{', '.join(joined)} joined the cluster" if g.failed_members and joined else ""


def retry_deadline(db: ClusterDb) -> float | None:
    times = [g.retry_at_s for g in db.groups.values() if g.failed and g.retry_at_s is not None]
    return min(times) if times else None


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
