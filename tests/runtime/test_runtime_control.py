"""The control socket server and its blocking client, against a fake node."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
import trio

from nodeagent.errors import ConfigError, NodeUnreachable
from nodeagent.runtime.control import ControlServer
from nodeagent.runtime.control_client import MAX_REQUEST, request


class FakeNode:
    def __init__(self) -> None:
        self.cuts: list[dict[str, Any]] = []
        self.paused = False
        self.stops = 0

    def status(self) -> dict[str, Any]:
        return {"name": "NODE1", "phase": "MEMBER", "paused": self.paused}

    def fault_cut(self, request: dict[str, Any]) -> None:
        if request.get("net") not in ("private", "public", "all"):
            raise ConfigError(f"net = {request.get('net')!r}: must be 'private', 'public' or 'all'")
        self.cuts.append({"kind": "cut", "net": request["net"], "peer": request.get("peer")})

    def fault_heal(self) -> int:
        n = len(self.cuts)
        self.cuts.clear()
        return n

    def faults(self) -> list[dict[str, Any]]:
        return list(self.cuts)

    def request_stop(self) -> None:
        self.stops += 1

    def set_paused(self, paused: bool) -> None:
        self.paused = paused


async def ask(path: Path, obj: dict[str, Any], timeout_s: float = 5.0) -> dict[str, Any]:
    return await trio.to_thread.run_sync(request, path, obj, timeout_s)


async def ask_raw(path: Path, data: bytes) -> bytes:
    def run() -> bytes:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(str(path))
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
            out = b""
            while chunk := s.recv(65536):
                out += chunk
            return out

    return await trio.to_thread.run_sync(run)


async def test_round_trip_of_every_op(short_tmp: Path) -> None:
    node = FakeNode()
    path = short_tmp / "control.sock"
    path.write_text("stale")  # a socket file left by a killed node must not stop a new one
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(ControlServer(path, node).serve)
            assert await ask(path, {"op": "status"}) == {
                "ok": True,
                "node": {"name": "NODE1", "phase": "MEMBER", "paused": False},
            }
            reply = await ask(path, {"op": "fault_cut", "net": "private", "peer": "NODE2"})
            assert reply == {"ok": True, "faults": [{"kind": "cut", "net": "private", "peer": "NODE2"}]}
            assert (await ask(path, {"op": "faults"}))["faults"] == node.cuts
            assert await ask(path, {"op": "fault_heal"}) == {"ok": True, "removed": 1}
            assert await ask(path, {"op": "pause"}) == {"ok": True}
            assert node.paused
            assert await ask(path, {"op": "resume"}) == {"ok": True}
            assert not node.paused
            assert await ask(path, {"op": "stop"}) == {"ok": True}
            assert node.stops == 1
            nursery.cancel_scope.cancel()
    assert not path.exists()  # the server removes its socket file


async def test_errors_are_one_line_answers(short_tmp: Path) -> None:
    path = short_tmp / "control.sock"
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(ControlServer(path, FakeNode()).serve)
            reply = await ask(path, {"op": "reboot"})
            assert reply["ok"] is False and "unknown op 'reboot'" in reply["error"]
            reply = await ask(path, {"no_op": 1})
            assert reply["ok"] is False and "op" in reply["error"]
            reply = await ask(path, {"op": "fault_cut", "net": "wifi"})
            assert reply == {"ok": False, "error": "net = 'wifi': must be 'private', 'public' or 'all'"}
            assert b'"ok": false' in await ask_raw(path, b"{not json\n")
            assert b"JSON object" in await ask_raw(path, b"[1, 2]\n")
            too_big = b'{"op": "status", "pad": "' + b"x" * (MAX_REQUEST + 10) + b'"}\n'
            assert b"larger than" in await ask_raw(path, too_big)
            # the server is still fine after all that
            assert (await ask(path, {"op": "status"}))["ok"] is True
            nursery.cancel_scope.cancel()


async def test_silent_client_is_cut_off_and_others_still_served(short_tmp: Path) -> None:
    path = short_tmp / "control.sock"
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(ControlServer(path, FakeNode(), timeout_s=0.3).serve)
            silent = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            await silent.connect(str(path))
            assert (await ask(path, {"op": "status"}))["ok"] is True  # not blocked by the silent one
            assert await silent.recv(100) == b""  # closed by the server after its timeout
            silent.close()
            nursery.cancel_scope.cancel()


async def test_long_socket_paths_work(short_tmp: Path) -> None:
    deep = short_tmp / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    path = deep / "control.sock"
    assert len(str(path)) > 107
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(ControlServer(path, FakeNode()).serve)
            assert (await ask(path, {"op": "status"}))["ok"] is True
            nursery.cancel_scope.cancel()


def test_client_reports_an_absent_node(short_tmp: Path) -> None:
    with pytest.raises(NodeUnreachable, match="not there"):
        request(short_tmp / "control.sock", {"op": "status"}, 1.0)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(short_tmp / "frozen.sock"))
    listener.listen(1)  # accepts the connection but never answers, like a SIGSTOPped node
    try:
        with pytest.raises(NodeUnreachable, match="no answer within"):
            request(short_tmp / "frozen.sock", {"op": "status"}, 0.3)
    finally:
        listener.close()
    stale = short_tmp / "stale.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(stale))
    s.close()  # the file stays, nobody listens
    with pytest.raises(NodeUnreachable, match="nobody listening"):
        request(stale, {"op": "status"}, 1.0)
