"""Process handling of the ``wolfpack`` command, with stand-in node processes (no cluster service).

A stand-in is ``python -c CODE -m nodeagent --cluster-dir DIR --node NAME``: its command line is the
one the launcher verifies before it signals a pid, but it only sleeps. Control requests go to an
injected function, so no socket is involved either.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nodeagent.cli import clusterdir, launcher, procs, upcmd
from nodeagent.cli.clusterdir import ClusterDir, UpOptions
from nodeagent.cli.procs import ProcessState
from nodeagent.config import ClusterConfig
from nodeagent.errors import NodeUnreachable, WolfpackError

SLEEPER = "import sys, time; print('ready', flush=True); time.sleep(60)"
STUBBORN = (
    "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); "
    "time.sleep(60)"
)


class Lab:
    """A created cluster directory and the stand-in processes a test started (all killed at the end)."""

    def __init__(self, root: Path) -> None:
        self.cdir, self.config = clusterdir.create_cluster(root, UpOptions(), bindable=lambda c: True)
        self.popens: list[subprocess.Popen[bytes]] = []

    def stand_in(self, name: str, code: str = SLEEPER, pid_file: bool = True) -> subprocess.Popen[bytes]:
        argv = [
            sys.executable,
            "-c",
            code,
            "-m",
            "nodeagent",
            "--cluster-dir",
            str(self.cdir.root),
            "--node",
            name,
        ]
        popen = subprocess.Popen(argv, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
        self.popens.append(popen)
        assert popen.stdout is not None
        assert popen.stdout.readline() == b"ready\n"  # its signal handlers are in place
        if pid_file:
            self.cdir.pid_file(name).write_text(f"{popen.pid}\n")
        return popen

    def spawn(self, cdir: ClusterDir, name: str) -> subprocess.Popen[bytes]:
        return self.stand_in(name)

    def cleanup(self) -> None:
        for popen in self.popens:
            if popen.poll() is None:
                popen.kill()
            popen.wait(timeout=10)
            if popen.stdout is not None:
                popen.stdout.close()


@pytest.fixture
def lab() -> Iterator[Lab]:
    root = Path(tempfile.mkdtemp(prefix="wp", dir="/tmp"))
    lab = Lab(root / "lab")
    try:
        yield lab
    finally:
        lab.cleanup()
        shutil.rmtree(root, ignore_errors=True)


def unreachable(sock_path: Path, obj: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    raise NodeUnreachable(f"node control socket {sock_path}: not there")


def status_answer(
    config: ClusterConfig, name: str, own_state: str, members: list[int], epoch: int = 1
) -> dict[str, Any]:
    node_id = config.node(name).id
    return {
        "ok": True,
        "node": {
            "node_id": node_id,
            "name": name,
            "incarnation": 1,
            "phase": "MEMBER" if own_state == "Up" else "JOINING",
            "own_state": own_state,
            "epoch": epoch,
            "members": members,
            "quorum_owner": 1 if members else None,
            "holds_quorum": node_id == 1 and bool(members),
            "paused": False,
            "node_states": {},
            "interfaces": [],
            "counters": {},
            "faults": [],
        },
    }


def alive(popen: subprocess.Popen[bytes]) -> bool:
    return popen.poll() is None


# -- identifying node processes ----------------------------------------------------------------------


def test_cmdline_matching() -> None:
    root = Path("/tmp/wpX/lab")
    base = ["/usr/bin/python3", "-m", "nodeagent"]
    assert procs.cmdline_matches(
        [*base, "--cluster-dir", "/tmp/wpX/lab", "--node", "NODE1"], None, root, "NODE1"
    )
    assert procs.cmdline_matches([*base, "--cluster-dir=/tmp/wpX/lab", "--node=node1"], None, root, "NODE1")
    assert procs.cmdline_matches(
        [*base, "--cluster-dir", "lab", "--node", "NODE1"], "/tmp/wpX", root, "NODE1"
    )
    assert not procs.cmdline_matches([*base, "--cluster-dir", "lab", "--node", "NODE1"], None, root, "NODE1")
    assert not procs.cmdline_matches(
        [*base, "--cluster-dir", "/tmp/wpX/lab", "--node", "NODE2"], None, root, "NODE1"
    )
    assert not procs.cmdline_matches(
        [*base, "--cluster-dir", "/tmp/other", "--node", "NODE1"], None, root, "NODE1"
    )
    other = ["/usr/bin/python3", "-m", "http.server", "--cluster-dir", "/tmp/wpX/lab", "--node", "NODE1"]
    assert not procs.cmdline_matches(other, None, root, "NODE1")
    assert not procs.cmdline_matches(["/bin/sleep", "100"], None, root, "NODE1")


def test_a_pid_file_naming_another_program_is_not_trusted(lab: Lab) -> None:
    lab.cdir.pid_file("NODE1").write_text(f"{os.getpid()}\n")  # this test process: not a node
    assert procs.find_node_process(lab.cdir, "NODE1") is None
    with pytest.raises(WolfpackError) as exc:
        launcher.kill_node(lab.cdir, lab.config, "NODE1")
    assert (
        str(exc.value)
        == f"NODE1 is not running (its pid file names pid {os.getpid()}, which is now another program)"
    )


def test_a_stale_pid_file_after_the_node_died(lab: Lab) -> None:
    popen = lab.stand_in("NODE2")
    popen.kill()
    popen.wait(timeout=10)
    assert procs.find_node_process(lab.cdir, "NODE2") is None
    with pytest.raises(
        WolfpackError, match=rf"^NODE2 is not running \(its pid file names pid {popen.pid}, which"
    ):
        launcher.freeze_node(lab.cdir, lab.config, "NODE2")


def test_scan_finds_a_node_without_pid_file(lab: Lab) -> None:
    popen = lab.stand_in("NODE3", pid_file=False)
    found = procs.scan_node_processes(lab.cdir, ["NODE1", "NODE2", "NODE3"])
    assert [(p.name, p.pid) for p in found] == [("NODE3", popen.pid)]


def test_usage_sampler() -> None:
    usage = procs.UsageSampler([os.getpid()]).finish()
    assert usage[os.getpid()].rss_bytes > 0
    assert usage[os.getpid()].cpu_percent >= 0.0


# -- kill, freeze, thaw, stop, down -------------------------------------------------------------------


def test_kill(lab: Lab) -> None:
    popen = lab.stand_in("NODE1")
    result = launcher.kill_node(lab.cdir, lab.config, "node1")
    assert (result.node, result.action, result.pid) == ("NODE1", "killed", popen.pid)
    assert procs.process_state(popen.pid) is ProcessState.NOT_RUNNING  # reaped by the wait, too


def test_freeze_and_thaw(lab: Lab) -> None:
    popen = lab.stand_in("NODE2")
    assert launcher.freeze_node(lab.cdir, lab.config, "NODE2").action == "frozen"
    assert procs.process_state(popen.pid) is ProcessState.FROZEN
    with pytest.raises(WolfpackError, match="is already frozen"):
        launcher.freeze_node(lab.cdir, lab.config, "NODE2")
    assert launcher.thaw_node(lab.cdir, lab.config, "NODE2").action == "thawed"
    assert procs.process_state(popen.pid) is ProcessState.RUNNING
    with pytest.raises(WolfpackError, match="is not frozen"):
        launcher.thaw_node(lab.cdir, lab.config, "NODE2")


def test_stop_asks_the_node_first(lab: Lab) -> None:
    popen = lab.stand_in("NODE1")
    asked: list[tuple[str, dict[str, Any]]] = []

    def request(sock_path: Path, obj: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        asked.append((sock_path.parent.name, obj))
        popen.terminate()  # the node "stops" after answering
        return {"ok": True}

    result = launcher.stop_node(lab.cdir, lab.config, "NODE1", request)
    assert asked == [("NODE1", {"op": "stop"})]
    assert (result.action, result.detail) == ("stopped", "")
    assert not alive(popen)


def test_stop_falls_back_to_sigterm_then_sigkill(lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    polite = lab.stand_in("NODE1")
    result = launcher.stop_node(lab.cdir, lab.config, "NODE1", unreachable)
    assert result.action == "stopped"
    assert "sent SIGTERM" in result.detail
    assert not alive(polite)

    monkeypatch.setattr(launcher, "STOP_BOUND_S", 0.3)
    stubborn = lab.stand_in("NODE2", STUBBORN)
    result = launcher.stop_node(lab.cdir, lab.config, "NODE2", unreachable)
    assert result.action == "killed"
    assert "did not exit within 0.3 s, sent SIGKILL" in result.detail
    assert not alive(stubborn)


def test_stop_thaws_a_frozen_node_first(lab: Lab) -> None:
    popen = lab.stand_in("NODE3")
    launcher.freeze_node(lab.cdir, lab.config, "NODE3")
    result = launcher.stop_node(lab.cdir, lab.config, "NODE3", unreachable)
    assert result.action == "stopped"
    assert result.detail.startswith("was frozen, thawed it first")
    assert not alive(popen)


def test_down_stops_everything_it_finds(lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(launcher, "STOP_BOUND_S", 0.5)
    one = lab.stand_in("NODE1")
    three = lab.stand_in("NODE3", STUBBORN, pid_file=False)  # no pid file and ignores SIGTERM
    launcher.freeze_node(lab.cdir, lab.config, "NODE1")
    results = launcher.down(lab.cdir, lab.config, unreachable)
    assert [(r.node, r.action) for r in results] == [
        ("NODE1", "stopped"),
        ("NODE2", "not running"),
        ("NODE3", "killed"),
    ]
    assert not alive(one) and not alive(three)
    assert [(r.node, r.action) for r in launcher.down(lab.cdir, lab.config, unreachable)] == [
        ("NODE1", "not running"),
        ("NODE2", "not running"),
        ("NODE3", "not running"),
    ]


# -- up and start ------------------------------------------------------------------------------------


def test_cluster_formed_needs_every_node_up_in_one_membership(lab: Lab) -> None:
    from nodeagent.cli.probe import ControlState, NodeObservation

    def obs(name: str, reply: dict[str, Any] | None) -> NodeObservation:
        node = reply["node"] if reply else None
        control = ControlState.OK if node else ControlState.NOT_RUNNING
        return NodeObservation(name, ProcessState.RUNNING, 1, control, node, 1)

    c = lab.config
    full = [obs(n, status_answer(c, n, "Up", [1, 2, 3])) for n in ("NODE1", "NODE2", "NODE3")]
    assert launcher.cluster_formed(c, full)
    assert not launcher.cluster_formed(c, [*full[:2], obs("NODE3", status_answer(c, "NODE3", "Joining", []))])
    assert not launcher.cluster_formed(c, [*full[:2], obs("NODE3", None)])
    assert not launcher.cluster_formed(
        c, [*full[:2], obs("NODE3", status_answer(c, "NODE3", "Up", [1, 2, 3], 2))]
    )
    assert launcher.node_joined("NODE2")(c, full)
    assert not launcher.node_joined("NODE3")(
        c, [*full[:2], obs("NODE3", status_answer(c, "NODE3", "Joining", []))]
    )


def test_up_starts_every_node_and_waits_for_the_cluster(lab: Lab) -> None:
    calls = [0]

    def request(sock_path: Path, obj: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        calls[0] += 1
        name = sock_path.parent.name
        if calls[0] <= 3:  # the first look: nobody has formed yet
            return status_answer(lab.config, name, "Joining", [], epoch=0)
        return status_answer(lab.config, name, "Up", [1, 2, 3])

    lines: list[str] = []
    result = upcmd.up(lab.cdir.root, UpOptions(), 10.0, lines.append, request=request, spawn=lab.spawn)
    assert result.started == ("NODE1", "NODE2", "NODE3") and not result.created
    assert all(alive(p) for p in lab.popens)
    assert lines[0].startswith("started NODE1 (pid ")
    assert any("NODE1 Joining, NODE2 Joining, NODE3 Joining" in ln for ln in lines)

    # Everything running: a second up starts nothing.
    again = upcmd.up(lab.cdir.root, UpOptions(nodes=3), 10.0, lines.append, request=request, spawn=lab.spawn)
    assert again.started == () and again.already_running == ("NODE1", "NODE2", "NODE3")
    with pytest.raises(WolfpackError, match=r"^NODE2 is already running \(pid \d+\)$"):
        upcmd.start(lab.cdir, lab.config, "NODE2", 1.0, lines.append, request=request, spawn=lab.spawn)


def test_up_kills_what_it_started_when_the_cluster_does_not_form(lab: Lab) -> None:
    already = lab.stand_in("NODE1")

    def request(sock_path: Path, obj: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        return status_answer(lab.config, sock_path.parent.name, "Joining", [], epoch=0)

    lines: list[str] = []
    with pytest.raises(WolfpackError) as exc:
        upcmd.up(lab.cdir.root, UpOptions(), 0.5, lines.append, request=request, spawn=lab.spawn)
    assert str(exc.value).startswith("gave up waiting for the cluster to form after 0.5 s: NODE1 Joining")
    started = lab.popens[1:]
    assert len(started) == 2 and not any(alive(p) for p in started)
    assert alive(already)  # not ours to kill
    assert lines[-1] == "killed the nodes this command started: NODE2, NODE3"


def test_up_refuses_a_frozen_node(lab: Lab) -> None:
    lab.stand_in("NODE2")
    launcher.freeze_node(lab.cdir, lab.config, "NODE2")
    with pytest.raises(WolfpackError, match=r"NODE2 \(pid \d+\) is frozen; run: wolfpack thaw NODE2"):
        upcmd.up(lab.cdir.root, UpOptions(), 1.0, lambda line: None, request=unreachable, spawn=lab.spawn)
    assert len(lab.popens) == 1


def test_a_node_that_exits_during_start_up_is_reported_with_its_log(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The real spawn, with an "interpreter" that fails the way a node does when its address is taken.
    script = lab.cdir.root / "fake-python"
    script.write_text("#!/bin/sh\necho 'starting'\necho 'address 127.1.1.2:3343 is in use' >&2\nexit 3\n")
    script.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(script))
    start = time.monotonic()
    with pytest.raises(WolfpackError) as exc:
        upcmd.start(lab.cdir, lab.config, "NODE2", 10.0, lambda line: None, request=unreachable)
    assert str(exc.value) == "NODE2 exited with code 3 during start-up: address 127.1.1.2:3343 is in use"
    assert time.monotonic() - start < 5.0
    log = lab.cdir.node_log("NODE2").read_text().splitlines()
    assert log[0].startswith("--- wolfpack: starting NODE2 at ")
    assert log[1:] == ["starting", "address 127.1.1.2:3343 is in use"]
