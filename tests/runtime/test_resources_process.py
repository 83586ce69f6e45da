"""Generic Application: a real child process, watched; every child a test starts is killed in finally."""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import trio
from test_resources_kit import Harness, make_config

from nodeagent.runtime.resources import process
from nodeagent.runtime.resources.monitor import ResourceMonitor
from nodeagent.runtime.resources.process import GenericApplication

APP = "Generic Application"
SLEEPER = shlex.join([sys.executable, "-c", "import time; time.sleep(60)"])
STUBBORN = shlex.join(
    [
        sys.executable,
        "-c",
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)",
    ]
)


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def ignores_sigterm(pid: int) -> bool:
    with open(f"/proc/{pid}/status") as f:
        line = next(x for x in f if x.startswith("SigIgn:"))
    return bool(int(line.split()[1], 16) & (1 << (signal.SIGTERM - 1)))


@pytest.fixture
def pids() -> Iterator[list[int]]:
    started: list[int] = []
    try:
        yield started
    finally:
        for pid in started:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    monitor = ResourceMonitor(make_config(), "NODE1", log_dir=tmp_path)
    harness = Harness(monitor)
    async with trio.open_nursery() as nursery:
        await nursery.start(monitor.run)
        yield harness
        nursery.cancel_scope.cancel()


def pid_of(h: Harness, resource: str) -> int:
    slot = h.monitor._slots[resource]
    assert isinstance(slot.impl, GenericApplication) and slot.impl.pid is not None
    return slot.impl.pid


async def wait_dead(pid: int, timeout_s: float = 3.0) -> None:
    with trio.fail_after(timeout_s):
        while alive(pid):
            await trio.sleep(0.01)


async def test_a_child_that_exits_is_an_unsolicited_failure(h: Harness, pids: list[int]) -> None:
    with trio.fail_after(10):
        online = await h.do("App", APP, "online", {"CommandLine": SLEEPER})
        assert online.ok and online.detail.startswith("process ")
        pid = pid_of(h, "App")
        pids.append(pid)
        assert alive(pid) and os.getpgid(pid) == pid  # its own process group (and session)
        assert (await h.do("App", APP, "looks_alive")).ok
        os.kill(pid, signal.SIGKILL)
        failed = await h.failed("App")
        assert failed.token == 0 and not failed.ok and failed.detail == f"process {pid} killed by SIGKILL"
        assert h.monitor.state_of("App") == "Failed"
        assert not (await h.do("App", APP, "looks_alive")).ok
        assert (await h.do("App", APP, "offline")).ok


async def test_offline_stops_the_child_and_a_stubborn_one_is_killed(
    h: Harness, pids: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(process, "STOP_GRACE_S", 0.3)
    with trio.fail_after(10):
        assert (await h.do("App", APP, "online", {"CommandLine": SLEEPER})).ok
        pid = pid_of(h, "App")
        pids.append(pid)
        offline = await h.do("App", APP, "offline")
        assert offline.ok and offline.detail == f"process {pid} stopped (killed by SIGTERM)"
        assert not alive(pid)
        assert not h.find(lambda r: r.action == "failed")  # stopping it is not a failure

        assert (await h.do("Stubborn", APP, "online", {"CommandLine": STUBBORN})).ok
        pid = pid_of(h, "Stubborn")
        pids.append(pid)
        with trio.fail_after(5):  # until the child ignores SIGTERM (bit 15 of SigIgn)
            while not ignores_sigterm(pid):
                await trio.sleep(0.01)
        offline = await h.do("Stubborn", APP, "offline")
        assert offline.ok and "did not stop within 0.3 s: killed" in offline.detail
        assert not alive(pid)


async def test_terminate_kills_at_once(h: Harness, pids: list[int]) -> None:
    with trio.fail_after(10):
        assert (await h.do("App", APP, "online", {"CommandLine": STUBBORN})).ok
        pid = pid_of(h, "App")
        pids.append(pid)
        began = trio.current_time()
        assert (await h.do("App", APP, "terminate")).ok
        assert trio.current_time() - began < 1.0 and not alive(pid)


async def test_bad_command_lines_fail_the_online(h: Harness, tmp_path: Path) -> None:
    with trio.fail_after(5):
        missing = await h.do("A", APP, "online", {"CommandLine": "/nonexistent/wolfpack-app --serve"})
        assert not missing.ok and missing.detail.startswith("cannot start /nonexistent/wolfpack-app")
        empty = await h.do("B", APP, "online", {"CommandLine": "   "})
        assert not empty.ok and empty.detail == "private property CommandLine is empty"
        quote = await h.do("C", APP, "online", {"CommandLine": "echo 'unclosed"})
        assert not quote.ok and "CommandLine" in quote.detail
        cwd = await h.do(
            "D", APP, "online", {"CommandLine": "true", "CurrentDirectory": str(tmp_path / "nope")}
        )
        assert not cwd.ok and "is not a directory" in cwd.detail


async def test_output_goes_to_the_log_dir_and_the_directory_is_honoured(
    h: Harness, tmp_path: Path, pids: list[int]
) -> None:
    with trio.fail_after(10):
        work = tmp_path / "work"
        work.mkdir()
        script = "import os, time; print('hello from', os.getcwd(), flush=True); time.sleep(60)"
        props = {"CommandLine": shlex.join([sys.executable, "-c", script]), "CurrentDirectory": str(work)}
        assert (await h.do("My App", APP, "online", props)).ok
        pids.append(pid_of(h, "My App"))
        log = tmp_path / "app-My_App.log"
        with trio.fail_after(5):
            while "hello from" not in (log.read_text() if log.exists() else ""):
                await trio.sleep(0.01)
        assert str(work) in log.read_text()
        assert (await h.do("My App", APP, "terminate")).ok


async def test_children_do_not_outlive_the_monitor(pids: list[int]) -> None:
    with trio.fail_after(10):
        monitor = ResourceMonitor(make_config(), "NODE1")
        h = Harness(monitor)
        async with trio.open_nursery() as nursery:
            await nursery.start(monitor.run)
            assert (await h.do("App", APP, "online", {"CommandLine": SLEEPER})).ok
            pid = pid_of(h, "App")
            pids.append(pid)
            nursery.cancel_scope.cancel()  # the node goes away
        await wait_dead(pid)


NODE_SCRIPT = """
import sys, trio
sys.path.insert(0, {tests!r})
from test_resources_kit import Harness, make_config
from nodeagent.runtime.resources.monitor import ResourceMonitor

async def main():
    monitor = ResourceMonitor(make_config(), "NODE1")
    h = Harness(monitor)
    async with trio.open_nursery() as nursery:
        await nursery.start(monitor.run)
        assert (await h.do("App", "Generic Application", "online", {{"CommandLine": {sleeper!r}}})).ok
        print(monitor._slots["App"].impl.pid, flush=True)
        await trio.sleep_forever()

trio.run(main)
"""


async def test_children_die_with_a_node_process_killed_by_sigkill(pids: list[int]) -> None:
    with trio.fail_after(20):
        script = NODE_SCRIPT.format(tests=str(Path(__file__).parent), sleeper=SLEEPER)
        node = await trio.lowlevel.open_process([sys.executable, "-c", script], stdout=subprocess.PIPE)
        pids.append(node.pid)
        try:
            assert node.stdout is not None
            line = b""
            while not line.endswith(b"\n"):
                chunk = await node.stdout.receive_some(64)
                assert chunk, "the node process ended before starting its application"
                line += chunk
            child = int(line)
            pids.append(child)
            assert alive(child)
            node.kill()  # SIGKILL: no cleanup code runs in the node
            await node.wait()
            await wait_dead(child)  # PR_SET_PDEATHSIG did it
        finally:
            with contextlib.suppress(OSError):
                node.kill()
            await node.wait()
