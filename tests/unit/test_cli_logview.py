"""``wolfpack log``: merging the nodes' event logs, filtering, formatting, following."""

from __future__ import annotations

import io
import json
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nodeagent.cli import clusterdir, logview, main
from nodeagent.cli.clusterdir import ClusterDir, UpOptions
from nodeagent.config import ClusterConfig


@pytest.fixture
def lab() -> Iterator[tuple[ClusterDir, ClusterConfig]]:
    root = Path(tempfile.mkdtemp(prefix="wp", dir="/tmp"))
    try:
        yield clusterdir.create_cluster(root / "lab", UpOptions(), bindable=lambda c: True)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def event(
    node: str, mono_s: float, kind: str, event_id: int | None = None, message: str = ""
) -> dict[str, Any]:
    return {
        "time": "2026-11-25T09:41:02.123456Z",
        "mono_s": mono_s,
        "node": node,
        "incarnation": 1,
        "event_id": event_id,
        "kind": kind,
        "message": message or f"{kind} on {node}",
        "fields": {},
    }


def append(cdir: ClusterDir, node: str, *events: dict[str, Any], raw: str = "") -> None:
    with cdir.events_file(node).open("a") as f:
        for ev in events:
            f.write(json.dumps(ev) + "\n")
        f.write(raw)


def test_format_event(utc: None) -> None:
    ev = event("NODE2", 112.5, "interface_failed", 1123, "Cluster network interface failed")
    line = logview.format_event(ev, first_mono_s=100.155, node_width=5)
    assert line == "09:41:02.123  +12.345s  NODE2  [1123] Cluster network interface failed"
    line = logview.format_event(event("NODE1", 100.155, "membership_installed"), 100.155, 5)
    assert line == "09:41:02.123   +0.000s  NODE1         membership_installed on NODE1"


def test_format_event_survives_odd_records() -> None:
    line = logview.format_event({"node": "NODE1", "kind": "x"}, 0.0)
    assert line.startswith("??:??:??.???")
    assert line.endswith("x")


def test_show_merges_every_node_by_mono_s(lab: tuple[ClusterDir, ClusterConfig], utc: None) -> None:
    cdir, config = lab
    append(cdir, "NODE1", event("NODE1", 10.0, "a"), event("NODE1", 13.0, "d"))
    append(cdir, "NODE2", event("NODE2", 11.0, "b"), raw='{"torn": ')  # a killed node's last line
    append(cdir, "NODE3", event("NODE3", 12.0, "c", 1135))
    out = io.StringIO()
    assert logview.show(cdir, config, out) == 4
    lines = out.getvalue().splitlines()
    assert [ln.split()[2] for ln in lines] == ["NODE1", "NODE2", "NODE3", "NODE1"]
    assert [ln.split()[1] for ln in lines] == ["+0.000s", "+1.000s", "+2.000s", "+3.000s"]
    assert "[1135] c on NODE3" in lines[2]


def test_show_filters_by_node_and_age(lab: tuple[ClusterDir, ClusterConfig]) -> None:
    cdir, config = lab
    now = time.monotonic()
    append(cdir, "NODE1", event("NODE1", now - 100, "old"), event("NODE1", now - 1, "new1"))
    append(cdir, "NODE2", event("NODE2", now - 2, "new2"))
    out = io.StringIO()
    logview.show(cdir, config, out, node="node1")
    assert [ln.split()[-3] for ln in out.getvalue().splitlines()] == ["old", "new1"]
    out = io.StringIO()
    logview.show(cdir, config, out, since_s=10)
    assert [ln.split()[-3] for ln in out.getvalue().splitlines()] == ["new2", "new1"]


def test_show_json_is_one_document(lab: tuple[ClusterDir, ClusterConfig]) -> None:
    cdir, config = lab
    append(cdir, "NODE1", event("NODE1", 2.0, "b"))
    append(cdir, "NODE3", event("NODE3", 1.0, "a", 1061))
    out = io.StringIO()
    logview.show(cdir, config, out, as_json=True)
    doc = json.loads(out.getvalue())
    assert [e["kind"] for e in doc["events"]] == ["a", "b"]
    assert doc["events"][0]["event_id"] == 1061


def test_log_command_with_no_events(
    lab: tuple[ClusterDir, ClusterConfig], capsys: pytest.CaptureFixture[str]
) -> None:
    cdir, _ = lab
    assert main.main(["log", str(cdir.root)]) == 0
    assert capsys.readouterr().out == ""
    assert main.main(["log", str(cdir.root), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"events": []}


def test_tailer_reads_only_whole_new_lines(tmp_path: Path) -> None:
    clock = [100.0]
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    tailer = logview.Tailer([a, b], clock=lambda: clock[0])
    assert tailer.poll(flush=True) == []  # files that do not exist yet are fine
    a.write_text(json.dumps(event("NODE1", 1.0, "x")) + "\n" + '{"mono_s": 2.0, "node"')
    assert [e["kind"] for e in tailer.poll()] == ["x"]
    with a.open("a") as f:
        f.write(': "NODE1", "kind": "y"}\n')
    assert [e["kind"] for e in tailer.poll()] == ["y"]
    assert tailer.poll() == []


def test_tailer_holds_events_back_to_merge_them_in_order(tmp_path: Path) -> None:
    clock = [10.0]
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    tailer = logview.Tailer([a, b], clock=lambda: clock[0])
    a.write_text(json.dumps(event("NODE1", 9.95, "late-a")) + "\n")
    assert tailer.poll() == []  # younger than the hold-back window
    b.write_text(json.dumps(event("NODE2", 9.9, "early-b")) + "\n")  # written later, happened earlier
    clock[0] = 11.0
    assert [e["kind"] for e in tailer.poll()] == ["early-b", "late-a"]


def test_tailer_starts_over_when_a_file_is_rotated(tmp_path: Path) -> None:
    a = tmp_path / "a.jsonl"
    a.write_text(
        json.dumps(event("NODE1", 1.0, "first")) + "\n" + json.dumps(event("NODE1", 2.0, "second")) + "\n"
    )
    tailer = logview.Tailer([a], clock=lambda: 100.0)
    assert len(tailer.poll()) == 2
    a.write_text(json.dumps(event("NODE1", 3.0, "third")) + "\n")  # shorter: a new file
    assert [e["kind"] for e in tailer.poll()] == ["third"]


def test_follow_prints_the_backlog_as_json_lines(lab: tuple[ClusterDir, ClusterConfig]) -> None:
    cdir, config = lab
    append(cdir, "NODE2", event("NODE2", 5.0, "b"))
    append(cdir, "NODE1", event("NODE1", 4.0, "a"))
    out = io.StringIO()
    logview.follow(cdir, config, out, as_json=True, max_polls=0)
    assert [json.loads(ln)["kind"] for ln in out.getvalue().splitlines()] == ["a", "b"]
