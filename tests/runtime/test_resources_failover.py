"""End to end through the real pieces: name service, virtual IP, client endpoint, ``wolfpack client``.

The group's IP Address moves from NODE1's monitor to NODE2's while the client runs; the client must
see NODE1, an outage, then NODE2, and resolve the name through the name service.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable

import trio
from test_resources_kit import Harness, free_number, make_config

from nodeagent.cli import client
from nodeagent.config import Net
from nodeagent.runtime.resources.monitor import ResourceMonitor
from nodeagent.runtime.resources.names import NameService


async def wait_until(predicate: Callable[[], bool], timeout_s: float = 5.0) -> None:
    with trio.fail_after(timeout_s):
        while not predicate():
            await trio.sleep(0.01)


async def test_client_follows_the_virtual_server_from_node1_to_node2() -> None:
    with trio.fail_after(20):
        number = free_number()
        config = make_config(number)
        vip = f"127.{number}.3.1"
        ip = {"Address": vip, "Port": 3344}
        nn = {"Name": "EVS1", "Address": vip}
        m1, m2 = ResourceMonitor(config, "NODE1"), ResourceMonitor(config, "NODE2")
        h1, h2 = Harness(m1), Harness(m2)
        names = NameService(config.address(1, Net.PUBLIC)[0], "NODE1", m1.names)
        async with trio.open_nursery() as nursery:
            await nursery.start(m1.run)
            await nursery.start(m2.run)
            await nursery.start(names.serve)
            for monitor in (h1, h2):  # the store runs on both, so both can answer for it
                assert (await monitor.do("IS", "Microsoft Exchange Information Store", "online",
                                         {"StartupTime": 0}, group="EVS1")).ok  # fmt: skip
            assert (await h1.do("EVS1 IP", "IP Address", "online", ip, group="EVS1")).ok
            assert (await h1.do("EVS1 Name", "Network Name", "online", nn, group="EVS1")).ok

            target = await trio.to_thread.run_sync(client.resolve, "EVS1", client.name_servers(config))
            assert (target.address, target.port, target.owner) == (vip, 3344, "NODE1")
            out = io.StringIO()
            c = client.Client("EVS1", target, interval_s=0.02, duration_s=None, service="IS",
                              as_json=True, out=out)  # fmt: skip
            c.duration_s = 30.0  # ended below through the tally, never by the clock
            done = trio.Event()

            async def run_client() -> None:
                await trio.to_thread.run_sync(c.run)
                done.set()

            nursery.start_soon(run_client)
            await wait_until(lambda: c.tally.answered >= 5)
            assert (await h1.do("EVS1 IP", "IP Address", "offline")).ok  # the group leaves NODE1
            await wait_until(lambda: c.tally.outage_start_s is not None)
            assert (await h2.do("EVS1 IP", "IP Address", "online", ip, group="EVS1")).ok
            await wait_until(lambda: len(c.tally.outages) == 1 and c.tally.answered >= 10)
            c.duration_s = 0.0  # the loop ends at its next check
            await done.wait()

            lines = [json.loads(line) for line in out.getvalue().splitlines()]
            outage = next(x for x in lines if x["event"] == "outage")
            assert (outage["node_before"], outage["node_after"]) == ("NODE1", "NODE2")
            assert 0 < outage["length_s"] < 5
            summary = lines[-1]
            assert summary["event"] == "summary" and summary["nodes"] == ["NODE1", "NODE2"]
            nursery.cancel_scope.cancel()
