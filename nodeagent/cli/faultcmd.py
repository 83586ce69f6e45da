"""``wolfpack fault cut | heal | list``: network faults, installed through the control sockets.

Theory of operation
-------------------
A fault lives in the memory of one node process (its transport drops the datagrams; CONTRACT.md,
"Control socket protocol"): a cut installed on node A for peer B drops A->B and B->A on the chosen
network(s) in A's own transport, so one side is enough to separate the two. ``cut A B`` installs it
on both A (peer B) and B (peer A) so that the cut still holds when one of the two restarts; B is
best effort: if B does not answer (it is down), the cut on A alone does the job and a warning says
so. ``cut A`` alone cuts A from every peer. A restarted node starts with no faults: a cut that must
survive the restart of both sides has to be installed again.

``heal`` removes every fault of one node, or of every node that answers; ``list`` shows what each
node has installed.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from nodeagent.cli.clusterdir import ClusterDir
from nodeagent.cli.probe import RequestFn, ask, default_request
from nodeagent.cli.status import render_table
from nodeagent.config import ClusterConfig
from nodeagent.errors import ConfigError, WolfpackError

NETS = ("private", "public", "all")


@dataclass(frozen=True, slots=True)
class FaultReport:
    """Per node: the faults it has (or had), or why it could not be asked."""

    faults: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    unreachable: dict[str, str] = field(default_factory=dict)
    done: list[str] = field(default_factory=list)  # what the command did, one line each
    warnings: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "faults": self.faults,
            "unreachable": self.unreachable,
            "done": self.done,
            "warnings": self.warnings,
        }


def cut(
    cdir: ClusterDir,
    config: ClusterConfig,
    node: str,
    other: str | None,
    net: str,
    request: RequestFn = default_request,
) -> FaultReport:
    if net not in NETS:
        raise ConfigError(f"--net {net}: must be one of {', '.join(NETS)}")
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


def _faults_of(cdir: ClusterDir, name: str, request: RequestFn) -> list[dict[str, Any]]:
    raw = ask(cdir, name, {"op": "faults"}, request).get("faults")
    return [f for f in raw if isinstance(f, dict)] if isinstance(raw, list) else []


def _each(
    cdir: ClusterDir, config: ClusterConfig, node: str | None, work: Callable[[str], list[dict[str, Any]]]
) -> dict[str, list[dict[str, Any]] | WolfpackError]:
    names = [config.node(node).name] if node is not None else [n.name for n in config.nodes]

    def run(name: str) -> list[dict[str, Any]] | WolfpackError:
        try:
            return work(name)
        except WolfpackError as e:
            return e

    with ThreadPoolExecutor(max_workers=len(names)) as pool:
        return dict(zip(names, pool.map(run, names), strict=True))


def heal(
    cdir: ClusterDir, config: ClusterConfig, node: str | None, request: RequestFn = default_request
) -> FaultReport:
    """Remove every fault of ``node`` (an error if it does not answer), or of every answering node."""

    def heal_one(name: str) -> list[dict[str, Any]]:
        before = _faults_of(cdir, name, request)
        ask(cdir, name, {"op": "fault_heal"}, request)
        return before

    report = FaultReport()
    for name, result in _each(cdir, config, node, heal_one).items():
        if isinstance(result, WolfpackError):
            if node is not None:
                raise result
            report.unreachable[name] = str(result)
            continue
        report.faults[name] = result
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
        rows = [
            [name, str(f.get("kind", "cut")), str(f.get("net", "?")), str(f.get("peer") or "every peer")]
            for name, faults in report.faults.items()
            for f in faults
        ]
        lines.append(render_table(["NODE", "KIND", "NET", "PEER"], rows) if rows else "no faults installed")
    lines += [f"warning: {w}" for w in report.warnings]
    lines += [f"not asked: {msg}" for msg in report.unreachable.values()]
    return "\n".join(lines)
