"""The DNS server every node runs on its public address: UDP and TCP, answers from core/dnszone.py.

Theory of operation
-------------------
``DnsServer(address, port, zone)`` binds ``address:port`` for UDP and for TCP (port 53 when the node
runs as root, else ``DNS_USER_PORT``; ``[dns] port`` in cluster.toml overrides, see config.py) and
answers every query with ``dnszone.answer(query, zone())``. ``zone`` is called per query, so the
answer is always what this node's copy of the cluster database says now; every node holds the same
copy, so every node answers alike, and a client may ask any of them.

- UDP: one datagram in, at most one out (``MAX_UDP`` bytes read; the answer sized to the client's
  limit, truncated with TC if larger, so that it retries over TCP).
- TCP: each message carries a 2-byte length prefix (RFC 1035 4.2.2); a connection may send several
  queries; at most ``MAX_TCP_CONNECTIONS`` at once, each closed after ``TCP_IDLE_S`` of silence.

Outside-facing, so guarded like the name service: a query that makes the resolver raise is counted
(``stats``) and dropped, a bind that fails (the port is held, or no privilege) is logged and the
server stays off while the node runs on; nothing here ever raises out of ``serve``.
"""

from __future__ import annotations

import contextlib
import errno
import logging
from collections import Counter
from collections.abc import Callable

import trio

from nodeagent.core.dnszone import Zone, answer

MAX_UDP = 4096
MAX_TCP_MESSAGE = 65535
MAX_TCP_CONNECTIONS = 64
TCP_IDLE_S = 10.0

log = logging.getLogger("nodeagent.dns")

ZoneSource = Callable[[], Zone]


class DnsServer:
    def __init__(self, address: str, port: int, zone: ZoneSource) -> None:
        self.address = (address, port)
        self.zone = zone
        self.stats: Counter[str] = Counter()
        self.bound = False
        self._limiter = trio.CapacityLimiter(MAX_TCP_CONNECTIONS)

    def resolve(self, query: bytes, *, udp: bool) -> bytes | None:
        """The answer to one query, or None; never raises (a resolver bug drops that one query)."""
        try:
            reply = answer(query, self.zone(), udp=udp)
        except Exception:
            self.stats["error"] += 1
            log.exception("dns: answering a query failed")
            return None
        self.stats["answered" if reply is not None else "dropped"] += 1
        return reply

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled; a bind failure is logged, not raised."""
        udp = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
        tcp = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_STREAM)
        try:
            tcp.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_REUSEADDR, 1)  # TIME_WAIT after restart
            await udp.bind(self.address)
            await tcp.bind(self.address)
            tcp.listen(32)
        except OSError as e:
            udp.close()
            tcp.close()
            why = "needs root" if e.errno == errno.EACCES else e.strerror
            log.warning("DNS server is off: cannot bind %s:%d: %s", *self.address, why)
            task_status.started()
            return
        self.bound = True
        log.info("DNS server on %s:%d (UDP and TCP)", *self.address)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._serve_udp, udp)
                nursery.start_soon(trio.serve_listeners, self._serve_tcp, [trio.SocketListener(tcp)])
                task_status.started()
        finally:
            self.bound = False
            udp.close()
            tcp.close()

    async def _serve_udp(self, sock: trio.socket.SocketType) -> None:
        while True:
            try:
                data, peer = await sock.recvfrom(MAX_UDP)
            except OSError as e:  # e.g. ICMP port unreachable reported on a later recv
                self.stats["udp_error"] += 1
                log.debug("dns: udp receive: %s", e)
                continue
            reply = self.resolve(data, udp=True)
            if reply is not None:
                with contextlib.suppress(OSError):
                    await sock.sendto(reply, peer)

    async def _serve_tcp(self, stream: trio.SocketStream) -> None:
        try:
            self._limiter.acquire_nowait()
        except trio.WouldBlock:
            self.stats["tcp_refused"] += 1
            await stream.aclose()
            return
        try:
            async with stream:
                while True:
                    prefix = query = b""
                    with trio.move_on_after(TCP_IDLE_S):
                        prefix = await _receive_exactly(stream, 2)
                        if len(prefix) == 2:
                            query = await _receive_exactly(stream, int.from_bytes(prefix, "big"))
                    if len(prefix) != 2 or len(query) != int.from_bytes(prefix, "big"):
                        return  # idle, closed, or closed mid-message
                    reply = self.resolve(query, udp=False)
                    if reply is None:
                        return
                    await stream.send_all(len(reply).to_bytes(2, "big") + reply)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as e:
            log.debug("dns: tcp connection: %s", e)
        except Exception:  # a bug here ends this connection, never the node (serve_listeners would)
            self.stats["error"] += 1
            log.exception("dns: tcp connection failed")
        finally:
            self._limiter.release()


async def _receive_exactly(stream: trio.SocketStream, n: int) -> bytes:
    """``n`` bytes, or fewer if the peer closed first (b"" for n == 0 or at once)."""
    data = b""
    while len(data) < n:
        chunk = await stream.receive_some(min(MAX_TCP_MESSAGE, n - len(data)))
        if not chunk:
            break
        data += chunk
    return data
