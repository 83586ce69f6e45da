"""Between the core and the transport: core Sends become datagrams, datagrams become core inputs.

Theory of operation
-------------------
Outbound: the driver hands each ``Send`` of a Ready to ``send`` (synchronous, never blocks). The fault
table decides first (``Direction.OUT``; a dropped datagram is counted in ``fault_drops["out"]`` and
never encoded); the datagram is then encoded (``wire.encode`` with the cluster key and number, this node's
id and incarnation) and queued on a bounded channel. The sender task drains it into the endpoint of
the Send's network, towards ``config.address(dst, net)``. A full queue drops the datagram
(``send_errors["overload"]``); a ``sendto`` error (ECONNREFUSED on loopback when the peer is down,
ENOBUFS, ...) is counted by errno name and ignored: UDP gives no delivery promise anyway, and the
core's timers deal with loss.

Inbound: one receive task per network reads its endpoint and passes every datagram to ``accept``,
which either returns an ``Inbound`` for the core or counts why it did not, in ``bad`` (the status's
``bad_datagrams``). The checks, in order:

1. ``wire.decode`` (size, msgpack, shape, version, type, cluster, HMAC, fields): a
   ``RemoteProtocolError``'s message is the reason (``malformed``, ``bad_auth``, ``wrong_cluster``...);
2. the sender must be a configured node other than us (``unknown_sender``);
3. the source address must be ``config.address(sender, net)`` (``wrong_source``): a datagram claiming
   to come from node 2 arrives from node 2's address on the network it arrived on;
4. the fault table (``Direction.IN``): a dropped datagram is counted in ``fault_drops["in"]``, not as
   bad;
5. incarnation: older than the highest seen from that sender is ``stale_incarnation`` (a datagram
   of a previous life of a restarted node, still in flight).

Delay and duplication (faults.py, ``Verdict.delay_s`` and ``copies``), both ways: a verdict with
copies puts that many identical datagrams on the outbound queue (or the core's queue); a verdict with
a delay hands the datagram and its copies to a task in the nursery of ``run_delays``, which sleeps
and then queues them. At most ``MAX_HELD`` datagrams are held at once: one more is dropped and counted
in ``fault_drops["held_overflow"]`` (and so is one held while ``run_delays`` is not running). Counters
by direction: ``fault_delayed`` (datagrams held) and ``fault_duplicated`` (extra copies made). A held
inbound datagram has passed every check already; it reaches the core late, as from a slow network.

Accepted datagrams go to the driver through a bounded channel; when it is full the datagram is dropped
and counted as ``overload`` (a node that cannot keep up behaves like a lossy network, never like a
blocked one). Nothing raised while handling one datagram escapes the loop: an unexpected exception is
logged and counted as ``internal_error``.
"""

from __future__ import annotations

import errno
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import trio

from nodeagent.config import ClusterConfig, Net
from nodeagent.core.effects import Send
from nodeagent.core.messages import Message
from nodeagent.errors import LocalProtocolError, RemoteProtocolError
from nodeagent.runtime.faults import Direction, FaultTable
from nodeagent.runtime.transport import Address, Endpoint
from nodeagent.wire import decode, encode

OUTBOUND_QUEUE = 1024  # datagrams waiting for the sender task
MAX_HELD = 1024  # datagrams held back by delay/reorder faults at once, both directions together
RECV_ERROR_PAUSE_S = 0.01  # after an unexpected recv error, so a persistent one cannot spin the loop

log = logging.getLogger("nodeagent.messenger")


@dataclass(frozen=True, slots=True)
class Inbound:
    """An authenticated datagram, ready for ``core.on_message``."""

    net: Net
    sender: int
    incarnation: int
    msg: Message


class Messenger:
    def __init__(
        self,
        config: ClusterConfig,
        node_id: int,
        incarnation: int,
        faults: FaultTable,
        inbound: trio.MemorySendChannel[Inbound],
        outbound_queue: int = OUTBOUND_QUEUE,
    ) -> None:
        self.config = config
        self.node_id = node_id
        self.incarnation = incarnation
        self.faults = faults
        self._inbound = inbound
        self._out_send, self._out_recv = trio.open_memory_channel[tuple[Net, bytes, Address]](outbound_queue)
        self.endpoints: dict[Net, Endpoint] = {}
        self.bad: Counter[str] = Counter()  # reason -> datagrams dropped as bad
        self.fault_drops: Counter[str] = Counter()  # "in" / "out" / "held_overflow" -> dropped by faults
        self.fault_delayed: Counter[str] = Counter()  # "in" / "out" -> datagrams held back by a fault
        self.fault_duplicated: Counter[str] = Counter()  # "in" / "out" -> extra copies made by a fault
        self.held = 0  # datagrams held back right now
        self.max_held = MAX_HELD
        self._delays: trio.Nursery | None = None
        self.send_errors: Counter[str] = Counter()  # errno name (or "overload") -> sends that failed
        self.sent = 0
        self.received = 0  # accepted and handed to the core's queue
        self.highest_incarnation: dict[int, int] = {}

    # -- outbound -----------------------------------------------------------------------------------
    def send(self, send: Send) -> None:
        verdict = self.faults.decide(send.net, send.dst, Direction.OUT)
        if verdict.drop:
            self.fault_drops["out"] += 1
            return
        try:
            data = encode(self.config.key, self.config.number, self.node_id, self.incarnation, send.msg)
        except LocalProtocolError as e:
            log.error("not sent: %s", e)
            self.send_errors["encode"] += 1
            return
        item = (send.net, data, self.config.address(send.dst, send.net))
        if verdict.copies > 1:
            self.fault_duplicated["out"] += verdict.copies - 1
        if verdict.delay_s > 0:
            self._hold("out", verdict.delay_s, verdict.copies, lambda: self._queue_out(item))
            return
        for _ in range(verdict.copies):
            self._queue_out(item)

    def _queue_out(self, item: tuple[Net, bytes, Address]) -> None:
        try:
            self._out_send.send_nowait(item)
        except trio.WouldBlock:
            self.send_errors["overload"] += 1
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass

    # -- held datagrams (delay and reorder faults) --------------------------------------------------
    async def run_delays(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Own the nursery of the held datagrams' tasks until cancelled (held ones are then lost)."""
        try:
            async with trio.open_nursery() as nursery:
                self._delays = nursery
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._delays = None

    def _hold(self, direction: str, delay_s: float, copies: int, deliver: Callable[[], object]) -> None:
        if self._delays is None or self.held >= self.max_held:
            self.fault_drops["held_overflow"] += 1
            return
        self.fault_delayed[direction] += 1
        self.held += 1
        self._delays.start_soon(self._release, delay_s, copies, deliver)

    async def _release(self, delay_s: float, copies: int, deliver: Callable[[], object]) -> None:
        try:
            await trio.sleep(delay_s)
            for _ in range(copies):
                deliver()
        finally:
            self.held -= 1

    async def run_sender(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        async for net, data, addr in self._out_recv:
            endpoint = self.endpoints.get(net)
            if endpoint is None:
                self.send_errors["no_endpoint"] += 1
                continue
            try:
                await endpoint.sendto(data, addr)
            except OSError as e:
                self.send_errors[errno.errorcode.get(e.errno or 0, "oserror")] += 1
            except trio.ClosedResourceError:
                return
            else:
                self.sent += 1

    # -- inbound ------------------------------------------------------------------------------------
    async def run_receiver(
        self, net: Net, endpoint: Endpoint, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        task_status.started()
        while True:
            try:
                data, source = await endpoint.recvfrom()
            except trio.ClosedResourceError:
                return
            except OSError as e:
                log.warning("receive on %s failed: %s", net.label, e)
                self.bad["recv_error"] += 1
                await trio.sleep(RECV_ERROR_PAUSE_S)
                continue
            try:
                item = self.accept(net, data, source)
            except Exception:
                log.exception("unexpected error while handling a datagram from %s", source)
                self.bad["internal_error"] += 1
                continue
            if item is None:
                continue
            if not self._deliver(item):
                return

    def _deliver(self, item: Inbound) -> bool:
        """Hand ``item`` to the core's queue; False once that queue is closed."""
        try:
            self._inbound.send_nowait(item)
        except trio.WouldBlock:
            self.bad["overload"] += 1
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            return False
        else:
            self.received += 1
        return True

    def accept(self, net: Net, data: bytes, source: Address) -> Inbound | None:
        """Check one datagram; returns it for the core now, or None after counting why not (or after
        handing it to a delay task). Extra copies made by a dup fault are queued here."""
        try:
            env = decode(self.config.key, self.config.number, data)
        except RemoteProtocolError as e:
            self.bad[str(e) or "malformed"] += 1
            return None
        if env.sender == self.node_id or env.sender not in self.config.node_ids:
            self.bad["unknown_sender"] += 1
            return None
        if source != self.config.address(env.sender, net):
            self.bad["wrong_source"] += 1
            return None
        verdict = self.faults.decide(net, env.sender, Direction.IN)
        if verdict.drop:
            self.fault_drops["in"] += 1
            return None
        highest = self.highest_incarnation.get(env.sender, -1)
        if env.incarnation < highest:
            self.bad["stale_incarnation"] += 1
            return None
        self.highest_incarnation[env.sender] = env.incarnation
        item = Inbound(net=net, sender=env.sender, incarnation=env.incarnation, msg=env.msg)
        if verdict.copies > 1:
            self.fault_duplicated["in"] += verdict.copies - 1
        if verdict.delay_s > 0:
            self._hold("in", verdict.delay_s, verdict.copies, lambda: self._deliver(item))
            return None
        for _ in range(verdict.copies - 1):  # the receive loop delivers the original
            self._deliver(item)
        return item
