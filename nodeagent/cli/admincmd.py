"""``wolfpack node | group | resource | cluster``: the cluster.exe verbs, as admin requests.

Theory of operation
-------------------
Every verb is one admin request ``{"op": "admin", "cmd": "group.move", "args": {...}}`` on a node's
control socket (CONTRACT3.md). Any member accepts it and forwards it to the quorum owner, which
validates it against the MSCS rules and replicates the change; the answer is the object after the
change, or a refusal naming the rule. ``Admin.call`` routes it: one look at every node (the code of
``wolfpack status``) names the quorum owner, which is asked first since it saves a hop; if its
socket does not answer, every other answering node in turn. A refusal is final (the cluster said
no), except the rule ``retry`` (the request reached a node that has just lost the quorum), which
moves on to the next node. A socket that fails after the request was sent may have had the request
applied; the next node then sees the new state, and the verbs that are not idempotent (create)
answer "already exists", which is the truth.

Waiting: ``group online | offline | move`` return when the cluster has accepted the request; the
resources then change state on the owner. By default the command polls the group (the status op,
every ``POLL_INTERVAL_S``, of the node that took the request) until the group has settled - no
resource pending, no move under way - and says so on stderr at every change. A group that stays
Failed for ``FAILED_STABLE_S`` is final: a restart would have made a resource pending by then.

``resource NAME fail`` is not an admin request: it reaches the resource on the node that runs it
(control op ``resource_fail`` on the owner of its group), as cluster.exe's /fail does through the
resource monitor. Parsing (``add_parsers``) stays here; main.py only registers it.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from nodeagent.cli import status as status_mod
from nodeagent.cli.clusterdir import ClusterDir
from nodeagent.cli.console import progress as _progress
from nodeagent.cli.probe import ControlState, RequestFn, default_request, observe
from nodeagent.cli.tree import (
    GroupView,
    group_json,
    parse_group,
    render_group,
    render_props,
    render_resource,
    render_table,
    render_tree,
    value_text,
)
from nodeagent.config import ClusterConfig
from nodeagent.core.admin import RESOURCE_TYPES
from nodeagent.errors import NodeUnreachable, WolfpackError

ADMIN_TIMEOUT_S = 12.0  # the node itself gives up after 10 s ("no answer from the cluster")
POLL_TIMEOUT_S = 0.5
POLL_INTERVAL_S = 0.1
DEFAULT_WAIT_S = 60.0
MAX_WAIT_S = 3600.0
FAILED_STABLE_S = 1.0
SETTLED = frozenset({"Online", "Offline", "Failed"})

Progress = Callable[[str], None]
Opener = Callable[[argparse.Namespace], tuple[ClusterDir, ClusterConfig]]


class ClusterRefused(WolfpackError):
    """The cluster refused an admin request; ``rule`` names the MSCS rule."""

    def __init__(self, rule: str, error: str) -> None:
        self.rule = rule
        text = error if not rule or error.startswith(rule) else f"{rule}: {error}" if error else rule
        super().__init__(text or "refused (no reason given)")


# -- key=value -------------------------------------------------------------------------------------------


def parse_value(text: str) -> Any:
    """int if it parses as one, else a finite float, else the string; true/false (any case) are bools."""
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        return text
    return number if math.isfinite(number) else text


def parse_assignment(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r}: expected name=value")
    return key, parse_value(value)


def assignments(pairs: Sequence[tuple[str, Any]] | None) -> dict[str, Any]:
    return dict(pairs or [])


def resource_type(text: str) -> str:
    for t in RESOURCE_TYPES:
        if t.lower() == text.strip().lower():
            return t
    raise argparse.ArgumentTypeError(f"{text!r}: not a resource type (types: {', '.join(RESOURCE_TYPES)})")


def node_list(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"{text!r}: expected NODE1,NODE2,...")
    return names


# -- the session -----------------------------------------------------------------------------------------


class Admin:
    """Admin requests and status polls against one cluster directory."""

    def __init__(
        self,
        cdir: ClusterDir,
        config: ClusterConfig,
        request: RequestFn = default_request,
        progress: Progress | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cdir, self.config, self.request = cdir, config, request
        self.progress = progress or (lambda line: None)
        self.sleep, self.clock = sleep, clock
        self._route: list[str] | None = None
        self.served_by: str | None = None

    def node_name(self, name: str) -> str:
        return self.config.node(name).name

    def route(self) -> list[str]:
        """Answering nodes, the quorum owner first; a one-line error when none answers."""
        if self._route is None:
            observations = observe(self.cdir, self.config, self.request, usage=False)
            picture = status_mod.compose(self.config, observations)
            live = [o.name for o in observations if o.control is ControlState.OK]
            owner = picture.quorum_owner
            self._route = ([owner] if owner in live else []) + [n for n in live if n != owner]
            if not self._route:
                why = "; ".join(f"{o.name}: {o.error or o.control.value}" for o in observations)
                raise NodeUnreachable(f"no node answers its control socket ({why})")
        return self._route

    def call(self, cmd: str, args: Mapping[str, Any]) -> dict[str, Any]:
        """The result of one admin request; ``ClusterRefused`` if the cluster said no."""
        request = {"op": "admin", "cmd": cmd, "args": dict(args)}
        tried: list[str] = []
        for name in self.route():
            try:
                answer = self.request(self.cdir.control_sock(name), request, ADMIN_TIMEOUT_S)
            except (NodeUnreachable, OSError) as e:
                tried.append(f"{name}: {e}")
                continue
            if not isinstance(answer, dict):
                tried.append(f"{name}: malformed answer")
                continue
            if answer.get("ok") is True:
                self.served_by = name
                result = answer.get("result")
                return result if isinstance(result, dict) else {}
            error, rule = str(answer.get("error") or ""), str(answer.get("rule") or "")
            if rule == "retry":
                tried.append(f"{name}: {error or 'retry'}")
                continue
            if error.startswith("unknown op"):
                raise WolfpackError(
                    f"{name} does not take admin requests ({error}); restart it with this version"
                )
            raise ClusterRefused(rule, error)
        raise NodeUnreachable(f"no node took the {cmd} request ({'; '.join(tried)})")

    def node_status(self) -> dict[str, Any]:
        """The ``node`` object of a status answer, preferably from the node that took the last request."""
        names = self.route()
        if self.served_by in names:
            names = [self.served_by, *[n for n in names if n != self.served_by]]
        for name in names:
            try:
                answer = self.request(self.cdir.control_sock(name), {"op": "status"}, POLL_TIMEOUT_S)
            except (NodeUnreachable, OSError):
                continue
            node = answer.get("node") if isinstance(answer, dict) else None
            if isinstance(node, dict):
                return node
        raise NodeUnreachable("no node answers its control socket any more")

    def group(self, name: str) -> GroupView:
        raw = self.node_status().get("groups")
        for g in raw if isinstance(raw, list) else []:
            if isinstance(g, dict) and str(g.get("name", "")).upper() == name.upper():
                return parse_group(g)
        raise WolfpackError(f"group {name} is not in the cluster database")

    def wait_group(self, name: str, done: Callable[[GroupView], bool], timeout_s: float) -> GroupView:
        """Poll until ``done(group)`` and the group is settled; Failed for FAILED_STABLE_S is an error."""
        start = self.clock()
        last: tuple[str, str | None, str | None] | None = None
        failed_since: float | None = None
        while True:
            g = self.group(name)
            now = self.clock()
            seen = (g.state, g.owner, g.target)
            if seen != last:
                moving = f", moving to {g.target}" if g.target else ""
                self.progress(f"{now - start:6.1f} s  {g.name}: {g.state} on {g.owner or 'no node'}{moving}")
                last = seen
            settled = g.target is None and all(r.state in SETTLED for r in g.resources)
            if settled and done(g):
                return g
            if settled and g.state == "Failed":
                failed_since = now if failed_since is None else failed_since
                if now - failed_since >= FAILED_STABLE_S:
                    failed = ", ".join(r.name for r in g.resources if r.state == "Failed")
                    why = (
                        f"failed: {failed}" if failed else "its resources are Offline; wolfpack log says why"
                    )
                    raise WolfpackError(f"group {g.name} failed on {g.owner or 'no node'} ({why})")
            else:
                failed_since = None
            if now - start >= timeout_s:
                raise WolfpackError(
                    f"group {g.name} did not settle in {timeout_s:g} s: it is {g.state} on "
                    f"{g.owner or 'no node'}{f', moving to {g.target}' if g.target else ''}"
                )
            self.sleep(POLL_INTERVAL_S)

    def fail_resource(self, name: str) -> dict[str, Any]:
        """Make a resource fail where it runs (control op ``resource_fail`` on its group's owner)."""
        res = self.call("resource.status", {"name": name})
        group = self.call("group.status", {"name": res.get("group")})
        owner = group.get("owner")
        if not isinstance(owner, str):
            raise WolfpackError(
                f"resource {res.get('name', name)} is not running: group {group.get('name')} has no owner"
            )
        try:
            answer = self.request(
                self.cdir.control_sock(owner), {"op": "resource_fail", "name": res.get("name", name)}, 2.0
            )
        except (NodeUnreachable, OSError) as e:
            raise NodeUnreachable(
                f"{owner} (the owner of group {group.get('name')}) does not answer: {e}"
            ) from None
        if not isinstance(answer, dict) or answer.get("ok") is not True:
            error = (
                str(answer.get("error", "no reason given"))
                if isinstance(answer, dict)
                else "malformed answer"
            )
            if error.startswith("unknown op"):
                raise WolfpackError(
                    f"{owner} cannot fail a resource on demand: no resource_fail op there ({error})"
                )
            raise WolfpackError(f"{owner} refused to fail {res.get('name', name)}: {error}")
        return {"name": res.get("name", name), "group": group.get("name"), "node": owner}


# -- commands --------------------------------------------------------------------------------------------

PAST = {"pause": "paused", "resume": "resumed", "evict": "evicted"}


def _emit(args: argparse.Namespace, doc: Mapping[str, Any], text: str) -> None:
    if args.json:
        json.dump(doc, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(text)


def _timeout(args: argparse.Namespace) -> float:
    t: float = args.timeout_s
    if not 0 < t <= MAX_WAIT_S:
        raise WolfpackError(f"--timeout-s {t:g}: must be more than 0 and at most {MAX_WAIT_S:g}")
    return t


def node_verb(adm: Admin, node: str, verb: str) -> dict[str, Any]:
    """cluster node N /pause | /resume | /evict: cluster-wide, replicated through the quorum owner."""
    return adm.call(f"node.{verb}", {"node": adm.node_name(node)})


def cmd_node(args: argparse.Namespace, adm: Admin) -> int:
    name = adm.node_name(args.name)
    if args.verb != "status":
        result = node_verb(adm, name, args.verb)
        _emit(args, result, f"{name} {PAST[args.verb]}")
        return 0
    picture = status_mod.compose(adm.config, observe(adm.cdir, adm.config, adm.request))
    doc = status_mod.as_json(picture)
    row = next(n for n in doc["nodes"] if n["name"] == name)
    owned = [g for g in picture.groups if g.owner == name]
    keys = ("name", "id", "state", "pid", "private_ip", "public_ip", "incarnation", "process", "control")
    cells = [str(row[k]) if row[k] is not None else "-" for k in keys]
    text = [
        render_table(
            ["NODE", "ID", "STATE", "PID", "PRIVATE", "PUBLIC", "INC", "PROCESS", "CONTROL"], [cells]
        )
    ]
    if row["note"]:
        text.append(f"note: {row['note']}")
    if picture.view_from is None:
        text.append("no member answers: which groups it owns is not known")
    elif owned:
        text += ["", render_tree(owned)]
    else:
        text.append(f"{name} owns no group")
    groups = [group_json(g) for g in owned]
    _emit(args, {"node": row, "groups": groups, "view_from": picture.view_from}, "\n".join(text))
    return 0


def _wait_for_move(adm: Admin, name: str, dest: str, timeout_s: float) -> GroupView:
    seen_move = [False]
    start = adm.clock()

    def done(g: GroupView) -> bool:
        seen_move[0] = seen_move[0] or g.target == dest or g.owner == dest
        if g.owner == dest:
            return g.state != "Failed"  # a Failed group is final once stable (wait_group)
        if seen_move[0] or adm.clock() - start > 2.0:
            raise WolfpackError(
                f"group {g.name} did not move to {dest}: it is {g.state} on {g.owner or 'no node'}"
            )
        return False

    return adm.wait_group(name, done, timeout_s)


def cmd_group(args: argparse.Namespace, adm: Admin) -> int:
    name, verb = args.name, args.verb
    if verb == "status":
        result = adm.call("group.status", {"name": name})
        _emit(args, result, render_group(result))
        return 0
    if verb == "create":
        preferred = [adm.node_name(n) for n in args.preferred or []]
        result = adm.call("group.create", {"name": name, "preferred_owners": preferred})
        owners = ", ".join(result.get("preferred_owners") or []) or "none"
        _emit(args, result, f"created group {result.get('name', name)} (preferred owners: {owners})")
        return 0
    if verb == "delete":
        result = adm.call("group.delete", {"name": name})
        _emit(args, result, f"deleted group {result.get('name', name)}")
        return 0
    if verb == "owners":
        call_args: dict[str, Any] = {"name": name}
        if args.nodes:
            call_args["nodes"] = [adm.node_name(n) for n in args.nodes]
        result = adm.call("group.owners", call_args)
        owners = ", ".join(result.get("preferred_owners") or []) or "none"
        _emit(args, result, f"preferred owners of {result.get('name', name)}: {owners}")
        return 0
    if verb == "prop":
        result = adm.call("group.prop", {"name": name, "props": assignments(args.assign)})
        _emit(args, result, render_props(result))
        return 0
    # online, offline, move: accepted by the cluster, then carried out by the owner.
    timeout_s = _timeout(args)
    node = getattr(args, "node", None) or getattr(args, "to", None)
    call_args = {"name": name, **({"node": adm.node_name(node)} if node else {})}
    result = adm.call(f"group.{verb}", call_args)
    gname = str(result.get("name", name))
    dest = result.get("target") or result.get("owner")
    if not args.wait:
        where = f" (owner {dest})" if dest else ""
        _emit(args, result, f"group {gname}: {verb} accepted{where}")
        return 0
    if verb == "move" and isinstance(dest, str):
        adm.progress(f"moving group {gname} to {dest}")
        final = _wait_for_move(adm, gname, dest, timeout_s)
    elif verb == "online":
        adm.progress(f"bringing group {gname} online" + (f" on {dest}" if dest else ""))
        final = adm.wait_group(
            gname, lambda g: g.state == "Online" and (dest is None or g.owner == dest), timeout_s
        )
    else:
        adm.progress(f"taking group {gname} offline")
        final = adm.wait_group(gname, lambda g: g.state in ("Offline", "Failed"), timeout_s)
    _emit(args, {**result, "group": dict(final.raw)}, render_group(final.raw))
    return 0


def cmd_resource(args: argparse.Namespace, adm: Admin) -> int:
    name, verb = args.name, args.verb
    if verb in ("status", "create", "prop"):
        if verb == "create":
            call_args: dict[str, Any] = {
                "name": name, "group": args.group, "type": args.type,
                "separate": args.separate, "private": assignments(args.priv),
            }  # fmt: skip
            disk = call_args["private"].get("Disk")
            if args.type == "Physical Disk" and isinstance(disk, str) and disk:
                adm.cdir.provision_disk(disk)  # the shared disk exists before the resource names it
        elif verb == "prop":
            call_args = {"name": name, "props": assignments(args.assign), "private": assignments(args.priv)}
        else:
            call_args = {"name": name}
        result = adm.call(f"resource.{verb}", call_args)
        head = "created resource\n" if verb == "create" else ""
        _emit(args, result, head + render_resource(result))
        return 0
    if verb == "fail":
        result = adm.fail_resource(name)
        _emit(
            args,
            result,
            f"resource {result['name']} made to fail on {result['node']} (group {result['group']})",
        )
        return 0
    if verb == "deps":
        call_args = {"name": name, **({args.change[0]: args.change[1]} if args.change else {})}
        result = adm.call("resource.deps", call_args)
        deps = ", ".join(result.get("depends_on") or []) or "nothing"
        _emit(args, result, f"{result.get('name', name)} depends on: {deps}")
        return 0
    if verb == "owners":
        change = {args.change[0]: adm.node_name(args.change[1])} if args.change else {}
        result = adm.call("resource.owners", {"name": name, **change})
        owners = ", ".join(result.get("possible_owners") or []) or "every node"
        _emit(args, result, f"possible owners of {result.get('name', name)}: {owners}")
        return 0
    result = adm.call(f"resource.{verb}", {"name": name})  # delete, online, offline
    if verb == "delete":
        text = f"deleted resource {result.get('name', name)}"
    elif verb == "online":
        text = f"resource {result.get('name', name)}: online requested (group {result.get('group')} on "
        text += f"{result.get('owner') or 'no node'})"
    else:
        text = (
            f"resource {result.get('name', name)}: offline requested for {value_text(result.get('offline'))}"
        )
    _emit(args, result, text)
    return 0


def cmd_cluster(args: argparse.Namespace, adm: Admin) -> int:
    result = adm.call("cluster.prop", {"props": assignments(args.assign)})
    _emit(args, result, render_props(result))
    return 0


# -- parsers ---------------------------------------------------------------------------------------------

SubFactory = Callable[..., argparse.ArgumentParser]

NODE_EXAMPLES = """\
  wolfpack node NODE2 status         its row and the groups it owns
  wolfpack node NODE2 pause          stays a member, takes no groups (cluster node /pause)
  wolfpack node NODE2 resume
  wolfpack node NODE3 evict          removed from the cluster configuration"""
GROUP_EXAMPLES = """\
  wolfpack group EVS1 create --preferred NODE2,NODE1
  wolfpack group EVS1 online --node NODE2       waits until it is Online
  wolfpack group EVS1 move --to NODE1           waits until it is Online on NODE1
  wolfpack group EVS1 move                      to the best possible node
  wolfpack group EVS1 offline --no-wait
  wolfpack group EVS1 owners NODE1 NODE2        set the preferred owners
  wolfpack group EVS1 prop FailoverThreshold=2 AutoFailbackType=1
  wolfpack group "Cluster Group" status --json"""
RESOURCE_EXAMPLES = """\
  wolfpack resource "EVS1 IP" create --group EVS1 --type "IP Address" --priv Address=127.7.3.9
  wolfpack resource "EVS1 Name" create --group EVS1 --type "Network Name" --priv Name=EVS1
  wolfpack resource "EVS1 Name" deps add "EVS1 IP"
  wolfpack resource "EVS1 IP" owners remove NODE3
  wolfpack resource "EVS1 Name" online
  wolfpack resource "EVS1 IP" fail              a failure on demand, where it runs
  wolfpack resource "EVS1 IP" prop RestartThreshold=1 --priv Port=3344
  wolfpack resource "EVS1 Name" status"""
CLUSTER_EXAMPLES = """\
  wolfpack cluster prop                      list the cluster's properties
  wolfpack cluster prop QuorumLogSize=4096"""


class _Change(argparse.Action):
    """Nothing (list), or exactly ``add X`` / ``remove X``."""

    def __call__(
        self, parser: argparse.ArgumentParser, ns: argparse.Namespace, values: Any, option: str | None = None
    ) -> None:
        items = list(values or [])
        if items and (len(items) != 2 or items[0] not in ("add", "remove")):
            parser.error(
                f"expected nothing, 'add {self.metavar}' or 'remove {self.metavar}', not {' '.join(items)!r}"
            )
        setattr(ns, self.dest, items or None)


def _json(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the result as one JSON document")


def _wait(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument(
        "--wait", action=argparse.BooleanOptionalAction, default=True,
        help=f"wait until {what} (default; progress on stderr)",
    )  # fmt: skip
    p.add_argument(
        "--timeout-s", type=float, default=DEFAULT_WAIT_S, metavar="T",
        help=f"how long to wait (default {DEFAULT_WAIT_S:g})",
    )  # fmt: skip


def _assign(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("assign", nargs="*", type=parse_assignment, metavar="NAME=VALUE", help=what)


def _priv(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--priv", nargs="+", action="extend", type=parse_assignment, metavar="NAME=VALUE",
        help="private (type-specific) properties, e.g. Address=127.7.3.9 Name=EVS1",
    )  # fmt: skip


def _verbs(
    sub: SubFactory, parent: argparse.ArgumentParser, noun: str, verbs: Sequence[tuple[str, str, str]]
) -> dict[str, argparse.ArgumentParser]:
    vsubs = parent.add_subparsers(dest="verb", metavar="VERB", required=True)
    parsers = {}
    for verb, summary, example in verbs:
        p = sub(vsubs, verb, summary, f"  wolfpack {noun} {example}")
        _json(p)
        parsers[verb] = p
    return parsers


def add_parsers(subs: Any, sub: SubFactory, opener: Opener) -> None:
    """Register node, group, resource and cluster; ``sub`` is main.py's subcommand factory."""

    def handler(run: Callable[[argparse.Namespace, Admin], int]) -> Callable[[argparse.Namespace], int]:
        def go(args: argparse.Namespace) -> int:
            cdir, config = opener(args)
            return run(args, Admin(cdir, config, progress=_progress))

        return go

    p = sub(subs, "node", "a node's status; pause, resume or evict it (cluster node)", NODE_EXAMPLES)
    p.add_argument("name", metavar="NODE", help="node name, e.g. NODE2")
    _verbs(sub, p, "node", [
        ("status", "the node's row and the groups it owns", "NODE2 status"),
        ("pause", "pause the node everywhere: it stays a member but takes no groups", "NODE2 pause"),
        ("resume", "resume a paused node", "NODE2 resume"),
        ("evict", "evict the node from the cluster configuration", "NODE3 evict"),
    ])  # fmt: skip
    p.set_defaults(func=handler(cmd_node))

    p = sub(subs, "group", "resource groups: create, online, move, owners, properties (cluster group)",
            GROUP_EXAMPLES)  # fmt: skip
    p.add_argument("name", metavar="GROUP", help='group name, e.g. EVS1 or "Cluster Group"')
    g = _verbs(sub, p, "group", [
        ("status", "state, owner, preferred owners and resources of the group", "EVS1 status"),
        ("create", "create an empty group", "EVS1 create --preferred NODE2,NODE1"),
        ("delete", "delete an empty group", "EVS1 delete"),
        ("online", "bring every resource of the group online", "EVS1 online --node NODE2"),
        ("offline", "take every resource of the group offline", "EVS1 offline"),
        ("move", "move the group to another node (cluster group /moveto)", "EVS1 move --to NODE1"),
        ("owners", "list, or set, the preferred owners in order", "EVS1 owners NODE2 NODE1"),
        ("prop", "list, or set, the group's properties", "EVS1 prop FailoverThreshold=2"),
    ])  # fmt: skip
    g["create"].add_argument(
        "--preferred", type=node_list, metavar="N1,N2", help="preferred owners, in order"
    )
    g["online"].add_argument("--node", metavar="NODE", help="the node to bring it online on")
    _wait(g["online"], "the group is Online (or Failed)")
    _wait(g["offline"], "the group is Offline")
    g["move"].add_argument("--to", metavar="NODE", help="the new owner (default: the best possible node)")
    _wait(g["move"], "the group is Online on its new owner (or Failed)")
    g["owners"].add_argument("nodes", nargs="*", metavar="NODE", help="the new preferred owners, in order")
    _assign(g["prop"], "FailoverThreshold, FailoverPeriod, AutoFailbackType, FailbackWindowStart/End")
    p.set_defaults(func=handler(cmd_group))

    p = sub(subs, "resource", "resources: create, online, fail, dependencies, owners (cluster resource)",
            RESOURCE_EXAMPLES)  # fmt: skip
    p.add_argument("name", metavar="RESOURCE", help='resource name, e.g. "EVS1 IP"')
    r = _verbs(sub, p, "resource", [
        ("status", "state, type, group, dependencies, owners and properties", '"EVS1 IP" status'),
        ("create", "create a resource in a group (Offline)",
         '"EVS1 IP" create --group EVS1 --type "IP Address" --priv Address=127.7.3.9'),
        ("delete", "delete an offline resource nothing depends on", '"EVS1 IP" delete'),
        ("online", "bring the resource (and what it depends on) online", '"EVS1 Name" online'),
        ("offline", "take the resource (and what depends on it) offline", '"EVS1 IP" offline'),
        ("fail", "make the resource fail where it runs, to test restart and failover", '"EVS1 IP" fail'),
        ("deps", "list, add or remove a dependency", '"EVS1 Name" deps add "EVS1 IP"'),
        ("owners", "list, add or remove a possible owner", '"EVS1 IP" owners remove NODE3'),
        ("prop", "list, or set, common and private properties",
         '"EVS1 IP" prop RestartThreshold=1 --priv Port=3344'),
    ])  # fmt: skip
    c = r["create"]
    c.add_argument("--group", required=True, metavar="GROUP", help="the group to put it in")
    c.add_argument("--type", required=True, type=resource_type, metavar="TYPE",
                   help=f"one of: {', '.join(RESOURCE_TYPES)} (case does not matter)")  # fmt: skip
    c.add_argument("--separate", action="store_true", help="run it in its own resource monitor")
    _priv(c)
    r["deps"].add_argument("change", nargs="*", action=_Change, metavar="RESOURCE", help="add R | remove R")
    r["owners"].add_argument("change", nargs="*", action=_Change, metavar="NODE", help="add N | remove N")
    _assign(r["prop"], "RestartAction, RestartThreshold, RestartPeriod, PendingTimeout, ...PollInterval")
    _priv(r["prop"])
    p.set_defaults(func=handler(cmd_resource))

    p = sub(subs, "cluster", "cluster-wide properties (cluster /prop)", CLUSTER_EXAMPLES)
    csubs = p.add_subparsers(dest="verb", metavar="VERB", required=True)
    cp = sub(csubs, "prop", "list, or set, cluster properties", CLUSTER_EXAMPLES)
    _assign(cp, "properties to set")
    _json(cp)
    p.set_defaults(func=handler(cmd_cluster))
