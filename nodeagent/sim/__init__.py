"""Deterministic simulator: N real NodeCores, a virtual clock, a simulated network and disks, one seed.

``simulate(seed, ...)`` runs a whole seeded run with random faults and returns a ``SimReport``;
``format_report`` prints its trace and verdict (``wolfpack simulate``). ``Simulation`` is the
step-by-step driver tests use with explicit faults. Modules: clock (event queue), network (paths
and network faults), process (one node process), faults (the random schedule), invariants (the
checker), trace (line format), report (SimReport), runner (``simulate``), simulation (the driver),
operations (what the driver lets a test or the schedule do: process and network faults),
ports (the core and disk it drives), wirecheck (optional pass through the real wire codec).
"""

from nodeagent.sim.clock import EventQueue, SimulationStuck
from nodeagent.sim.faults import ActionKind, FaultAction, FaultMix, plan_faults
from nodeagent.sim.invariants import InvariantChecker, NodeView, Violation
from nodeagent.sim.network import NetFault, NetParams
from nodeagent.sim.report import SimReport, SimStats, format_report
from nodeagent.sim.runner import sim_config, simulate
from nodeagent.sim.simulation import Simulation

__all__ = [
    "ActionKind",
    "EventQueue",
    "FaultAction",
    "FaultMix",
    "InvariantChecker",
    "NetFault",
    "NetParams",
    "NodeView",
    "SimReport",
    "SimStats",
    "Simulation",
    "SimulationStuck",
    "Violation",
    "format_report",
    "plan_faults",
    "sim_config",
    "simulate",
]
