"""The cluster database: groups, resources, dependencies, owners and properties, as replicated data.

Theory of operation
-------------------
Every node holds a copy. It changes only by *updates*, ``(op, args)`` pairs applied in version
order: the quorum owner is the sequencer (MSCS's global update manager). It validates a request
(admin.py), turns it into updates, numbers them and sends them to every member (gum.py). ``apply``
is deterministic, so every copy that has applied versions 1..v is identical. Each update replaces
one whole object (a group, a resource, a cluster property), which keeps ``apply`` trivial and the
log idempotent.

The database also carries the run-time facts MSCS keeps in it: each group's owner and the state of
each resource as its owner last reported. The copy is plain data (``to_dict``/``from_dict``, JSON
and msgpack friendly) so it can be checkpointed on the quorum disk and in each node's directory.
"""

from __future__ import annotations

import copy
import enum
from dataclasses import asdict, dataclass, field
from typing import Any

from nodeagent.errors import RemoteProtocolError


class ResourceState(enum.StrEnum):
    OFFLINE = "Offline"
    ONLINE_PENDING = "Online Pending"
    ONLINE = "Online"
    OFFLINE_PENDING = "Offline Pending"
    FAILED = "Failed"


class GroupState(enum.StrEnum):
    ONLINE = "Online"
    OFFLINE = "Offline"
    PARTIALLY_ONLINE = "Partially Online"
    FAILED = "Failed"
    PENDING = "Pending"


# Common resource properties with their Windows 2003 defaults (seconds are divided by speed).
RESOURCE_DEFAULTS: dict[str, float | int] = {
    "RestartAction": 2,  # 0 don't restart, 1 restart, 2 restart and affect the group
    "RestartThreshold": 3,
    "RestartPeriod": 900.0,
    "PendingTimeout": 180.0,
    "LooksAlivePollInterval": 5.0,
    "IsAlivePollInterval": 60.0,
    "RetryPeriodOnFailure": 3600.0,  # a Failed resource (its group left Failed) is tried again after this
}
GROUP_DEFAULTS: dict[str, float | int] = {
    "FailoverThreshold": 10,
    "FailoverPeriod": 6 * 3600.0,
    "AutoFailbackType": 0,  # 0 prevent, 1 allow
    "FailbackWindowStart": -1,  # hour 0-23, -1: immediately
    "FailbackWindowEnd": -1,
}


@dataclass(slots=True)
class Resource:
    name: str
    type: str
    group: str
    depends_on: list[str] = field(default_factory=list)
    possible_owners: list[str] = field(default_factory=list)  # empty: every node
    props: dict[str, Any] = field(default_factory=dict)  # common properties (RESOURCE_DEFAULTS)
    private: dict[str, Any] = field(default_factory=dict)  # type-specific (cluster resource /priv)
    separate_monitor: bool = False
    state: str = ResourceState.OFFLINE.value
    desired: str = "offline"  # what the admin asked for: "online" or "offline"

    def prop(self, name: str) -> Any:
        return self.props.get(name, RESOURCE_DEFAULTS[name])

    def can_run_on(self, node: str) -> bool:
        return not self.possible_owners or node in self.possible_owners


@dataclass(slots=True)
class Group:
    name: str
    preferred_owners: list[str] = field(default_factory=list)
    props: dict[str, Any] = field(default_factory=dict)
    owner: str | None = None
    target: str | None = None  # a move in progress: the owner takes the group offline, then target gets it
    desired: str = "offline"
    failovers: list[float] = field(default_factory=list)  # when it failed over (threshold bookkeeping)
    failed: bool = False  # left Failed where it is (FailoverThreshold reached, or no node can take it)
    retry_at_s: float | None = None  # while failed: when it is tried again (RetryPeriodOnFailure)
    failed_members: list[str] = field(default_factory=list)  # while failed: tried again when one joins
    after_fence: bool = False  # its owner took it over from a lost node, after that node's fence
    is_cluster_group: bool = False

    def prop(self, name: str) -> Any:
        return self.props.get(name, GROUP_DEFAULTS[name])


@dataclass(slots=True)
class ClusterDb:
    version: int = 0
    groups: dict[str, Group] = field(default_factory=dict)
    resources: dict[str, Resource] = field(default_factory=dict)
    props: dict[str, Any] = field(default_factory=dict)
    paused: list[str] = field(default_factory=list)
    evicted: list[str] = field(default_factory=list)
    exchange: dict[str, str] = field(default_factory=dict)  # node -> installed Exchange version
    installing: str | None = None  # node where an Exchange setup runs now
    installing_version: str = ""
    evs: dict[str, dict[str, Any]] = field(default_factory=dict)  # EVS name -> its setup record

    # -- queries -------------------------------------------------------------------------------------
    def group_resources(self, group: str) -> list[Resource]:
        return [r for r in self.resources.values() if r.group == group]

    def dependents(self, resource: str) -> list[Resource]:
        return [r for r in self.resources.values() if resource in r.depends_on]

    def group_state(self, group: str) -> GroupState:
        states = {r.state for r in self.group_resources(group)}
        if not states or states == {ResourceState.OFFLINE.value}:
            return GroupState.FAILED if self.groups[group].failed else GroupState.OFFLINE
        if states == {ResourceState.ONLINE.value}:
            return GroupState.ONLINE
        if ResourceState.FAILED.value in states:
            return GroupState.FAILED
        if states & {ResourceState.ONLINE_PENDING.value, ResourceState.OFFLINE_PENDING.value}:
            return GroupState.PENDING
        return GroupState.PARTIALLY_ONLINE

    def find_name(self, name: str) -> Resource | None:
        """The Network Name resource answering to ``name`` (case-insensitive, as NetBIOS)."""
        for r in self.resources.values():
            if r.type == "Network Name" and str(r.private.get("Name", "")).upper() == name.upper():
                return r
        return None

    # -- updates -------------------------------------------------------------------------------------
    def apply(self, op: str, args: dict[str, Any]) -> None:
        """Apply one update. The sequencer validated it; a copy must never refuse it."""
        if op == "put_group":
            g = Group(**args["group"])
            self.groups[g.name] = g
        elif op == "del_group":
            self.groups.pop(args["name"], None)
        elif op == "put_resource":
            r = Resource(**args["resource"])
            self.resources[r.name] = r
        elif op == "del_resource":
            self.resources.pop(args["name"], None)
        elif op == "set_prop":
            self.props[args["name"]] = args["value"]
        elif op == "set_node":
            for attr in ("paused", "evicted"):
                nodes: list[str] = getattr(self, attr)
                if args[attr] and args["node"] not in nodes:
                    nodes.append(args["node"])
                elif not args[attr] and args["node"] in nodes:
                    nodes.remove(args["node"])
        elif op == "set_exchange":
            if args.get("version"):
                self.exchange[args["node"]] = args["version"]
            self.installing = args.get("installing")
            self.installing_version = args.get("installing_version", "")
        elif op == "put_evs":
            self.evs[args["name"]] = dict(args["record"])
        else:
            raise RemoteProtocolError(f"unknown cluster database update {op!r}")
        self.version += 1

    # -- serialization -------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "groups": [asdict(g) for g in self.groups.values()],
            "resources": [asdict(r) for r in self.resources.values()],
            "props": copy.deepcopy(self.props),
            "paused": list(self.paused),
            "evicted": list(self.evicted),
            "exchange": dict(self.exchange),
            "installing": self.installing,
            "installing_version": self.installing_version,
            "evs": copy.deepcopy(self.evs),
        }

    @classmethod
    def from_dict(cls, data: Any) -> ClusterDb:
        try:
            return cls(
                version=int(data["version"]),
                groups={g["name"]: Group(**g) for g in data["groups"]},
                resources={r["name"]: Resource(**r) for r in data["resources"]},
                props=dict(data["props"]),
                paused=list(data["paused"]),
                evicted=list(data["evicted"]),
                exchange=dict(data["exchange"]),
                installing=data["installing"],
                installing_version=str(data.get("installing_version", "")),
                evs=dict(data["evs"]),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise RemoteProtocolError(f"malformed cluster database: {e}") from None


def group_update(g: Group) -> tuple[str, dict[str, Any]]:
    return ("put_group", {"group": asdict(g)})


def resource_update(r: Resource) -> tuple[str, dict[str, Any]]:
    return ("put_resource", {"resource": asdict(r)})
