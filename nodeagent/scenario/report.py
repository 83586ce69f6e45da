"""What a scenario run produced, and how it is shown: a text table or one JSON document.

Theory of operation
-------------------
The runner fills one ``RunResult`` per run (a scenario whose ``exchange_version`` is a list runs
once per version) with one ``StepResult`` per step, in order. A step is PASS, FAIL (with why) or
SKIP (a step before it failed, or the cluster could not be set up). ``seconds`` is the wall time
the step took on this machine, measured with CLOCK_MONOTONIC; for a ``wait`` it is how long the
condition took to hold (a failover time, say), for an action how long the action took. The report
also gives it in Windows seconds (times the speed), the time the real cluster would have taken.

``render`` is the text report; ``as_json`` the document of ``--json``::

    {"scenario": NAME, "description": ..., "source": FILE, "passed": bool,
     "runs": [{"variant": "exchange 2003" | "", "dir": ..., "speed": S, "cluster_number": C,
               "setup_s": F, "passed": bool, "error": null | "one line",
               "steps": [{"number": 1, "id": null, "action": "kill", "text": "kill NODE1",
                          "status": "PASS"|"FAIL"|"SKIP", "seconds": F|null, "windows_s": F|null,
                          "started_s": F|null, "detail": "..."}]}]}

``started_s`` is the step's start, in seconds after the cluster was ready.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PASS, FAIL, SKIP = "PASS", "FAIL", "SKIP"


@dataclass(slots=True)
class StepResult:
    number: int
    action: str
    text: str
    id: str | None = None
    status: str = SKIP
    seconds: float | None = None
    started_s: float | None = None
    detail: str = ""

    def as_json(self, speed: float) -> dict[str, Any]:
        return {
            "number": self.number,
            "id": self.id,
            "action": self.action,
            "text": self.text,
            "status": self.status,
            "seconds": None if self.seconds is None else round(self.seconds, 4),
            "windows_s": None if self.seconds is None else round(self.seconds * speed, 3),
            "started_s": None if self.started_s is None else round(self.started_s, 4),
            "detail": self.detail,
        }


@dataclass(slots=True)
class RunResult:
    scenario: str
    variant: str
    dir: str
    speed: float
    cluster_number: int | None = None
    setup_s: float | None = None
    error: str | None = None  # the cluster could not be set up, or the run was cut short
    steps: list[StepResult] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.error is None and all(s.status == PASS for s in self.steps)

    def as_json(self) -> dict[str, Any]:
        return {
            "variant": self.variant,
            "dir": self.dir,
            "speed": self.speed,
            "cluster_number": self.cluster_number,
            "setup_s": None if self.setup_s is None else round(self.setup_s, 3),
            "passed": self.passed,
            "error": self.error,
            "steps": [s.as_json(self.speed) for s in self.steps],
        }


@dataclass(slots=True)
class ScenarioReport:
    name: str
    description: str
    source: str
    runs: list[RunResult] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.runs) and all(r.passed for r in self.runs)

    def as_json(self) -> dict[str, Any]:
        return {
            "scenario": self.name,
            "description": self.description,
            "source": self.source,
            "passed": self.passed,
            "runs": [r.as_json() for r in self.runs],
        }


def _secs(step: StepResult, speed: float) -> str:
    if step.seconds is None:
        return "-"
    return f"{step.seconds:.2f} s ({step.seconds * speed:.1f} s win)"


def render(report: ScenarioReport) -> str:
    lines = [f"scenario {report.name}: {report.description}"]
    for run in report.runs:
        variant = f" [{run.variant}]" if run.variant else ""
        setup = f", set up in {run.setup_s:.1f} s" if run.setup_s is not None else ""
        number = f", cluster {run.cluster_number}" if run.cluster_number is not None else ""
        lines.append(f"run{variant}: speed {run.speed:g}{number}{setup}; dir {run.dir}")
        width = max((len(s.text) for s in run.steps), default=10)
        width = min(max(width, 10), 60)
        for s in run.steps:
            text = s.text if len(s.text) <= width else s.text[: width - 3] + "..."
            detail = f"  {s.detail}" if s.detail else ""
            lines.append(
                f"  {s.number:>3}. {text:<{width}}  {s.status:<4}  {_secs(s, run.speed):>24}{detail}"
            )
        if run.error:
            lines.append(f"  error: {run.error}")
        lines.append(f"  => {'PASS' if run.passed else 'FAIL'}")
    if len(report.runs) > 1:
        lines.append(f"=> {'PASS' if report.passed else 'FAIL'} ({len(report.runs)} runs)")
    return "\n".join(lines)
