"""One seeded run from start to verdict: what ``wolfpack simulate`` calls.

Theory of operation
-------------------
``simulate`` builds the same ClusterConfig ``wolfpack up`` would write (cluster number 1, a key derived
from the seed, ``nodes`` nodes, the given speed, quorum and arbitration), starts a ``Simulation`` with
``random.Random(seed)``, draws the fault schedule from that same rng, and then:

1. runs the schedule for ``duration_s`` virtual seconds, invariants checked after every step;
2. ends the faults: heals every network fault, thaws frozen nodes, restarts dead ones;
3. lets the cluster settle for at most ``Simulation.settle_bound_s()`` (three times the longest chain
   of timeouts a recovery can need: join, restart, challenge, regroup and its stages, node down),
   stopping early once it has converged, then watches it for a further stability window;
4. checks the ``final`` rule: one membership of all nodes, one epoch, exactly one quorum owner.

The report is deterministic: same arguments, same ``SimReport``, same ``format_report`` bytes. A
simulation that stops making progress in virtual time (``SimulationStuck``) ends the run with a
``stuck`` violation instead of hanging.
"""

from __future__ import annotations

import hashlib
import math

from nodeagent.config import MAX_NODES, ClusterConfig, default_config_dict
from nodeagent.errors import ConfigError
from nodeagent.sim.clock import SimulationStuck
from nodeagent.sim.faults import plan_faults
from nodeagent.sim.report import SimReport, SimStats
from nodeagent.sim.simulation import Simulation

MAX_DURATION_S = 24 * 3600.0


def sim_config(seed: int, nodes: int, *, speed: float, quorum: str, arbitration: str) -> ClusterConfig:
    """The cluster a seeded run simulates (the key is derived from the seed; it signs nothing here)."""
    key = bytes(16) + hashlib.sha256(str(seed).encode()).digest()[:16]
    data = default_config_dict(
        number=1, key=key, nodes=nodes, speed=speed, quorum=quorum, arbitration=arbitration
    )
    return ClusterConfig.from_dict(data)


def simulate(
    seed: int,
    nodes: int = 3,
    duration_s: float = 30.0,
    *,
    speed: float = 10.0,
    quorum: str = "disk",
    arbitration: str = "scsi2",
    faults: bool = True,
    chaos_seed: int | None = None,
) -> SimReport:
    """``chaos_seed``: draw the fault schedule with ``nodeagent.chaos.plan.fault_schedule(chaos_seed, ...)``,
    the schedule ``wolfpack chaos --seed chaos_seed`` applies to real processes, instead of from the
    simulation's own rng (``seed`` still drives everything else: delays, losses, start staggers)."""
    if not 1 <= nodes <= MAX_NODES:
        raise ConfigError(f"nodes = {nodes}: a cluster has 1 to {MAX_NODES} nodes")
    if not (math.isfinite(duration_s) and 0 < duration_s <= MAX_DURATION_S):
        raise ConfigError(f"duration = {duration_s}: must be more than 0 and at most {MAX_DURATION_S:g} s")
    config = sim_config(seed, nodes, speed=speed, quorum=quorum, arbitration=arbitration)
    sim = Simulation(config, seed)
    if faults and chaos_seed is not None:
        from nodeagent.chaos.plan import fault_schedule  # lazy: nodeagent.chaos imports this package

        sim.schedule(fault_schedule(chaos_seed, config, duration_s))
    elif faults:
        sim.schedule(plan_faults(sim.rng, config.node_ids, duration_s, config.timing, speed=config.speed))
    converged_at: float | None = None
    try:
        sim.run_until(duration_s)
        sim.end_faults()
        converged_at = sim.settle()
    except SimulationStuck as e:
        sim.checker.record(sim.now, "stuck", str(e))
    return _report(sim, seed, nodes, duration_s, faults, converged_at)


def _report(
    sim: Simulation, seed: int, nodes: int, duration_s: float, faults: bool, converged_at: float | None
) -> SimReport:
    c = sim.counters
    by_kind = sorted((k.removeprefix("fault_"), n) for k, n in c.items() if k.startswith("fault_") and n > 0)
    net = sim.network.stats
    dropped = net.dropped_role + net.dropped_cut + net.dropped_loss + net.dropped_unknown_dst
    dropped += c.get("datagrams_to_dead", 0)
    live_epochs = [core.epoch for _, core in sim.live_cores()]
    stats = SimStats(
        faults_applied=sum(n for _, n in by_kind),
        faults_by_kind=tuple(by_kind),
        regroups=c.get("event_regroup_started", 0),
        arbitrations=c.get("event_arbitration_started", 0),
        halts=c.get("event_halted", 0),
        final_epoch=max(live_epochs, default=0),
        converged_at_s=converged_at,
        end_s=sim.now,
        core_calls=c.get("core_calls", 0),
        datagrams_sent=net.sent,
        datagrams_delivered=net.delivered,
        datagrams_dropped=dropped,
        disk_ops=c.get("disk_ops", 0),
    )
    violations = tuple(sim.violations)
    return SimReport(
        seed=seed,
        nodes=nodes,
        duration_s=duration_s,
        speed=sim.config.speed,
        quorum=sim.config.quorum.value,
        arbitration=sim.config.arbitration.value,
        faults=faults,
        trace_lines=tuple(sim.trace),
        violations=violations,
        ok=not violations and not sim.checker.suppressed,
        stats=stats,
    )


__all__ = ["sim_config", "simulate"]
