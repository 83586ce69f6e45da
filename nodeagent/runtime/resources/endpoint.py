"""The client endpoint: what a client reaches on a virtual server's IP address.

Theory of operation
-------------------
While an IP Address resource is online on this node, its socket (Address:Port, UDP, default 3344)
answers clients for the resource's group - the emulated Exchange virtual server (or any group).
Clients do not know or care which node that is; the reply says so, which is how ``wolfpack client``
shows a failover. One JSON datagram each way (udpjson.py):

    {"op": "status", "seq": 17, "service": null}
    -> {"ok": true, "seq": 17, "server": "EVS1", "node": "NODE2", "address": "127.7.3.2",
        "services": {"IS": "Online", "SA": "Online", "SMTP": "Online Pending", ...}}

    {"op": "status", "seq": 18, "service": "SMTP"}   (SMTP not Online here)
    -> {"ok": false, "seq": 18, "error": "service SMTP is Online Pending on NODE2", ...}

``services`` are the group's emulated services (and Generic Applications) with their state on this
node, read from the monitor's registry at the moment of the request; a service is matched without
regard to case. The error reply still carries server, node, address and services, so a client can
show what it reached. The endpoint holds no state of its own: closing the socket (the resource goes
offline, fails or is terminated) is the whole shutdown.
"""

from __future__ import annotations

from typing import Any

from nodeagent.runtime.resources.registry import ResourceRegistry

MAX_SERVICE_LEN = 64


class ClientEndpoint:
    def __init__(self, group: str, node_name: str, address: str, registry: ResourceRegistry) -> None:
        self.group = group
        self.node_name = node_name
        self.address = address
        self.registry = registry

    def answer(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        if op != "status":
            shown = op[:40] if isinstance(op, str) else op
            return {"ok": False, "error": f"unknown op {shown!r} (known: status)"}
        service = request.get("service")
        if service is not None and (not isinstance(service, str) or not 0 < len(service) <= MAX_SERVICE_LEN):
            why = f"'service' must be null or a name of 1 to {MAX_SERVICE_LEN} characters"
            return {"ok": False, "error": f"bad request: {why}"}
        services = self.registry.services(self.group)
        reply: dict[str, Any] = {
            "ok": True,
            "server": self.group,
            "node": self.node_name,
            "address": self.address,
            "services": services,
        }
        if service is None:
            return reply
        key = next((k for k in services if k.upper() == service.upper()), None)
        if key is None:
            known = ", ".join(services) or "none"
            return {
                **reply,
                "ok": False,
                "error": f"no service {service} in {self.group} (services: {known})",
            }
        if services[key] != "Online":
            return {**reply, "ok": False, "error": f"service {key} is {services[key]} on {self.node_name}"}
        return reply
