"""JSON over UDP, one datagram each way: the shape of the client endpoint and of the name service.

Theory of operation
-------------------
A request is one datagram holding one JSON object (UTF-8), at most ``MAX_DATAGRAM`` (8 KiB); the
answer is one datagram holding one JSON object, sent back to the request's source address. Both
servers here are written as a pure ``handler(request) -> reply`` plus ``serve``, the receive loop:

- a datagram that is too large, not UTF-8 JSON, or not an object is answered
  ``{"ok": false, "error": "bad request: ..."}`` (and counted), never raised;
- a handler that raises is a bug: logged, answered ``internal error``, the loop goes on;
- ``seq`` is echoed when the request had one that is an integer or a short string, so a client can
  match answers to requests (UDP reorders and duplicates);
- a reply that would exceed ``MAX_DATAGRAM`` is replaced by an error reply;
- a send that fails (the client went away, ENOBUFS) is counted and ignored, like any UDP sender.

One datagram at a time: both services answer in microseconds from memory, so a loop per socket is
plenty and bounds the work a flood can cause (the kernel's socket buffer drops the excess).
"""

from __future__ import annotations

import errno
import json
import logging
from collections import Counter
from collections.abc import Callable
from typing import Any

import trio

from nodeagent.runtime.transport import Address, Endpoint

MAX_DATAGRAM = 8192
MAX_SEQ_STRING = 64
RECV_ERROR_PAUSE_S = 0.05  # after an unexpected receive error, so a persistent one cannot spin

log = logging.getLogger("nodeagent.udpjson")

Handler = Callable[[dict[str, Any]], dict[str, Any]]


class BadRequest(Exception):
    """The datagram is not a request we can answer; the message is the reply's error."""


def decode_request(data: bytes) -> dict[str, Any]:
    if len(data) > MAX_DATAGRAM:
        raise BadRequest(f"bad request: larger than {MAX_DATAGRAM} bytes")
    try:
        request = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise BadRequest("bad request: not JSON") from None
    if not isinstance(request, dict):
        raise BadRequest("bad request: must be a JSON object")
    return request


def seq_of(request: dict[str, Any]) -> int | str | None:
    seq = request.get("seq")
    if isinstance(seq, int) and not isinstance(seq, bool):
        return seq
    if isinstance(seq, str) and len(seq) <= MAX_SEQ_STRING:
        return seq
    return None


def encode_reply(reply: dict[str, Any]) -> bytes:
    data = json.dumps(reply, separators=(",", ":"), default=str).encode("utf-8")
    if len(data) > MAX_DATAGRAM:
        small = {"ok": False, "error": "reply too large"}
        if "seq" in reply:
            small["seq"] = reply["seq"]
        data = json.dumps(small, separators=(",", ":"), default=str).encode("utf-8")
    return data


def answer(handler: Handler, data: bytes, stats: Counter[str]) -> dict[str, Any]:
    """The reply to one datagram; never raises."""
    try:
        request = decode_request(data)
    except BadRequest as e:
        stats["bad_request"] += 1
        return {"ok": False, "error": str(e)}
    seq = seq_of(request)
    try:
        reply = handler(request)
    except Exception as e:
        stats["internal_error"] += 1
        log.exception("request %r failed", request.get("op"))
        reply = {"ok": False, "error": f"internal error: {type(e).__name__}"}
    if seq is not None or "seq" in request:
        reply = {"ok": reply.get("ok", False), "seq": seq, **{k: v for k, v in reply.items() if k != "ok"}}
    stats["answered"] += 1
    return reply


async def serve(endpoint: Endpoint, handler: Handler, stats: Counter[str], what: str) -> None:
    """Answer datagrams on ``endpoint`` until it is closed or the task is cancelled."""
    while True:
        try:
            data, source = await endpoint.recvfrom()
        except trio.ClosedResourceError:
            return
        except OSError as e:
            stats["recv_error"] += 1
            log.warning("%s: receive failed: %s", what, e)
            await trio.sleep(RECV_ERROR_PAUSE_S)
            continue
        reply = answer(handler, data, stats)
        if not await _send(endpoint, encode_reply(reply), source, stats):
            return


async def _send(endpoint: Endpoint, data: bytes, dst: Address, stats: Counter[str]) -> bool:
    """False once the endpoint is closed; other send errors are counted and ignored."""
    try:
        await endpoint.sendto(data, dst)
    except trio.ClosedResourceError:
        return False
    except OSError as e:
        if e.errno == errno.EBADF:  # a real socket closed under us
            return False
        stats["send_error"] += 1
    return True
