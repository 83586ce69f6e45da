"""Helpers for the resource monitor tests (importable by name), and unit tests of the small pieces.

Helpers: a cluster config with fast timings, a free cluster number in 200-239, and ``Harness`` - a
monitor under test whose reports are collected and awaited with deadlines (never sleeps to wait).
"""

from __future__ import annotations

import secrets
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from nodeagent.cli.clusterdir import claim_free_number
from nodeagent.config import ClusterConfig, default_config_dict
from nodeagent.core.effects import ResourceAction, ResourceReport
from nodeagent.runtime.resources import udpjson
from nodeagent.runtime.resources.base import ResourceError, prop_float, prop_int, prop_str
from nodeagent.runtime.resources.endpoint import ClientEndpoint
from nodeagent.runtime.resources.monitor import ResourceMonitor
from nodeagent.runtime.resources.names import NameConflict, NameService, NameTable
from nodeagent.runtime.resources.registry import ResourceRegistry

FAST_TIMING = {"quorum_renew_interval_s": 0.05, "challenge_wait_s": 0.3, "challenge_takeover_s": 0.5}


def make_config(number: int = 200, nodes: int = 2, **timing: float) -> ClusterConfig:
    data = default_config_dict(number=number, key=secrets.token_bytes(32), nodes=nodes)
    data["timing"] = {**FAST_TIMING, **timing}
    return ClusterConfig.from_dict(data)


def free_number(ports: tuple[tuple[str, int], ...] = (("3.1", 3344), ("2.1", 3345), ("2.2", 3345))) -> int:
    """A cluster number in 200-239 whose test addresses (127.C.x.y:port) nobody holds, claimed."""
    number = claim_free_number(
        range(200, 240), lambda n: [(f"127.{n}.{host}", port) for host, port in ports], Path(__file__)
    )
    if number is None:
        raise RuntimeError("no free cluster number in 200-239")
    return number


class Harness:
    """A monitor whose reports are recorded; ``act`` submits, ``report`` waits for the answer."""

    def __init__(self, monitor: ResourceMonitor) -> None:
        self.monitor = monitor
        self.reports: list[ResourceReport] = []
        monitor.report = self.reports.append
        self._token = 0

    def act(self, resource: str, rtype: str, action: str, props: dict[str, Any] | None = None,
            group: str = "G") -> int:  # fmt: skip
        self._token += 1
        self.monitor.submit(ResourceAction(resource, rtype, group, action, dict(props or {}), self._token))
        return self._token

    def find(self, match: Callable[[ResourceReport], bool]) -> ResourceReport | None:
        return next((r for r in self.reports if match(r)), None)

    async def wait_for(
        self, match: Callable[[ResourceReport], bool], timeout_s: float = 5.0
    ) -> ResourceReport:
        with trio.move_on_after(timeout_s):
            while (found := self.find(match)) is None:
                await trio.sleep(0.005)
            return found
        raise AssertionError(f"no matching report within {timeout_s} s; got {self.reports}")

    async def report(self, token: int, timeout_s: float = 5.0) -> ResourceReport:
        return await self.wait_for(lambda r: r.token == token, timeout_s)

    async def failed(self, resource: str, timeout_s: float = 5.0) -> ResourceReport:
        return await self.wait_for(lambda r: r.resource == resource and r.action == "failed", timeout_s)

    async def do(self, resource: str, rtype: str, action: str, props: dict[str, Any] | None = None,
                 group: str = "G", timeout_s: float = 5.0) -> ResourceReport:  # fmt: skip
        return await self.report(self.act(resource, rtype, action, props, group), timeout_s)


# -- unit tests of the small pieces -------------------------------------------------------------------


def test_props_are_read_leniently_within_bounds() -> None:
    props = {"StartupTime": "1.5", "Port": "3344", "Backlog": 7.0, "Bad": "x", "Flag": True}
    assert prop_float(props, "StartupTime", 0, 0, 10) == 1.5
    assert prop_int(props, "Port", 1, 1, 65535) == 3344
    assert prop_int(props, "Backlog", 0, 0, 10) == 7
    assert prop_str(props, "Missing", "dflt") == "dflt"
    bads = (
        lambda: prop_float(props, "Bad", 0, 0, 10),
        lambda: prop_int(props, "Flag", 0, 0, 10),
        lambda: prop_float(props, "StartupTime", 0, 0, 1),
        lambda: prop_str(props, "Missing"),
    )
    for bad in bads:
        with pytest.raises(ResourceError):
            bad()


def test_registry_lists_a_groups_services_and_stays_bounded() -> None:
    reg = ResourceRegistry(max_entries=3)
    reg.set("SMTP (EVS1)", "EVS1", "SMTP Virtual Server Instance", "SMTP", "Online")
    reg.set("IP (EVS1)", "EVS1", "IP Address", None, "Online")
    reg.set("IS (EVS2)", "EVS2", "Microsoft Exchange Information Store", "IS", "Offline")
    assert reg.services("EVS1") == {"SMTP": "Online"}
    reg.set("SA (EVS1)", "EVS1", "Microsoft Exchange System Attendant", "SA", "Online Pending")
    assert len(reg.entries()) == 3
    assert reg.get("IS (EVS2)") is None  # the offline entry made room
    assert reg.services("EVS1") == {"SA": "Online Pending", "SMTP": "Online"}


def test_client_endpoint_answers_status_and_refuses_a_service_that_is_not_online() -> None:
    reg = ResourceRegistry()
    reg.set("SMTP", "EVS1", "SMTP Virtual Server Instance", "SMTP", "Online")
    reg.set("POP3", "EVS1", "POP3 Virtual Server Instance", "POP3", "Failed")
    ep = ClientEndpoint("EVS1", "NODE2", "127.7.3.2", reg)
    assert ep.answer({"op": "status"}) == {
        "ok": True, "server": "EVS1", "node": "NODE2", "address": "127.7.3.2",
        "services": {"POP3": "Failed", "SMTP": "Online"},
    }  # fmt: skip
    assert ep.answer({"op": "status", "service": "smtp"})["ok"] is True
    pop3 = ep.answer({"op": "status", "service": "POP3"})
    assert pop3["ok"] is False and pop3["error"] == "service POP3 is Failed on NODE2"
    assert "no service IMAP4" in ep.answer({"op": "status", "service": "IMAP4"})["error"]
    assert ep.answer({"op": "status", "service": 5})["ok"] is False
    assert "unknown op" in ep.answer({"op": "format c:"})["error"]


def test_udpjson_never_raises_and_echoes_seq() -> None:
    stats: Counter[str] = Counter()

    def handler(request: dict[str, Any]) -> dict[str, Any]:
        if request.get("op") == "boom":
            raise RuntimeError("bug")
        return {"ok": True, "x": 1}

    assert udpjson.answer(handler, b'{"op": "a", "seq": 17}', stats) == {"ok": True, "seq": 17, "x": 1}
    assert udpjson.answer(handler, b'{"op": "a", "seq": [1]}', stats)["seq"] is None
    assert udpjson.answer(handler, b"\xff\xfe", stats) == {"ok": False, "error": "bad request: not JSON"}
    assert udpjson.answer(handler, b"[1, 2]", stats)["error"] == "bad request: must be a JSON object"
    assert "larger than" in udpjson.answer(handler, b" " * 9000, stats)["error"]
    assert udpjson.answer(handler, b'{"op": "boom", "seq": 3}', stats) == {
        "ok": False, "seq": 3, "error": "internal error: RuntimeError"
    }  # fmt: skip
    assert len(udpjson.encode_reply({"ok": True, "seq": 1, "blob": "x" * 10000})) < 100
    assert stats["bad_request"] == 3 and stats["internal_error"] == 1


def test_name_table_and_service_answers() -> None:
    table = NameTable(max_names=2)
    table.register("EVS1", "127.7.3.2", 3344, "EVS1 Name")
    table.register("evs1", "127.7.3.2", 3344, "EVS1 Name")  # same owner: idempotent
    with pytest.raises(NameConflict, match="already registered by resource EVS1 Name"):
        table.register("Evs1", "127.7.3.9", 3344, "Other Name")
    svc = NameService(
        "127.7.2.1", "NODE1", table, resolver=lambda n: ("127.7.3.5", 3344, "NODE3") if n == "EVS5" else None
    )
    assert svc.answer({"op": "resolve", "name": "evs1"}) == {
        "ok": True, "name": "evs1", "address": "127.7.3.2", "port": 3344, "node": "NODE1"
    }  # fmt: skip
    assert svc.answer({"op": "resolve", "name": "EVS5"})["node"] == "NODE3"
    assert svc.answer({"op": "resolve", "name": "EVS9"})["error"] == "name not found"
    assert svc.answer({"op": "resolve", "name": ""})["ok"] is False
    assert svc.answer({"op": "resolve"})["ok"] is False
    assert "unknown op" in svc.answer({"op": "list"})["error"]
    svc.resolver = lambda n: 1 / 0  # type: ignore[assignment,return-value]
    assert svc.answer({"op": "resolve", "name": "EVS1"})["ok"] is True  # falls back to the local table
    assert svc.stats["resolver_error"] == 1
    assert table.unregister("EVS1", "Other Name") is False
    assert table.unregister("EVS1", "EVS1 Name") is True
    assert table.lookup("EVS1") is None


async def test_monitor_answers_every_action_even_when_it_refuses(tmp_path: Path) -> None:
    with trio.fail_after(10):
        monitor = ResourceMonitor(make_config(), "NODE1")
        h = Harness(monitor)
        async with trio.open_nursery() as nursery:
            await nursery.start(monitor.run)
            bad_action = await h.do("X", "Distributed Transaction Coordinator", "reboot")
            assert not bad_action.ok and "unknown action" in bad_action.detail
            bad_type = await h.do("Y", "Novell NetWare Volume", "online")
            assert not bad_type.ok and "unknown resource type" in bad_type.detail
            bad_prop = await h.do("Z", "Microsoft Exchange Information Store", "online", {"LogBacklog": -1})
            assert not bad_prop.ok and "LogBacklog" in bad_prop.detail
            assert monitor.state_of("Z") == "Failed"
            probe = await h.do("never", "IP Address", "looks_alive", {"Address": "127.0.0.1"})
            assert not probe.ok and "not online" in probe.detail
            offline = await h.do("never", "IP Address", "offline")
            assert offline.ok and offline.detail == "already offline"
            terminate = await h.do("never2", "IP Address", "terminate")
            assert terminate.ok
            assert len(h.reports) == 6
            nursery.cancel_scope.cancel()
