"""``wolfpack simulate``: the deterministic simulator, for users (like Pacemaker's crm_simulate).

Theory of operation
-------------------
No processes and no cluster directory: ``nodeagent.sim.simulate`` drives the real cluster-service
cores with a virtual clock, a simulated network and in-memory disks, injects random faults drawn
from the seed and checks the invariants after every step. Without ``--seed`` a random seed is drawn
and printed first (on stderr), so any run can be replayed; the report ends with the exact replay
command. The exit code is 1 when an invariant was violated.

``--chaos-seed S`` takes the fault schedule from ``nodeagent.chaos.plan.fault_schedule(S, ...)``, the
one ``wolfpack chaos --seed S`` applies to real processes (same nodes, duration and speed), while
``--seed`` still drives everything else in the simulation.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import secrets
import sys
from typing import Any

MAX_SEED = 2**63 - 1
MAX_NODES = 8
MAX_DURATION_S = 24 * 3600.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, help="random seed (default: a random one, printed)")
    parser.add_argument("--nodes", type=int, default=3, help="number of nodes (default 3)")
    parser.add_argument(
        "--duration-s", "--duration", dest="duration_s", type=float, default=30.0, metavar="D",
        help="virtual seconds of random faults, before healing and settling (default 30)",
    )  # fmt: skip
    parser.add_argument("--speed", type=float, default=10.0, help="time compression, as for up (default 10)")
    parser.add_argument(
        "--quorum", choices=("disk", "majority"), default="disk", help="quorum type (default disk)"
    )
    parser.add_argument("--arbitration", choices=("scsi2", "scsi3"), default="scsi2", help="(default scsi2)")
    parser.add_argument("--no-faults", action="store_true", help="run without injecting faults")
    parser.add_argument(
        "--chaos-seed", type=int, metavar="S",
        help="draw the fault schedule of `wolfpack chaos --seed S` (same nodes, duration and speed)",
    )  # fmt: skip


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    return value


def report_json(report: Any) -> dict[str, Any]:
    doc: dict[str, Any] = _jsonable(report)
    doc["replay"] = report.replay_command()
    return doc


def run(args: argparse.Namespace) -> int:
    from nodeagent.errors import ConfigError
    from nodeagent.sim import format_report, simulate

    seed = args.seed
    if seed is None:
        seed = secrets.randbelow(2**31)
        print(f"seed {seed} (replay with --seed {seed})", file=sys.stderr, flush=True)
    elif not 0 <= seed <= MAX_SEED:
        raise ConfigError(f"--seed {seed}: must be from 0 to {MAX_SEED}")
    chaos_seed = getattr(args, "chaos_seed", None)
    if chaos_seed is not None and not 0 <= chaos_seed <= MAX_SEED:
        raise ConfigError(f"--chaos-seed {chaos_seed}: must be from 0 to {MAX_SEED}")
    if not 1 <= args.nodes <= MAX_NODES:
        raise ConfigError(f"--nodes {args.nodes}: a cluster has 1 to {MAX_NODES} nodes")
    if not 0 < args.duration_s <= MAX_DURATION_S:
        raise ConfigError(
            f"--duration-s {args.duration_s:g}: must be more than 0 and at most {MAX_DURATION_S:g}"
        )
    if not 0.01 <= args.speed <= 1000:
        raise ConfigError(f"--speed {args.speed:g}: must be a number from 0.01 to 1000")
    report = simulate(
        seed,
        args.nodes,
        args.duration_s,
        speed=args.speed,
        quorum=args.quorum,
        arbitration=args.arbitration,
        faults=not args.no_faults,
        chaos_seed=chaos_seed,
    )
    chaos_note = f" --chaos-seed {chaos_seed}" if chaos_seed is not None else ""
    if args.json:
        doc = report_json(report)
        doc["chaos_seed"] = chaos_seed
        doc["replay"] += chaos_note
        json.dump(doc, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(format_report(report))
        if chaos_seed is not None:
            sys.stdout.write(
                f"fault schedule: wolfpack chaos --seed {chaos_seed} (replay: {report.replay_command()}"
                f"{chaos_note})\n"
            )
    return 0 if report.ok else 1
