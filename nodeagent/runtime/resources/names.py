"""The name service: how a client turns a virtual server's name (EVS1) into its address.

Theory of operation
-------------------
Windows clients find a Network Name through NetBIOS/WINS/DNS; the lab has one small UDP service
instead. Every node listens on its PUBLIC address, port ``NAME_PORT`` (3345), and answers

    {"op": "resolve", "name": "EVS1"}  ->  {"ok": true, "name": "EVS1", "address": "127.7.3.2",
                                            "port": 3344, "node": "NODE2"}
                                       or  {"ok": false, "error": "name not found"}

(JSON, one datagram each way, see udpjson.py). Two sources, asked in this order:

1. the resolver the node passes in: ``core.resolve(name) -> (address, port, owner) | None``, from
   the replicated cluster database, so every node can answer for every Network Name wherever it is
   online;
2. ``NameTable``: the Network Name resources online on THIS node, registered by the resource monitor
   (``network.py``). This answers for local names even before the core's database knows of them,
   and keeps the service useful if the resolver is missing or fails.

Names are NetBIOS-like: compared without regard to case. The table is bounded (``MAX_NAMES``); a
second resource registering a name that another resource holds is a name conflict.

The service never stops the node: a bad datagram is answered with an error, a resolver that raises
is logged and skipped, and if the address cannot be bound (another process holds it) the service
logs why and stays off while the node runs on.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import trio

from nodeagent.errors import WolfpackError
from nodeagent.runtime.resources import udpjson
from nodeagent.runtime.transport import Endpoint, Transport, UdpTransport

NAME_PORT = 3345
MAX_NAMES = 256
MAX_NAME_LEN = 63

log = logging.getLogger("nodeagent.names")

Resolver = Callable[[str], "tuple[str, int, str] | None"]


class NameConflict(WolfpackError):
    """A name is already registered on this node by another resource."""


@dataclass(frozen=True, slots=True)
class Registration:
    name: str  # as registered
    address: str
    port: int
    owner: str  # the Network Name resource that registered it


class NameTable:
    """The Network Names online on this node."""

    def __init__(self, max_names: int = MAX_NAMES) -> None:
        self._names: dict[str, Registration] = {}
        self._max = max_names

    def register(self, name: str, address: str, port: int, owner: str) -> None:
        key = name.upper()
        held = self._names.get(key)
        if held is not None and held.owner != owner:
            raise NameConflict(f"name conflict: {name} is already registered by resource {held.owner}")
        if held is None and len(self._names) >= self._max:
            raise NameConflict(f"name table full: at most {self._max} names per node")
        self._names[key] = Registration(name, address, port, owner)

    def unregister(self, name: str, owner: str) -> bool:
        key = name.upper()
        held = self._names.get(key)
        if held is None or held.owner != owner:
            return False
        del self._names[key]
        return True

    def lookup(self, name: str) -> Registration | None:
        return self._names.get(name.upper())

    def registrations(self) -> list[Registration]:
        return sorted(self._names.values(), key=lambda r: r.name.upper())


class NameService:
    def __init__(
        self,
        address: str,
        node_name: str,
        table: NameTable,
        resolver: Resolver | None = None,
        *,
        transport: Transport | None = None,
        port: int = NAME_PORT,
    ) -> None:
        self.address = (address, port)
        self.node_name = node_name
        self.table = table
        self.resolver = resolver
        self._transport = transport if transport is not None else UdpTransport()
        self.stats: Counter[str] = Counter()
        self.bound = False

    def answer(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        if op != "resolve":
            shown = op[:40] if isinstance(op, str) else op
            return {"ok": False, "error": f"unknown op {shown!r} (known: resolve)"}
        name = request.get("name")
        if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME_LEN or not name.isprintable():
            return {
                "ok": False,
                "error": f"bad request: 'name' must be a string of 1 to {MAX_NAME_LEN} characters",
            }
        hit = self._from_resolver(name)
        if hit is not None:
            address, port, node = hit
            self.stats["resolved"] += 1
            return {"ok": True, "name": name, "address": address, "port": port, "node": node}
        local = self.table.lookup(name)
        if local is not None:
            self.stats["resolved_local"] += 1
            return {
                "ok": True,
                "name": name,
                "address": local.address,
                "port": local.port,
                "node": self.node_name,
            }
        self.stats["not_found"] += 1
        return {"ok": False, "error": "name not found", "name": name}

    def _from_resolver(self, name: str) -> tuple[str, int, str] | None:
        if self.resolver is None:
            return None
        try:
            hit = self.resolver(name)
        except Exception:
            self.stats["resolver_error"] += 1
            log.exception("name service: resolving %r failed", name)
            return None
        if hit is None:
            return None
        address, port, node = hit
        return str(address), int(port), str(node)

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Bind ``address:3345`` and answer until cancelled (a bind failure is logged, not raised)."""
        try:
            endpoint: Endpoint = await self._transport.open(self.address)
        except (WolfpackError, OSError) as e:
            log.warning("name service is off: %s", e)
            task_status.started()
            return
        self.bound = True
        try:
            task_status.started()
            await udpjson.serve(endpoint, self.answer, self.stats, f"name service {self.address[0]}")
        finally:
            self.bound = False
            endpoint.close()
