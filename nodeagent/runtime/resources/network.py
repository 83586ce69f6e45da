"""IP Address and Network Name: how clients reach a group, wherever it runs.

Theory of operation
-------------------
IP Address (private properties Address, Port = 3344, Network = "public"). Online binds a UDP socket
on Address:Port through the node's transport - real UDP in a node process, the in-memory network in
runtime tests - and serves the group's client endpoint on it (endpoint.py) in a background task.
Binding IS owning the virtual IP: a second process cannot bind it (no SO_REUSEADDR), so a bind that
fails with EADDRINUSE is a genuine address conflict, reported as ``address conflict: A:P is in use``
(the core logs event 1049 and fails the resource). Offline, terminate and failure close the socket;
clients then see silence until the new owner binds it. LooksAlive: the socket is open and served;
IsAlive: the same plus the socket still reports its bound address. ``Network`` is recorded but not
checked: every virtual IP of the lab lives on loopback.

Network Name (Name, Address, Port = 3344). Online registers Name -> Address:Port in this node's name
table, which the name service answers from (names.py); offline unregisters it. The name must be a
NetBIOS name: 1-15 letters, digits or '-'. LooksAlive: still registered by this resource. Network
Name depends on its IP Address in the cluster database; the core, not this module, enforces order.
With ``RequireKerberos=1`` online also creates (or reuses) the name's computer object in the lab's
directory (runtime/directory.py), and fails if it cannot.
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections import Counter
from typing import Any

import trio

from nodeagent.errors import WolfpackError
from nodeagent.runtime.directory import DirectoryError
from nodeagent.runtime.resources import udpjson
from nodeagent.runtime.resources.base import (
    FailureCallback,
    Host,
    Resource,
    ResourceError,
    prop_int,
    prop_str,
)
from nodeagent.runtime.resources.endpoint import ClientEndpoint
from nodeagent.runtime.resources.names import NameConflict
from nodeagent.runtime.transport import AddressInUse, Endpoint

CLIENT_PORT = 3344
NETBIOS_MAX = 15


def _ipv4(props: dict[str, Any], key: str) -> str:
    raw = prop_str(props, key, max_len=64).strip()
    try:
        return str(ipaddress.IPv4Address(raw))
    except ValueError:
        raise ResourceError(f"private property {key} = {raw!r}: not an IPv4 address") from None


class IpAddress(Resource):
    rtype = "IP Address"

    def __init__(self, name: str, group: str, props: dict[str, Any], host: Host, on_failure: FailureCallback):
        super().__init__(name, group, props, host, on_failure)
        self.address = _ipv4(props, "Address")
        self.port = prop_int(props, "Port", CLIENT_PORT, 1, 65535)
        self.network = prop_str(props, "Network", "public", max_len=64)
        self.stats: Counter[str] = Counter()
        self._endpoint: Endpoint | None = None
        self._serving: trio.CancelScope | None = None
        self._served = False

    @property
    def where(self) -> str:
        return f"{self.address}:{self.port}"

    async def online(self) -> str:
        try:
            endpoint = await self.host.transport.open((self.address, self.port))
        except AddressInUse:
            raise ResourceError(f"address conflict: {self.where} is in use") from None
        except (WolfpackError, OSError) as e:
            raise ResourceError(f"cannot bind {self.where}: {e}") from None
        self._endpoint = endpoint
        handler = ClientEndpoint(self.group, self.host.node_name, self.address, self.host.registry).answer
        self._served = True

        async def serve() -> None:
            try:
                await udpjson.serve(endpoint, handler, self.stats, f"client endpoint {self.where}")
            finally:
                self._served = False
            if self._endpoint is endpoint:  # the socket died under us (not our own close): a failure
                self.on_failure(f"{self.where} stopped serving clients")

        self._serving = self.host.background(f"{self.name} endpoint", serve, self.on_failure)
        return f"{self.where} bound; serving clients of {self.group}"

    async def offline(self) -> str:
        self._close()
        await trio.lowlevel.checkpoint()
        return f"{self.where} released"

    async def terminate(self) -> None:
        self._close()
        await trio.lowlevel.checkpoint()

    def abandon(self) -> None:
        self._close()

    async def looks_alive(self) -> str:
        await trio.lowlevel.checkpoint()
        if self._endpoint is None or not self._served:
            raise ResourceError(f"{self.where} is not served")
        return f"{self.where} served"

    async def is_alive(self) -> str:
        detail = await self.looks_alive()
        assert self._endpoint is not None
        if tuple(self._endpoint.local) != (self.address, self.port):
            raise ResourceError(f"{self.where}: socket bound to {self._endpoint.local}")
        return detail

    def _close(self) -> None:
        if self._serving is not None:
            self._serving.cancel()
            self._serving = None
        if self._endpoint is not None:
            endpoint, self._endpoint = self._endpoint, None
            with contextlib.suppress(OSError):
                endpoint.close()


class NetworkName(Resource):
    rtype = "Network Name"

    def __init__(self, name: str, group: str, props: dict[str, Any], host: Host, on_failure: FailureCallback):
        super().__init__(name, group, props, host, on_failure)
        self.netname = prop_str(props, "Name", max_len=64).strip()
        if not 0 < len(self.netname) <= NETBIOS_MAX or not self.netname.replace("-", "").isalnum():
            raise ResourceError(
                f"private property Name = {self.netname!r}: 1 to {NETBIOS_MAX} letters, digits or '-'"
            )
        self.address = _ipv4(props, "Address")
        self.port = prop_int(props, "Port", CLIENT_PORT, 1, 65535)
        self.require_kerberos = prop_int(props, "RequireKerberos", 0, 0, 1) == 1

    async def online(self) -> str:
        await trio.lowlevel.checkpoint()
        kerberos = ""
        directory = self.host.directory
        if self.require_kerberos and directory is not None:
            dns_name = f"{self.netname.lower()}.{self.host.config.dns_domain}"
            try:
                created = await trio.to_thread.run_sync(
                    directory.ensure_computer, self.netname, dns_name, self.host.node_name
                )
            except DirectoryError as e:
                raise ResourceError(f"RequireKerberos: cannot create the computer object: {e}") from None
            kerberos = "; computer object created" if created else "; computer object reused"
        try:
            self.host.names.register(self.netname, self.address, self.port, self.name)
        except NameConflict as e:
            raise ResourceError(str(e)) from None
        return f"{self.netname} -> {self.address}:{self.port} registered{kerberos}"

    async def offline(self) -> str:
        self.abandon()
        await trio.lowlevel.checkpoint()
        return f"{self.netname} unregistered"

    async def terminate(self) -> None:
        self.abandon()
        await trio.lowlevel.checkpoint()

    def abandon(self) -> None:
        self.host.names.unregister(self.netname, self.name)

    async def looks_alive(self) -> str:
        await trio.lowlevel.checkpoint()
        held = self.host.names.lookup(self.netname)
        if held is None or held.owner != self.name:
            raise ResourceError(f"{self.netname} is not registered")
        return f"{self.netname} registered"
