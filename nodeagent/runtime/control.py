"""The control socket: the operator's console of one node (DIR/nodes/NAME/control.sock).

Theory of operation
-------------------
A Unix stream socket, out of band: network faults never touch it, so ``status`` answers even while
every cluster link of the node is cut. One request per connection: the client sends one JSON object
and a newline, the node answers one JSON object and a newline and closes. Answers are
``{"ok": true, ...}`` or ``{"ok": false, "error": "one line"}``. Ops (CONTRACT.md, CONTRACT4.md):
``status``, ``fault_add`` (-> the new rule's ``id``), ``fault_cut``, ``fault_heal`` (one ``id``, or
all), ``faults``, ``stop``, ``pause``, ``resume``.

``dispatch`` maps a request to a reply and, for ``stop``, an action to run only after the reply has
been sent (the node may be gone a moment later). It never raises: a ``WolfpackError`` (a bad value, an
unknown peer) becomes its one-line message; anything else is logged with its traceback and answered
``internal error``. The server itself knows nothing of nodes: it calls a ``ControlTarget``.

Limits: a request is at most ``MAX_REQUEST`` bytes; a connection gets ``CONNECTION_TIMEOUT_S`` in all
(a client that connects and says nothing cannot hold a handler); at most ``MAX_CONNECTIONS`` are
served at once, and one past that is answered ``busy`` and closed.

The socket file: a stale one (left by a killed process) is unlinked before binding - the caller has
already bound the node's UDP addresses, so no other live process owns this node directory. Unix
socket paths are limited to 107 bytes; a longer path is reached through ``/proc/self/fd/N/`` of an
open descriptor of its directory (control_client.py does the same), so deep cluster directories work.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import trio

from nodeagent.core.effects import AdminReply
from nodeagent.errors import WolfpackError
from nodeagent.runtime.control_client import MAX_REQUEST, unix_address

CONNECTION_TIMEOUT_S = 5.0
MAX_CONNECTIONS = 16
LISTEN_BACKLOG = 16
ACCEPT_ERROR_PAUSE_S = 0.1

log = logging.getLogger("nodeagent.control")

Reply = dict[str, Any]
After = Callable[[], None]


class ControlTarget(Protocol):
    def status(self) -> dict[str, Any]: ...
    def fault_cut(self, request: dict[str, Any]) -> list[dict[str, Any]] | None: ...
    def fault_add(self, request: dict[str, Any]) -> int: ...
    def fault_heal(self, fault_id: int | None = None) -> int: ...
    def faults(self) -> list[dict[str, Any]]: ...
    def request_stop(self) -> None: ...
    def set_paused(self, paused: bool) -> None: ...
    async def admin(self, cmd: str, args: dict[str, Any]) -> AdminReply: ...
    def resource_fail(self, name: str) -> None: ...


def error(message: str) -> Reply:
    return {"ok": False, "error": " ".join(message.split())}


def parse_request(raw: bytes) -> dict[str, Any]:
    try:
        request = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise WolfpackError("bad request: not JSON") from None
    if not isinstance(request, dict):
        raise WolfpackError("bad request: must be a JSON object")
    return request


def dispatch(target: ControlTarget, raw: bytes) -> tuple[Reply, After | None]:
    try:
        request = parse_request(raw)
        return _dispatch(target, request)
    except WolfpackError as e:
        return error(str(e)), None
    except Exception as e:
        log.exception("control request failed")
        return error(f"internal error: {type(e).__name__}: {e}"), None


def _dispatch(target: ControlTarget, request: dict[str, Any]) -> tuple[Reply, After | None]:
    op = request.get("op")
    if op == "status":
        return {"ok": True, "node": target.status()}, None
    if op == "fault_cut":
        listed = target.fault_cut(request)  # a node may answer in issue 2's compact shape
        return {"ok": True, "faults": listed if listed is not None else target.faults()}, None
    if op == "fault_add":
        fault_id = target.fault_add(request)
        return {"ok": True, "id": fault_id, "faults": target.faults()}, None
    if op == "fault_heal":
        raw_id = request.get("id")
        if raw_id is not None and (isinstance(raw_id, bool) or not isinstance(raw_id, int)):
            raise WolfpackError(f"bad request: id = {raw_id!r}: must be a fault id (a whole number) or null")
        removed = target.fault_heal(raw_id) if raw_id is not None else target.fault_heal()
        return {"ok": True, "removed": removed}, None
    if op == "faults":
        return {"ok": True, "faults": target.faults(), "disk": _disk_faults(target)}, None
    if op == "stop":
        return {"ok": True}, target.request_stop
    if op in ("pause", "resume"):
        target.set_paused(op == "pause")
        return {"ok": True}, None
    if op == "resource_fail":
        name = request.get("name")
        if not isinstance(name, str) or not name:
            raise WolfpackError("bad request: resource_fail needs 'name'")
        target.resource_fail(name)
        return {"ok": True}, None
    if op in ("disk_fault", "disk_heal"):
        return _disk_op(target, op, request), None
    known = "status, fault_add, fault_cut, fault_heal, faults, stop, pause, resume, resource_fail, admin"
    known += ", disk_fault, disk_heal"
    if not isinstance(op, str):
        raise WolfpackError(f"bad request: 'op' must be one of {known}")
    raise WolfpackError(f"unknown op {op[:40]!r} (known: {known})")


def _disk_faults(target: ControlTarget) -> list[dict[str, Any]]:
    """The ``disk`` list of the ``faults`` reply (diskfaults.py); [] for a target without disks."""
    listing = getattr(target, "disk_faults_json", None)
    return list(listing()) if callable(listing) else []


def _disk_op(target: ControlTarget, op: str, request: dict[str, Any]) -> Reply:
    """``disk_fault`` -> ``{"ok", "disk": [...]}``; ``disk_heal`` -> also ``"removed": n``."""
    handler = getattr(target, op, None)
    if not callable(handler):
        raise WolfpackError(f"this node takes no {op} requests")
    if op == "disk_fault":
        handler(request)
        return {"ok": True, "disk": _disk_faults(target)}
    removed = handler(request)
    return {"ok": True, "removed": removed, "disk": _disk_faults(target)}


def _admin_request(raw: bytes) -> dict[str, Any] | None:
    """The request, if it is an admin request (answered asynchronously), else None."""
    try:
        request = parse_request(raw)
    except WolfpackError:
        return None
    return request if request.get("op") == "admin" else None


async def _admin(target: ControlTarget, request: dict[str, Any]) -> Reply:
    cmd, args = request.get("cmd"), request.get("args", {})
    if not isinstance(cmd, str) or not isinstance(args, dict):
        return error("bad request: admin needs 'cmd' (a string) and 'args' (an object)")
    reply = await target.admin(cmd, args)
    if reply.ok:
        return {"ok": True, "result": reply.result}
    return {"ok": False, "error": reply.error, "rule": reply.rule}


async def read_request(stream: trio.abc.ReceiveStream, limit: int = MAX_REQUEST) -> bytes:
    """Bytes up to the first newline (or EOF); ``WolfpackError`` past ``limit`` bytes."""
    buf = bytearray()
    while b"\n" not in buf:
        chunk = await stream.receive_some(limit + 1 - len(buf))
        if not chunk:
            break
        buf += chunk
        if len(buf) > limit and b"\n" not in buf[:limit]:
            raise WolfpackError(f"bad request: larger than {limit} bytes")
    return bytes(buf.split(b"\n", 1)[0])


class ControlServer:
    def __init__(
        self,
        path: Path,
        target: ControlTarget,
        *,
        timeout_s: float = CONNECTION_TIMEOUT_S,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        self.path = path
        self.target = target
        self.timeout_s = timeout_s
        self._limiter = trio.CapacityLimiter(max_connections)
        self.served = 0
        self.refused = 0

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            address, dir_fd = unix_address(self.path)
            try:
                await sock.bind(address)
            finally:
                if dir_fd is not None:
                    os.close(dir_fd)
            sock.listen(LISTEN_BACKLOG)
            listener = trio.SocketListener(sock)
        except BaseException:
            sock.close()
            raise
        try:
            async with listener, trio.open_nursery() as nursery:
                task_status.started()
                while True:
                    try:
                        stream = await listener.accept()
                    except OSError as e:  # EMFILE and friends: the console waits, the node goes on
                        log.warning("control socket accept failed: %s", e)
                        await trio.sleep(ACCEPT_ERROR_PAUSE_S)
                        continue
                    nursery.start_soon(self._handle, stream)
        finally:
            with contextlib.suppress(OSError):
                self.path.unlink()

    async def _handle(self, stream: trio.SocketStream) -> None:
        async with stream:
            try:
                self._limiter.acquire_nowait()
            except trio.WouldBlock:
                self.refused += 1
                with trio.move_on_after(self.timeout_s):
                    await _send_reply(stream, error("busy: too many control connections, try again"))
                return
            try:
                with trio.move_on_after(self.timeout_s):
                    after: After | None = None
                    oversize = False
                    try:
                        raw = await read_request(stream)
                    except WolfpackError as e:
                        reply, oversize = error(str(e)), True
                    else:
                        request = _admin_request(raw)
                        if request is not None:
                            reply = await _admin(self.target, request)
                        else:
                            reply, after = dispatch(self.target, raw)
                    await _send_reply(stream, reply)
                    self.served += 1
                    if after is not None:
                        after()
                    if oversize:
                        await _drain(stream)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass  # the client went away; nothing to answer
            finally:
                self._limiter.release()


async def _drain(stream: trio.SocketStream, limit: int = 16 * MAX_REQUEST) -> None:
    """Read and discard what the client still sends (bounded), so closing does not reset the
    connection and destroy the answer before the client has read it."""
    await stream.send_eof()
    seen = 0
    while seen < limit:
        chunk = await stream.receive_some(65536)
        if not chunk:
            return
        seen += len(chunk)


async def _send_reply(stream: trio.abc.SendStream, reply: Reply) -> None:
    await stream.send_all(json.dumps(reply, default=str).encode("utf-8") + b"\n")
