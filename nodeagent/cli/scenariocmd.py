"""``wolfpack scenario list | run``: the shipped scenario library, and running a scenario file.

Theory of operation
-------------------
The library is the TOML files of the ``nodeagent.scenarios`` package (package data, found through
``importlib.resources`` so it works from an installed wheel too). ``run`` takes a file path, or
the name of a shipped scenario (the file's stem); it parses everything first (a bad file is one
line, exit 1, and starts nothing), then ``runner.run_scenario``: progress on stderr, the report on
stdout (text, or one JSON document with ``--json``). Exit 0 when every step of every run passed,
1 otherwise. Ctrl-C stops the run; the runner tears the cluster down on the way out (exit 130).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

from nodeagent.cli.console import emit_json, progress
from nodeagent.errors import ConfigError
from nodeagent.scenario import model, report, runner

LIBRARY_PACKAGE = "nodeagent.scenarios"

EXAMPLES = """\
  wolfpack scenario list
  wolfpack scenario run active-node-killed
  wolfpack scenario run my.toml --speed 20 --json
  wolfpack scenario run quorum-owner-frozen --dir /tmp/wpq --keep"""
RUN_HELP = """\
Start the cluster the file describes in a fresh directory (a new one under /tmp unless --dir DIR,
which must not hold a cluster yet),
run its steps in order and print a report: each step, its measured time (and the Windows time it
stands for: times the speed), PASS or FAIL with why. Every process the run started is stopped at
the end, pass or fail. A temporary directory is deleted after a run that passed unless --keep;
after a failure it is kept for `wolfpack log --dir DIR`. Exit 1 if any step failed."""


def library() -> dict[str, Path]:
    """Shipped scenario name -> file, sorted by name."""
    found: dict[str, Path] = {}
    for entry in resources.files(LIBRARY_PACKAGE).iterdir():
        if entry.name.endswith(".toml") and entry.is_file():
            found[entry.name[: -len(".toml")]] = Path(str(entry))
    return dict(sorted(found.items()))


def resolve(what: str) -> Path:
    path = Path(what).expanduser()
    if path.is_file():
        return path
    shipped = library()
    key = what[: -len(".toml")] if what.endswith(".toml") else what
    if key in shipped:
        return shipped[key]
    raise ConfigError(
        f"{what}: no such file, and no shipped scenario of that name (see: wolfpack scenario list)"
    )


def cmd_list(args: argparse.Namespace) -> int:
    rows: list[dict[str, Any]] = []
    for name, path in library().items():
        scenario = model.load_file(path)
        rows.append({"name": name, "description": scenario.description, "file": str(path),
                     "nodes": scenario.cluster.nodes, "steps": len(scenario.steps)})  # fmt: skip
    if args.json:
        emit_json({"scenarios": rows})
        return 0
    width = max((len(str(r["name"])) for r in rows), default=4)
    for r in rows:
        print(f"{r['name']:<{width}}  {r['description']}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    scenario = model.load_file(resolve(args.scenario))
    # --dir names the directory to create; unlike other commands, $WOLFPACK_DIR and ./lab do not apply.
    given = getattr(args, "dir_opt", None) or getattr(args, "top_dir", None)
    directory = Path(given) if given else None
    result = runner.run_scenario(
        scenario, speed=args.speed, directory=directory, keep=args.keep, progress=progress
    )
    if args.json:
        emit_json(result.as_json())
    else:
        print(report.render(result))
    return 0 if result.passed else 1


def add_parsers(subs: Any, sub: Callable[..., argparse.ArgumentParser]) -> None:
    """Register ``scenario``; ``sub`` is main.py's subcommand factory."""
    p = sub(subs, "scenario", "scenario files: a cluster, faults, waits and asserts, with a report", EXAMPLES)
    ssubs = p.add_subparsers(dest="scenario_cmd", metavar="ACTION", required=True)
    lp = sub(ssubs, "list", "the shipped scenarios, one line each", "  wolfpack scenario list")
    lp.add_argument("--json", action="store_true", help="print one JSON document")
    lp.set_defaults(func=cmd_list)
    rp = sub(ssubs, "run", "run a scenario file (or a shipped scenario by name)", EXAMPLES, RUN_HELP)
    rp.add_argument(
        "scenario", metavar="FILE|NAME", help="a scenario .toml file or a shipped scenario's name"
    )
    rp.add_argument("--speed", type=float, metavar="S", help="override the file's speed (Windows time / S)")
    rp.add_argument("--json", action="store_true", help="print the report as one JSON document")
    rp.add_argument("--keep", action="store_true", help="keep a temporary directory even when the run passed")
    rp.set_defaults(func=cmd_run)
