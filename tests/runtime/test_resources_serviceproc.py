"""Service processes: a real ``nodeagent.exchange.service`` child per resource, supervised.

The protocol is the test's own line-echo session (svc_echo.py), loaded by import path in the child.
Every process a test starts is killed in ``finally``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import trio
from test_resources_kit import Harness, make_config

from nodeagent.exchange.service import EXIT_LIFELINE
from nodeagent.runtime.resources.catalog import default_catalog
from nodeagent.runtime.resources.monitor import ResourceMonitor
from nodeagent.runtime.resources.serviceproc import ServiceProcess, protocol_server_class

TESTS = str(Path(__file__).parent)
ECHO_TYPE = "Echo Virtual Server"
EchoServer = protocol_server_class(ECHO_TYPE, "echo", 7, 7007)
ADDRESS = "127.213.3.7"


def free_port(address: str = ADDRESS) -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        return int(s.getsockname()[1])


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


async def wait_dead(pid: int, timeout_s: float = 5.0) -> None:
    with trio.fail_after(timeout_s):
        while alive(pid):
            await trio.sleep(0.01)


@pytest.fixture
def pids() -> Iterator[list[int]]:
    started: list[int] = []
    try:
        yield started
    finally:
        for pid in started:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture(autouse=True)
def tests_importable(monkeypatch: pytest.MonkeyPatch) -> None:
    """The child imports svc_echo by name: put this directory on its path."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (TESTS, os.environ.get("PYTHONPATH")) if p))


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    catalog = default_catalog()
    catalog[ECHO_TYPE] = EchoServer
    monitor = ResourceMonitor(make_config(), "NODE1", log_dir=tmp_path, catalog=catalog)
    harness = Harness(monitor)
    async with trio.open_nursery() as nursery:
        await nursery.start(monitor.run)
        yield harness
        nursery.cancel_scope.cancel()


def props(port: int, **more: object) -> dict[str, object]:
    return {"Address": ADDRESS, "Port": port, "Session": "svc_echo:EchoSession", "ServerName": "EVS9", **more}


def impl_of(h: Harness, resource: str) -> ServiceProcess:
    impl = h.monitor._slots[resource].impl
    assert isinstance(impl, ServiceProcess) and impl.pid is not None
    return impl


async def talk(port: int, lines: list[bytes]) -> bytes:
    stream = await trio.open_tcp_stream(ADDRESS, port)
    got = b""
    async with stream:
        for line in lines:
            await stream.send_all(line)
        while chunk := await stream.receive_some(4096):
            got += chunk
    return got


async def test_online_means_serving_and_the_session_moves_bytes(h: Harness, pids: list[int]) -> None:
    with trio.fail_after(20):
        port = free_port()
        report = await h.do("Echo", ECHO_TYPE, "online", props(port), timeout_s=15)
        assert report.ok, report.detail
        pids.append(impl_of(h, "Echo").pid or 0)
        assert f"serving {ADDRESS}:{port}" in report.detail
        # Online was reported only after the socket was bound: the first connect succeeds.
        got = await talk(port, [b"hello\r\n", b"pipe", b"lined\nQUIT\r\n"])
        assert got == b"+ECHO EVS9 ready\r\n= hello\r\n= pipelined\r\n+BYE\r\n"
        assert (await h.do("Echo", ECHO_TYPE, "looks_alive")).ok
        alive_report = await h.do("Echo", ECHO_TYPE, "is_alive")
        assert alive_report.ok, alive_report.detail
        assert h.monitor.registry.services("G") == {"ECHO": "Online"}


async def test_a_crashing_session_ends_only_its_connection(h: Harness, pids: list[int]) -> None:
    with trio.fail_after(20):
        port = free_port()
        assert (await h.do("Echo", ECHO_TYPE, "online", props(port), timeout_s=15)).ok
        pids.append(impl_of(h, "Echo").pid or 0)
        assert await talk(port, [b"CRASH\r\n"]) == b"+ECHO EVS9 ready\r\n"
        assert (await talk(port, [b"again\r\nQUIT\r\n"])).endswith(b"= again\r\n+BYE\r\n")
        assert (await h.do("Echo", ECHO_TYPE, "is_alive")).ok


async def test_kill_9_of_the_service_is_a_prompt_failure(h: Harness, pids: list[int]) -> None:
    with trio.fail_after(20):
        port = free_port()
        assert (await h.do("Echo", ECHO_TYPE, "online", props(port), timeout_s=15)).ok
        pid = impl_of(h, "Echo").pid or 0
        pids.append(pid)
        os.kill(pid, signal.SIGKILL)
        # No probe is asked for: the pidfd watcher notices the exit by itself.
        failed = await h.failed("Echo")
        assert failed.detail == f"inetinfo process {pid} killed by SIGKILL"
        assert h.monitor.state_of("Echo") == "Failed"


async def test_is_alive_fails_when_the_listener_is_gone(h: Harness, pids: list[int]) -> None:
    with trio.fail_after(20):
        port = free_port()
        assert (await h.do("Echo", ECHO_TYPE, "online", props(port), timeout_s=15)).ok
        impl = impl_of(h, "Echo")
        pids.append(impl.pid or 0)
        impl.port = free_port()  # the resource now expects a port nobody listens on
        report = await h.do("Echo", ECHO_TYPE, "is_alive")
        assert not report.ok and f"is not listening on {ADDRESS}:{impl.port}" in report.detail
        assert (await h.do("Echo", ECHO_TYPE, "looks_alive")).ok


async def test_offline_stops_gracefully_and_frees_the_port(h: Harness, pids: list[int]) -> None:
    with trio.fail_after(20):
        port = free_port()
        assert (await h.do("Echo", ECHO_TYPE, "online", props(port), timeout_s=15)).ok
        pid = impl_of(h, "Echo").pid or 0
        pids.append(pid)
        report = await h.do("Echo", ECHO_TYPE, "offline", timeout_s=10)
        assert report.ok and report.detail == f"inetinfo process {pid} stopped (exited with code 0)"
        assert not alive(pid)
        assert h.find(lambda r: r.action == "failed") is None  # a stop we asked for is no failure
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((ADDRESS, port))


async def test_terminate_kills_at_once(h: Harness, pids: list[int]) -> None:
    with trio.fail_after(20):
        port = free_port()
        assert (await h.do("Echo", ECHO_TYPE, "online", props(port), timeout_s=15)).ok
        pid = impl_of(h, "Echo").pid or 0
        pids.append(pid)
        assert (await h.do("Echo", ECHO_TYPE, "terminate")).ok
        await wait_dead(pid)


async def test_a_port_in_use_fails_the_online_with_the_reason(h: Harness) -> None:
    with trio.fail_after(20), socket.socket() as holder:
        holder.bind((ADDRESS, 0))
        holder.listen()
        port = holder.getsockname()[1]
        report = await h.do("Echo", ECHO_TYPE, "online", props(port), timeout_s=15)
        assert not report.ok
        assert f"cannot listen on {ADDRESS}:{port}" in report.detail
        assert h.monitor.state_of("Echo") == "Failed"


async def test_an_unknown_protocol_fails_the_online(h: Harness) -> None:
    with trio.fail_after(20):
        report = await h.do("Echo", ECHO_TYPE, "online", props(free_port(), Session=""), timeout_s=15)
        assert not report.ok
        assert "no session machine for protocol 'echo'" in report.detail


async def test_the_service_runs_as_a_child_of_the_node(h: Harness, pids: list[int]) -> None:
    """``wolfpack freeze`` stops the node's process tree: the service must be in it."""
    import psutil

    with trio.fail_after(20):
        assert (await h.do("Echo", ECHO_TYPE, "online", props(free_port()), timeout_s=15)).ok
        pid = impl_of(h, "Echo").pid or 0
        pids.append(pid)
        assert pid in [c.pid for c in psutil.Process().children(recursive=True)]
        cmdline = psutil.Process(pid).cmdline()
        assert cmdline[1:5] == ["-m", "nodeagent.exchange.service", "--role", "inetinfo"]


async def test_the_lifeline_alone_ends_the_service(pids: list[int]) -> None:
    """The pipe, not PR_SET_PDEATHSIG: the service exits once the lifeline's write end closes."""
    with trio.fail_after(20):
        port = free_port()
        spec = {"server": "EVS9", "address": ADDRESS, "listeners": [
            {"protocol": "echo", "port": port, "session": "svc_echo:EchoSession"}]}  # fmt: skip
        life_r, life_w = os.pipe()
        ready_r, ready_w = os.pipe()
        argv = [sys.executable, "-m", "nodeagent.exchange.service", "--role", "inetinfo",
                "--spec", json.dumps(spec), "--lifeline-fd", str(life_r),
                "--ready-fd", str(ready_w)]  # fmt: skip
        proc = subprocess.Popen(argv, pass_fds=(life_r, ready_w))  # no death signal here
        pids.append(proc.pid)
        os.close(life_r)
        os.close(ready_w)
        try:
            line = await trio.to_thread.run_sync(lambda: os.read(ready_r, 4096))
            assert json.loads(line)["ready"] is True
            os.close(life_w)  # what the kernel does when the node dies
            code = await trio.to_thread.run_sync(proc.wait)
            assert code == EXIT_LIFELINE
        finally:
            os.close(ready_r)
            with contextlib.suppress(OSError):
                os.close(life_w)
            proc.kill()
            proc.wait()


NODE_SCRIPT = """
import sys, trio
sys.path.insert(0, {tests!r})
from test_resources_kit import Harness, make_config
from test_resources_serviceproc import ECHO_TYPE, EchoServer, props
from nodeagent.runtime.resources.catalog import default_catalog
from nodeagent.runtime.resources.monitor import ResourceMonitor

async def main():
    catalog = default_catalog()
    catalog[ECHO_TYPE] = EchoServer
    monitor = ResourceMonitor(make_config(), "NODE1", catalog=catalog)
    h = Harness(monitor)
    async with trio.open_nursery() as nursery:
        await nursery.start(monitor.run)
        r = await h.do("Echo", ECHO_TYPE, "online", props({port}), timeout_s=15)
        assert r.ok, r.detail
        print(monitor._slots["Echo"].impl.pid, flush=True)
        await trio.sleep_forever()

trio.run(main)
"""


async def test_a_node_killed_by_sigkill_leaves_no_service_behind(pids: list[int]) -> None:
    with trio.fail_after(30):
        script = NODE_SCRIPT.format(tests=TESTS, port=free_port())
        node = await trio.lowlevel.open_process([sys.executable, "-c", script], stdout=subprocess.PIPE)
        pids.append(node.pid)
        try:
            assert node.stdout is not None
            line = b""
            while not line.endswith(b"\n"):
                chunk = await node.stdout.receive_some(64)
                assert chunk, "the node process ended before its service was online"
                line += chunk
            child = int(line)
            pids.append(child)
            assert alive(child)
            node.kill()
            await node.wait()
            await wait_dead(child)
        finally:
            with contextlib.suppress(OSError):
                node.kill()
            await node.wait()
