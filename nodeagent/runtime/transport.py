"""Where datagrams travel: real UDP sockets, or an in-memory network shared by nodes in one process.

Theory of operation
-------------------
A ``Transport`` opens ``Endpoint``s: one bound address each, with ``sendto`` and ``recvfrom`` of whole
datagrams. A node opens one endpoint per network (private 127.C.1.N:3343, public 127.C.2.N:3343).
Everything above (authentication, faults, counters) lives in the messenger and is the same for both
implementations, so runtime tests exercise the real code path except the kernel.

- ``UdpTransport``: ``trio.socket`` datagram sockets. No SO_REUSEADDR: the bind is what makes a node's
  addresses (and so its node directory) exclusive to one process; EADDRINUSE becomes ``AddressInUse``
  naming the address. ``sendto`` errors (ECONNREFUSED from an earlier ICMP, ENOBUFS, ...) propagate
  as ``OSError``; the messenger counts and ignores them, as UDP senders must.
- ``MemoryNetwork`` + ``MemoryTransport``: a dict from address to endpoint inside one trio run. A
  datagram to an address nobody bound, or to an endpoint whose queue is full, is dropped and counted
  on the network (UDP semantics: no error at the sender). The source address the receiver sees is
  the sender endpoint's bound address, exactly like the kernel would report it.
"""

from __future__ import annotations

import errno
import socket
from collections import Counter
from typing import Protocol

import trio

from nodeagent.errors import WolfpackError

Address = tuple[str, int]
RECV_BUFFER = 65_536  # larger than wire.MAX_DATAGRAM, so an oversize datagram arrives whole and is counted
MEMORY_QUEUE = 1024  # datagrams waiting at one in-memory endpoint


class AddressInUse(WolfpackError):
    """Another process (or node) already holds one of this node's addresses."""

    def __init__(self, address: Address) -> None:
        self.address = address
        super().__init__(f"address {address[0]}:{address[1]} is already in use (is this node running?)")


class Endpoint(Protocol):
    @property
    def local(self) -> Address: ...

    async def sendto(self, data: bytes, addr: Address) -> None: ...

    async def recvfrom(self) -> tuple[bytes, Address]:
        """The next datagram and its source; raises ``trio.ClosedResourceError`` once closed."""
        ...

    def close(self) -> None: ...


class Transport(Protocol):
    async def open(self, addr: Address) -> Endpoint:
        """Bind ``addr``; raises ``AddressInUse`` when it is taken."""
        ...


# -- real UDP ---------------------------------------------------------------------------------------


class UdpEndpoint:
    def __init__(self, sock: trio.socket.SocketType, local: Address) -> None:
        self._sock = sock
        self._local = local

    @property
    def local(self) -> Address:
        return self._local

    async def sendto(self, data: bytes, addr: Address) -> None:
        await self._sock.sendto(data, addr)

    async def recvfrom(self) -> tuple[bytes, Address]:
        while True:
            try:
                data, source = await self._sock.recvfrom(RECV_BUFFER)
            except OSError as e:
                if e.errno == errno.EBADF:
                    raise trio.ClosedResourceError from e
                # Linux reports an ICMP error of an earlier send on the next recv (ECONNREFUSED);
                # it says nothing about the datagrams waiting, so keep reading.
                if e.errno in (errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH):
                    continue
                raise
            return data, (str(source[0]), int(source[1]))

    def close(self) -> None:
        self._sock.close()


class UdpTransport:
    async def open(self, addr: Address) -> Endpoint:
        sock = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            await sock.bind(addr)
        except OSError as e:
            sock.close()
            if e.errno == errno.EADDRINUSE:
                raise AddressInUse(addr) from None
            raise WolfpackError(f"cannot bind {addr[0]}:{addr[1]}: {e.strerror or e}") from None
        return UdpEndpoint(sock, addr)


# -- in-memory --------------------------------------------------------------------------------------


class MemoryEndpoint:
    def __init__(self, network: MemoryNetwork, local: Address, queue_size: int) -> None:
        self._network = network
        self._local = local
        self._send, self._recv = trio.open_memory_channel[tuple[bytes, Address]](queue_size)
        self.closed = False

    @property
    def local(self) -> Address:
        return self._local

    async def sendto(self, data: bytes, addr: Address) -> None:
        if self.closed:
            raise trio.ClosedResourceError
        await trio.lowlevel.checkpoint()
        self._network.deliver(self._local, addr, bytes(data))

    async def recvfrom(self) -> tuple[bytes, Address]:
        try:
            return await self._recv.receive()
        except trio.EndOfChannel:
            raise trio.ClosedResourceError from None

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._network.unbind(self)
            self._send.close()

    def _offer(self, data: bytes, source: Address) -> bool:
        try:
            self._send.send_nowait((data, source))
        except (trio.WouldBlock, trio.ClosedResourceError):
            return False
        return True


class MemoryNetwork:
    """One in-memory 'loopback': every endpoint bound in it can reach every other."""

    def __init__(self, queue_size: int = MEMORY_QUEUE) -> None:
        self.queue_size = queue_size
        self._endpoints: dict[Address, MemoryEndpoint] = {}
        self.dropped: Counter[str] = Counter()  # why datagrams vanished: no_listener, queue_full, oversize
        self.delivered = 0

    def bind(self, addr: Address) -> MemoryEndpoint:
        if addr in self._endpoints:
            raise AddressInUse(addr)
        endpoint = MemoryEndpoint(self, addr, self.queue_size)
        self._endpoints[addr] = endpoint
        return endpoint

    def unbind(self, endpoint: MemoryEndpoint) -> None:
        if self._endpoints.get(endpoint.local) is endpoint:
            del self._endpoints[endpoint.local]

    def deliver(self, source: Address, dst: Address, data: bytes) -> None:
        if len(data) > RECV_BUFFER:  # the kernel would refuse it too (EMSGSIZE)
            self.dropped["oversize"] += 1
            return
        target = self._endpoints.get(dst)
        if target is None:
            self.dropped["no_listener"] += 1
        elif not target._offer(data, source):
            self.dropped["queue_full"] += 1
        else:
            self.delivered += 1


class MemoryTransport:
    def __init__(self, network: MemoryNetwork) -> None:
        self.network = network

    async def open(self, addr: Address) -> Endpoint:
        await trio.lowlevel.checkpoint()
        return self.network.bind(addr)
