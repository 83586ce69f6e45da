"""``wolfpack fault disk | disk-heal | resource | crashloop``: disk, resource and process faults.

Theory of operation
-------------------
Three kinds of fault, each reaching the cluster the way its real counterpart would:

- Disk faults live in one node process (runtime/diskfaults.py): the node loses its path to a disk
  (every I/O it does there fails) or the disk is slow for it (each operation waits ``slow_ms``
  first). Set and removed through the node's control socket (ops ``disk_fault`` / ``disk_heal``),
  out of band; the node logs ``disk_fault`` / ``disk_healed`` events. A restarted node has no disk
  faults. The cluster reacts as MSCS does: a data disk's Physical Disk resource fails its next
  renewal (restart policy, then failover), a quorum owner that cannot renew its reservation halts
  (event 1177) and a survivor wins the challenge.
- Resource faults are a private property of the resource, ``FailMode`` (services.py), set through
  the cluster (admin ``resource.prop``) so that it applies on whichever node runs the resource next,
  with a fresh ``FailArm`` so the count starts again. Unless the mode is ``hang`` or ``none``, the
  resource is also made to fail now where it runs (``resource fail``), so the restart meets the
  fault: ``--times 2`` gives the failure now, two failed restarts, then a good one - three restarts,
  inside the default RestartThreshold of 3, so the group stays where it is. ``hang`` applies at the
  next online (a move, a failover, ``resource fail``). FailMode covers the emulated services (MSDTC
  and the Exchange types).
- Process faults: ``crash_loop`` kills a node with SIGKILL and starts it again (the launcher's
  ``kill_node`` and ``upcmd.start``, which waits until it is a member again), ``count`` times, waiting
  ``every_s`` between rounds. It runs in the foreground and reports each round.

Every function returns what it did (``faultcmd.FaultReport``, or a list of rounds) and raises a
``ConfigError`` / ``WolfpackError`` with one line on bad input or a node that refuses.
"""

from __future__ import annotations

import argparse
import secrets
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from nodeagent.cli import clusterdir, launcher, upcmd
from nodeagent.cli.admincmd import Admin
from nodeagent.cli.clusterdir import ClusterDir
from nodeagent.cli.console import emit_json
from nodeagent.cli.console import progress as stderr_progress
from nodeagent.cli.faultcmd import FaultReport
from nodeagent.cli.probe import RequestFn, ask, default_request
from nodeagent.config import ClusterConfig
from nodeagent.errors import ConfigError, WolfpackError
from nodeagent.runtime.diskfaults import MAX_SLOW_MS, disk_key, make_fault
from nodeagent.runtime.resources.services import MAX_FAIL_TIMES

RESOURCE_MODES = ("once", "times", "forever", "hang", "none")
MAX_CRASH_COUNT = 1000
MAX_EVERY_S = 3600.0

Progress = Callable[[str], None]
SubFactory = Callable[..., argparse.ArgumentParser]


# -- disks -----------------------------------------------------------------------------------------------


def _known_disk(cdir: ClusterDir, disk: str) -> str:
    """The disk's key; ConfigError if the cluster directory has images and none is this disk."""
    key = disk_key(disk)
    images = {p.stem.upper(): p.stem for p in cdir.disks_dir.glob("*.img")} if cdir.disks_dir.is_dir() else {}
    if images and key not in images:
        raise ConfigError(f"no disk {disk} in {cdir.disks_dir} (disks: {', '.join(sorted(images.values()))})")
    return key


def _disk_list(answer: dict[str, Any]) -> list[dict[str, Any]]:
    raw = answer.get("disk")
    return [f for f in raw if isinstance(f, dict)] if isinstance(raw, list) else []


def disk_fault(
    cdir: ClusterDir,
    config: ClusterConfig,
    node: str,
    disk: str,
    *,
    lost: bool = False,
    slow_ms: float = 0.0,
    request: RequestFn = default_request,
) -> FaultReport:
    """``node`` loses its path to ``disk`` (``lost``), or ``disk`` is ``slow_ms`` slower for it."""
    name = config.node(node).name
    fault = make_fault(_known_disk(cdir, disk), lost, slow_ms)
    answer = ask(cdir, name, {"op": "disk_fault", **fault.as_json()}, request)
    report = FaultReport()
    report.faults[name] = _disk_list(answer)
    report.done.append(f"{name}: {fault.describe()}")
    return report


def disk_heal(
    cdir: ClusterDir,
    config: ClusterConfig,
    node: str | None,
    disk: str | None = None,
    request: RequestFn = default_request,
) -> FaultReport:
    """Remove the disk faults of ``node`` (every answering node when None), or only ``disk``'s."""
    key = disk_key(disk) if disk is not None else None
    names = [config.node(node).name] if node is not None else [n.name for n in config.nodes]

    def heal_one(name: str) -> dict[str, Any] | WolfpackError:
        try:
            return ask(cdir, name, {"op": "disk_heal", "disk": key}, request)
        except WolfpackError as e:
            return e

    with ThreadPoolExecutor(max_workers=len(names)) as pool:
        answers = dict(zip(names, pool.map(heal_one, names), strict=True))
    report = FaultReport()
    for name, answer in answers.items():
        if isinstance(answer, WolfpackError):
            if node is not None:
                raise answer
            report.unreachable[name] = str(answer)
            continue
        removed = answer.get("removed", 0)
        report.faults[name] = _disk_list(answer)
        what = f"disk {key}" if key is not None else "every disk"
        plural = "" if removed == 1 else "s"
        report.done.append(f"{name}: healed {removed} disk fault{plural} ({what})")
    return report


# -- resources -------------------------------------------------------------------------------------------


def fail_mode_text(mode: str, times: int = 1) -> str:
    """The FailMode property value for ``mode`` ("times" -> "times:N")."""
    if mode not in RESOURCE_MODES:
        raise ConfigError(f"resource fault mode {mode!r}: one of {', '.join(RESOURCE_MODES)}")
    if mode == "times":
        if isinstance(times, bool) or not isinstance(times, int) or not 1 <= times <= MAX_FAIL_TIMES:
            raise ConfigError(f"--times {times}: must be a whole number from 1 to {MAX_FAIL_TIMES}")
        return f"times:{times}"
    return "always" if mode == "forever" else mode  # "always": the name the simulator knows too


def resource_fault(
    cdir: ClusterDir,
    config: ClusterConfig,
    resource: str,
    mode: str,
    *,
    times: int = 1,
    request: RequestFn = default_request,
) -> FaultReport:
    """Set the resource's FailMode through the cluster; unless hang/none, fail it now where it runs."""
    text = fail_mode_text(mode, times)
    adm = Admin(cdir, config, request)
    arm = secrets.token_hex(4)
    result = adm.call(
        "resource.prop", {"name": resource, "props": {}, "private": {"FailMode": text, "FailArm": arm}}
    )
    rname = str(result.get("name") or resource)
    report = FaultReport()
    entry: dict[str, Any] = {"kind": "resource", "resource": rname, "mode": mode, "fail_mode": text}
    report.done.append(f"resource {rname}: FailMode {text}")
    where = "cluster"
    if mode not in ("hang", "none"):
        try:
            failed = adm.fail_resource(rname)
        except WolfpackError as e:
            report.warnings.append(f"{rname} was not failed now ({e}); FailMode applies at its next online")
        else:
            where = str(failed["node"])
            entry["failed_on"] = where
            report.done.append(f"resource {rname}: made to fail on {where} (group {failed['group']})")
    report.faults[where] = [entry]
    return report


# -- processes -------------------------------------------------------------------------------------------


def crash_loop(
    cdir: ClusterDir,
    config: ClusterConfig,
    node: str,
    *,
    count: int,
    every_s: float,
    progress: Progress | None = None,
    request: RequestFn = default_request,
    timeout_s: float | None = None,
) -> list[dict[str, Any]]:
    """kill -9 ``node``, start it again (until it is a member), wait ``every_s``; ``count`` times."""
    name = config.node(node).name
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_CRASH_COUNT:
        raise ConfigError(f"--count {count}: must be a whole number from 1 to {MAX_CRASH_COUNT}")
    if not 0 <= every_s <= MAX_EVERY_S:
        raise ConfigError(f"--every-s {every_s:g}: must be from 0 to {MAX_EVERY_S:g}")
    say = progress or (lambda line: None)
    rounds: list[dict[str, Any]] = []
    for i in range(1, count + 1):
        began = time.monotonic()
        try:
            killed: launcher.ActionResult | None = launcher.kill_node(cdir, config, name)
        except WolfpackError as e:
            if "is not running" not in str(e):
                raise
            killed = None  # a crash loop goes on when the node is already down
        started = upcmd.start(cdir, config, name, timeout_s, say, wait=True, request=request)
        took = time.monotonic() - began
        rounds.append({
            "round": i, "node": name, "mono_s": began,
            "killed_pid": killed.pid if killed is not None else None,
            "started_pid": started.pid, "rejoin_s": round(took, 3),
        })  # fmt: skip
        was = f"killed pid {killed.pid}" if killed is not None else "was not running"
        say(f"crash {i}/{count}: {name} {was}, started pid {started.pid}, a member again in {took:.2f} s")
        if i < count and every_s > 0:
            time.sleep(every_s)  # the loop's own pace, not a wait for a condition
    return rounds


# -- command line ----------------------------------------------------------------------------------------


def _open(args: argparse.Namespace) -> tuple[ClusterDir, ClusterConfig]:
    given = getattr(args, "dir_opt", None) or getattr(args, "top_dir", None)
    return clusterdir.open_cluster(clusterdir.resolve_dir(given))


def _print(args: argparse.Namespace, report: FaultReport) -> int:
    if args.json:
        emit_json(report.as_json())
    else:
        lines = [*report.done, *(f"warning: {w}" for w in report.warnings)]
        lines += [f"not asked: {msg}" for msg in report.unreachable.values()]
        print("\n".join(lines))
    return 0


def cmd_disk(args: argparse.Namespace) -> int:
    cdir, config = _open(args)
    slow = args.slow_ms if args.slow_ms is not None else 0.0
    return _print(args, disk_fault(cdir, config, args.node, args.disk, lost=args.lost, slow_ms=slow))


def cmd_disk_heal(args: argparse.Namespace) -> int:
    cdir, config = _open(args)
    return _print(args, disk_heal(cdir, config, args.node, args.disk))


def cmd_resource(args: argparse.Namespace) -> int:
    cdir, config = _open(args)
    return _print(args, resource_fault(cdir, config, args.resource, args.mode, times=args.times or 1))


def cmd_crashloop(args: argparse.Namespace) -> int:
    cdir, config = _open(args)
    rounds = crash_loop(
        cdir, config, args.node, count=args.count, every_s=args.every_s, progress=stderr_progress
    )
    if args.json:
        emit_json({"rounds": rounds})
    else:
        for r in rounds:
            print(f"round {r['round']}: {r['node']} killed (pid {r['killed_pid']}), back as a member "
                  f"(pid {r['started_pid']}) in {r['rejoin_s']:.2f} s")  # fmt: skip
    return 0


def _times(text: str) -> tuple[str, int]:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: a whole number") from None
    return "times", n


def add_parsers(fsubs: Any, sub: SubFactory) -> None:
    """``fault disk | disk-heal | resource | crashloop`` under ``wolfpack fault``."""
    p = sub(
        fsubs, "disk", "a node loses its path to a disk, or the disk gets slow for it",
        "  wolfpack fault disk NODE1 Q --lost        NODE1 can no longer reach the quorum disk\n"
        "  wolfpack fault disk NODE1 EVS1 --slow-ms 50",
    )  # fmt: skip
    p.add_argument("node", metavar="NODE", help="the node whose path fails")
    p.add_argument("disk", metavar="DISK", help="disk name (DIR/disks/DISK.img), e.g. Q or EVS1")
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--lost", action="store_true", help="every I/O of NODE on DISK fails")
    how.add_argument(
        "--slow-ms", type=float, metavar="MS", help=f"each operation waits MS first (up to {MAX_SLOW_MS:g})"
    )
    p.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    p.set_defaults(func=cmd_disk)

    p = sub(
        fsubs, "disk-heal", "remove disk faults (of every node, or one node, or one disk of one node)",
        "  wolfpack fault disk-heal\n  wolfpack fault disk-heal NODE1\n  wolfpack fault disk-heal NODE1 Q",
    )  # fmt: skip
    p.add_argument("node", nargs="?", metavar="NODE", help="the node to heal (default: every node)")
    p.add_argument("disk", nargs="?", metavar="DISK", help="only this disk (default: every disk)")
    p.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    p.set_defaults(func=cmd_disk_heal)

    p = sub(
        fsubs, "resource", "make a resource fail once, N times, forever, or hang in Online Pending",
        "  wolfpack fault resource 'EVS1 SMTP Virtual Server' --times 2\n"
        "  wolfpack fault resource 'EVS1 Information Store' --hang\n"
        "  wolfpack fault resource 'EVS1 Information Store' --none",
    )  # fmt: skip
    p.add_argument("resource", metavar="RESOURCE", help="resource name (an emulated service)")
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument(
        "--once", dest="mode", action="store_const", const="once", help="fail now, then one online"
    )
    how.add_argument("--times", dest="times_mode", type=_times, metavar="N", help="fail now, then N onlines")
    how.add_argument(
        "--forever", dest="mode", action="store_const", const="forever", help="every online fails"
    )
    how.add_argument(
        "--hang", dest="mode", action="store_const", const="hang",
        help="the next onlines hang until PendingTimeout",
    )  # fmt: skip
    how.add_argument("--none", dest="mode", action="store_const", const="none", help="remove the fault")
    p.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    p.set_defaults(func=_cmd_resource_args)

    p = sub(
        fsubs, "crashloop", "kill -9 a node and start it again, COUNT times (foreground)",
        "  wolfpack fault crashloop NODE2 --count 3 --every-s 5",
    )  # fmt: skip
    p.add_argument("node", metavar="NODE", help="the node to crash")
    p.add_argument("--count", type=int, required=True, metavar="N", help=f"rounds (1-{MAX_CRASH_COUNT})")
    p.add_argument("--every-s", type=float, default=0.0, metavar="S", help="wait between rounds (default 0)")
    p.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    p.set_defaults(func=cmd_crashloop)


def _cmd_resource_args(args: argparse.Namespace) -> int:
    if args.times_mode is not None:
        args.mode, args.times = args.times_mode
    else:
        args.times = None
    return cmd_resource(args)
