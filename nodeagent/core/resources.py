"""The resource manager: runs the resources of the groups this node owns, as MSCS's resource monitor.

Theory of operation
-------------------
The node that owns a group (``Group.owner`` in the cluster database) keeps a local state machine
for each of the group's resources, and asks its shell to carry out resource actions:

    OFFLINE --online--> ONLINE_PENDING --ok--> ONLINE --offline--> OFFLINE_PENDING --ok--> OFFLINE
    ONLINE_PENDING --fail / PendingTimeout (terminate)--> FAILED
    ONLINE --LooksAlive/IsAlive fails, or the resource reports a failure--> FAILED

``step`` decides what to do next, every time anything changes:
- A resource comes online once every resource it depends on is online. Independent resources start
  in parallel.
- It goes offline before the resources it depends on: when its group goes offline or moves away,
  when it was asked to, or when a dependency is no longer online.
- A failed resource follows its restart policy (RestartAction, RestartThreshold within
  RestartPeriod). Past the threshold it stays Failed, and with "affect the group" it asks for the
  group to fail over (``Failover``).

Every local state change goes to the quorum owner as a ``resource_state`` request, which replicates
it, so every node's copy of the database shows every resource's state. A request made while no node
sequences updates (during a regroup) is lost, so a state the database still lacks is sent again
every ``RESYNC_S`` (over speed). Times in the database are
Windows 2003 seconds; this module divides them by ``speed``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nodeagent.core.clusterdb import ClusterDb, Resource, ResourceState
from nodeagent.core.effects import Event, ResourceAction, ResourceReport
from nodeagent.core.events import event

S = ResourceState
RESYNC_S = 5.0  # Windows seconds: a state the database still lacks is sent again after this
_DOWN = (S.OFFLINE, S.FAILED)


@dataclass(slots=True)
class Local:
    """What this node knows of one resource it runs."""

    state: ResourceState = S.OFFLINE
    token: int = 0  # the action in flight (0: none)
    action: str = ""
    deadline_s: float | None = None  # PendingTimeout of the action in flight
    restarts: list[float] = field(default_factory=list)
    restart_wanted: bool = False
    next_looks_s: float | None = None
    next_is_s: float | None = None
    detail: str = ""
    reported_s: float = float("-inf")  # when its state was last sent to the quorum owner


@dataclass(frozen=True, slots=True)
class Failover:
    """Ask the quorum owner to move ``group`` to the next node: a resource failed past its threshold."""

    group: str
    resource: str
    reason: str


@dataclass(slots=True)
class StepOutput:
    actions: list[ResourceAction] = field(default_factory=list)
    requests: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # admin-style, to the owner
    events: list[Event] = field(default_factory=list)
    failovers: list[Failover] = field(default_factory=list)


class ResourceManager:
    def __init__(self, me: str, speed: float) -> None:
        self.me = me
        self._speed = speed
        self.local: dict[str, Local] = {}
        self._token = 0

    # -- inputs ----------------------------------------------------------------------------------------
    def on_report(self, db: ClusterDb, report: ResourceReport, now_s: float, out: StepOutput) -> None:
        lr = self.local.get(report.resource)
        r = db.resources.get(report.resource)
        if lr is None or r is None:
            return
        if report.action == "failed":  # unsolicited: the resource failed by itself
            if lr.state in (S.ONLINE, S.ONLINE_PENDING):
                self._failed(db, r, lr, now_s, report.detail or "the resource reported a failure", out)
            return
        if report.action in ("looks_alive", "is_alive"):
            if not report.ok and lr.state == S.ONLINE and not lr.token:
                self._failed(db, r, lr, now_s, report.detail or f"{report.action} check failed", out)
            return
        if report.token != lr.token:
            return  # an answer to an action we gave up on (terminated)
        action, lr.token, lr.action, lr.deadline_s = lr.action, 0, "", None
        if action == "online":
            if report.ok:
                self._set(r, lr, S.ONLINE, now_s, out)
                lr.next_looks_s = now_s + self._secs(r, "LooksAlivePollInterval")
                lr.next_is_s = now_s + self._secs(r, "IsAlivePollInterval")
            else:
                self._failed(db, r, lr, now_s, report.detail or "online failed", out)
        elif action in ("offline", "terminate"):
            self._set(r, lr, S.FAILED if lr.restart_wanted or lr.state == S.FAILED else S.OFFLINE, now_s, out)

    def terminate_all(self, db: ClusterDb, out: StepOutput) -> None:
        """The cluster service stops here (halt, stop): every local resource is terminated at once."""
        for name, lr in self.local.items():
            r = db.resources.get(name)
            if r is not None and lr.state != S.OFFLINE:
                out.actions.append(self._action(r, lr, "terminate"))
        self.local.clear()

    # -- the decision ------------------------------------------------------------------------------------
    def step(self, db: ClusterDb, now_s: float, out: StepOutput) -> None:
        for name in [n for n in self.local if n not in db.resources]:
            del self.local[name]  # deleted from the database
        for g in db.groups.values():
            mine = g.owner == self.me
            resources = db.group_resources(g.name)
            if not mine:
                for r in resources:  # ownership moved while we ran it: stop it now, and forget it
                    lr = self.local.pop(r.name, None)
                    if lr is not None and (lr.state not in _DOWN or lr.token):
                        out.actions.append(self._action(r, lr, "terminate"))
                continue
            leaving = g.desired == "offline" or (g.target is not None and g.target != self.me)
            memo: dict[str, bool] = {}
            for r in resources:
                lr = self.local.get(r.name)
                if lr is None:  # (new here: nothing to say again before it has said something)
                    lr = self.local[r.name] = Local(reported_s=now_s)
                self._resync(r, lr, now_s, out)
                if lr.token:
                    self._check_deadline(db, r, lr, now_s, out)
                    continue
                deps_up = self._deps_online(db, r.name, memo)
                want = not leaving and r.desired == "online" and deps_up
                dependents_down = all(self._state(d.name) in _DOWN for d in db.dependents(r.name))
                if want and (lr.state == S.OFFLINE or (lr.state == S.FAILED and lr.restart_wanted)):
                    if lr.state == S.FAILED and not dependents_down:
                        continue  # restart once what depends on it is down
                    lr.restart_wanted = False
                    self._set(r, lr, S.ONLINE_PENDING, now_s, out)
                    out.actions.append(self._action(r, lr, "online", now_s, after_fence=g.after_fence))
                elif not want and lr.state == S.ONLINE and dependents_down:
                    self._set(r, lr, S.OFFLINE_PENDING, now_s, out)
                    out.actions.append(self._action(r, lr, "offline", now_s))
                elif leaving and lr.state == S.FAILED and not lr.restart_wanted and dependents_down:
                    self._set(r, lr, S.OFFLINE, now_s, out)  # a failed resource is simply offline
                elif lr.state == S.ONLINE:
                    self._poll(r, lr, now_s, out)
            handing_over = g.target is not None and g.target != self.me
            if handing_over and all(self._state(r.name) in _DOWN for r in resources):
                out.requests.append(("group.handover", {"name": g.name, "node": g.target}))

    def next_deadline(self) -> float | None:
        times = [
            t
            for lr in self.local.values()
            for t in (lr.deadline_s, lr.next_looks_s, lr.next_is_s)
            if t is not None
        ]
        return min(times) if times else None

    def state_of(self, name: str) -> ResourceState:
        return self._state(name)

    # -- helpers -------------------------------------------------------------------------------------------
    def _deps_online(self, db: ClusterDb, name: str, memo: dict[str, bool]) -> bool:
        """Everything ``name`` depends on, directly or through others, is online here.

        Transitive on purpose: when a resource fails, what depends on it goes offline leaves first,
        and a leaf sees that only through the chain (its direct dependency is still online then).
        """
        if name in memo:
            return memo[name]
        memo[name] = False  # a cycle (refused by admin anyway) counts as not online
        r = db.resources.get(name)
        ok = r is not None and all(
            self._state(d) == S.ONLINE and self._deps_online(db, d, memo) for d in r.depends_on
        )
        memo[name] = ok
        return ok

    def _state(self, name: str) -> ResourceState:
        lr = self.local.get(name)
        return lr.state if lr is not None else S.OFFLINE

    def _secs(self, r: Resource, prop: str) -> float:
        return float(r.prop(prop)) / self._speed

    def _poll(self, r: Resource, lr: Local, now_s: float, out: StepOutput) -> None:
        for kind, attr, prop in (
            ("is_alive", "next_is_s", "IsAlivePollInterval"),
            ("looks_alive", "next_looks_s", "LooksAlivePollInterval"),
        ):
            due = getattr(lr, attr)
            if due is not None and now_s >= due:
                setattr(lr, attr, now_s + self._secs(r, prop))
                out.actions.append(self._action(r, lr, kind, None))
                return  # one probe at a time

    def _check_deadline(self, db: ClusterDb, r: Resource, lr: Local, now_s: float, out: StepOutput) -> None:
        if lr.deadline_s is not None and now_s >= lr.deadline_s and lr.action in ("online", "offline"):
            what = lr.action
            out.actions.append(self._action(r, lr, "terminate"))
            self._failed(
                db, r, lr, now_s, f"{what} did not finish within PendingTimeout", out, terminated=True
            )

    def _failed(
        self,
        db: ClusterDb,
        r: Resource,
        lr: Local,
        now_s: float,
        why: str,
        out: StepOutput,
        terminated: bool = False,
    ) -> None:
        lr.detail = why
        lr.next_looks_s = lr.next_is_s = None
        period = self._secs(r, "RestartPeriod")
        lr.restarts = [t for t in lr.restarts if now_s - t < period]
        action = int(r.prop("RestartAction"))
        conflict = why.startswith("address conflict")
        out.events.append(
            event("resource_failed", self.me, resource=r.name, group=r.group, reason=why)
            if not conflict
            else event("address_conflict", self.me, resource=r.name, group=r.group, reason=why)
        )
        if action != 0 and len(lr.restarts) < int(r.prop("RestartThreshold")):
            lr.restarts.append(now_s)
            lr.restart_wanted = True
        else:
            lr.restart_wanted = False
            if action == 2:
                out.failovers.append(Failover(r.group, r.name, why))
        if not terminated and lr.action != "terminate" and (lr.token or lr.state == S.ONLINE):
            # Whatever the instance still holds (a bound address) must go before anyone restarts it.
            out.actions.append(self._action(r, lr, "terminate"))
        if not lr.token or terminated:
            lr.token, lr.action, lr.deadline_s = 0, "", None
        self._set(r, lr, S.FAILED, now_s, out)

    def _set(self, r: Resource, lr: Local, state: ResourceState, now_s: float, out: StepOutput) -> None:
        if lr.state == state:
            return
        # (any) -> state; every change is one event and one replicated update
        lr.state = state
        if state != S.ONLINE:
            lr.next_looks_s = lr.next_is_s = None  # health polls run only while online
        out.events.append(event("resource_state", self.me, resource=r.name, group=r.group, state=state.value))
        lr.reported_s = now_s
        out.requests.append(("resource.state", {"name": r.name, "state": state.value, "node": self.me}))

    def _resync(self, r: Resource, lr: Local, now_s: float, out: StepOutput) -> None:
        """Say our state again when the database still shows another one (a report lost in a regroup)."""
        if r.state != lr.state.value and now_s - lr.reported_s >= RESYNC_S / self._speed:
            lr.reported_s = now_s
            state = {"name": r.name, "state": lr.state.value, "node": self.me}
            out.requests.append(("resource.state", state))

    def _action(
        self, r: Resource, lr: Local, action: str, now_s: float | None = None, *, after_fence: bool = False
    ) -> ResourceAction:
        self._token += 1
        if action in ("online", "offline", "terminate"):
            lr.token, lr.action = self._token, action
            lr.deadline_s = now_s + self._secs(r, "PendingTimeout") if now_s is not None else None
        props = dict(r.private)
        if after_fence and r.type == "Physical Disk":
            props["AfterFence"] = True  # the lost owner was fenced: no defender to wait for (disk.py)
        return ResourceAction(r.name, r.type, r.group, action, props, self._token)
