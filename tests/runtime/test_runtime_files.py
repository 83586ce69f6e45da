"""The node directory's small files and the event log (writer, reader, merge)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nodeagent.core.effects import Event
from nodeagent.errors import ConfigError
from nodeagent.runtime import files
from nodeagent.runtime.eventlog import EventWriter, event_paths, read_event_file, read_events


def test_incarnation_counts_up_atomically(short_tmp: Path) -> None:
    assert files.read_incarnation(short_tmp) is None
    assert files.bump_incarnation(short_tmp) == 1
    assert files.bump_incarnation(short_tmp) == 2
    assert (short_tmp / "incarnation").read_text() == "2\n"
    assert [p.name for p in short_tmp.iterdir()] == ["incarnation"]  # no temporary file left behind


def test_damaged_incarnation_is_a_config_error(short_tmp: Path) -> None:
    (short_tmp / "incarnation").write_text("three\n")
    with pytest.raises(ConfigError, match="incarnation"):
        files.bump_incarnation(short_tmp)


def test_pid_file(short_tmp: Path) -> None:
    files.write_pid(short_tmp, 4242)
    assert files.read_pid(short_tmp) == 4242
    files.remove_pid(short_tmp)
    files.remove_pid(short_tmp)  # idempotent
    assert files.read_pid(short_tmp) is None


def test_db_round_trip_and_known_epoch(short_tmp: Path) -> None:
    assert files.read_known_epoch(short_tmp) == 0
    files.write_db(short_tmp, files.Membership(epoch=7, members=(1, 3), quorum_owner=3))
    assert json.loads((short_tmp / "db.json").read_text()) == {
        "epoch": 7,
        "members": [1, 3],
        "quorum_owner": 3,
    }
    assert files.read_known_epoch(short_tmp) == 7
    (short_tmp / "db.json").write_text('{"epoch": "seven"}')
    with pytest.raises(ConfigError, match=r"db\.json"):
        files.read_known_epoch(short_tmp)


def event(kind: str, event_id: int | None = None, **fields: object) -> Event:
    return Event(kind=kind, event_id=event_id, message=f"{kind} happened", fields=dict(fields))


def test_event_writer_record_format(short_tmp: Path) -> None:
    path = short_tmp / "events.jsonl"
    with EventWriter(path, "NODE1", 3) as writer:
        writer.write(event("interface_failed", 1123, peer=2, net="private"), 100.25)
        # visible at once, before the writer closes: each line is flushed
        lines = path.read_text().splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["node"] == "NODE1" and record["incarnation"] == 3
    assert record["event_id"] == 1123 and record["kind"] == "interface_failed"
    assert record["mono_s"] == 100.25
    assert record["fields"] == {"peer": 2, "net": "private"}
    assert record["message"] == "interface_failed happened"
    assert record["time"].endswith("Z") and record["time"][10] == "T"


def test_reader_merges_nodes_by_monotonic_time_and_skips_damage(short_tmp: Path) -> None:
    for name, times in (("NODE1", [1.0, 3.0, 5.0]), ("NODE2", [2.0, 4.0])):
        node_dir = short_tmp / "nodes" / name
        node_dir.mkdir(parents=True)
        with EventWriter(node_dir / "events.jsonl", name, 1) as writer:
            for t in times:
                writer.write(event(f"e{t:g}"), t)
    with (short_tmp / "nodes" / "NODE2" / "events.jsonl").open("a") as f:
        f.write('{"kind": "no_time"}\n')  # not a record
        f.write('{"mono_s": 9.0, "kind": "torn", "no')  # a killed writer's last, partial line
    paths = event_paths(short_tmp)
    assert [p.parent.name for p in paths] == ["NODE1", "NODE2"]
    merged = read_events(paths)
    assert [r["kind"] for r in merged] == ["e1", "e2", "e3", "e4", "e5"]
    assert [r["node"] for r in merged] == ["NODE1", "NODE2", "NODE1", "NODE2", "NODE1"]
    assert read_events([short_tmp / "missing.jsonl"]) == []


def test_writer_rotates_past_its_limit(short_tmp: Path) -> None:
    path = short_tmp / "events.jsonl"
    with EventWriter(path, "NODE1", 1, max_bytes=600) as writer:
        for i in range(10):
            writer.write(event("tick", i=i), float(i))
    rotated = path.with_name("events.jsonl.1")
    assert rotated.exists()
    assert path.stat().st_size <= 600
    old, new = read_event_file(rotated), read_event_file(path)
    assert old and new
    assert old[-1]["fields"]["i"] + 1 == new[0]["fields"]["i"]  # nothing lost at the seam
    assert new[-1]["fields"]["i"] == 9
