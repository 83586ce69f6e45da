"""The simulated resource monitor: answers every ResourceAction of every node in virtual time.

Theory of operation
-------------------
The real runtime hands a core's ``Ready.resource_actions`` to a resource monitor (runtime/resources/)
that runs the resource and answers each action with exactly one ``ResourceReport``. In the simulator
``SimResourceMonitor`` plays that part for every node at once, with no real sockets, processes or
sleeps. ``submit`` turns one action into a ``Completion`` due at a virtual time; the simulation puts
it in its event queue and, when it is due and the node is running, calls ``complete``, which applies
the side effect (an address bound or released) and returns the report the core gets. A frozen node's
completions wait in its inbox and complete at thaw: the monitor lives in the node process and stops
with it. A killed node's completions are dropped (``node_gone``), its resources vanish and its
addresses are freed.

Durations (private props are lab seconds already, as in CONTRACT3.md):
- ``online``: ``StartupTime`` (0.05 s when absent), plus ``LogBacklog * LogReplayTime`` for the
  Information Store, plus up to 1 ms of jitter from the simulation's rng;
- ``offline``/``terminate``/``looks_alive``/``is_alive``: about 1 ms.

``FailMode`` (private prop): ``once`` - the first online of that resource on that node process
fails (the runtime keeps the same per-process memory), ``always`` - every online fails, ``hang`` -
online never answers (the core's PendingTimeout terminates it; the hung online is then answered
"cancelled by terminate", as the runtime does, and the core ignores that stale token).

IP Address binding: ``bound`` maps each node to the addresses it has bound, across the simulated
machine. An IP Address online fails with ``address conflict: ...`` when another process (running or
frozen: a stopped process keeps its sockets) holds the address. Offline, terminate, a failure and a
kill release it. ``fail(node, resource)`` makes an online resource fail now: the binding goes and an
unsolicited ``ResourceReport(resource, "failed", 0, False, "failed on demand")`` follows.

Bounds: at most ``MAX_RESOURCES_PER_NODE`` resources are tracked per node; an action beyond that is
answered ok=False at once.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from nodeagent.core.effects import ResourceAction, ResourceReport

DEFAULT_STARTUP_S = 0.05
QUICK_S = 0.001
JITTER_S = 0.001
MAX_STARTUP_S = 3600.0
MAX_RESOURCES_PER_NODE = 1024
STORE = "Microsoft Exchange Information Store"
IP = "IP Address"
ONLINE = "Online"


@dataclass(frozen=True, slots=True)
class Completion:
    """One action finishing on ``node_id`` (incarnation ``incarnation``) at ``at_s``."""

    at_s: float
    node_id: int
    incarnation: int
    action: ResourceAction
    ok: bool = True  # decided at submit time for online (FailMode); other actions decide at completion
    detail: str = ""
    serial: int = 0  # the online this completes (a terminate cancels it: a newer serial wins)


@dataclass(slots=True)
class _Instance:
    """What the monitor of one node knows of one resource."""

    online: bool = False
    serial: int = 0  # bumped by every online/offline/terminate/failure: older online completions are stale
    pending_online: ResourceAction | None = None
    address: str = ""  # IP Address: the address it binds


@dataclass(slots=True)
class _NodeMonitor:
    incarnation: int
    instances: dict[str, _Instance] = field(default_factory=dict)
    once_fired: set[str] = field(default_factory=set)


class SimResourceMonitor:
    def __init__(self, rng: random.Random, names: dict[int, str]) -> None:
        self._rng = rng
        self._names = names
        self._nodes: dict[int, _NodeMonitor] = {}
        self.bound: dict[int, set[str]] = {}  # node -> addresses it has bound
        self.actions = 0
        self.reports = 0

    # -- node processes ------------------------------------------------------------------------------
    def node_started(self, node_id: int, incarnation: int) -> None:
        self.node_gone(node_id)
        self._nodes[node_id] = _NodeMonitor(incarnation)

    def node_gone(self, node_id: int) -> None:
        """The process died: its resources vanish with it, and so do its bound addresses."""
        self._nodes.pop(node_id, None)
        self.bound.pop(node_id, None)

    def holder_of(self, address: str) -> int | None:
        for node_id in sorted(self.bound):
            if address in self.bound[node_id]:
                return node_id
        return None

    def online_resources(self, node_id: int) -> list[str]:
        mon = self._nodes.get(node_id)
        return [] if mon is None else sorted(n for n, i in mon.instances.items() if i.online)

    # -- actions ---------------------------------------------------------------------------------------
    def submit(
        self, node_id: int, incarnation: int, action: ResourceAction, now_s: float
    ) -> list[Completion]:
        """What answering ``action`` will take; the simulation queues the completions."""
        self.actions += 1
        mon = self._nodes.get(node_id)
        if mon is None or mon.incarnation != incarnation:
            return []
        quick = now_s + QUICK_S + self._rng.uniform(0.0, JITTER_S)
        inst = mon.instances.get(action.resource)
        if inst is None:
            if len(mon.instances) >= MAX_RESOURCES_PER_NODE:
                return [Completion(quick, node_id, incarnation, action, False, "too many resources")]
            inst = mon.instances[action.resource] = _Instance()
        if action.action == "online":
            inst.serial += 1
            inst.pending_online = action
            mode = str(action.props.get("FailMode", "none")).strip().lower()
            if mode == "hang":
                return []
            if mode != "once":
                mon.once_fired.discard(action.resource)  # re-arms "once" for the next time it is set
            fail = mode == "always"
            if mode == "once" and action.resource not in mon.once_fired:
                mon.once_fired.add(action.resource)
                fail = True
            at = now_s + _startup_s(action) + self._rng.uniform(0.0, JITTER_S)
            detail = "online failed (FailMode)" if fail else ""
            return [Completion(at, node_id, incarnation, action, not fail, detail, inst.serial)]
        if action.action in ("offline", "terminate"):
            out: list[Completion] = []
            inst.serial += 1
            hung = inst.pending_online
            if hung is not None:
                # The online in flight is cancelled: answered (the core ignores the stale token).
                inst.pending_online = None
                out.append(
                    Completion(quick, node_id, incarnation, hung, False, f"cancelled by {action.action}")
                )
            out.append(Completion(quick, node_id, incarnation, action, True, "", inst.serial))
            return out
        return [Completion(quick, node_id, incarnation, action)]

    def complete(self, c: Completion) -> ResourceReport | None:
        """``c`` is due and its node runs: apply its effect, return the report (None: stale, drop it)."""
        mon = self._nodes.get(c.node_id)
        if mon is None or mon.incarnation != c.incarnation:
            return None
        a = c.action
        inst = mon.instances.setdefault(a.resource, _Instance())
        self.reports += 1
        if a.action == "online" and c.serial:
            if c.serial != inst.serial:
                return None  # cancelled by a later offline/terminate, which answered it already
            inst.pending_online = None
            ok, detail = c.ok, c.detail
            if ok and a.rtype == IP:
                ok, detail = self._bind(c.node_id, inst, str(a.props.get("Address", "")))
            inst.online = ok
            return ResourceReport(a.resource, a.action, a.token, ok, detail)
        if a.action in ("offline", "terminate") and c.serial:
            if c.serial == inst.serial:
                self._release(c.node_id, inst)
            return ResourceReport(a.resource, a.action, a.token, True)
        if a.action in ("looks_alive", "is_alive"):
            healthy = inst.online
            return ResourceReport(a.resource, a.action, a.token, healthy, "" if healthy else "not running")
        return ResourceReport(a.resource, a.action, a.token, c.ok, c.detail)

    def fail(self, node_id: int, resource: str) -> ResourceReport | None:
        """Make an online resource fail now; the unsolicited report to give the core (None: not online)."""
        mon = self._nodes.get(node_id)
        inst = None if mon is None else mon.instances.get(resource)
        if inst is None or not inst.online:
            return None
        inst.serial += 1
        self._release(node_id, inst)
        return ResourceReport(resource, "failed", 0, False, "failed on demand")

    # -- addresses ---------------------------------------------------------------------------------------
    def _bind(self, node_id: int, inst: _Instance, address: str) -> tuple[bool, str]:
        if not address:
            return False, "no Address property"
        holder = self.holder_of(address)
        if holder is not None and holder != node_id:
            return False, f"address conflict: {address} is in use by {self._names.get(holder, holder)}"
        self.bound.setdefault(node_id, set()).add(address)
        inst.address = address
        return True, ""

    def _release(self, node_id: int, inst: _Instance) -> None:
        inst.online = False
        if inst.address:
            addresses = self.bound.get(node_id)
            if addresses is not None:
                addresses.discard(inst.address)
                if not addresses:
                    del self.bound[node_id]
            inst.address = ""


def local_online(core: object) -> tuple[tuple[str, str], ...]:
    """(group, resource) of every resource Online in ``core``'s resource manager (none without one)."""
    rm = getattr(core, "rm", None)
    db = getattr(core, "db", None)
    local = getattr(rm, "local", None)
    if not isinstance(local, dict) or db is None:
        return ()
    out = []
    for name, lr in local.items():
        if str(getattr(lr, "state", "")) == ONLINE:
            r = db.resources.get(name)
            out.append((r.group if r is not None else "?", name))
    return tuple(sorted(out))


def _startup_s(action: ResourceAction) -> float:
    seconds = _float(action.props, "StartupTime", DEFAULT_STARTUP_S)
    if action.rtype == STORE:
        seconds += _float(action.props, "LogBacklog", 0.0) * _float(action.props, "LogReplayTime", 0.0)
    return min(max(seconds, 0.0), MAX_STARTUP_S)


def _float(props: dict[str, Any], key: str, default: float) -> float:
    value = props.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return default
    return float(value)
