"""Run a scenario: start its cluster in a fresh directory, run the steps, always tear everything down.

Theory of operation
-------------------
One ``Run`` per cluster (a scenario whose ``exchange_version`` is a list gets one run per version,
one after the other). Setup, in order:
1. a fresh directory (``--dir``, which must not hold a cluster yet, or a new short one under /tmp)
   and a free cluster number, claimed machine-wide by ``clusterdir`` (``claim_number``) so that
   concurrent runs (the integration test runs them in threads) never pick the same one before their
   nodes have bound their addresses;
2. cluster.toml written as ``wolfpack up`` would, then the file's ``networks``/``timing``
   overrides merged in (network roles live in cluster.toml: ``[cluster.networks.public] role = 2``);
3. the node ``first`` (default NODE1 on a disk quorum) started alone, so that it forms the cluster
   and owns the quorum, then the others (``upcmd.up``); without ``first`` all start at once;
4. ``evs = K``: the standard Exchange lab (``labsetup.build_standard_lab``, with Exchange setup
   taking ``LAB_SETUP_S`` Windows seconds per node instead of 30: setup is not what scenarios
   study); ``props``: cluster properties.
Then mark 0 is taken (CLOCK_MONOTONIC) and the steps run in order; each step's start is mark N.
The first step that fails stops the run: the rest are SKIP.

Times: every ``*_s``/``seconds`` field of a file is Windows time, divided by the speed here. A
``wait`` gets ``timeout_s / speed + WAIT_SLACK_S``: process start-up, Python and the 2-core CI box
do not get faster with the speed; ``timeout_lab_s`` is taken as it is. Default wait timeout:
``DEFAULT_WAIT_S`` Windows seconds.

Teardown runs in ``finally`` (a failure, an exception, Ctrl-C): every client this run started is
stopped (SIGINT, so it prints its summary, then SIGKILL), ``launcher.down`` stops the nodes, and
every pid any node of this directory ever wrote is SIGKILLed if psutil still shows it is that node
of this very directory. A temporary directory is deleted after a run that passed, unless ``keep``.

Fault steps call the Python fault API (``faultcmd.add/shape/heal``, ``procfaults.*``), imported
when the step runs, so a version without one of them fails that step with one line, not the import.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import tomli_w

from nodeagent.cli import clusterdir, labsetup, launcher, upcmd
from nodeagent.cli import status as status_mod
from nodeagent.cli.admincmd import Admin, node_verb
from nodeagent.cli.clusterdir import ClusterDir, UpOptions
from nodeagent.cli.probe import observe
from nodeagent.cli.procs import identify
from nodeagent.config import ClusterConfig, load_cluster_file
from nodeagent.errors import ConfigError, WolfpackError
from nodeagent.runtime.eventlog import event_paths, read_events
from nodeagent.scenario import conditions
from nodeagent.scenario.model import Scenario, Step
from nodeagent.scenario.report import FAIL, PASS, RunResult, ScenarioReport, StepResult

Progress = Callable[[str], None]

DEFAULT_WAIT_S = 300.0  # Windows seconds
WAIT_SLACK_S = 10.0  # lab seconds added to every scaled wait
POLL_S = 0.1
CLIENT_READY_S = 10.0  # lab seconds for a client's first reply
CLIENT_STOP_S = 3.0
MAX_CLIENT_LINES = 200_000

LAB_SETUP_S = 5.0  # Exchange setup per node while building the lab (Windows seconds)


class StepFailed(WolfpackError):
    """A step did not do what it should; the message is the report's detail."""


def run_scenario(
    scenario: Scenario,
    *,
    speed: float | None = None,
    directory: Path | None = None,
    keep: bool = False,
    progress: Progress = lambda line: None,
) -> ScenarioReport:
    """Run every variant of ``scenario`` in turn; the report says what passed."""
    if speed is not None and not 0.1 <= speed <= 1000:
        raise ConfigError(f"--speed {speed:g}: must be from 0.1 to 1000")
    if directory is not None:
        directory = directory.expanduser().resolve()
        if (directory / "cluster.toml").exists():
            raise ConfigError(f"{directory} already holds a cluster: a scenario needs a fresh directory")
    report = ScenarioReport(scenario.name, scenario.description, scenario.source)
    versions = scenario.cluster.exchange_versions
    for version in versions:
        variant = f"exchange {version}" if len(versions) > 1 else ""
        root = None
        if directory is not None:
            root = directory / f"ex{version}" if len(versions) > 1 else directory
        run = Run(scenario, version, variant, speed or scenario.cluster.speed, root, keep, progress)
        report.runs.append(run.execute())
    return report


class Run:
    def __init__(
        self,
        scenario: Scenario,
        version: str,
        variant: str,
        speed: float,
        root: Path | None,
        keep: bool,
        progress: Progress,
    ) -> None:
        self.scenario, self.version, self.speed = scenario, version, speed
        self.temporary = root is None
        self.root = root or Path(tempfile.mkdtemp(prefix="wps", dir="/tmp"))
        self.keep = keep
        self.tag = f"{scenario.name}{f' [{variant}]' if variant else ''}"
        self._progress = progress
        self.result = RunResult(scenario.name, variant, str(self.root), speed)
        self.cdir = ClusterDir(self.root)
        self.config: ClusterConfig | None = None
        self.number: int | None = None
        self.pids: set[int] = set()
        self.marks: dict[int, float] = {}
        self.clients: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}

    def say(self, line: str) -> None:
        self._progress(f"[{self.tag}] {line}")

    # -- the whole run --------------------------------------------------------------------------------
    def execute(self) -> RunResult:
        steps = self.scenario.steps
        self.result.steps = [StepResult(s.number, s.action, s.describe(), s.id) for s in steps]
        try:
            start = time.monotonic()
            try:
                self.setup()
            except WolfpackError as e:
                self.result.error = f"setup failed: {' '.join(str(e).split())}"
                self.say(self.result.error)
                return self.result
            self.result.setup_s = time.monotonic() - start
            self.marks[0] = time.monotonic()
            self.say(f"cluster ready in {self.result.setup_s:.1f} s ({self.root})")
            for step, res in zip(steps, self.result.steps, strict=True):
                if not self.run_step(step, res):
                    break
        finally:
            self.teardown()
        return self.result

    # -- setup ----------------------------------------------------------------------------------------
    def setup(self) -> None:
        spec = self.scenario.cluster
        opts = UpOptions(nodes=spec.nodes, speed=self.speed, quorum=spec.quorum,
                         arbitration=spec.arbitration, edition=spec.edition)  # fmt: skip
        # clusterdir picks a free number and claims it machine-wide, so concurrent runs never collide.
        config = clusterdir.create_cluster(self.root, opts)[1]
        self.number = self.result.cluster_number = config.number
        self._apply_overrides()
        self.cdir, config = clusterdir.open_cluster(self.root)
        self.config = config
        timeout = launcher.default_timeout_s(config)
        if spec.first is not None and spec.nodes > 1:
            self.say(f"starting {spec.first} alone: it forms the cluster")
            upcmd.start(self.cdir, config, spec.first, timeout, self._quiet)
            self._collect_pids()
        self.say(f"starting {spec.nodes} node(s) at speed {self.speed:g}")
        upcmd.up(self.root, UpOptions(), timeout, self._quiet)
        self._collect_pids()
        if spec.evs:
            self.say(f"building the standard lab: {spec.evs} EVS, Exchange {self.version}")
            admin, cdir, version = self.admin(), self.cdir, self.version
            labsetup.build_standard_lab(admin, cdir, spec.evs, version, self._quiet, LAB_SETUP_S)
        if spec.props:
            self.admin().call("cluster.prop", {"props": dict(spec.props)})

    def _quiet(self, line: str) -> None:
        """Setup progress: only with WOLFPACK_SCENARIO_VERBOSE, the lines of up are many."""
        if os.environ.get("WOLFPACK_SCENARIO_VERBOSE"):
            self.say(line)

    def _apply_overrides(self) -> None:
        spec = self.scenario.cluster
        if not spec.networks and not spec.timing:
            return
        path = self.cdir.cluster_file
        data = tomllib.loads(path.read_text())
        nets = data.setdefault("networks", {})
        for net, table in spec.networks.items():
            if not isinstance(table, dict):
                raise ConfigError(f"[cluster.networks] {net}: must be a table")
            nets[net] = {**nets.get(net, {}), **table}
        data["timing"] = {**data.get("timing", {}), **spec.timing}
        path.write_text(tomli_w.dumps(data))
        try:
            load_cluster_file(path)
        except ConfigError as e:
            raise ConfigError(f"[cluster] networks/timing: {e}") from None

    def admin(self) -> Admin:
        assert self.config is not None
        return Admin(self.cdir, self.config)

    # -- steps ----------------------------------------------------------------------------------------
    def run_step(self, step: Step, res: StepResult) -> bool:
        start = time.monotonic()
        self.marks[step.number] = start
        res.started_s = start - self.marks[0]
        self.say(f"step {step.number}/{len(self.scenario.steps)}: {res.text}")
        try:
            detail, seconds = self.perform(step)
            res.status, res.detail = PASS, detail
            res.seconds = seconds if seconds is not None else time.monotonic() - start
        except WolfpackError as e:
            res.status, res.detail = FAIL, " ".join(str(e).split())
            res.seconds = time.monotonic() - start
        finally:
            self._collect_pids()
        self.say(f"step {step.number}: {res.status} in {res.seconds:.2f} s: {res.detail}")
        return res.status == PASS

    def perform(self, step: Step) -> tuple[str, float | None]:
        """Do one step; (detail, seconds measured, None = the step's wall time) or StepFailed."""
        assert self.config is not None
        cdir, config, a = self.cdir, self.config, step.action
        node = step.get("node")
        if a in ("kill", "freeze", "thaw", "stop"):
            action = {"kill": launcher.kill_node, "freeze": launcher.freeze_node,
                      "thaw": launcher.thaw_node, "stop": launcher.stop_node}[a]  # fmt: skip
            return action(cdir, config, node).text(), None
        if a == "start":
            given = "timeout_s" in step.fields or "timeout_lab_s" in step.fields
            timeout = self.wait_timeout(step) if given else launcher.default_timeout_s(config)
            started = upcmd.start(cdir, config, node, timeout, lambda line: None, wait=step.get("wait", True))
            return started.text(), None
        if a in ("pause", "resume"):
            node_verb(self.admin(), node, a)
            return f"{node} {a}d", None
        if a == "move":
            return self.move(step)
        if a == "fail":
            done = self.admin().fail_resource(str(step.get("resource")))
            return f"{done['name']} made to fail on {done['node']}", None
        if a == "prop":
            return self.prop(step), None
        if a == "client":
            return self.client(step), None
        if a == "fault":
            return self.fault(step), None
        if a == "heal":
            return self.heal(step), None
        if a == "sleep":
            secs = step.get("lab_seconds") or float(step.get("seconds")) / self.speed
            time.sleep(float(secs))
            return f"slept {float(secs):.2f} s", None
        if a == "wait":
            return self.wait(step)
        if a == "assert":
            return self.check(step), None
        raise StepFailed(f"unknown action {a}")

    def scaled(self, step: Step, windows_key: str, lab_key: str, default_windows_s: float) -> float:
        if step.get(lab_key) is not None:
            return float(step.get(lab_key))
        return float(step.get(windows_key, default_windows_s)) / self.speed

    def wait_timeout(self, step: Step) -> float:
        if step.get("timeout_lab_s") is not None:
            return float(step.get("timeout_lab_s"))
        return float(step.get("timeout_s", DEFAULT_WAIT_S)) / self.speed + WAIT_SLACK_S

    # -- conditions -----------------------------------------------------------------------------------
    def facts(self) -> conditions.Facts:
        assert self.config is not None
        config = self.config
        return conditions.Facts(
            speed=self.speed,
            marks=self.marks,
            status=lambda: status_mod.as_json(
                status_mod.compose(config, observe(self.cdir, config, usage=False))
            ),
            events=lambda: read_events(event_paths(self.root)),
            clients=self.client_records,
        )

    def wait(self, step: Step) -> tuple[str, float]:
        start = time.monotonic()
        timeout = self.wait_timeout(step)
        while True:
            verdict = conditions.evaluate(step, self.facts())
            now = time.monotonic()
            if verdict.ok:
                return verdict.why, now - start
            if now - start >= timeout:
                raise StepFailed(f"not within {timeout:.1f} s: {verdict.why}")
            time.sleep(POLL_S)

    def check(self, step: Step) -> str:
        during = None
        if step.get("during_s") is not None or step.get("during_lab_s") is not None:
            during = self.scaled(step, "during_s", "during_lab_s", 0.0)
        start = time.monotonic()
        polls = 0
        while True:
            verdict = conditions.evaluate(step, self.facts())
            polls += 1
            if not verdict.ok:
                held = f" (after holding {time.monotonic() - start:.2f} s)" if during and polls > 1 else ""
                raise StepFailed(verdict.why + held)
            if during is None or time.monotonic() - start >= during:
                suffix = f" (held {during:.2f} s, {polls} looks)" if during is not None else ""
                return verdict.why + suffix
            time.sleep(POLL_S)

    # -- actions --------------------------------------------------------------------------------------
    def move(self, step: Step) -> tuple[str, float]:
        adm = self.admin()
        start = time.monotonic()
        args: dict[str, Any] = {"name": step.get("group")}
        if step.get("to"):
            args["node"] = step.get("to")
        result = adm.call("group.move", args)
        name = str(result.get("name", step.get("group")))
        dest = result.get("target") or result.get("owner")
        if not step.get("wait", True) or not isinstance(dest, str):
            return f"move of {name} accepted (to {dest or 'no node'})", time.monotonic() - start

        def done(g: Any) -> bool:
            return bool(
                g.owner == dest and g.state == "Online" and all(r.state == "Online" for r in g.resources)
            )

        adm.wait_group(name, done, self.wait_timeout(step))
        return f"{name} Online on {dest}", time.monotonic() - start

    def prop(self, step: Step) -> str:
        target, props = step.get("target"), dict(step.get("props") or {})
        adm = self.admin()
        if target == "cluster":
            adm.call("cluster.prop", {"props": props})
        elif target == "group":
            adm.call("group.prop", {"name": step.get("name"), "props": props})
        else:
            adm.call("resource.prop", {"name": step.get("name"), "props": props,
                                       "private": dict(step.get("private") or {})})  # fmt: skip
        shown = ", ".join(f"{k}={v}" for k, v in {**props, **(step.get("private") or {})}.items())
        return f"{target} {step.get('name') or ''} {shown}".replace("  ", " ")

    def client(self, step: Step) -> str:
        name = str(step.get("name"))
        if step.get("state") == "off":
            entry = self.clients.get(name)
            if entry is None:
                raise StepFailed(f"no client {name} is running")
            code = _stop_client(entry[0])
            records = self.client_records().get(name, [])
            summary = next((r for r in reversed(records) if r.get("event") == "summary"), None)
            if summary is None:
                raise StepFailed(f"client {name} stopped (exit {code}) without a summary")
            return (f"client {name}: {summary.get('answered')}/{summary.get('sent')} answered, "
                    f"{summary.get('outages')} outage(s), longest {summary.get('longest_outage_s')} s, "
                    f"served by {', '.join(summary.get('nodes') or []) or 'no node'}")  # fmt: skip
        if name in self.clients and self.clients[name][0].poll() is None:
            raise StepFailed(f"client {name} is already running")
        out_dir = self.root / "clients"
        out_dir.mkdir(exist_ok=True)
        out = out_dir / f"{name}.jsonl"
        cmd = [sys.executable, "-m", "nodeagent.cli.main", "client", name, "--json", "--dir", str(self.root),
               "--interval-ms", str(step.get("interval_ms", 50.0))]  # fmt: skip
        if step.get("service"):
            cmd += ["--service", str(step.get("service"))]
        with out.open("wb") as f, (out_dir / f"{name}.err").open("wb") as err:
            popen = subprocess.Popen(
                cmd, stdout=f, stderr=err, stdin=subprocess.DEVNULL, start_new_session=True
            )
        self.clients[name] = (popen, out)
        deadline = time.monotonic() + CLIENT_READY_S
        while time.monotonic() < deadline:
            replies = [r for r in read_jsonl(out) if r.get("event") == "reply" and r.get("ok")]
            if replies:
                return f"client {name} started (pid {popen.pid}), first reply from {replies[0].get('node')}"
            if popen.poll() is not None:
                why = (out_dir / f"{name}.err").read_text(errors="replace").strip().splitlines()
                raise StepFailed(
                    f"client {name} exited {popen.returncode}: {why[-1] if why else 'no output'}"
                )
            time.sleep(POLL_S)
        raise StepFailed(f"client {name} got no reply within {CLIENT_READY_S:g} s")

    def client_records(self) -> dict[str, list[dict[str, Any]]]:
        return {name: read_jsonl(path) for name, (_p, path) in self.clients.items()}

    def fault(self, step: Step) -> str:
        assert self.config is not None
        cdir, config, kind = self.cdir, self.config, step.get("kind")
        net = str(step.get("net", "all"))
        if kind == "shape":
            report = _api("faultcmd", "shape")(
                cdir, config, str(step.get("shape")), net=net, seed=step.get("seed")
            )
        elif kind == "disk":
            report = _api("procfaults", "disk_fault")(
                cdir, config, step.get("node"), str(step.get("disk")),
                lost=bool(step.get("lost", False)), slow_ms=float(step.get("slow_ms", 0.0)),
            )  # fmt: skip
        elif kind == "resource":
            report = _api("procfaults", "resource_fault")(
                cdir,
                config,
                str(step.get("resource")),
                str(step.get("mode")),
                times=int(step.get("times", 1)),
            )
        else:
            plain_cut = kind == "cut" and step.get("direction", "both") == "both"
            if plain_cut and not _has_api("faultcmd", "add"):
                report = _api("faultcmd", "cut")(cdir, config, step.get("node"), step.get("peer"), net)
            else:
                report = _api("faultcmd", "add")(
                    cdir, config, step.get("node"), str(kind), peer=step.get("peer"), net=net,
                    direction=str(step.get("direction", "both")), pct=float(step.get("pct", 0.0)),
                    delay_ms=float(step.get("delay_ms", 0.0)), jitter_ms=float(step.get("jitter_ms", 0.0)),
                )  # fmt: skip
        return _report_text(report)

    def heal(self, step: Step) -> str:
        assert self.config is not None
        what, node = step.get("what", "all"), step.get("node")
        parts = []
        if what in ("all", "net"):
            kwargs = {"fault_id": step.get("fault_id")} if step.get("fault_id") is not None else {}
            parts.append(_report_text(_api("faultcmd", "heal")(self.cdir, self.config, node, **kwargs)))
        if what == "disk" or (what == "all" and _has_api("procfaults", "disk_heal")):
            report = _api("procfaults", "disk_heal")(self.cdir, self.config, node, step.get("disk"))
            parts.append(_report_text(report))
        return "; ".join(p for p in parts if p) or "nothing to heal"

    # -- teardown -------------------------------------------------------------------------------------
    def _collect_pids(self) -> None:
        for pidfile in self.cdir.nodes_dir.glob("*/pid"):
            with contextlib.suppress(OSError, ValueError):
                self.pids.add(int(pidfile.read_text().strip()))

    def teardown(self) -> None:
        try:
            for popen, _path in self.clients.values():
                _stop_client(popen)
            if self.config is None and self.cdir.cluster_file.exists():
                with contextlib.suppress(WolfpackError):
                    self.cdir, self.config = clusterdir.open_cluster(self.root)
            if self.config is not None:
                with contextlib.suppress(WolfpackError, OSError):
                    launcher.down(self.cdir, self.config)
        finally:
            self._collect_pids()
            names = [n.name for n in self.config.nodes] if self.config is not None else []
            for pid in self.pids:
                for name in names:
                    proc = identify(pid, self.cdir, name)
                    if proc is not None:
                        with contextlib.suppress(OSError):
                            os.kill(pid, signal.SIGCONT)
                            os.kill(pid, signal.SIGKILL)
            if self.temporary and self.result.passed and not self.keep:
                shutil.rmtree(self.root, ignore_errors=True)
            elif self.temporary:
                self.say(f"kept {self.root} (event logs: wolfpack log --dir {self.root})")


# -- helpers ------------------------------------------------------------------------------------------------


def _fields(opts: UpOptions) -> dict[str, Any]:
    return {
        k: getattr(opts, k) for k in ("nodes", "speed", "quorum", "arbitration", "edition", "cluster_number")
    }


def _has_api(module: str, name: str) -> bool:
    try:
        return hasattr(importlib.import_module(f"nodeagent.cli.{module}"), name)
    except ImportError:
        return False


def _api(module: str, name: str) -> Callable[..., Any]:
    """A function of the fault API, looked up when a step needs it (the API grows in parallel)."""
    try:
        mod = importlib.import_module(f"nodeagent.cli.{module}")
    except ImportError:
        raise StepFailed(f"this wolfpack has no nodeagent.cli.{module}: {name} is not available") from None
    fn = getattr(mod, name, None)
    if not callable(fn):
        raise StepFailed(f"this wolfpack has no {module}.{name}")
    result: Callable[..., Any] = fn
    return result


def _report_text(report: Any) -> str:
    done: Sequence[str] = getattr(report, "done", None) or []
    warnings: Sequence[str] = getattr(report, "warnings", None) or []
    unreachable: Mapping[str, str] = getattr(report, "unreachable", None) or {}
    parts = [*done, *(f"warning: {w}" for w in warnings), *(f"not asked: {m}" for m in unreachable.values())]
    if not parts and isinstance(report, list):
        parts = [json.dumps(item, default=str) for item in report]
    return "; ".join(parts)


def _stop_client(popen: subprocess.Popen[bytes]) -> int | None:
    if popen.poll() is None:
        with contextlib.suppress(OSError):
            popen.send_signal(signal.SIGINT)  # the client prints its summary on Ctrl-C
        try:
            popen.wait(timeout=CLIENT_STOP_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(OSError):
                popen.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                popen.wait(timeout=CLIENT_STOP_S)
    return popen.returncode


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Whole lines only: the client may be writing the last one."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return []
    out = []
    for line in text[: text.rfind("\n") + 1].splitlines()[:MAX_CLIENT_LINES]:
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict):
                out.append(record)
    return out
