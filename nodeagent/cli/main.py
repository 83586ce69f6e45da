"""The ``wolfpack`` command line: argparse parser, dispatch, and the one place errors are printed.

Theory of operation
-------------------
Every subcommand is a function ``(args) -> exit code``. A ``WolfpackError`` (a user's mistake or
a refused operation) becomes ``wolfpack: error: <one line>`` on stderr and exit 1; argparse usage
errors exit 2; Ctrl-C exits 130 without a traceback. Commands that print take ``--json`` and then
print exactly one JSON document on stdout (``log --follow --json``: JSON lines). Progress while
waiting goes to stderr, so stdout stays clean for pipes.

The cluster directory is ``--dir DIR`` (accepted before or after the subcommand), or the positional
DIR of up/status/down/log, or $WOLFPACK_DIR, or ./lab.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from nodeagent import __version__
from nodeagent.cli import (
    admincmd,
    chaoscmd,
    clusterdir,
    console,
    directorycmd,
    diskcmd,
    evscmd,
    faultcmd,
    labsetup,
    launcher,
    logview,
    procfaults,
    scenariocmd,
    simcmd,
    status,
    upcmd,
)
from nodeagent.cli import client as clientcmd
from nodeagent.cli.clusterdir import ClusterDir, UpOptions
from nodeagent.cli.probe import observe
from nodeagent.config import EDITIONS, ClusterConfig
from nodeagent.errors import ConfigError, WolfpackError

Handler = Callable[[argparse.Namespace], int]

DESCRIPTION = """\
wolfpack: a Windows Server 2003 failover cluster (MSCS), emulated as real processes on this machine.

Every node is a process with a private and a public address on loopback (127.C.1.N, 127.C.2.N);
the nodes share file-backed disks with SCSI reservations. Kill, freeze or cut off a node and watch
the cluster detect it, regroup, arbitrate for the quorum and carry on."""

EPILOG = """\
examples:
  wolfpack up                      create ./lab with 3 nodes and start them
  wolfpack status                  who is Up, who owns the quorum
  wolfpack kill NODE1              SIGKILL a node; the others take over
  wolfpack log --follow            the merged event log of every node, as it happens
  wolfpack fault cut NODE2 --net private
  wolfpack group EVS1 move --to NODE2   move a resource group, wait until it is Online there
  wolfpack down                    stop every node

The cluster directory is --dir DIR, else $WOLFPACK_DIR, else ./lab. `wolfpack COMMAND --help` for more."""


# -- output helpers --------------------------------------------------------------------------------


emit_json = console.emit_json
progress = console.progress


def _dir_arg(args: argparse.Namespace) -> str | None:
    given: list[str] = [d for d in (getattr(args, "dir_opt", None), getattr(args, "dir_pos", None)) if d]
    if len(set(given)) > 1:
        raise ConfigError(f"two cluster directories given ({given[0]} and {given[1]}); give one")
    if given:
        return given[0]
    top: str | None = args.top_dir
    return top


def _open(args: argparse.Namespace) -> tuple[ClusterDir, ClusterConfig]:
    return clusterdir.open_cluster(clusterdir.resolve_dir(_dir_arg(args)))


def _print_status(cdir: ClusterDir, config: ClusterConfig, as_json: bool, extra: dict[str, Any]) -> None:
    picture = status.compose(config, observe(cdir, config))
    if as_json:
        emit_json({"dir": str(cdir.root), **status.as_json(picture), **extra})
    else:
        print(status.render(picture))


# -- handlers --------------------------------------------------------------------------------------


def cmd_up(args: argparse.Namespace) -> int:
    opts = UpOptions(
        nodes=args.nodes,
        speed=args.speed,
        quorum=args.quorum,
        arbitration=args.arbitration,
        edition=args.edition,
        cluster_number=args.cluster_number,
    )
    root = clusterdir.resolve_dir(_dir_arg(args))
    if args.timeout_s is not None and not 0 < args.timeout_s <= 3600:
        raise ConfigError(f"--timeout-s {args.timeout_s:g}: must be more than 0 and at most 3600")
    if not 0 <= args.evs <= 8:
        raise ConfigError(f"--evs {args.evs}: must be from 0 to 8")
    if args.exchange_setup_s is not None and not 0 <= args.exchange_setup_s <= 3600:
        raise ConfigError(f"--exchange-setup-s {args.exchange_setup_s:g}: must be from 0 to 3600")
    result = upcmd.up(root, opts, args.timeout_s, progress)
    what = f"created {root}" if result.created else f"using {root}"
    started = ", ".join(result.started) or "none (all were running)"
    progress(f"cluster {result.config.name} is up ({what}; started: {started})")
    if args.evs:
        adm = admincmd.Admin(result.cdir, result.config, progress=progress)
        built = labsetup.build_standard_lab(
            adm, result.cdir, args.evs, args.exchange_version, progress, args.exchange_setup_s
        )
        progress(f"standard lab ready: {', '.join(built['evs'])} online (Exchange {built['version']})")
    extra = {"up": {"created": result.created, "started": list(result.started),
                    "already_running": list(result.already_running)}}  # fmt: skip
    _print_status(result.cdir, result.config, args.json, extra)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    cdir, config = _open(args)
    _print_status(cdir, config, args.json, {})
    return 0


def _print_results(results: Sequence[launcher.ActionResult], as_json: bool) -> None:
    if as_json:
        emit_json({"results": [r.as_json() for r in results]})
    else:
        for r in results:
            print(r.text())


def cmd_start(args: argparse.Namespace) -> int:
    cdir, config = _open(args)
    if args.timeout_s is not None and not 0 < args.timeout_s <= 3600:
        raise ConfigError(f"--timeout-s {args.timeout_s:g}: must be more than 0 and at most 3600")
    result = upcmd.start(cdir, config, args.node, args.timeout_s, progress, wait=not args.no_wait)
    _print_results([result], args.json)
    return 0


def _signal_cmd(action: Callable[[ClusterDir, ClusterConfig, str], launcher.ActionResult]) -> Handler:
    def handler(args: argparse.Namespace) -> int:
        cdir, config = _open(args)
        _print_results([action(cdir, config, args.node)], args.json)
        return 0

    return handler


def cmd_stop(args: argparse.Namespace) -> int:
    cdir, config = _open(args)
    _print_results([launcher.stop_node(cdir, config, args.node)], args.json)
    return 0


def cmd_pause(args: argparse.Namespace) -> int:
    """``cluster node N /pause`` and ``/resume``: the node stays a member but takes no groups.

    An admin request (node.pause / node.resume), replicated to every node, as ``wolfpack node N pause``."""
    cdir, config = _open(args)
    name = config.node(args.node).name
    admincmd.node_verb(admincmd.Admin(cdir, config), name, args.command)
    _print_results([launcher.ActionResult(name, f"{args.command}d", None)], args.json)
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    cdir, config = _open(args)
    results = launcher.down(cdir, config)
    _print_results(results, args.json)
    return 1 if any("STILL RUNNING" in r.detail for r in results) else 0


def cmd_fault(args: argparse.Namespace) -> int:
    cdir, config = _open(args)
    report, listing = faultcmd.run_args(cdir, config, args)
    if args.json:
        emit_json(report.as_json())
    else:
        print(faultcmd.render(report, listing=listing))
    return 0


def cmd_log(args: argparse.Namespace) -> int:
    cdir, config = _open(args)
    if args.node is not None:
        config.node(args.node)  # unknown node: a clear error before anything is printed
    if args.since_s is not None and args.since_s < 0:
        raise ConfigError(f"--since-s {args.since_s:g}: must not be negative")
    if args.follow:
        logview.follow(cdir, config, sys.stdout, node=args.node, since_s=args.since_s, as_json=args.json)
    else:
        logview.show(cdir, config, sys.stdout, node=args.node, since_s=args.since_s, as_json=args.json)
    return 0


def cmd_disk(args: argparse.Namespace) -> int:
    cdir, _config = _open(args)
    if args.disk_cmd == "create":
        info = diskcmd.create(cdir, args.name, args.size_mb)
        if args.json:
            emit_json(info)
        else:
            print(f"created disk {info['name']}\n\n{diskcmd.render([info])}")
        return 0
    infos = diskcmd.show(cdir, args.name)
    if args.json:
        emit_json({"disks": infos})
    else:
        print(diskcmd.render(infos))
    return 0


# -- parser ----------------------------------------------------------------------------------------


UP_HELP = """\
Create the cluster directory if it has no cluster.toml (all flags are checked first; a refused
configuration creates nothing), then start every node that is not running and wait until every
node is Up in one membership. If that fails, the nodes this command started are killed.
With an existing cluster.toml the flags must agree with it (edit cluster.toml to change it)."""
UP_EXAMPLES = """\
  wolfpack up                          ./lab, 3 nodes, disk quorum, speed 10
  wolfpack up /tmp/wp1 --nodes 2 --quorum majority
  wolfpack up --edition win2000-advanced --nodes 2 --arbitration scsi3
  wolfpack up --speed 1                real Windows Server 2003 timing"""
STATUS_HELP = """\
Ask every node's control socket (0.5 s each, in parallel) and show what the cluster says of
each node: the view of the answering member with the highest epoch. Works while nodes are
down, frozen or cut off."""
STATUS_EXAMPLES = """\
  wolfpack status
  wolfpack status /tmp/wp1 --json | jq '.nodes[] | {name, state}'"""
FAULT_EXAMPLES = """\
  wolfpack fault cut NODE2 --net private        NODE2 loses the private network to every peer
  wolfpack fault cut NODE1 NODE2 --net all      NODE1 and NODE2 cannot talk at all
  wolfpack fault loss NODE1 --pct 30            30% of NODE1's datagrams lost, both ways
  wolfpack fault delay NODE2 --ms 50 --jitter-ms 20
  wolfpack fault isolate NODE3                  NODE3 hears nobody, nobody hears NODE3
  wolfpack fault split "NODE1|NODE2,NODE3"
  wolfpack fault oneway "NODE1->NODE2"          NODE1's datagrams to NODE2 are dropped
  wolfpack fault partition ring --seed 7        Jepsen's majorities ring
  wolfpack fault list
  wolfpack fault heal NODE2 --id 3              one fault; `fault heal` removes every fault
  wolfpack fault disk NODE1 Q --lost            NODE1 loses its path to the quorum disk
  wolfpack fault resource "EVS1 SMTP Virtual Server" --times 2
  wolfpack fault crashloop NODE2 --count 3"""
FAULT_HELP = """\
Network faults live in each node's transport and are installed through its control socket (out of
band: they work while the links are cut). Kinds: cut, loss, delay, dup, reorder; per network
(--net private|public|all), per peer (OTHER, or every peer) and per direction (--direction
both|in|out). Shapes (isolate, split, oneway, partition one|majority|ring) become cut rules on
every node concerned. Disk faults (disk, disk-heal) make one node lose its path to a shared disk
or see it slow; resource faults set a resource's FailMode; crashloop kills and restarts a node.
A restarted node has no faults."""
LOG_HELP = """\
Merge every node's events.jsonl by CLOCK_MONOTONIC. Each line: local time, seconds since the
first event shown, node, MSCS event id, message."""
LOG_EXAMPLES = """\
  wolfpack log
  wolfpack log --follow
  wolfpack log --node NODE2 --since-s 60
  wolfpack log --json | jq '.events[] | select(.event_id == 1135)'"""
SIM_HELP = """\
Drive the same cluster-service state machines as the real nodes with a virtual clock, a
simulated network and disks, and random faults drawn from the seed; check the invariants
after every step. Same seed, same run. Exit 1 if an invariant was violated."""
SIM_EXAMPLES = """\
  wolfpack simulate
  wolfpack simulate --seed 42 --nodes 4 --duration-s 120
  wolfpack simulate --quorum majority --json"""
DIR_HELP = "cluster directory (default: $WOLFPACK_DIR or ./lab)"


def _sub(subs: Any, name: str, summary: str, examples: str, description: str = "") -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subs.add_parser(
        name,
        help=summary,
        description=description or summary,
        epilog="examples:\n" + examples,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    # SUPPRESS: a nested subparser must not reset a --dir given to its parent (fault --dir D cut ...).
    parser.add_argument("--dir", dest="dir_opt", metavar="DIR", default=argparse.SUPPRESS, help=DIR_HELP)
    return parser


def _positional_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir_pos", nargs="?", metavar="DIR", help="cluster directory (same as --dir)")


def _json(parser: argparse.ArgumentParser, what: str = "print one JSON document instead of text") -> None:
    parser.add_argument("--json", action="store_true", help=what)


def _node(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("node", metavar="NODE", help="node name, e.g. NODE2 (case does not matter)")


def _add_up(subs: Any) -> None:
    p = _sub(subs, "up", "create a cluster directory (if needed) and start its nodes", UP_EXAMPLES, UP_HELP)
    _positional_dir(p)
    p.add_argument("--nodes", type=int, metavar="N", help="number of nodes, NODE1..NODEn (default 3)")
    p.add_argument(
        "--speed", type=float, metavar="S", help="Windows 2003 timing is divided by this (default 10)"
    )
    p.add_argument(
        "--quorum", choices=("disk", "majority"), help="quorum disk Q (default) or majority node set"
    )
    p.add_argument("--arbitration", choices=("scsi2", "scsi3"), help="disk arbitration (default scsi2)")
    editions = ", ".join(EDITIONS)
    p.add_argument("--edition", choices=tuple(EDITIONS), type=str.lower, metavar="EDITION", help=editions)
    p.add_argument(
        "--cluster-number", type=int, metavar="C", help="address plan number 1-250 (default: free)"
    )
    p.add_argument("--timeout-s", type=float, metavar="T", help="how long to wait for the cluster to form")
    p.add_argument(
        "--evs", type=int, default=0, metavar="K",
        help="then build the standard lab: MSDTC, Exchange on every node, K virtual servers online",
    )  # fmt: skip
    p.add_argument(
        "--exchange-version", choices=("2003", "2000"), default="2003",
        help="the dependency tree of the virtual servers (--evs; default 2003)",
    )  # fmt: skip
    p.add_argument(
        "--exchange-setup-s", type=float, metavar="W",
        help="how long Exchange setup takes on each node, Windows seconds (--evs; default 30)",
    )  # fmt: skip
    _json(p, "print the final status as one JSON document")
    p.set_defaults(func=cmd_up)


def _add_lifecycle(subs: Any) -> None:
    p = _sub(
        subs, "status", "show every node's state, process and control socket", STATUS_EXAMPLES, STATUS_HELP
    )
    _positional_dir(p)
    _json(p)
    p.set_defaults(func=cmd_status)

    examples = "  wolfpack start NODE2\n  wolfpack start NODE2 --no-wait"
    p = _sub(subs, "start", "start one node and wait until it has joined the cluster", examples)
    _node(p)
    p.add_argument("--no-wait", action="store_true", help="return once the node answers its control socket")
    p.add_argument("--timeout-s", type=float, metavar="T", help="how long to wait for the node to join")
    _json(p)
    p.set_defaults(func=cmd_start)

    p = _sub(
        subs,
        "stop",
        "stop one node gracefully (SIGKILL if it does not exit in time)",
        "  wolfpack stop NODE2",
    )
    _node(p)
    _json(p)
    p.set_defaults(func=cmd_stop)

    for name, action, summary in (
        ("kill", launcher.kill_node, "SIGKILL one node (pid verified first): a crash, as MSCS sees it"),
        ("freeze", launcher.freeze_node, "SIGSTOP one node: it stays alive but silent (a hung server)"),
        ("thaw", launcher.thaw_node, "SIGCONT a frozen node"),
    ):
        p = _sub(subs, name, summary, f"  wolfpack {name} NODE1")
        _node(p)
        _json(p)
        p.set_defaults(func=_signal_cmd(action))

    for name, summary in (
        ("pause", "pause a node (cluster node /pause): it stays a member but takes no groups"),
        ("resume", "resume a paused node (cluster node /resume)"),
    ):
        p = _sub(subs, name, summary, f"  wolfpack {name} NODE2")
        _node(p)
        _json(p)
        p.set_defaults(func=cmd_pause)

    examples = "  wolfpack down\n  wolfpack down /tmp/wp1"
    p = _sub(subs, "down", "stop every node (thaw frozen ones first; SIGKILL stragglers)", examples)
    _positional_dir(p)
    _json(p)
    p.set_defaults(func=cmd_down)


def _add_fault(subs: Any) -> None:
    summary = "faults: cut, loss, delay, dup, reorder links; isolate, split, partition; heal, list"
    p = _sub(subs, "fault", summary, FAULT_EXAMPLES, FAULT_HELP)
    fsubs = p.add_subparsers(dest="fault_cmd", metavar="ACTION", required=True)
    faultcmd.add_parsers(fsubs, _sub)  # link faults: kinds, shapes, heal, list (faultcmd.run_args)
    procfaults.add_parsers(fsubs, _sub)  # fault disk | disk-heal | resource | crashloop (own handlers)
    p.set_defaults(func=cmd_fault)


def _add_log_disk_sim(subs: Any) -> None:
    p = _sub(subs, "log", "the event logs of every node, merged into one timeline", LOG_EXAMPLES, LOG_HELP)
    _positional_dir(p)
    p.add_argument("--follow", "-f", action="store_true", help="keep printing new events until Ctrl-C")
    p.add_argument("--node", metavar="NAME", help="only this node's events")
    p.add_argument("--since-s", type=float, metavar="S", help="only events of the last S seconds")
    _json(p, 'one JSON document {"events": [...]}; with --follow one JSON object per line')
    p.set_defaults(func=cmd_log)

    examples = "  wolfpack disk create DATA --size-mb 32\n  wolfpack disk show\n  wolfpack disk show Q --json"
    p = _sub(subs, "disk", "shared disks: create, show reservations and keys", examples)
    dsubs = p.add_subparsers(dest="disk_cmd", metavar="ACTION", required=True)
    dp = _sub(dsubs, "create", "create a new shared disk DIR/disks/NAME.img", "  wolfpack disk create DATA")
    dp.add_argument("name", metavar="NAME", help="disk name: letters and digits")
    dp.add_argument("--size-mb", type=int, default=16, help="size in MiB (default 16)")
    _json(dp)
    examples = "  wolfpack disk show\n  wolfpack disk show Q"
    dp = _sub(dsubs, "show", "reservation holder, registered keys, generation (like sg_persist)", examples)
    dp.add_argument("name", nargs="?", metavar="NAME", help="one disk (default: every disk)")
    _json(dp)
    p.set_defaults(func=cmd_disk)

    summary = "run the deterministic simulator (no processes): faults, failovers, invariants"
    p = _sub(subs, "simulate", summary, SIM_EXAMPLES, SIM_HELP)
    simcmd.add_arguments(p)
    _json(p)
    p.set_defaults(func=simcmd.run)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wolfpack",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"wolfpack {__version__}")
    parser.add_argument("--dir", dest="top_dir", metavar="DIR", help=DIR_HELP)
    subs = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_up(subs)
    _add_lifecycle(subs)
    _add_fault(subs)
    _add_log_disk_sim(subs)
    admincmd.add_parsers(subs, _sub, _open)
    evscmd.add_parsers(subs, _sub, _open)
    directorycmd.add_parsers(subs, _sub, _open)
    scenariocmd.add_parsers(subs, _sub)
    chaoscmd.add_parsers(subs, _sub)
    _add_client(subs)
    return parser


CLIENT_HELP = """\
Resolve NAME through the nodes' name services, then send a status request to the virtual
server every interval. Shows which node serves it, every outage with its length, and a
summary at the end (or on Ctrl-C)."""
CLIENT_EXAMPLES = """\
  wolfpack client EVS1
  wolfpack client EVS1 --service SMTP --interval-ms 20
  wolfpack client EVS1 --duration-s 60 --json"""


def _add_client(subs: Any) -> None:
    p = _sub(subs, "client", "talk to a virtual server; show who serves it and every outage",
             CLIENT_EXAMPLES, CLIENT_HELP)  # fmt: skip
    clientcmd.add_arguments(p)
    _json(p, "one JSON object per line: resolved, reply, outage, and summary last")
    p.set_defaults(func=clientcmd.run)


def _one_line(message: str) -> str:
    return " ".join(message.split()) or "failed"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
        return code
    except WolfpackError as e:
        print(f"wolfpack: error: {_one_line(str(e))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (wolfpack log | head): nothing more to say, and no traceback.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except OSError as e:
        where = f": {e.filename}" if e.filename else ""
        print(f"wolfpack: error: {_one_line(e.strerror or str(e))}{where}", file=sys.stderr)
        return 1


def run() -> None:
    """For ``python -m nodeagent.cli.main``."""
    sys.exit(main())


if __name__ == "__main__":
    run()
