"""Helpers for the group simulations (no tests here): build the Exchange lab, read its state.

Everything goes through ``Simulation.request`` (the admin verbs a ``wolfpack`` CLI would send to a
control socket), so the lab is built exactly as an operator builds it: cluster properties, MSDTC,
Exchange on every node one after the other, then the virtual servers.
"""

from __future__ import annotations

from typing import Any

from nodeagent.core.effects import AdminReply, Event
from nodeagent.sim import Simulation, sim_config


class AdminFailed(AssertionError):
    pass


def new_sim(nodes: int = 3, seed: int = 1, **kwargs: Any) -> Simulation:
    config = sim_config(seed, nodes, speed=10.0, quorum=kwargs.pop("quorum", "disk"),
                        arbitration=kwargs.pop("arbitration", "scsi2"))  # fmt: skip
    return Simulation(config, seed, **kwargs)


def form(sim: Simulation) -> str:
    assert sim.run_until_condition(sim.converged, sim.now + sim.settle_bound_s()), "cluster did not form"
    (owner,) = sim.quorum_holders()
    return owner


def ok(sim: Simulation, node: str, cmd: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
    reply = sim.request(node, cmd, args)
    if not reply.ok:
        raise AdminFailed(f"{cmd} {args}: {reply.error} ({reply.rule})")
    return reply.result


def refused(sim: Simulation, node: str, cmd: str, args: dict[str, Any] | None = None) -> AdminReply:
    reply = sim.request(node, cmd, args)
    assert not reply.ok, f"{cmd} {args} was accepted: {reply.result}"
    return reply


def any_member(sim: Simulation) -> str:
    holders = sim.quorum_holders()
    if holders:
        return holders[0]
    return next(sim.nodes[i].name for i, _ in sim.live_cores())


def install_exchange(sim: Simulation, node: str, version: str = "2003") -> None:
    ok(sim, any_member(sim), "exchange.install", {"node": node, "version": version})

    def done() -> bool:
        db = owner_db(sim)
        return db is not None and db.exchange.get(node) == version and db.installing is None

    assert sim.run_until_condition(done, sim.now + 10.0), f"Exchange setup on {node} never finished"


def build_lab(
    sim: Simulation,
    *,
    version: str = "2003",
    evs: tuple[str, ...] = ("EVS1",),
    preferred: tuple[str, ...] = ("NODE1",),
    online: bool = True,
    evs_args: dict[str, Any] | None = None,
) -> None:
    """Cluster formed, MSDTC, Exchange on every node, the virtual servers created (and online)."""
    form(sim)
    node = any_member(sim)
    ok(sim, node, "cluster.prop", {"props": {"ExchangeSetupTime": 0.5}})
    # fmt: off
    if sim.config.quorum.value == "disk":
        ok(sim, node, "msdtc.create", {})  # in the Cluster Group, on the quorum disk and Cluster Name
    else:
        # Majority Node Set: no quorum disk in the Cluster Group, so MSDTC gets its own group.
        ok(sim, node, "group.create", {"name": "MSDTC"})
        ok(sim, node, "resource.create",
           {"name": "MSDTC Disk", "group": "MSDTC", "type": "Physical Disk", "private": {"Disk": "DTC"}})
        ip = {"Address": sim.config.virtual_ip(250), "Port": 3344}
        ok(sim, node, "resource.create",
           {"name": "MSDTC IP Address", "group": "MSDTC", "type": "IP Address", "private": ip})
        ok(sim, node, "resource.create",
           {"name": "MSDTC Name", "group": "MSDTC", "type": "Network Name", "private": {"Name": "MSDTC"}})
        ok(sim, node, "resource.deps", {"name": "MSDTC Name", "add": "MSDTC IP Address"})
        ok(sim, node, "msdtc.create", {"group": "MSDTC"})
    for n in sorted(x.name for x in sim.config.nodes):
        install_exchange(sim, n, version)
    # fmt: on
    for name, pref in zip(evs, preferred, strict=True):
        args = {"name": name, "exchange_version": version, "preferred_owner": pref, **(evs_args or {})}
        ok(sim, any_member(sim), "evs.create", args)
        if online:
            ok(sim, any_member(sim), "group.online", {"name": name})
            wait_online(sim, name, pref)


def owner_db(sim: Simulation) -> Any:
    """The quorum owner's copy of the cluster database (None when no node holds the quorum)."""
    holders = sim.quorum_holders()
    if len(holders) != 1:
        return None
    core = sim.core(holders[0])
    return getattr(core, "db", None)


def group_state(sim: Simulation, group: str) -> tuple[str | None, str]:
    db = owner_db(sim)
    if db is None or group not in db.groups:
        return None, "?"
    return db.groups[group].owner, db.group_state(group).value


def local_states(sim: Simulation, node: str, group: str) -> dict[str, str]:
    """The group's resources as ``node``'s resource manager runs them (its ``rm.local``)."""
    core = sim.core(node)
    if core is None:
        return {}
    db: Any = getattr(core, "db", None)
    local = getattr(getattr(core, "rm", None), "local", {})
    return {
        name: lr.state.value
        for name, lr in local.items()
        if name in db.resources and db.resources[name].group == group
    }


def all_online_on(sim: Simulation, group: str, node: str) -> bool:
    db = owner_db(sim)
    if db is None or db.groups[group].owner != node or db.group_state(group).value != "Online":
        return False
    names = [r.name for r in db.group_resources(group)]
    local = local_states(sim, node, group)
    return bool(names) and all(local.get(n) == "Online" for n in names)


def wait_online(sim: Simulation, group: str, node: str, timeout_s: float = 15.0) -> None:
    ok_ = sim.run_until_condition(lambda: all_online_on(sim, group, node), sim.now + timeout_s)
    assert ok_, f"{group} not Online on {node}: {group_state(sim, group)}; {local_states(sim, node, group)}"


def events_of(sim: Simulation, kind: str, *, since_s: float = 0.0) -> list[tuple[float, str, Event]]:
    return [(t, who, e) for t, who, e in sim.events if e.kind == kind and t >= since_s]


def online_order(sim: Simulation, node: str, group: str, since_s: float) -> list[tuple[float, str]]:
    """(time, resource) of each resource_state Online event for ``group`` on ``node`` since ``since_s``."""
    return [
        (t, e.fields["resource"])
        for t, who, e in events_of(sim, "resource_state", since_s=since_s)
        if who == node and e.fields.get("group") == group and e.fields.get("state") == "Online"
    ]


def assert_clean(sim: Simulation) -> None:
    assert [v.line() for v in sim.violations] == []
