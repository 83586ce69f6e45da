"""The resource monitor with emulated services: start-up time, log replay, FailMode, terminate, fail."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio
from test_resources_kit import Harness, make_config

from nodeagent.runtime.resources.monitor import ResourceMonitor

SMTP = "SMTP Virtual Server Instance"
STORE = "Microsoft Exchange Information Store"
DTC = "Distributed Transaction Coordinator"


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    monitor = ResourceMonitor(make_config(), "NODE1")
    harness = Harness(monitor)
    async with trio.open_nursery() as nursery:
        await nursery.start(monitor.run)
        yield harness
        nursery.cancel_scope.cancel()


async def test_online_takes_the_startup_time_then_answers_health_checks(h: Harness) -> None:
    with trio.fail_after(5):
        began = trio.current_time()
        token = h.act("SMTP", SMTP, "online", {"StartupTime": 0.3})
        while h.monitor.state_of("SMTP") != "Online Pending":
            await trio.sleep(0.005)
        assert not h.reports
        report = await h.report(token)
        assert report.ok and report.action == "online" and "service SMTP started" in report.detail
        assert trio.current_time() - began >= 0.3
        assert h.monitor.state_of("SMTP") == "Online"
        assert (await h.do("SMTP", SMTP, "looks_alive")).ok
        assert (await h.do("SMTP", SMTP, "is_alive")).ok
        offline = await h.do("SMTP", SMTP, "offline")
        assert offline.ok and h.monitor.state_of("SMTP") == "Offline"
        probe = await h.do("SMTP", SMTP, "looks_alive")
        assert not probe.ok and probe.detail == "not online (Offline)"


async def test_information_store_replays_its_log_backlog(h: Harness) -> None:
    with trio.fail_after(5):
        began = trio.current_time()
        props = {"StartupTime": 0.1, "LogBacklog": 8, "LogReplayTime": 0.05}
        report = await h.do("IS", STORE, "online", props)
        assert report.ok and "replayed 8 transaction logs" in report.detail
        assert trio.current_time() - began >= 0.1 + 8 * 0.05


async def test_resources_run_in_parallel_and_each_ones_actions_in_order(h: Harness) -> None:
    with trio.fail_after(5):
        began = trio.current_time()
        first = h.act("SA", "Microsoft Exchange System Attendant", "online", {"StartupTime": 0.4})
        second = h.act("DTC", DTC, "online", {"StartupTime": 0.4})
        queued = h.act("SA", "Microsoft Exchange System Attendant", "offline")
        await h.report(queued)
        assert [r.token for r in h.reports if r.resource == "SA"] == [first, queued]
        await h.report(second)
        assert trio.current_time() - began < 0.75  # in parallel, not 0.8 s one after the other


async def test_failmode_once_fails_the_next_online_only(h: Harness) -> None:
    with trio.fail_after(5):
        props = {"StartupTime": 0.05, "FailMode": "once"}
        first = await h.do("POP3", "POP3 Virtual Server Instance", "online", props)
        assert not first.ok and first.detail == "service POP3 failed to start (FailMode once)"
        assert h.monitor.state_of("POP3") == "Failed"
        assert (await h.do("POP3", "POP3 Virtual Server Instance", "online", props)).ok


async def test_failmode_always_fails_every_online(h: Harness) -> None:
    with trio.fail_after(5):
        props = {"StartupTime": 0.0, "FailMode": "always", "Service": "imap"}
        for _ in range(3):
            report = await h.do("IMAP4", "IMAP4 Virtual Server Instance", "online", props)
            assert not report.ok and report.detail == "service IMAP failed to start (FailMode always)"


async def test_terminate_of_a_hanging_online_is_quick_and_always_ok(h: Harness) -> None:
    with trio.fail_after(5):
        online = h.act("MTA", "Microsoft Exchange Message Transfer Agent", "online", {"FailMode": "hang"})
        waiting = h.act("MTA", "Microsoft Exchange Message Transfer Agent", "looks_alive")
        await trio.sleep(0.1)
        assert h.monitor.state_of("MTA") == "Online Pending" and not h.reports
        began = trio.current_time()
        terminate = await h.do("MTA", "Microsoft Exchange Message Transfer Agent", "terminate")
        assert terminate.ok and trio.current_time() - began < 0.5
        by_token = {r.token: r for r in h.reports}
        assert not by_token[online].ok and by_token[online].detail == "online cancelled by terminate"
        assert not by_token[waiting].ok and by_token[waiting].detail == "superseded by terminate"
        assert [r.token for r in h.reports] == [waiting, online, terminate.token]
        assert h.monitor.state_of("MTA") == "Offline"


async def test_fail_on_demand_sends_an_unsolicited_failed_report(h: Harness) -> None:
    with trio.fail_after(5):
        assert (await h.do("HTTP", "HTTP Virtual Server Instance", "online", {"StartupTime": 0.0})).ok
        assert h.monitor.fail("HTTP")
        failed = await h.failed("HTTP")
        assert failed.token == 0 and not failed.ok and "on demand" in failed.detail
        assert h.monitor.state_of("HTTP") == "Failed"
        assert not (await h.do("HTTP", "HTTP Virtual Server Instance", "looks_alive")).ok
        assert not h.monitor.fail("HTTP")  # not online any more
        # The core restarts it: a fresh online works.
        assert (await h.do("HTTP", "HTTP Virtual Server Instance", "online", {"StartupTime": 0.0})).ok
        # The same through an action (how the core may route cluster resource /fail).
        via_action = await h.do("HTTP", "HTTP Virtual Server Instance", "fail")
        assert via_action.ok
        assert len([r for r in h.reports if r.action == "failed"]) == 2
        offline = await h.do("HTTP", "HTTP Virtual Server Instance", "offline")
        assert offline.ok and h.monitor.state_of("HTTP") == "Offline"


async def test_online_past_the_monitors_own_bound_fails_and_cleans_up() -> None:
    with trio.fail_after(5):
        monitor = ResourceMonitor(make_config(), "NODE1")
        h = Harness(monitor)
        async with trio.open_nursery() as nursery:
            await nursery.start(monitor.run)
            # StartupTime 0 makes the bound 30 s; mock_clock is not in use here, so shrink it instead.
            from nodeagent.runtime.resources import services

            orig = services.EmulatedService.online_timeout_s
            services.EmulatedService.online_timeout_s = lambda self: 0.2  # type: ignore[method-assign]
            try:
                report = await h.do("SEARCH", "Microsoft Search", "online", {"FailMode": "hang"})
            finally:
                services.EmulatedService.online_timeout_s = orig  # type: ignore[method-assign]
            assert not report.ok and report.detail == "online did not finish within 0.2 s"
            assert monitor.state_of("SEARCH") == "Failed"
            nursery.cancel_scope.cancel()


async def test_idle_returns_once_every_action_has_been_answered(h: Harness) -> None:
    with trio.fail_after(5):
        await h.monitor.idle()  # nothing to do
        tokens = [h.act(f"S{i}", DTC, "online", {"StartupTime": 0.05 * i}) for i in range(4)]
        h.act("S0", DTC, "terminate")
        await h.monitor.idle()
        assert {r.token for r in h.reports} >= set(tokens)
        assert len(h.reports) == 5
