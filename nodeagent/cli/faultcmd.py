"""``wolfpack fault ...``: network faults, installed through the control sockets (the Python API).

Theory of operation
-------------------
A fault lives in the memory of one node process (runtime/faults.py): a rule installed on node A
about peer B acts on A->B and B->A (or one of them, by ``direction``) on the chosen network(s) in
A's own transport. Kinds: cut, loss (pct), delay (delay_ms, jitter_ms), dup (pct), reorder (pct,
delay_ms). A restarted node starts with no faults.

``add`` installs one rule on one node (``fault_add``); for a cut about one peer it also installs
the mirror rule on the peer (best effort, a warning if the peer does not answer), so the cut still
holds while either of the two restarts. Other kinds are installed on the named node only: the
rule there already acts both ways, and a mirror would apply the loss, delay or duplication twice.
``cut`` is issue 2's API (``fault_cut``, kept as it was).

``shape`` plans a named shape (faultshapes.py: isolate, split, one-way, Jepsen one / majority /
ring) into per-node cut rules and installs each node's rules, every node in parallel; a node that
does not answer is a warning (the other end of each of its pairs still drops), every node failing
is an error. ``heal`` removes one rule by id (ids are per node: it needs the node) or every rule of
one node / every answering node. ``list_faults`` asks every node.

Every function returns a ``FaultReport``: per node the faults (after the change; for ``heal`` the
removed ones), ``installed`` (one entry per rule this call installed, with its node and id, which
``heal(fault_id=)`` takes), what it did, warnings, and the nodes that did not answer.
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from nodeagent.cli import faultshapes
from nodeagent.cli.clusterdir import ClusterDir
from nodeagent.cli.probe import RequestFn, ask, default_request
from nodeagent.cli.status import fault_params, render_table
from nodeagent.config import ClusterConfig
from nodeagent.errors import ConfigError, WolfpackError
from nodeagent.runtime.faults import Direction, Fault, FaultKind, NetSelector

NETS = ("private", "public", "all")
KINDS = tuple(k.value for k in FaultKind)
DIRECTIONS = ("both", "in", "out")
_MIRROR = {"both": "both", "in": "out", "out": "in"}


@dataclass(frozen=True, slots=True)
class FaultReport:
    """Per node: the faults it has (or had), or why it could not be asked."""

    faults: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    unreachable: dict[str, str] = field(default_factory=dict)
    done: list[str] = field(default_factory=list)  # what the command did, one line each
    warnings: list[str] = field(default_factory=list)
    installed: list[dict[str, Any]] = field(default_factory=list)  # {"node": NAME, "id": N, ...rule}
    shape: dict[str, Any] | None = None  # shape(): name, description, rules

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "faults": self.faults,
            "unreachable": self.unreachable,
            "done": self.done,
            "warnings": self.warnings,
        }
        if self.installed:
            out["installed"] = self.installed
        if self.shape is not None:
            out["shape"] = self.shape
        return out


def _check_net(net: str) -> None:
    if net not in NETS:
        raise ConfigError(f"--net {net}: must be one of {', '.join(NETS)}")


def validate(kind: str, net: str, direction: str, pct: float, delay_ms: float, jitter_ms: float) -> None:
    """The node's own checks (runtime/faults.py), before anything is installed anywhere."""
    if kind not in KINDS:
        raise ConfigError(f"fault kind {kind!r}: must be one of {', '.join(KINDS)}")
    _check_net(net)
    if direction not in DIRECTIONS:
        raise ConfigError(f"--direction {direction}: must be one of {', '.join(DIRECTIONS)}")
    fault_kind = FaultKind(kind)
    if fault_kind in (FaultKind.LOSS, FaultKind.DUP, FaultKind.REORDER) and not pct:
        raise ConfigError(f"{kind}: needs --pct P (more than 0, at most 100)")
    # A reorder without delay_ms gets the node's default (2 heartbeat intervals): check with any value.
    check_delay = delay_ms if delay_ms or fault_kind is not FaultKind.REORDER else 1.0
    Fault(fault_kind, NetSelector(net), None, Direction(direction), pct, check_delay, jitter_ms)


def _faults_in(answer: dict[str, Any]) -> list[dict[str, Any]]:
    raw = answer.get("faults")
    return [f for f in raw if isinstance(f, dict)] if isinstance(raw, list) else []


def _install(
    cdir: ClusterDir, name: str, req: dict[str, Any], request: RequestFn, report: FaultReport
) -> dict[str, Any]:
    answer = ask(cdir, name, req, request)
    report.faults[name] = _faults_in(answer)
    fault_id = answer.get("id")
    rule = next((f for f in report.faults[name] if f.get("id") == fault_id), None)
    entry = {"node": name, **(rule or {k: v for k, v in req.items() if k != "op"}), "id": fault_id}
    report.installed.append(entry)
    return entry


def _what(entry: dict[str, Any]) -> str:
    peer = entry.get("peer") or "every peer"
    direction = entry.get("direction", "both")
    way = "" if direction == "both" else f", {direction} only"
    return f"{fault_params(entry)} to {peer} on {entry.get('net')}{way}"


def add(
    cdir: ClusterDir,
    config: ClusterConfig,
    node: str,
    kind: str,
    *,
    peer: str | None = None,
    net: str = "all",
    direction: str = "both",
    pct: float = 0.0,
    delay_ms: float = 0.0,
    jitter_ms: float = 0.0,
    request: RequestFn = default_request,
) -> FaultReport:
    """Install a ``kind`` rule on ``node`` about ``peer`` (None: every peer); a cut also on the peer."""
    name = config.node(node).name
    other = config.node(peer).name if peer is not None else None
    if other == name:
        raise ConfigError(f"cannot fault {name}'s link to itself")
    validate(kind, net, direction, pct, delay_ms, jitter_ms)
    params = {"pct": pct, "delay_ms": delay_ms, "jitter_ms": jitter_ms}
    req = {"op": "fault_add", "kind": kind, "net": net, "peer": other, "direction": direction, **params}
    report = FaultReport()
    entry = _install(cdir, name, req, request, report)
    report.done.append(f"{name}: fault {entry['id']}: {_what(entry)}")
    if kind == "cut" and other is not None:
        mirror = {**req, "peer": name, "direction": _MIRROR[direction]}
        try:
            entry = _install(cdir, other, mirror, request, report)
            report.done.append(f"{other}: fault {entry['id']}: {_what(entry)}")
        except WolfpackError as e:
            report.warnings.append(f"the cut is installed on {name} only: {e}")
    return report


def cut(
    cdir: ClusterDir,
    config: ClusterConfig,
    node: str,
    other: str | None,
    net: str,
    request: RequestFn = default_request,
) -> FaultReport:
    """Issue 2's cut (op ``fault_cut``): both ways between ``node`` and ``other`` (or every peer)."""
    _check_net(net)
    name = config.node(node).name
    peer = config.node(other).name if other is not None else None
    if peer == name:
        raise ConfigError(f"cannot cut {name} from itself")
    report = FaultReport()
    ask(cdir, name, {"op": "fault_cut", "net": net, "peer": peer}, request)
    report.done.append(f"{name}: cut {net} to {peer or 'every peer'}")
    if peer is not None:
        try:
            ask(cdir, peer, {"op": "fault_cut", "net": net, "peer": name}, request)
            report.done.append(f"{peer}: cut {net} to {name}")
        except WolfpackError as e:
            report.warnings.append(f"the cut is installed on {name} only: {e}")
    return report


def shape(
    cdir: ClusterDir,
    config: ClusterConfig,
    text: str,
    *,
    net: str = "all",
    seed: int | None = None,
    request: RequestFn = default_request,
) -> FaultReport:
    """Install a named shape (faultshapes.py) as per-node cut rules on every node it concerns."""
    _check_net(net)
    used_seed = seed if seed is not None else random.SystemRandom().randrange(2**31)
    plan = faultshapes.plan(config, text, random.Random(used_seed))
    by_node: dict[str, list[faultshapes.CutRule]] = {}
    for rule in plan.rules():
        by_node.setdefault(rule.node, []).append(rule)
    report = FaultReport(
        shape={
            "name": plan.name,
            "description": plan.description,
            "seed": used_seed,
            "blocked": sorted([src, dst] for src, dst in plan.blocked),
            "visible": {n: sorted(v) for n, v in sorted(plan.visible.items())},
        }
    )
    if not by_node:
        report.done.append(f"shape {plan.name}: nothing to cut")
        return report

    def install(name: str) -> list[dict[str, Any]]:
        sub = FaultReport()
        for rule in by_node[name]:
            req = {
                "op": "fault_add",
                "kind": "cut",
                "net": net,
                "peer": rule.peer,
                "direction": rule.direction,
            }
            _install(cdir, name, req, request, sub)
        report.installed.extend(sub.installed)
        return sub.faults.get(name, [])

    results = _each(cdir, config, list(by_node), install)
    for name, result in results.items():
        if isinstance(result, WolfpackError):
            report.warnings.append(f"{name}: not installed ({result}); the other ends still drop")
            report.unreachable[name] = str(result)
        else:
            report.faults[name] = result
            report.done.append(f"{name}: {len(by_node[name])} cut rule(s) on {net}")
    if len(report.unreachable) == len(by_node):
        raise WolfpackError(f"shape {plan.name}: no node answered; nothing installed")
    report.done.insert(0, f"shape {plan.name} (seed {used_seed}): {plan.description}")
    return report


def _faults_of(cdir: ClusterDir, name: str, request: RequestFn) -> list[dict[str, Any]]:
    return _faults_in(ask(cdir, name, {"op": "faults"}, request))


def _each(
    cdir: ClusterDir,
    config: ClusterConfig,
    node: str | list[str] | None,
    work: Callable[[str], list[dict[str, Any]]],
) -> dict[str, list[dict[str, Any]] | WolfpackError]:
    if isinstance(node, list):
        names = node
    else:
        names = [config.node(node).name] if node is not None else [n.name for n in config.nodes]

    def run(name: str) -> list[dict[str, Any]] | WolfpackError:
        try:
            return work(name)
        except WolfpackError as e:
            return e

    with ThreadPoolExecutor(max_workers=max(1, len(names))) as pool:
        return dict(zip(names, pool.map(run, names), strict=True))


def heal(
    cdir: ClusterDir,
    config: ClusterConfig,
    node: str | None,
    request: RequestFn = default_request,
    *,
    fault_id: int | None = None,
) -> FaultReport:
    """Remove fault ``fault_id`` of ``node``, or every fault of ``node`` (an error if it does not
    answer), or of every answering node."""
    if fault_id is not None and node is None:
        raise ConfigError("--id needs a NODE: fault ids are per node (wolfpack fault list)")

    def heal_one(name: str) -> list[dict[str, Any]]:
        before = _faults_of(cdir, name, request)
        if fault_id is None:
            ask(cdir, name, {"op": "fault_heal"}, request)
            return before
        removed = ask(cdir, name, {"op": "fault_heal", "id": fault_id}, request).get("removed")
        if not removed:
            raise ConfigError(f"{name} has no fault {fault_id} (wolfpack fault list)")
        return [f for f in before if f.get("id") == fault_id]

    report = FaultReport()
    for name, result in _each(cdir, config, node, heal_one).items():
        if isinstance(result, WolfpackError):
            if node is not None:
                raise result
            report.unreachable[name] = str(result)
            continue
        report.faults[name] = result
        if fault_id is not None:
            report.done.append(f"{name}: healed fault {fault_id}")
        else:
            report.done.append(f"{name}: healed {len(result)} fault{'s' if len(result) != 1 else ''}")
    return report


def list_faults(cdir: ClusterDir, config: ClusterConfig, request: RequestFn = default_request) -> FaultReport:
    report = FaultReport()
    for name, result in _each(cdir, config, None, lambda n: _faults_of(cdir, n, request)).items():
        if isinstance(result, WolfpackError):
            report.unreachable[name] = str(result)
        else:
            report.faults[name] = result
    return report


def render(report: FaultReport, listing: bool) -> str:
    lines = list(report.done)
    if listing:
        faults = [(name, f) for name, fs in report.faults.items() for f in fs]
        if not faults:
            lines.append("no faults installed")
        elif any("id" in f for _, f in faults):
            headers = ["NODE", "ID", "KIND", "NET", "PEER", "DIRECTION", "PARAMS"]
            rows = [
                [
                    name, str(f.get("id", "-")), str(f.get("kind", "cut")), str(f.get("net", "?")),
                    str(f.get("peer") or "every peer"), str(f.get("direction", "both")), _params_cell(f),
                ]
                for name, f in faults
            ]  # fmt: skip
            lines.append(render_table(headers, rows, right=(1,)))
        else:  # a node of issue 2 (no ids): its shape
            rows = [
                [name, str(f.get("kind", "cut")), str(f.get("net", "?")), str(f.get("peer") or "every peer")]
                for name, f in faults
            ]
            lines.append(render_table(["NODE", "KIND", "NET", "PEER"], rows))
    lines += [f"warning: {w}" for w in report.warnings]
    lines += [f"not asked: {msg}" for msg in report.unreachable.values()]
    return "\n".join(lines)


def _params_cell(fault: dict[str, Any]) -> str:
    text = fault_params(fault)
    kind = str(fault.get("kind", "cut"))
    return "-" if text == kind else text.removeprefix(kind + " ")


# -- command line (wolfpack fault ...; main.py's _add_fault calls add_parsers, cmd_fault run_args) ----

SubFn = Callable[..., argparse.ArgumentParser]
DIRECTION_HELP = "both (default), in (datagrams NODE receives) or out (datagrams NODE sends)"

KIND_HELP = {
    "cut": (
        "drop every datagram between NODE and OTHER (or every peer)",
        "  wolfpack fault cut NODE2 --net private        NODE2 loses the private network to every peer\n"
        "  wolfpack fault cut NODE1 NODE2 --net all      NODE1 and NODE2 cannot talk at all\n"
        "  wolfpack fault cut NODE1 NODE2 --net all --direction out   NODE1's datagrams to NODE2 lost",
        "Install a cut on NODE (about peer OTHER, or every peer): NODE drops the datagrams both ways\n"
        "(or only --direction in/out). With OTHER the cut is installed on both nodes, so that it holds\n"
        "while either one restarts; if OTHER does not answer, on NODE only (which is enough). --net is\n"
        "required for cut. Faults live in the node process: a restarted node has none.",
    ),
    "loss": (
        "drop a percentage of NODE's datagrams to and from OTHER (or every peer)",
        "  wolfpack fault loss NODE1 --pct 30                30% loss on every link of NODE1\n"
        "  wolfpack fault loss NODE1 NODE2 --pct 50 --net private --direction in",
        "Each datagram through NODE on the chosen links rolls: --pct P percent of them are dropped.",
    ),
    "delay": (
        "hold NODE's datagrams to and from OTHER (or every peer) for --ms D +/- --jitter-ms J",
        "  wolfpack fault delay NODE2 --ms 50 --jitter-ms 20\n"
        "  wolfpack fault delay NODE1 NODE3 --ms 200 --net public --direction out",
        "Each datagram is held D ms plus a uniform random -J..+J ms (never below 0), like netem; the\n"
        "jitter alone reorders datagrams. Several delay rules add up (at most 10 s in all).",
    ),
    "dup": (
        "deliver a percentage of NODE's datagrams twice",
        "  wolfpack fault dup NODE1 --pct 20\n  wolfpack fault dup NODE1 NODE2 --pct 100 --net private",
        "Each datagram rolls: --pct P percent of them are delivered twice (after the same delay).",
    ),
    "reorder": (
        "hold back a percentage of NODE's datagrams so that later ones overtake them",
        "  wolfpack fault reorder NODE1 --pct 25\n  wolfpack fault reorder NODE1 NODE2 --pct 50 --ms 300",
        "Each datagram rolls: --pct P percent of them are held back by an extra uniform random delay of\n"
        "up to --ms D (default: two heartbeat intervals), so later datagrams overtake them.",
    ),
}
SHAPE_HELP = {
    "isolate": (
        "cut NODE off from every other node (rules on every node)",
        "  wolfpack fault isolate NODE2\n  wolfpack fault isolate NODE2 --net private",
    ),
    "split": (
        'partition the cluster into sides: "A,B|C,D" (every node exactly once)',
        '  wolfpack fault split "NODE1,NODE2|NODE3"\n  wolfpack fault split "NODE1|NODE2|NODE3" --json',
    ),
    "oneway": (
        "one-way cut A->B: A's datagrams to B are dropped, B->A still flows",
        '  wolfpack fault oneway "NODE1->NODE2"',
    ),
    "partition": (
        "Jepsen partitions: one (a random node isolated), majority (random minority | majority), "
        "ring (majorities ring: every node sees a different majority; >= 3 nodes)",
        "  wolfpack fault partition one\n  wolfpack fault partition majority --seed 7\n"
        "  wolfpack fault partition ring --seed 42 --json",
    ),
}


def add_parsers(fsubs: Any, sub: SubFn) -> None:
    """The link-fault subcommands of ``wolfpack fault`` (kinds, shapes, heal, list)."""
    for kind, (summary, examples, description) in KIND_HELP.items():
        fp = sub(fsubs, kind, summary, examples, description)
        fp.add_argument("node", metavar="NODE", help="the node that gets the rule, e.g. NODE2")
        fp.add_argument("other", nargs="?", metavar="OTHER", help="the peer the rule is about (default: all)")
        if kind == "cut":
            fp.add_argument("--net", choices=NETS, required=True, help="which network(s) to cut")
        else:
            fp.add_argument("--net", choices=NETS, default="all", help="which network(s) (default all)")
        fp.add_argument("--direction", choices=DIRECTIONS, default="both", help=DIRECTION_HELP)
        if kind in ("loss", "dup", "reorder"):
            fp.add_argument("--pct", type=float, required=True, metavar="P", help="percentage, 0 < P <= 100")
        if kind in ("delay", "reorder"):
            what = (
                "delay in ms (0-10000)" if kind == "delay" else "largest extra hold in ms (default 2 beats)"
            )
            fp.add_argument("--ms", type=float, default=0.0, metavar="D", required=kind == "delay", help=what)
        if kind == "delay":
            fp.add_argument("--jitter-ms", type=float, default=0.0, metavar="J", help="+/- J ms (default 0)")
        fp.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    for name, (summary, examples) in SHAPE_HELP.items():
        fp = sub(fsubs, name, summary, examples, summary + ".\n" + SHAPE_DESCRIPTION)
        if name == "isolate":
            fp.add_argument("shape_arg", metavar="NODE", help="the node to isolate")
        elif name == "split":
            fp.add_argument(
                "shape_arg", metavar="SIDES", help='sides separated by |, e.g. "NODE1,NODE2|NODE3"'
            )
        elif name == "oneway":
            fp.add_argument("shape_arg", metavar="A->B", help='e.g. "NODE1->NODE2" (quote it in a shell)')
        else:
            fp.add_argument("shape_arg", choices=faultshapes.JEPSEN_SHAPES, metavar="SHAPE",
                            help="one, majority or ring")  # fmt: skip
            fp.add_argument(
                "--seed", type=int, metavar="S", help="random choices from this seed (default: new)"
            )
        fp.add_argument("--net", choices=NETS, default="all", help="which network(s) (default all)")
        fp.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    examples = "  wolfpack fault heal\n  wolfpack fault heal NODE2\n  wolfpack fault heal NODE2 --id 3"
    fp = sub(fsubs, "heal", "remove one fault (--id) or every fault of a node (of every node when omitted)",
             examples)  # fmt: skip
    fp.add_argument("node", nargs="?", metavar="NODE", help="the node to heal (default: every node)")
    fp.add_argument("--id", dest="fault_id", type=int, metavar="ID", help="only this fault (see fault list)")
    fp.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    examples = "  wolfpack fault list\n  wolfpack fault list --json | jq '.faults'"
    fp = sub(fsubs, "list", "show the faults every node has installed (NODE ID KIND NET PEER ...)", examples)
    fp.add_argument("--json", action="store_true", help="print one JSON document instead of text")


SHAPE_DESCRIPTION = """\
A shape becomes cut rules about single peers, installed on both ends of every blocked path (so it
holds while one end restarts). Heal with `wolfpack fault heal`."""


def run_args(cdir: ClusterDir, config: ClusterConfig, args: argparse.Namespace) -> tuple[FaultReport, bool]:
    """Run the parsed link-fault command; the report, and whether it is a listing."""
    cmd = args.fault_cmd
    if cmd in KIND_HELP:
        if cmd == "cut" and args.direction == "both":
            return cut(cdir, config, args.node, args.other, args.net), False
        return add(
            cdir, config, args.node, cmd, peer=args.other, net=args.net, direction=args.direction,
            pct=getattr(args, "pct", 0.0), delay_ms=getattr(args, "ms", 0.0),
            jitter_ms=getattr(args, "jitter_ms", 0.0),
        ), False  # fmt: skip
    if cmd in SHAPE_HELP:
        text = {"isolate": "isolate {}", "split": "split {}", "oneway": "{}", "partition": "{}"}[cmd]
        if cmd == "oneway" and "->" not in args.shape_arg:
            raise ConfigError(f"one-way cut {args.shape_arg!r}: write it as A->B")
        return shape(
            cdir, config, text.format(args.shape_arg), net=args.net, seed=getattr(args, "seed", None)
        ), False
    if cmd == "heal":
        return heal(cdir, config, args.node, fault_id=args.fault_id), False
    if cmd == "list":
        return list_faults(cdir, config), True
    raise ConfigError(f"fault {cmd}: not a link fault command")
