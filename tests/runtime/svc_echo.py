"""A tiny sans-IO line-echo session for the service host's tests (never part of the product).

Greets with ``+ECHO <server> ready``, echoes each CRLF/LF-terminated line as ``= line``, ends on
``QUIT`` and raises on ``CRASH`` (to show that a session's bug ends only its own connection).
"""

from __future__ import annotations

from collections.abc import Sequence

from nodeagent.exchange.service import Connection


class EchoSession:
    def __init__(self, conn: Connection) -> None:
        self._out = f"+ECHO {conn.server} ready\r\n".encode()
        self._buf = b""
        self._closed = False

    def receive(self, data: bytes) -> Sequence[object]:
        if not data:
            self._closed = True
            return ["eof"]
        self._buf += data
        events: list[object] = []
        while b"\n" in self._buf:
            line, self._buf = self._buf.split(b"\n", 1)
            text = line.rstrip(b"\r")
            if text == b"CRASH":
                raise RuntimeError("the echo session was told to crash")
            if text == b"QUIT":
                self._out += b"+BYE\r\n"
                self._closed = True
                break
            self._out += b"= " + text + b"\r\n"
            events.append(text)
        return events

    def data_to_send(self) -> bytes:
        out, self._out = self._out, b""
        return out

    @property
    def closed(self) -> bool:
        return self._closed
