"""One chaos run on real processes: start a lab, apply the seed's schedule in real time, heal, check.

Theory of operation
-------------------
1. Start N nodes with the standard lab (``wolfpack up DIR --nodes N --speed S --evs 1``, through
   ``cli.lab.Lab``, which also kills every node pid it knows in ``close``) and a client of EVS1
   (``wolfpack client EVS1 --json``, a child process, JSON lines to DIR/chaos/client.jsonl).
2. Draw ``plan(seed, ...)`` and apply its steps at ``t0 + at_s`` on CLOCK_MONOTONIC. Every action
   is logged (DIR/chaos/actions.jsonl, and in memory) with its begin and end times: the victims of
   kill -9 and SIGSTOP cannot log them. Process actions use the launcher (kill, freeze, thaw) and a
   bare spawn for a restart (no waiting: the schedule runs on). Link faults are the plan's per-node
   rules, installed through each node's control socket. The runner keeps the set of active rules and
   *reconciles* a node (heal all its faults, install its active rules and disk faults again) when a
   fault that touched it heals, and when it comes back from a freeze or a restart (a restarted node
   has no faults; a frozen one could not be told). A node that cannot be asked yet (starting,
   frozen) is reconciled as soon as it answers. A rule kind the nodes do not know (an older build
   without ``fault_add``) is logged as skipped, not retried.
3. At ``duration_s`` the final heal: every network and disk fault removed, frozen nodes thawed, dead
   ones started. ``heal_s`` is when that is done.
4. Wait (polling the event logs, never sleeping blindly) until every group the cluster database
   wants online is whole on one node, at most ``recovery_bound_s``; then a short settle.
5. Stop the client (SIGINT: it prints its summary), build the history, run the checker, write
   DIR/chaos/report.json, and stop the cluster unless ``keep``.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nodeagent.chaos import checker, history, report
from nodeagent.chaos.plan import ChaosPlan, LinkRule, Step, plan
from nodeagent.cli import launcher
from nodeagent.cli.clusterdir import ClusterDir, open_cluster
from nodeagent.cli.probe import ask
from nodeagent.config import ClusterConfig
from nodeagent.errors import ConfigError, NodeUnreachable, WolfpackError

Progress = Callable[[str], None]
TICK_S = 0.05  # the schedule loop's granularity
ASK_TIMEOUT_S = 1.0
CLIENT_START_S = 10.0
CLIENT_STOP_S = 5.0
SETTLE_AFTER_RECOVERY_S = 0.5
CLIENT_INTERVAL_MS = 50
MAX_NODES = 8
UP_ATTEMPTS = 3
FINAL_HEAL_RETRY_S = 3.0


@dataclass(frozen=True, slots=True)
class ChaosOptions:
    seed: int
    duration_s: float = 20.0
    nodes: int = 3
    speed: float = 10.0
    directory: Path | None = None
    keep: bool = False
    disk_faults: bool = True


def check_options(o: ChaosOptions) -> None:
    if not 0 <= o.seed <= 2**63 - 1:
        raise ConfigError(f"--seed {o.seed}: must be from 0 to {2**63 - 1}")
    if not 2 <= o.nodes <= MAX_NODES:
        raise ConfigError(f"--nodes {o.nodes}: chaos needs 2 to {MAX_NODES} nodes")
    if not 0 < o.duration_s <= 3600:
        raise ConfigError(f"--duration-s {o.duration_s:g}: must be more than 0 and at most 3600")
    if not 0.5 <= o.speed <= 100:
        raise ConfigError(f"--speed {o.speed:g}: must be from 0.5 to 100")
    if o.directory is not None and o.directory.exists() and any(o.directory.iterdir()):
        raise ConfigError(f"{o.directory} is not empty: chaos needs a new (or empty) directory")


class _Runner:
    def __init__(self, cdir: ClusterDir, config: ClusterConfig, chaos: ChaosPlan, progress: Progress) -> None:
        self.cdir, self.config, self.plan, self.progress = cdir, config, chaos, progress
        self.state = {n.name: "up" for n in config.nodes}  # up | dead | frozen
        self.active: dict[int, tuple[LinkRule, ...]] = {}
        self.disk_active: dict[int, tuple[str, str]] = {}  # ref -> (node, disk)
        self.pending: set[str] = set()  # nodes to reconcile as soon as they answer
        self.unsupported: set[str] = set()  # rule kinds the nodes refused
        self.actions: list[dict[str, Any]] = []
        self.spawned: list[subprocess.Popen[bytes]] = []
        self.log_path = cdir.root / "chaos" / "actions.jsonl"
        self.t0 = 0.0

    # -- the action log --------------------------------------------------------------------------
    def _record(self, t: float, action: str, node: str | None, what: str, *, ok: bool = True,
                error: str | None = None, step: Step | None = None, origin: str | None = None,
                kind: str | None = None) -> None:  # fmt: skip
        doc = {"t": t, "t_end": time.monotonic(), "action": action, "node": node, "what": what, "ok": ok,
               "error": error, "ref": step.ref if step else 0, "at_s": step.at_s if step else None,
               "origin": origin or (step.origin if step else "final"), "kind": kind}  # fmt: skip
        self.actions.append(doc)
        with self.log_path.open("a") as f:
            f.write(json.dumps(doc) + "\n")
        if not ok:
            self.progress(f"chaos: {what}: {error}")

    # -- link and disk rules ---------------------------------------------------------------------
    def _rules_of(self, node: str) -> list[LinkRule]:
        return [r for rules in self.active.values() for r in rules if r.node == node]

    def _install(self, rule: LinkRule) -> str | None:
        """Install one rule; None, or why not (NodeUnreachable: the node is pending)."""
        if rule.kind in self.unsupported:
            return f"{rule.kind} rules are not supported by the nodes"
        try:
            ask(self.cdir, rule.node, rule.request(), timeout_s=ASK_TIMEOUT_S)
        except NodeUnreachable:
            self.pending.add(rule.node)
            return "unreachable (installed when it answers)"
        except WolfpackError as e:
            if "unknown" in str(e).lower() and rule.kind != "cut":
                self.unsupported.add(rule.kind)
            return str(e)
        return None

    def _reconcile(self, node: str) -> bool:
        if self.state[node] != "up":
            return False
        try:
            ask(self.cdir, node, {"op": "fault_heal"}, timeout_s=ASK_TIMEOUT_S)
        except NodeUnreachable:
            self.pending.add(node)
            return False
        except WolfpackError:
            pass
        disks = [(n, d) for n, d in self.disk_active.values() if n == node]
        procfaults = _procfaults()
        if procfaults is not None:
            with contextlib.suppress(WolfpackError):
                ask(self.cdir, node, {"op": "disk_heal", "disk": None}, timeout_s=ASK_TIMEOUT_S)
            for _, disk in disks:
                with contextlib.suppress(WolfpackError):
                    procfaults.disk_fault(self.cdir, self.config, node, disk, lost=True)
        for rule in self._rules_of(node):
            self._install(rule)
        self.pending.discard(node)
        return True

    def _retry_pending(self) -> None:
        for node in sorted(self.pending):
            if self.state[node] == "up" and self._reconcile(node):
                self._record(
                    time.monotonic(), "reconcile", node, f"{node}: faults installed again", origin="reconcile"
                )

    # -- steps -----------------------------------------------------------------------------------
    def apply(self, step: Step) -> None:
        t = time.monotonic()
        node = step.node
        try:
            if step.action == "kill" and node is not None:
                self._kill(node)
            elif step.action == "restart" and node is not None:
                self._start(node)
            elif step.action == "freeze" and node is not None:
                self._freeze(node)
            elif step.action == "thaw" and node is not None:
                self._thaw(node)
            elif step.action == "fault":
                self.active[step.ref] = step.rules
                now_up = [r for r in step.rules if self.state[r.node] == "up" and r.node not in self.pending]
                errors = [f"{r.text()}: {why}" for r in now_up if (why := self._install(r)) is not None]
                for r in step.rules:
                    if self.state[r.node] != "up":
                        self.pending.add(r.node)
                kind = step.what.split()[1] if len(step.what.split()) > 1 else "fault"
                skipped = [e for e in errors if "unreachable" not in e]
                self._record(t, "fault", None, step.what, ok=not skipped or len(skipped) < len(step.rules),
                             error="; ".join(errors) or None, step=step, kind=kind)  # fmt: skip
                return
            elif step.action == "heal":
                rules = self.active.pop(step.ref, ())
                for n in sorted({r.node for r in rules}):
                    if not self._reconcile(n) and self.state[n] != "dead":
                        self.pending.add(n)
            elif step.action == "disk_fault" and node is not None and step.disk is not None:
                if self.state[node] != "up":
                    raise WolfpackError(f"{node} is {self.state[node]}")
                procfaults = _procfaults()
                if procfaults is None:
                    raise WolfpackError("disk faults are not available in this build")
                procfaults.disk_fault(self.cdir, self.config, node, step.disk, lost=True)
                self.disk_active[step.ref] = (node, step.disk)
            elif step.action == "disk_heal" and node is not None:
                if self.disk_active.pop(step.ref, None) is None:
                    return  # its fault was skipped
                if not self._reconcile(node) and self.state[node] == "frozen":
                    self.pending.add(node)
        except WolfpackError as e:
            self._record(t, step.action, node, step.what, ok=False, error=str(e), step=step)
            return
        self._record(t, step.action, node, step.what, step=step)

    def _kill(self, node: str) -> None:
        launcher.kill_node(self.cdir, self.config, node)
        self.state[node] = "dead"
        self.pending.discard(node)

    def _start(self, node: str) -> None:
        if self.state[node] != "dead":
            raise WolfpackError(f"{node} is {self.state[node]}, not dead")
        self.spawned.append(launcher.spawn(self.cdir, node))
        self.state[node] = "up"
        if self._rules_of(node) or any(n == node for n, _ in self.disk_active.values()):
            self.pending.add(node)

    def _freeze(self, node: str) -> None:
        launcher.freeze_node(self.cdir, self.config, node)
        self.state[node] = "frozen"

    def _thaw(self, node: str) -> None:
        launcher.thaw_node(self.cdir, self.config, node)
        self.state[node] = "up"
        self.pending.add(node)

    def run_schedule(self) -> None:
        self.t0 = time.monotonic()
        steps = list(self.plan.steps)
        end = self.t0 + self.plan.duration_s
        while True:
            now = time.monotonic()
            while steps and self.t0 + steps[0].at_s <= now:
                self.apply(steps.pop(0))
            self._retry_pending()
            if not steps and now >= end:
                return
            due = self.t0 + steps[0].at_s if steps else end
            time.sleep(max(0.0, min(TICK_S, due - time.monotonic())))

    def final_heal(self) -> None:
        """Thaw the frozen nodes, remove every fault of every running node, start the dead ones."""
        self.active.clear()
        self.disk_active.clear()
        for node, s in sorted(self.state.items()):
            if s == "frozen":
                self._final_action("thaw", node, self._thaw)
        t = time.monotonic()
        todo = sorted(n for n, s in self.state.items() if s == "up")
        healed = list(todo)
        deadline = t + FINAL_HEAL_RETRY_S
        while todo:  # a node that was just thawed or started may take a moment to answer
            todo = [n for n in todo if not self._reconcile(n)]
            if not todo or time.monotonic() >= deadline:
                break
            time.sleep(TICK_S)
        error = f"not reached: {', '.join(todo)}" if todo else None
        what = f"final heal of every link and disk fault ({', '.join(n for n in healed if n not in todo)})"
        self._record(t, "heal", None, what, ok=not todo, error=error)
        for node, s in sorted(self.state.items()):
            if s == "dead":
                self._final_action("restart", node, self._start)
        self.pending.clear()  # nothing is active any more, and a started node has no faults

    def _final_action(self, action: str, node: str, do: Callable[[str], object]) -> None:
        t = time.monotonic()
        try:
            do(node)
            self._record(t, action, node, f"{action} {node}")
        except WolfpackError as e:
            self._record(t, action, node, f"{action} {node}", ok=False, error=str(e))

    def reap(self, wait: bool = False) -> None:
        """Collect the exit status of the nodes this run started (no zombies are left behind)."""
        for p in self.spawned:
            if wait:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(timeout=launcher.KILL_WAIT_S)
            else:
                p.poll()


def _procfaults() -> Any:
    try:
        from nodeagent.cli import procfaults
    except ImportError:
        return None
    return procfaults


def _start_client(cdir: ClusterDir, out: Path) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "nodeagent.cli.main", "--dir", str(cdir.root), "client", "EVS1", "--json",
            "--interval-ms", str(CLIENT_INTERVAL_MS)]  # fmt: skip
    with out.open("wb") as f, (out.parent / "client.err").open("wb") as err:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=f, stderr=err, start_new_session=True)


def _wait_lines(path: Path, popen: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if path.stat().st_size > 0:
                return
        if popen.poll() is not None:
            err = (path.parent / "client.err").read_text(errors="replace").strip().splitlines()
            raise WolfpackError(f"the client of EVS1 exited: {err[-1] if err else 'no message'}")
        time.sleep(TICK_S)
    raise WolfpackError(f"the client of EVS1 printed nothing within {timeout_s:g} s")


def _stop_client(popen: subprocess.Popen[bytes]) -> None:
    if popen.poll() is None:
        with contextlib.suppress(OSError):
            popen.send_signal(signal.SIGINT)
        try:
            popen.wait(timeout=CLIENT_STOP_S)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait(timeout=CLIENT_STOP_S)


def _wait_recovery(cdir: ClusterDir, r: _Runner, heal_s: float, bound_s: float) -> None:
    deadline = heal_s + bound_s
    while time.monotonic() < deadline:
        r.reap()
        h = history.load_history(cdir.root, r.actions, start_s=r.t0, heal_s=heal_s, bound_s=bound_s)
        if h.expected_groups and all(checker.recovery_time(h, g) for g in h.expected_groups):
            time.sleep(SETTLE_AFTER_RECOVERY_S)
            return
        time.sleep(0.2)


def run_chaos(options: ChaosOptions, progress: Progress) -> report.ChaosReport:
    from nodeagent.cli.lab import Lab, LabCommandFailed

    check_options(options)
    temporary = options.directory is None
    root = options.directory or Path(tempfile.mkdtemp(prefix="wpc", dir="/tmp"))
    root.mkdir(parents=True, exist_ok=True)
    progress(f"chaos: starting {options.nodes} nodes with EVS1 in {root} (speed {options.speed:g})")
    for attempt in range(1, UP_ATTEMPTS + 1):
        try:
            lab = Lab(
                options.nodes,
                "--speed",
                f"{options.speed:g}",
                "--evs",
                "1",
                "--exchange-setup-s",
                "5",
                directory=root,
            )
            break
        except (LabCommandFailed, subprocess.TimeoutExpired) as e:
            Lab.down(root)
            # Another lab may have taken the same free cluster number at the same moment: start over.
            if attempt == UP_ATTEMPTS or "already in use" not in str(e):
                raise WolfpackError(f"could not start the lab: {e}") from None
            shutil.rmtree(root, ignore_errors=True)
            root.mkdir(parents=True)
            progress(f"chaos: {e}; trying again")
    client: subprocess.Popen[bytes] | None = None
    runner: _Runner | None = None
    try:
        cdir, config = open_cluster(root)
        (root / "chaos").mkdir(exist_ok=True)
        disks = sorted(p.stem for p in cdir.disks_dir.glob("*.img"))
        chaos = plan(options.seed, config, options.duration_s, disks=disks, disk_faults=options.disk_faults)
        (root / "chaos" / "plan.json").write_text(
            json.dumps({"seed": options.seed, "steps": report.steps_json(chaos.steps)}, indent=1)
        )
        client_log = root / "chaos" / "client.jsonl"
        client = _start_client(cdir, client_log)
        _wait_lines(client_log, client, CLIENT_START_S)
        runner = _Runner(cdir, config, chaos, progress)
        progress(f"chaos: {len(chaos.steps)} steps over {options.duration_s:g} s")
        runner.run_schedule()
        runner.final_heal()
        heal_s = time.monotonic()
        db = history.read_clusterdb(root)
        bound_s = history.recovery_bound_s(
            config, [r for r in db.get("resources", []) if isinstance(r, dict)]
        )
        progress(f"chaos: healed; waiting for the groups to come back (at most {bound_s:.1f} s)")
        _wait_recovery(cdir, runner, heal_s, bound_s)
        _stop_client(client)
        h = history.load_history(root, runner.actions, start_s=runner.t0, heal_s=heal_s, bound_s=bound_s)
        violations = checker.check(h)
        recovered = {g: checker.recovery_time(h, g) for g in sorted(h.expected_groups)}
        notes = [f"the event history was cut at {history.MAX_EVENTS} events"] if h.truncated else []
        if runner.unsupported:
            notes.append(
                f"skipped link rules the nodes do not support: {', '.join(sorted(runner.unsupported))}"
            )
        result = report.ChaosReport(
            seed=options.seed,
            nodes=options.nodes,
            duration_s=options.duration_s,
            speed=options.speed,
            directory=str(root),
            start_mono_s=runner.t0,
            heal_s=round(heal_s - runner.t0, 6),
            bound_s=bound_s,
            steps=report.steps_json(chaos.steps),
            actions=runner.actions,
            failovers=report.failovers(h.events, runner.t0),
            client=report.client_summary(client_log.read_text().splitlines(), runner.t0),
            recovery={g: (round(v[0] - heal_s, 6) if v else None) for g, v in recovered.items()},
            violations=violations,
            replay=chaos.replay_command(),
            notes=notes,
        )
        (root / "chaos" / "report.json").write_text(json.dumps(result.as_json(), indent=1, default=str))
        runner.reap()
        return result
    finally:
        if client is not None:
            _stop_client(client)
        if not options.keep:
            lab.close()
            if runner is not None:
                runner.reap(wait=True)
            if temporary:
                shutil.rmtree(root, ignore_errors=True)


__all__ = ["ChaosOptions", "check_options", "run_chaos"]
