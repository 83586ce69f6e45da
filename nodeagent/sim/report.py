"""The outcome of one seeded run: the trace, the violations, a few counts, and how to print them.

Theory of operation
-------------------
``SimReport`` is a frozen value built once at the end of ``runner.simulate``; everything in it derives
from the seed and the options, so two runs with the same inputs produce equal reports and
``format_report`` prints the same bytes. The verdict block after the trace says what ran, what
happened (faults, regroups, arbitrations, the final epoch), every violation with its time and
evidence, and the command that replays the run.
"""

from __future__ import annotations

from dataclasses import dataclass

from nodeagent.sim.invariants import Violation


@dataclass(frozen=True, slots=True)
class SimStats:
    faults_applied: int  # kills, freezes and network faults carried out (heals, restarts, thaws not counted)
    faults_by_kind: tuple[tuple[str, int], ...]  # sorted by kind
    regroups: int  # regroup_started events (1126), all nodes together
    arbitrations: int  # arbitration_started events
    halts: int  # halted events (1177)
    final_epoch: int  # highest installed epoch among live nodes at the end
    converged_at_s: float | None  # when the healed cluster first converged (None: it never did)
    end_s: float  # virtual time at the end of the run, settle included
    core_calls: int
    datagrams_sent: int
    datagrams_delivered: int
    datagrams_dropped: int
    disk_ops: int


@dataclass(frozen=True, slots=True)
class SimReport:
    seed: int
    nodes: int
    duration_s: float
    speed: float
    quorum: str
    arbitration: str
    faults: bool
    trace_lines: tuple[str, ...]
    violations: tuple[Violation, ...]
    ok: bool
    stats: SimStats

    def replay_command(self) -> str:
        return (
            f"wolfpack simulate --seed {self.seed} --nodes {self.nodes} --duration {self.duration_s:g} "
            f"--speed {self.speed:g} --quorum {self.quorum} --arbitration {self.arbitration}"
            + ("" if self.faults else " --no-faults")
        )


def format_report(report: SimReport) -> str:
    s = report.stats
    out = list(report.trace_lines)
    out.append("")
    out.append("== verdict")
    out.append(
        f"seed {report.seed}: {report.nodes} nodes, {report.duration_s:g} s of faults "
        f"({'on' if report.faults else 'off'}), speed {report.speed:g}, quorum {report.quorum}"
        + (f"/{report.arbitration}" if report.quorum == "disk" else "")
    )
    kinds = ", ".join(f"{k} {n}" for k, n in s.faults_by_kind) or "none"
    out.append(f"faults applied: {s.faults_applied} ({kinds})")
    out.append(
        f"regroups: {s.regroups}; arbitrations: {s.arbitrations}; halts: {s.halts}; "
        f"final epoch: {s.final_epoch}"
    )
    settled = "never" if s.converged_at_s is None else f"at {s.converged_at_s:.4f} s"
    out.append(f"converged after healing: {settled}; run ended at {s.end_s:.4f} s (virtual)")
    out.append(
        f"core calls: {s.core_calls}; datagrams: {s.datagrams_sent} sent, {s.datagrams_delivered} delivered, "
        f"{s.datagrams_dropped} dropped; disk ops: {s.disk_ops}"
    )
    if report.ok:
        out.append(
            "OK: no invariant violated (one_owner, agreement, quorum_backed, one_group_owner, one_address, "
            "online_needs_quorum, final)"
        )
    else:
        out.append(f"FAILED: {len(report.violations)} violation(s)")
        out.extend("  " + v.line().strip() for v in report.violations)
    out.append(f"replay: {report.replay_command()}")
    return "\n".join(out) + "\n"
