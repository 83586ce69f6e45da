"""Same seed, same trace, byte for byte: across processes with different string-hash seeds too."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from nodeagent.errors import ConfigError
from nodeagent.sim import format_report, simulate

SCRIPT = (
    "import sys\n"
    "from nodeagent.sim import format_report, simulate\n"
    "seed, nodes, duration, quorum = sys.argv[1:]\n"
    "r = simulate(int(seed), nodes=int(nodes), duration_s=float(duration), quorum=quorum)\n"
    "sys.stdout.write(format_report(r))\n"
)


def run_in_subprocess(hash_seed: str, seed: int, nodes: int, duration_s: float, quorum: str) -> bytes:
    env = dict(os.environ, PYTHONHASHSEED=hash_seed)
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(seed), str(nodes), str(duration_s), quorum],
        env=env,
        capture_output=True,
        timeout=120,
        check=True,
    )
    return out.stdout


@pytest.mark.parametrize(("seed", "nodes", "quorum"), [(11, 4, "disk"), (5, 3, "majority")])
def test_same_seed_same_bytes_in_two_processes(seed: int, nodes: int, quorum: str) -> None:
    a = run_in_subprocess("1", seed, nodes, 20.0, quorum)
    b = run_in_subprocess("987654", seed, nodes, 20.0, quorum)
    assert a == b
    text = a.decode()
    assert "----        fault" in text  # the run did have faults
    assert "membership_installed" in text
    assert "== verdict" in text
    # ... and the same bytes in this process (yet another hash seed).
    here = format_report(simulate(seed, nodes=nodes, duration_s=20.0, quorum=quorum)).encode()
    assert here == a


def test_other_seed_other_trace() -> None:
    a = simulate(1, nodes=3, duration_s=10.0)
    b = simulate(2, nodes=3, duration_s=10.0)
    assert a.trace_lines != b.trace_lines


def test_report_shape() -> None:
    r = simulate(3, nodes=3, duration_s=15.0)
    assert r.seed == 3 and r.nodes == 3 and r.duration_s == 15.0
    assert r.ok is (not r.violations)
    s = r.stats
    assert s.faults_applied == sum(n for _, n in s.faults_by_kind) > 0
    assert s.end_s > 15.0 and s.final_epoch > 0
    assert s.datagrams_sent >= s.datagrams_delivered > 0
    text = format_report(r)
    assert text.endswith("\n")
    verdict = text.split("== verdict\n", 1)[1]
    assert "seed 3: 3 nodes" in verdict
    assert ("OK: no invariant violated" in verdict) is r.ok
    assert "replay: wolfpack simulate --seed 3 --nodes 3" in verdict
    for line in r.trace_lines:
        assert line[10] == " " and float(line[:10]) >= 0.0


def test_without_faults_the_cluster_just_forms() -> None:
    r = simulate(8, nodes=5, duration_s=5.0, faults=False)
    assert r.ok, r.violations
    assert r.stats.faults_applied == 0
    assert r.stats.final_epoch >= 1
    assert not any(" fault " in line for line in r.trace_lines)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"nodes": 0},
        {"nodes": 9},
        {"duration_s": 0.0},
        {"duration_s": float("inf")},
        {"quorum": "bogus"},
        {"arbitration": "scsi4"},
        {"speed": 0.0},
    ],
)
def test_bad_arguments_are_one_line_errors(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError) as info:
        simulate(1, **kwargs)  # type: ignore[arg-type]
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("quorum", ["disk", "majority"])
def test_a_one_node_cluster_forms_alone(quorum: str) -> None:
    r = simulate(1, nodes=1, duration_s=5.0, quorum=quorum)
    assert r.ok, r.violations
    assert r.stats.faults_applied == 0  # nothing to partition, and N-1 = 0 nodes may be down
    assert r.stats.final_epoch == 1


@pytest.mark.parametrize(("speed", "duration_s"), [(1.0, 60.0), (100.0, 10.0)])
def test_fault_times_scale_with_speed(speed: float, duration_s: float) -> None:
    r = simulate(2, nodes=3, duration_s=duration_s, speed=speed)
    assert r.ok, r.violations
    assert r.stats.faults_applied > 0
    assert r.speed == speed
