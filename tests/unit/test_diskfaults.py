"""The disk fault table, the faulty opener, FailMode parsing and the fault CLI's argument handling."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from nodeagent.cli import main as cli_main
from nodeagent.cli import procfaults
from nodeagent.cli.clusterdir import ClusterDir
from nodeagent.config import ClusterConfig, default_config_dict
from nodeagent.core.effects import DiskOp, DiskOpKind, DiskOutcome
from nodeagent.diskops import apply_disk_op
from nodeagent.errors import ConfigError
from nodeagent.runtime import control
from nodeagent.runtime.diskfaults import (
    MAX_SLOW_MS,
    DiskFault,
    DiskFaultTable,
    FaultyDisk,
    fault_from_request,
    faulty_opener,
    make_fault,
)
from nodeagent.runtime.resources.base import ResourceError
from nodeagent.runtime.resources.services import FailMode, parse_fail_mode
from shareddisk import DiskUnavailable, MemoryDisk, Outcome


def test_make_fault_validates_and_normalises() -> None:
    assert make_fault("q", lost=True) == DiskFault("Q", True, 0.0)
    assert make_fault("Evs1", slow_ms=50) == DiskFault("EVS1", False, 50.0)
    assert make_fault("Q", lost=True).as_json() == {"disk": "Q", "lost": True, "slow_ms": 0.0}
    for bad in ("", "Q/..", "../Q", "Q.img", "x" * 65, None, 7, "Q\u00e9"):
        with pytest.raises(ConfigError, match="letters and digits"):
            make_fault(bad, lost=True)
    for slow in (-1, MAX_SLOW_MS + 1, float("nan"), float("inf"), "50", True):
        with pytest.raises(ConfigError, match="slow_ms"):
            make_fault("Q", slow_ms=slow)
    with pytest.raises(ConfigError, match="lost, or slow_ms"):
        make_fault("Q")  # a fault that does nothing is a mistake
    with pytest.raises(ConfigError, match="true or false"):
        make_fault("Q", lost="yes")
    assert fault_from_request({"op": "disk_fault", "disk": "q", "slow_ms": 5}) == DiskFault("Q", False, 5.0)


def test_table_sets_replaces_heals_and_is_bounded() -> None:
    table = DiskFaultTable(limit=2)
    assert table.set(make_fault("Q", lost=True)) is None
    assert table.lost("q") and table.delay_s("Q") == 0.0  # a lost path fails at once, it is not slow
    assert table.set(make_fault("q", slow_ms=250)) == DiskFault("Q", True, 0.0)  # replaced
    assert not table.lost("Q") and table.delay_s("q") == 0.25
    table.set(make_fault("EVS1", lost=True))
    with pytest.raises(ConfigError, match="at most 2"):
        table.set(make_fault("EVS2", lost=True))
    assert [f["disk"] for f in table.as_json()] == ["EVS1", "Q"]
    assert table.heal("evs1") == [DiskFault("EVS1", True, 0.0)]
    assert table.heal("EVS1") == []
    assert table.heal(None) == [DiskFault("Q", False, 250.0)]
    assert table.faults == () and table.delay_s("Q") == 0.0
    with pytest.raises(ConfigError):
        table.heal("../Q")


def test_faulty_handles_fail_every_call_while_lost_and_never_touch_the_disk() -> None:
    disk = MemoryDisk("Q")
    table = DiskFaultTable()
    opener = faulty_opener(lambda name: disk, table)
    handle = opener("Q")
    assert isinstance(handle, FaultyDisk)
    assert handle.reserve("NODE1") is Outcome.OK
    table.set(make_fault("Q", lost=True))
    calls: list[Any] = [
        lambda: handle.reserve("NODE1"), lambda: handle.release("NODE1"), lambda: handle.reset("NODE2"),
        lambda: handle.register("NODE1", 1), lambda: handle.pr_reserve("NODE1", 1),
        lambda: handle.pr_release("NODE1", 1), lambda: handle.preempt("NODE1", 1, 2),
        handle.read_keys, handle.read_reservation, handle.read_state,
        lambda: handle.read_block("NODE1", 0), lambda: handle.write_block("NODE1", 0, bytes(4096)),
    ]  # fmt: skip
    for call in calls:
        with pytest.raises(DiskUnavailable, match="path lost"):
            call()
    with pytest.raises(DiskUnavailable):
        opener("q")  # a lost disk does not even open
    assert disk.read_reservation().holder == "NODE1"  # the reset above never reached the disk
    assert opener("EVS1") is not None  # other disks are untouched
    handle.close()  # closing is never refused
    # The core's view: UNAVAILABLE, not an exception.
    op = DiskOp(op_id=1, kind=DiskOpKind.RESERVE, disk="Q")
    assert apply_disk_op(handle, "NODE1", op).outcome is DiskOutcome.UNAVAILABLE
    table.heal("Q")
    assert apply_disk_op(handle, "NODE1", op).outcome is DiskOutcome.OK  # healing needs no re-open


def test_table_is_safe_to_read_from_threads() -> None:
    table = DiskFaultTable()
    stop = threading.Event()
    seen: list[float] = []

    def reader() -> None:
        while not stop.is_set():
            seen.append(table.delay_s("Q"))

    t = threading.Thread(target=reader)
    t.start()
    try:
        for i in range(200):
            table.set(make_fault("Q", slow_ms=float(i + 1)))
            table.heal("Q")
    finally:
        stop.set()
        t.join()
    assert all(0.0 <= s <= 0.2 for s in seen)


def test_parse_fail_mode() -> None:
    assert parse_fail_mode("none") == (FailMode.NONE, 0)
    assert parse_fail_mode(" Once ") == (FailMode.ONCE, 1)
    assert parse_fail_mode("times:3") == (FailMode.TIMES, 3)
    assert parse_fail_mode("forever") == (FailMode.ALWAYS, 0)
    assert parse_fail_mode("always") == (FailMode.ALWAYS, 0)
    assert parse_fail_mode("hang") == (FailMode.HANG, 0)
    for bad in ("times", "times:0", "times:x", "times:1001", "sometimes", ""):
        with pytest.raises(ResourceError, match="FailMode"):
            parse_fail_mode(bad)


def test_fail_mode_text_and_bounds() -> None:
    assert procfaults.fail_mode_text("times", 2) == "times:2"
    assert procfaults.fail_mode_text("forever") == "always"
    assert procfaults.fail_mode_text("once") == "once"
    with pytest.raises(ConfigError, match="--times"):
        procfaults.fail_mode_text("times", 0)
    with pytest.raises(ConfigError, match="mode"):
        procfaults.fail_mode_text("sometimes")


class _Target:
    """A control target with disk faults (and nothing else the disk ops need)."""

    def __init__(self) -> None:
        self.table = DiskFaultTable()

    def faults(self) -> list[dict[str, Any]]:
        return []

    def disk_fault(self, request: dict[str, Any]) -> list[dict[str, Any]]:
        self.table.set(fault_from_request(request))
        return self.table.as_json()

    def disk_heal(self, request: dict[str, Any]) -> int:
        return len(self.table.heal(request.get("disk")))

    def disk_faults_json(self) -> list[dict[str, Any]]:
        return self.table.as_json()


def test_control_ops_disk_fault_heal_and_faults_listing() -> None:
    target: Any = _Target()
    reply, _ = control.dispatch(target, b'{"op": "disk_fault", "disk": "q", "lost": true}')
    assert reply == {"ok": True, "disk": [{"disk": "Q", "lost": True, "slow_ms": 0.0}]}
    reply, _ = control.dispatch(target, b'{"op": "faults"}')
    assert reply["disk"] == [{"disk": "Q", "lost": True, "slow_ms": 0.0}]
    reply, _ = control.dispatch(target, b'{"op": "disk_fault", "disk": "Q/x", "lost": true}')
    assert reply["ok"] is False and "letters and digits" in reply["error"]
    reply, _ = control.dispatch(target, b'{"op": "disk_heal", "disk": null}')
    assert reply == {"ok": True, "removed": 1, "disk": []}


def _cluster(tmp_path: Path) -> tuple[ClusterDir, ClusterConfig]:
    (tmp_path / "disks").mkdir()
    for name in ("Q", "EVS1"):
        (tmp_path / "disks" / f"{name}.img").write_bytes(b"")
    config = ClusterConfig.from_dict(default_config_dict(number=9, key=b"k" * 32, nodes=2))
    return ClusterDir(tmp_path), config


def test_disk_fault_api_checks_the_disk_and_asks_the_node(tmp_path: Path) -> None:
    cdir, config = _cluster(tmp_path)
    asked: list[tuple[Path, dict[str, Any]]] = []

    def request(path: Path, obj: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        asked.append((path, obj))
        return {"ok": True, "disk": [{"disk": "EVS1", "lost": False, "slow_ms": 50.0}], "removed": 1}

    report = procfaults.disk_fault(cdir, config, "node2", "evs1", slow_ms=50, request=request)
    assert asked == [
        (cdir.control_sock("NODE2"), {"op": "disk_fault", "disk": "EVS1", "lost": False, "slow_ms": 50.0})
    ]
    assert report.faults == {"NODE2": [{"disk": "EVS1", "lost": False, "slow_ms": 50.0}]}
    assert report.done == ["NODE2: disk EVS1: 50 ms slower"]
    with pytest.raises(ConfigError, match="no disk DATA"):
        procfaults.disk_fault(cdir, config, "NODE1", "DATA", lost=True, request=request)
    asked.clear()
    healed = procfaults.disk_heal(cdir, config, None, "q", request=request)
    assert sorted(p.parent.name for p, _ in asked) == ["NODE1", "NODE2"]
    assert all(obj == {"op": "disk_heal", "disk": "Q"} for _, obj in asked)
    assert len(healed.done) == 2


def test_crash_loop_validates_before_touching_anything(tmp_path: Path) -> None:
    cdir, config = _cluster(tmp_path)
    with pytest.raises(ConfigError, match="--count"):
        procfaults.crash_loop(cdir, config, "NODE1", count=0, every_s=1)
    with pytest.raises(ConfigError, match="--every-s"):
        procfaults.crash_loop(cdir, config, "NODE1", count=1, every_s=-1)


def test_cli_parses_the_new_fault_subcommands() -> None:
    parser = cli_main.build_parser()
    args = parser.parse_args(["fault", "disk", "NODE1", "Q", "--lost"])
    assert args.func is procfaults.cmd_disk and args.lost and args.slow_ms is None
    args = parser.parse_args(["fault", "disk", "NODE1", "Q", "--slow-ms", "50", "--json"])
    assert args.slow_ms == 50.0 and not args.lost and args.json
    with pytest.raises(SystemExit):
        parser.parse_args(["fault", "disk", "NODE1", "Q"])  # --lost or --slow-ms is required
    args = parser.parse_args(["fault", "disk-heal"])
    assert args.func is procfaults.cmd_disk_heal and args.node is None and args.disk is None
    args = parser.parse_args(["fault", "resource", "EVS1 SMTP", "--times", "2"])
    assert args.times_mode == ("times", 2)
    args = parser.parse_args(["fault", "resource", "EVS1 SMTP", "--hang"])
    assert args.mode == "hang" and args.times_mode is None
    with pytest.raises(SystemExit):
        parser.parse_args(["fault", "resource", "EVS1 SMTP", "--once", "--forever"])
    args = parser.parse_args(["fault", "crashloop", "NODE2", "--count", "3", "--every-s", "0.5"])
    assert args.func is procfaults.cmd_crashloop and args.count == 3 and args.every_s == 0.5
    args = parser.parse_args(["fault", "list"])
    assert args.func is cli_main.cmd_fault  # the network fault commands keep their handler
