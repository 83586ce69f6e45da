"""``wolfpack chaos``: random faults on a real cluster with a client running, then a safety check.

Theory of operation
-------------------
The seed comes first: given, or drawn and printed on stderr before anything starts, so every run
can be repeated (``--seed``) and its network and process schedule replayed in the simulator
(``wolfpack simulate --chaos-seed S``; the report ends with that command). The work is
``nodeagent.chaos.runner.run_chaos``; this module parses, prints (text, or one JSON document with
``--json``) and turns violations into exit code 1.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

SubFactory = Callable[..., argparse.ArgumentParser]

HELP = """\
Start a new cluster (N nodes, the standard lab with EVS1, `wolfpack up --evs 1`) and a client of
EVS1, apply the seed's random schedule of faults in real time (kill and restart, freeze and thaw,
partitions, isolations, link cuts, loss and delay, disk path loss), heal everything, wait for the
groups to come back, then check the merged history of every node's event log: never one group or
virtual IP Online on two nodes at once, never a resource Online outside a membership, every group
Online again within the recovery bound. Exit 1 on a violation."""
EXAMPLES = """\
  wolfpack chaos
  wolfpack chaos --seed 7 --duration-s 30 --nodes 4
  wolfpack chaos --seed 7 --dir /tmp/wpchaos --keep     keep the cluster and its logs afterwards
  wolfpack chaos --seed 7 --json | jq .violations
  wolfpack simulate --seed 7 --chaos-seed 7 --duration-s 20     the same schedule, simulated"""


def add_parsers(subs: Any, sub: SubFactory) -> None:
    p = sub(subs, "chaos", "random faults on a real cluster, with a client, then a split-brain check",
            EXAMPLES, HELP)  # fmt: skip
    p.add_argument("--seed", type=int, help="random seed (default: a random one, printed first)")
    p.add_argument(
        "--duration-s", type=float, default=20.0, metavar="D", help="seconds of faults (default 20)"
    )
    p.add_argument("--nodes", type=int, default=3, metavar="N", help="number of nodes, 2 to 8 (default 3)")
    p.add_argument("--speed", type=float, default=10.0, metavar="S", help="time compression (default 10)")
    p.add_argument("--no-disk-faults", action="store_true", help="only the simulator's faults")
    p.add_argument("--keep", action="store_true", help="leave the cluster running and its directory in place")
    p.add_argument("--json", action="store_true", help="print the report as one JSON document")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from nodeagent.chaos.report import format_report
    from nodeagent.chaos.runner import ChaosOptions, check_options, run_chaos
    from nodeagent.cli.console import progress

    seed = args.seed if args.seed is not None else secrets.randbelow(2**31)
    given = getattr(args, "dir_opt", None) or getattr(args, "top_dir", None)
    options = ChaosOptions(
        seed=seed,
        duration_s=args.duration_s,
        nodes=args.nodes,
        speed=args.speed,
        directory=Path(given).expanduser().resolve() if given else None,
        keep=args.keep,
        disk_faults=not args.no_disk_faults,
    )
    check_options(options)
    print(f"chaos seed {seed} (repeat with --seed {seed})", file=sys.stderr, flush=True)
    result = run_chaos(options, progress)
    if args.json:
        json.dump(result.as_json(), sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(format_report(result))
    return 0 if result.ok else 1
