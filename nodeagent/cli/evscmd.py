"""The Exchange verbs: `wolfpack msdtc create`, `wolfpack exchange install|status`, `wolfpack evs create`.

Theory of operation
-------------------
The setup rules live in the cluster (core/evs.py), which refuses what MSCS.md forbids; these
commands only assemble the requests and wait where Exchange setup waits. A virtual server needs a
shared disk: like an admin who provisions a LUN before running setup, `evs create` creates the disk
image (DIR/disks/NAME.img) when it does not exist yet, then asks the cluster to build the group.
`exchange install` waits for the setup to finish (it takes ExchangeSetupTime, 30 s over speed by
default), with progress; `--no-wait` returns at once.
"""

from __future__ import annotations

import argparse
import functools
import time
from collections.abc import Callable
from typing import Any

from nodeagent.cli.admincmd import Admin
from nodeagent.cli.clusterdir import ClusterDir
from nodeagent.cli.console import emit_json
from nodeagent.cli.console import progress as _progress
from nodeagent.errors import WolfpackError

WAIT_TIMEOUT_S = 120.0


def install(
    adm: Admin, node: str, version: str, progress: Callable[[str], None], wait: bool = True
) -> dict[str, Any]:
    result = adm.call("exchange.install", {"node": node, "version": version})
    if wait:
        progress(f"Exchange {version} setup is running on {node} (one node at a time)")
        wait_for(functools.partial(installed, adm, node, version), f"Exchange setup on {node}")
        result = {**result, "installing": False, "installed": True}
    return result


def installed(adm: Admin, node: str, version: str) -> bool:
    return bool(adm.call("exchange.status", {})["installed"].get(node) == version)


def wait_for(pred: Callable[[], bool], what: str, timeout_s: float = WAIT_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not pred():
        if time.monotonic() > deadline:
            raise WolfpackError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(0.1)


def evs_create(adm: Admin, cdir: ClusterDir, args: dict[str, Any]) -> dict[str, Any]:
    disk = str(args.get("disk") or args["name"])
    created = cdir.provision_disk(disk)
    result = adm.call("evs.create", {**args, "disk": disk})
    return {**result, "disk_created": created}


def cmd_msdtc(args: argparse.Namespace, cdir: ClusterDir, adm: Admin) -> int:
    result = adm.call("msdtc.create", {"group": args.group} if args.group else {})
    _print(
        args,
        result,
        f"MSDTC created in {result.get('group')}, depending on {', '.join(result.get('depends_on', []))}",
    )
    return 0


def cmd_exchange(args: argparse.Namespace, cdir: ClusterDir, adm: Admin) -> int:
    if args.action == "status":
        result = adm.call("exchange.status", {})
        lines = [f"{n}: Exchange {v}" for n, v in sorted(result["installed"].items())] or [
            "not installed anywhere"
        ]
        if result.get("installing"):
            lines.append(f"setup running on {result['installing']}")
        _print(args, result, "\n".join(lines))
        return 0
    if not args.node:
        raise WolfpackError("exchange install needs a NODE")
    node = adm.node_name(args.node)
    result = install(adm, node, args.version, _progress, wait=not args.no_wait)
    _print(
        args,
        result,
        f"Exchange {args.version} {'installed' if result.get('installed') else 'setup started'} on {node}",
    )
    return 0


def cmd_evs(args: argparse.Namespace, cdir: ClusterDir, adm: Admin) -> int:
    request: dict[str, Any] = {
        "name": args.name,
        "exchange_version": args.exchange_version,
        "pop3": args.pop3,
        "imap4": args.imap4,
    }
    if args.preferred:
        request["preferred_owner"] = adm.node_name(args.preferred)
    if args.possible_owners:
        request["possible_owners"] = [adm.node_name(n) for n in args.possible_owners.split(",") if n]
    for key in ("admin_group", "routing_group", "disk"):
        if getattr(args, key):
            request[key] = getattr(args, key)
    if args.log_backlog is not None:
        request["log_backlog"] = args.log_backlog
    result = evs_create(adm, cdir, request)
    text = (
        f"{args.name} created at {result.get('address')} (disk {result.get('disk')}"
        f"{', new' if result.get('disk_created') else ''}); "
        f"Exchange {result.get('version')} resources, all Offline:\n  "
        + "\n  ".join(result.get("created", []))
        + f"\nbring it online with: wolfpack group {args.name} online"
    )
    _print(args, result, text)
    return 0


def _print(args: argparse.Namespace, result: dict[str, Any], text: str) -> None:
    if args.json:
        emit_json(result)
    else:
        print(text)


Sub = Callable[..., argparse.ArgumentParser]
Opener = Callable[[argparse.Namespace], tuple[ClusterDir, Any]]


def add_parsers(subs: Any, sub: Sub, opener: Opener) -> None:
    def handler(
        run: Callable[[argparse.Namespace, ClusterDir, Admin], int],
    ) -> Callable[[argparse.Namespace], int]:
        def go(args: argparse.Namespace) -> int:
            cdir, config = opener(args)
            return run(args, cdir, Admin(cdir, config, progress=_progress))

        return go

    p = sub(subs, "msdtc", "create the Distributed Transaction Coordinator (first step of Exchange setup)",
            "  wolfpack msdtc create\n  wolfpack msdtc create --group MSDTC")  # fmt: skip
    p.add_argument("action", choices=("create",))
    p.add_argument(
        "--group", help="an existing group with a disk and a network name (default: Cluster Group)"
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=handler(cmd_msdtc))

    p = sub(subs, "exchange", "install Exchange on a node (one node at a time), or show where it is",
            "  wolfpack exchange install NODE1\n  wolfpack exchange install NODE2 --version 2000\n"
            "  wolfpack exchange status")  # fmt: skip
    p.add_argument("action", choices=("install", "status"))
    p.add_argument("node", nargs="?", metavar="NODE")
    p.add_argument("--version", choices=("2003", "2000"), default="2003")
    p.add_argument("--no-wait", action="store_true", help="return once setup has started")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=handler(cmd_exchange))

    p = sub(subs, "evs", "create an Exchange virtual server: group, disk, IP, name, System Attendant, ...",
            "  wolfpack evs create EVS1 --preferred NODE1\n"
            "  wolfpack evs create EVS2 --preferred NODE2 --exchange-version 2000 --pop3")  # fmt: skip
    p.add_argument("action", choices=("create",))
    p.add_argument("name", metavar="NAME", help="the virtual server's NetBIOS name (also its group)")
    p.add_argument("--preferred", metavar="NODE", help="its preferred owner (recommended: one per EVS)")
    p.add_argument("--possible-owners", metavar="N1,N2", help="default: every node")
    p.add_argument("--exchange-version", choices=("2003", "2000"), default="2003", help="the dependency tree")
    p.add_argument("--pop3", action="store_true", help="also create the POP3 virtual server (off by default)")
    p.add_argument(
        "--imap4", action="store_true", help="also create the IMAP4 virtual server (off by default)"
    )
    p.add_argument("--admin-group", help="Exchange administrative group (default First Administrative Group)")
    p.add_argument("--routing-group", help="Exchange routing group (default First Routing Group)")
    p.add_argument("--disk", help="the shared disk's name (default: NAME; created if missing)")
    p.add_argument("--log-backlog", type=int, help="transaction logs the store replays when it comes online")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=handler(cmd_evs))
