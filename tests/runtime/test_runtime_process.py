"""``python -m nodeagent`` as a real process: form, stop (control socket and SIGTERM), exit codes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from rt_support import free_cluster_number, write_cluster

from nodeagent.errors import NodeUnreachable
from nodeagent.runtime.control_client import request
from nodeagent.runtime.eventlog import read_event_file


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Every process a test starts; killed (by pid) if still running at the end."""
    started: list[subprocess.Popen[bytes]] = []
    try:
        yield started
    finally:
        for p in started:
            if p.poll() is None:
                p.kill()
            p.wait(timeout=10)


def spawn(procs: list[subprocess.Popen[bytes]], cluster_dir: Path, *args: str) -> subprocess.Popen[bytes]:
    log = (cluster_dir / "launch.log").open("ab")
    p = subprocess.Popen(
        [sys.executable, "-m", "nodeagent", *args], stdout=log, stderr=log, start_new_session=True
    )
    log.close()
    procs.append(p)
    return p


def poll(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.05)


def status(sock: Path) -> dict[str, Any] | None:
    try:
        reply = request(sock, {"op": "status"}, 2.0)
    except NodeUnreachable:
        return None
    node = reply.get("node")
    return node if isinstance(node, dict) else None


def run_once(cluster_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nodeagent", *args], capture_output=True, text=True, timeout=30
    )


def test_one_node_forms_and_stops_cleanly_then_restarts(
    short_tmp: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    number = free_cluster_number(node_ids=range(1, 2))
    write_cluster(short_tmp, number=number, nodes=1)
    node_dir = short_tmp / "nodes" / "NODE1"
    sock = node_dir / "control.sock"
    args = ("--cluster-dir", str(short_tmp), "--node", "node1")

    p = spawn(procs, short_tmp, *args)
    poll(lambda: (s := status(sock)) is not None and s["phase"] == "MEMBER", 20, "NODE1 to form")
    node = status(sock)
    assert node is not None
    assert node["pid"] == p.pid == int((node_dir / "pid").read_text())
    assert node["incarnation"] == 1 and node["holds_quorum"] is True
    assert node["private_ip"] == f"127.{number}.1.1"
    assert node["bad_datagrams"] == {} and node["faults"] == []
    assert isinstance(node["mono_s"], float) and abs(node["mono_s"] - time.monotonic()) < 5
    assert request(sock, {"op": "stop"}, 5.0) == {"ok": True}
    assert p.wait(timeout=10) == 0
    assert not (node_dir / "pid").exists()
    assert not sock.exists()
    kinds = [r["kind"] for r in read_event_file(node_dir / "events.jsonl")]
    assert "cluster_formed" in kinds and kinds[-1] == "service_stopped"
    epoch = json.loads((node_dir / "db.json").read_text())["epoch"]
    assert epoch >= 1

    # the same node again: a new incarnation, the database copy remembered; SIGTERM stops it
    p = spawn(procs, short_tmp, *args)
    poll(lambda: (s := status(sock)) is not None and s["phase"] == "MEMBER", 20, "NODE1 to form again")
    node = status(sock)
    assert node is not None and node["incarnation"] == 2 and node["epoch"] > epoch
    os.kill(p.pid, signal.SIGTERM)
    assert p.wait(timeout=10) == 0
    assert not (node_dir / "pid").exists()
    records = read_event_file(node_dir / "events.jsonl")
    assert [r["incarnation"] for r in records if r["kind"] == "cluster_formed"] == [1, 2]
    assert all(r["node"] == "NODE1" for r in records)


def test_exit_codes_for_user_mistakes(short_tmp: Path) -> None:
    assert run_once(short_tmp, "--node", "NODE1").returncode == 2  # argparse: --cluster-dir missing

    no_cluster = run_once(short_tmp, "--cluster-dir", str(short_tmp), "--node", "NODE1")
    assert no_cluster.returncode == 2
    assert no_cluster.stderr.strip().count("\n") == 0 and "cluster.toml" in no_cluster.stderr

    number = free_cluster_number(node_ids=range(1, 3))
    write_cluster(short_tmp, number=number, nodes=2)
    unknown = run_once(short_tmp, "--cluster-dir", str(short_tmp), "--node", "NODE5")
    assert unknown.returncode == 2 and "unknown node" in unknown.stderr
    assert unknown.stderr.strip().count("\n") == 0

    holder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    holder.bind((f"127.{number}.2.2", 3343))  # NODE2's public address is taken
    try:
        taken = run_once(short_tmp, "--cluster-dir", str(short_tmp), "--node", "NODE2")
    finally:
        holder.close()
    assert taken.returncode == 3
    assert f"127.{number}.2.2:3343" in taken.stderr and taken.stderr.strip().count("\n") == 0
    assert not (short_tmp / "nodes" / "NODE2" / "incarnation").exists()  # nothing touched
