"""IP Address (bind, address conflict, client endpoint over real UDP), Network Name and the name service."""

from __future__ import annotations

import json
import socket
from typing import Any

import trio
from test_resources_kit import Harness, free_number, make_config

from nodeagent.runtime.resources.monitor import ResourceMonitor
from nodeagent.runtime.resources.names import NameService
from nodeagent.runtime.resources.network import IpAddress
from nodeagent.runtime.transport import MemoryNetwork, MemoryTransport

IP = "IP Address"
NAME = "Network Name"
SMTP = "SMTP Virtual Server Instance"


async def ask(
    addr: tuple[str, int], request: dict[str, Any] | bytes, timeout_s: float = 1.0
) -> dict[str, Any]:
    """One request datagram, one reply (a real UDP client socket)."""
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with sock:
        data = request if isinstance(request, bytes) else json.dumps(request).encode()
        await sock.sendto(data, addr)
        with trio.fail_after(timeout_s):
            reply, source = await sock.recvfrom(65536)
    assert source == addr
    result: dict[str, Any] = json.loads(reply)
    return result


async def test_ip_address_serves_the_client_endpoint_and_a_second_owner_is_a_conflict() -> None:
    with trio.fail_after(10):
        number = free_number()
        config = make_config(number)
        vip = f"127.{number}.3.1"
        node1, node2 = ResourceMonitor(config, "NODE1"), ResourceMonitor(config, "NODE2")
        h1, h2 = Harness(node1), Harness(node2)
        async with trio.open_nursery() as nursery:
            await nursery.start(node1.run)
            await nursery.start(node2.run)
            props = {"Address": vip, "Port": 3344, "Network": "public"}
            online = await h1.do("EVS1 IP", IP, "online", props, group="EVS1")
            assert online.ok, online.detail
            assert (await h1.do("SMTP", SMTP, "online", {"StartupTime": 0}, group="EVS1")).ok
            h1.act("POP3", "POP3 Virtual Server Instance", "online", {"FailMode": "hang"}, group="EVS1")

            reply = await ask((vip, 3344), {"op": "status", "seq": 17, "service": None})
            assert reply["ok"] is True and reply["seq"] == 17
            assert (reply["server"], reply["node"], reply["address"]) == ("EVS1", "NODE1", vip)
            assert reply["services"]["SMTP"] == "Online"
            pop3 = await ask((vip, 3344), {"op": "status", "seq": 18, "service": "POP3"})
            assert pop3 == {
                **pop3,
                "ok": False,
                "seq": 18,
                "error": "service POP3 is Online Pending on NODE1",
            }
            garbage = await ask((vip, 3344), b"\x00garbage")
            assert garbage == {"ok": False, "error": "bad request: not JSON"}
            assert (await h1.do("EVS1 IP", IP, "looks_alive")).ok
            assert (await h1.do("EVS1 IP", IP, "is_alive")).ok

            conflict = await h2.do("EVS1 IP", IP, "online", props, group="EVS1")
            assert not conflict.ok
            assert conflict.detail == f"address conflict: {vip}:3344 is in use"
            assert node2.state_of("EVS1 IP") == "Failed"

            assert (await h1.do("EVS1 IP", IP, "offline")).ok
            assert not (await h1.do("EVS1 IP", IP, "looks_alive")).ok
            moved = await h2.do("EVS1 IP", IP, "online", props, group="EVS1")
            assert moved.ok, moved.detail
            reply = await ask((vip, 3344), {"op": "status", "seq": 19})
            assert reply["node"] == "NODE2" and reply["services"] == {}  # NODE2 runs no service of EVS1
            assert (await h2.do("EVS1 IP", IP, "terminate")).ok
            nursery.cancel_scope.cancel()


async def test_a_failed_ip_address_stops_answering_clients() -> None:
    with trio.fail_after(10):
        number = free_number()
        vip = f"127.{number}.3.1"
        monitor = ResourceMonitor(make_config(number), "NODE1")
        h = Harness(monitor)
        async with trio.open_nursery() as nursery:
            await nursery.start(monitor.run)
            assert (await h.do("IP", IP, "online", {"Address": vip})).ok
            assert (await ask((vip, 3344), {"op": "status"}))["ok"]
            monitor.fail("IP")
            await h.failed("IP")
            # the socket is closed by the cleanup that follows the failure: the address is free again
            deadline = trio.current_time() + 2
            while True:
                probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                try:
                    probe.bind((vip, 3344))
                    break
                except OSError:
                    assert trio.current_time() < deadline, "the failed IP Address still holds its address"
                    await trio.sleep(0.01)
                finally:
                    probe.close()
            nursery.cancel_scope.cancel()


async def test_ip_address_rejects_bad_properties() -> None:
    with trio.fail_after(5):
        monitor = ResourceMonitor(make_config(), "NODE1")
        h = Harness(monitor)
        async with trio.open_nursery() as nursery:
            await nursery.start(monitor.run)
            bad = await h.do("IP", IP, "online", {"Address": "EVS1"})
            assert not bad.ok and "not an IPv4 address" in bad.detail
            missing = await h.do("IP", IP, "online", {})
            assert not missing.ok and "Address is not set" in missing.detail
            port = await h.do("IP", IP, "online", {"Address": "127.0.0.1", "Port": 70000})
            assert not port.ok and "Port" in port.detail
            nursery.cancel_scope.cancel()


async def test_network_name_registers_in_the_name_service_over_real_udp() -> None:
    with trio.fail_after(10):
        number = free_number()
        config = make_config(number)
        public = f"127.{number}.2.1"
        monitor = ResourceMonitor(config, "NODE1")
        h = Harness(monitor)
        core_view = {"EVS2": (f"127.{number}.3.2", 3344, "NODE2")}
        names = NameService(public, "NODE1", monitor.names, core_view.get)
        async with trio.open_nursery() as nursery:
            await nursery.start(monitor.run)
            await nursery.start(names.serve)
            assert names.bound
            nn = {"Name": "EVS1", "Address": f"127.{number}.3.1"}
            before = await ask((public, 3345), {"op": "resolve", "name": "EVS1"})
            assert before == {"ok": False, "error": "name not found", "name": "EVS1"}
            online = await h.do("EVS1 Name", NAME, "online", nn, group="EVS1")
            assert online.ok and online.detail == f"EVS1 -> 127.{number}.3.1:3344 registered"
            assert (await h.do("EVS1 Name", NAME, "looks_alive")).ok
            reply = await ask((public, 3345), {"op": "resolve", "name": "evs1", "seq": 4})
            evs1 = {"name": "evs1", "address": f"127.{number}.3.1", "port": 3344, "node": "NODE1"}
            assert reply == {"ok": True, "seq": 4, **evs1}
            remote = await ask((public, 3345), {"op": "resolve", "name": "EVS2"})
            assert remote["node"] == "NODE2" and remote["address"] == f"127.{number}.3.2"
            dup = await h.do("Other Name", NAME, "online", {"Name": "EVS1", "Address": "127.0.0.9"})
            assert not dup.ok and dup.detail.startswith("name conflict: EVS1")
            bad = await h.do(
                "Bad Name", NAME, "online", {"Name": "THIS-NAME-IS-TOO-LONG", "Address": "127.0.0.9"}
            )
            assert not bad.ok and "1 to 15 letters, digits or '-'" in bad.detail
            assert (await ask((public, 3345), b"nonsense"))["ok"] is False
            assert (await h.do("EVS1 Name", NAME, "offline")).ok
            gone = await ask((public, 3345), {"op": "resolve", "name": "EVS1"})
            assert gone["ok"] is False
            nursery.cancel_scope.cancel()


async def test_name_service_stays_off_without_failing_when_its_address_is_taken() -> None:
    with trio.fail_after(5):
        network = MemoryNetwork()
        transport = MemoryTransport(network)
        network.bind(("127.9.2.1", 3345))
        names = NameService(
            "127.9.2.1", "NODE1", ResourceMonitor(make_config(), "NODE1").names, transport=transport
        )
        async with trio.open_nursery() as nursery:
            await nursery.start(names.serve)
            assert not names.bound


async def test_ip_address_over_the_in_memory_network() -> None:
    """The node's transport is used, so runtime tests with a MemoryNetwork see conflicts too."""
    with trio.fail_after(5):
        network = MemoryNetwork()
        config = make_config()
        m1 = ResourceMonitor(config, "NODE1", transport=MemoryTransport(network))
        m2 = ResourceMonitor(config, "NODE2", transport=MemoryTransport(network))
        h1, h2 = Harness(m1), Harness(m2)
        async with trio.open_nursery() as nursery:
            await nursery.start(m1.run)
            await nursery.start(m2.run)
            props = {"Address": "127.200.3.7"}
            assert (await h1.do("IP", IP, "online", props)).ok
            client = network.bind(("127.0.0.1", 5000))
            await client.sendto(b'{"op": "status", "seq": 1}', ("127.200.3.7", 3344))
            data, _ = await client.recvfrom()
            assert json.loads(data)["node"] == "NODE1"
            conflict = await h2.do("IP", IP, "online", props)
            assert conflict.detail == "address conflict: 127.200.3.7:3344 is in use"
            nursery.cancel_scope.cancel()


async def test_an_endpoint_that_stops_serving_fails_its_ip_address() -> None:
    with trio.fail_after(5):
        network = MemoryNetwork()
        monitor = ResourceMonitor(make_config(), "NODE1", transport=MemoryTransport(network))
        h = Harness(monitor)
        async with trio.open_nursery() as nursery:
            await nursery.start(monitor.run)
            assert (await h.do("IP", IP, "online", {"Address": "127.200.3.8"})).ok
            impl = monitor._slots["IP"].impl
            assert isinstance(impl, IpAddress) and impl._endpoint is not None
            impl._endpoint.close()  # the socket goes away under the resource
            failed = await h.failed("IP")
            assert failed.detail == "127.200.3.8:3344 stopped serving clients"
            assert not (await h.do("IP", IP, "looks_alive")).ok
            nursery.cancel_scope.cancel()
