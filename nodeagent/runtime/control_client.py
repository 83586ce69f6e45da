"""Blocking client of a node's control socket (the CLI uses it; no trio needed).

Theory of operation
-------------------
``request(sock_path, obj, timeout_s)`` connects to the Unix socket, sends ``obj`` as one JSON line,
reads one JSON line back and returns it as a dict (``{"ok": true, ...}`` or ``{"ok": false, "error":
...}``; deciding what an ``ok: false`` means is the caller's business). ``timeout_s`` bounds the whole
exchange, not each call. A node that is not there (no socket file, nobody listening), does not answer
in time (frozen with SIGSTOP, say) or hangs up without a whole answer raises ``NodeUnreachable`` with
one line naming the socket.

Unix socket paths are limited to 107 bytes (``sun_path``). ``unix_address`` returns a path that
always fits: the path itself when short enough, else ``/proc/self/fd/N/NAME`` through a descriptor of
the socket's directory, which the caller closes after ``connect``/``bind`` (Linux resolves the
``/proc`` link like any directory). The server (control.py) uses the same function.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from nodeagent.errors import NodeUnreachable

MAX_REQUEST = 64 * 1024  # bytes of one request line (the server refuses longer ones)
MAX_REPLY = 16 * 2**20  # bytes of one reply line (a status is a few KiB)
SUN_PATH_MAX = 107


def unix_address(path: Path) -> tuple[str, int | None]:
    """An address for ``path`` that fits in ``sun_path``, and a directory fd to close afterwards."""
    text = os.fsencode(path)
    if len(text) <= SUN_PATH_MAX:
        return str(path), None
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    return f"/proc/self/fd/{fd}/{path.name}", fd


def request(sock_path: Path | str, obj: dict[str, Any], timeout_s: float = 5.0) -> dict[str, Any]:
    path = Path(sock_path)
    payload = json.dumps(obj).encode("utf-8") + b"\n"
    if len(payload) > MAX_REQUEST:
        raise ValueError(f"control request is {len(payload)} bytes, over the {MAX_REQUEST} limit")
    deadline = time.monotonic() + timeout_s

    def remaining() -> float:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        return left

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        try:
            address, dir_fd = unix_address(path)
        except OSError as e:
            raise NodeUnreachable(f"node control socket {path}: {e.strerror or e}") from None
        try:
            sock.settimeout(remaining())
            sock.connect(address)
        finally:
            if dir_fd is not None:
                os.close(dir_fd)
        sock.settimeout(remaining())
        sock.sendall(payload)
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_WR)  # tells the server the request is complete
        buf = bytearray()
        while b"\n" not in buf:
            sock.settimeout(remaining())
            chunk = sock.recv(65536)
            if not chunk:
                break
            buf += chunk
            if len(buf) > MAX_REPLY:
                raise NodeUnreachable(f"node control socket {path}: answer larger than {MAX_REPLY} bytes")
    except TimeoutError:
        raise NodeUnreachable(f"node control socket {path}: no answer within {timeout_s:g} s") from None
    except FileNotFoundError:
        raise NodeUnreachable(f"node control socket {path}: not there (node not running?)") from None
    except ConnectionRefusedError:
        raise NodeUnreachable(f"node control socket {path}: nobody listening (node not running?)") from None
    except OSError as e:
        raise NodeUnreachable(f"node control socket {path}: {e.strerror or e}") from None
    finally:
        sock.close()
    line = bytes(buf).split(b"\n", 1)[0]
    try:
        reply = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        raise NodeUnreachable(f"node control socket {path}: no valid answer (node stopping?)") from None
    if not isinstance(reply, dict):
        raise NodeUnreachable(f"node control socket {path}: answer is not a JSON object")
    return reply
