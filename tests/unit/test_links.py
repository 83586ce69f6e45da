"""LinkMonitor: interface states and events 1123/1122, who is heard, latest heartbeats."""

from __future__ import annotations

from typing import Any

import pytest

from nodeagent.config import ClusterConfig, Net, default_config_dict
from nodeagent.core.effects import Event
from nodeagent.core.links import LinkMonitor
from nodeagent.core.messages import Heartbeat
from nodeagent.core.snapshot import InterfaceState, InterfaceView

PRIV, PUB = Net.PRIVATE, Net.PUBLIC


def config(**networks: Any) -> ClusterConfig:
    data = default_config_dict(number=9, key=bytes(32), nodes=3)
    for net, values in networks.items():
        data["networks"][net].update(values)
    return ClusterConfig.from_dict(data)


CFG = config()
T = CFG.timing
FAIL = T.interface_failed_after_s  # 2 heartbeats: 0.24 s
DOWN = T.node_down_after_s  # 6 heartbeats: 0.72 s
EPS = 1e-9


def beat(seq: int, epoch: int = 1) -> Heartbeat:
    return Heartbeat(seq=seq, phase=3, epoch=epoch, members=(1, 2, 3), quorum_owner=1, paused=False)


def ids(events: list[Event]) -> list[tuple[int | None, str, str, str]]:
    """(event id, kind, peer, net) of each event."""
    return [(e.event_id, e.kind, e.fields["peer"], e.fields["net"]) for e in events]


def test_interface_fails_after_interface_misses_silent_intervals() -> None:
    lm = LinkMonitor(CFG, 1)
    assert lm.peers == (2, 3)
    assert lm.heard(2, PRIV, 10.0) == []
    assert lm.check(10.0 + FAIL - EPS) == []
    events = lm.check(10.0 + FAIL + EPS)
    assert ids(events) == [(1123, "interface_failed", "NODE2", "private")]
    assert "NODE1" in events[0].message and "NODE2" in events[0].message and "'Private'" in events[0].message
    assert lm.failed(2, PRIV)
    assert not lm.failed(2, PUB)
    assert lm.check(10.0 + 5) == []  # reported once


def test_heard_again_is_event_1122() -> None:
    lm = LinkMonitor(CFG, 1)
    lm.heard(3, PUB, 0.0)
    assert len(lm.check(1.0)) == 1
    events = lm.heard(3, PUB, 1.5)
    assert ids(events) == [(1122, "interface_up", "NODE3", "public")]
    assert "'Public'" in events[0].message
    assert not lm.failed(3, PUB)
    assert lm.heard(3, PUB, 1.6) == []  # only on the transition
    assert lm.check(1.6 + FAIL - EPS) == []
    assert len(lm.check(1.6 + FAIL + EPS)) == 1  # and it can fail again


def test_regular_heartbeats_never_fail_an_interface() -> None:
    lm = LinkMonitor(CFG, 2)
    events: list[Event] = []
    for i in range(100):
        now = i * T.heartbeat_interval_s
        for peer in (1, 3):
            for net in (PRIV, PUB):
                events += lm.heard(peer, net, now)
        events += lm.check(now + T.heartbeat_interval_s * 0.99)
    assert events == []


def test_interfaces_fail_independently_per_peer_and_network() -> None:
    lm = LinkMonitor(CFG, 1)
    for peer in (2, 3):
        for net in (PRIV, PUB):
            lm.heard(peer, net, 0.0)
    lm.heard(2, PUB, 0.2)
    lm.heard(3, PRIV, 0.2)
    lm.heard(3, PUB, 0.2)
    events = lm.check(FAIL + EPS)
    assert ids(events) == [(1123, "interface_failed", "NODE2", "private")]
    assert lm.hears(2, FAIL)  # the public network still carries its heartbeats


def test_a_never_heard_interface_raises_no_event() -> None:
    lm = LinkMonitor(CFG, 1)
    assert lm.check(100.0) == []
    assert not lm.hears(2, 100.0)


def test_hears_window() -> None:
    lm = LinkMonitor(CFG, 1)
    lm.heard(2, PUB, 5.0)
    assert lm.hears(2, 5.0)
    assert lm.hears(2, 5.0 + DOWN - EPS)
    assert not lm.hears(2, 5.0 + DOWN + EPS)
    assert lm.hears(2, 5.1, within_s=0.2)
    assert not lm.hears(2, 5.2 + EPS, within_s=0.2)
    assert not lm.hears(3, 5.0)


def test_hears_uses_the_newest_of_all_cluster_networks() -> None:
    lm = LinkMonitor(CFG, 1)
    lm.heard(2, PRIV, 0.0)
    lm.heard(2, PUB, 0.5)
    assert lm.hears(2, 0.5 + DOWN - EPS)
    assert not lm.hears(2, 0.5 + DOWN + EPS)


def test_a_client_only_network_does_not_count_for_hearing() -> None:
    cfg = config(public={"role": 2})
    lm = LinkMonitor(cfg, 1)
    lm.heard(2, PUB, 0.0)
    assert not lm.hears(2, 0.1)
    views = {(v.peer, v.net): v.state for v in lm.views(0.1)}
    assert views[(2, "public")] is InterfaceState.UNAVAILABLE


def test_heard_set() -> None:
    lm = LinkMonitor(CFG, 2)
    assert lm.heard_set(0.0) == (2,)
    lm.heard(3, PRIV, 0.0)
    lm.heard(1, PUB, 0.1)
    assert lm.heard_set(0.2) == (1, 2, 3)
    assert lm.heard_set(DOWN + EPS) == (1, 2)
    assert lm.heard_set(0.1 + DOWN + EPS) == (2,)


def test_record_beat_keeps_the_newest_by_incarnation_then_seq() -> None:
    lm = LinkMonitor(CFG, 1)
    lm.heard(2, PRIV, 0.0)
    lm.record_beat(2, 1, beat(5), 0.0)
    lm.record_beat(2, 1, beat(4, epoch=9), 0.1)  # late, out of order: ignored
    assert lm.beats[2].beat.seq == 5
    assert lm.beats[2].at_s == 0.0
    lm.record_beat(2, 1, beat(6), 0.2)
    assert lm.beats[2].beat.seq == 6
    lm.record_beat(2, 2, beat(1, epoch=0), 0.3)  # a restarted process counts from 1 again
    assert (lm.beats[2].incarnation, lm.beats[2].beat.seq) == (2, 1)
    lm.record_beat(2, 1, beat(99), 0.4)  # the old incarnation is gone
    assert lm.beats[2].incarnation == 2


def test_beat_of_only_while_heard() -> None:
    lm = LinkMonitor(CFG, 1)
    lm.heard(2, PRIV, 1.0)
    lm.record_beat(2, 1, beat(1), 1.0)
    assert lm.beat_of(2, 1.0) == beat(1)
    assert lm.beat_of(2, 1.0 + DOWN + EPS) is None
    assert lm.beat_of(3, 1.0) is None


def test_next_deadline() -> None:
    lm = LinkMonitor(CFG, 1)
    assert lm.next_deadline(0.0) is None
    lm.heard(2, PRIV, 1.0)
    assert lm.next_deadline(1.0) == pytest.approx(1.0 + FAIL)
    lm.check(1.0 + FAIL)
    assert lm.next_deadline(1.0 + FAIL) == pytest.approx(1.0 + DOWN)
    assert lm.next_deadline(1.0 + DOWN) is None


def test_forget_drops_everything() -> None:
    lm = LinkMonitor(CFG, 1)
    lm.heard(2, PRIV, 0.0)
    lm.record_beat(2, 1, beat(1), 0.0)
    lm.check(1.0)
    lm.forget()
    assert not lm.failed(2, PRIV)
    assert lm.beats == {}
    assert lm.heard_set(0.0) == (1,)
    assert lm.heard(2, PRIV, 2.0) == []  # no 1122: the failure was forgotten too


def test_views() -> None:
    lm = LinkMonitor(CFG, 1)
    lm.heard(2, PRIV, 0.0)
    lm.heard(2, PUB, 0.3)
    lm.heard(3, PRIV, 0.3)
    lm.check(0.3)
    views = {(v.peer, v.net): v for v in lm.views(0.3)}
    assert set(views) == {(2, "private"), (2, "public"), (3, "private"), (3, "public")}
    assert views[(2, "private")] == InterfaceView(2, "private", InterfaceState.FAILED, 0.0)
    assert views[(2, "public")] == InterfaceView(2, "public", InterfaceState.UP, 0.3)
    assert views[(3, "private")].state is InterfaceState.UP
    assert views[(3, "public")] == InterfaceView(3, "public", InterfaceState.UNREACHABLE, None)
    # Silent long enough but not yet checked: Unreachable, not Failed (failure is an event, from check).
    assert {v.net: v.state for v in lm.views(0.3 + FAIL) if v.peer == 3}[
        "private"
    ] is InterfaceState.UNREACHABLE


def test_the_deadline_it_asks_for_is_when_the_interface_fails_at_round_times() -> None:
    for at in (0.0, 1.0, 10.0):
        lm = LinkMonitor(CFG, 1)
        lm.heard(2, PRIV, at)
        due = lm.next_deadline(at)
        assert due is not None
        assert len(lm.check(due)) == 1
        due = lm.next_deadline(due)
        assert due is not None
        assert not lm.hears(2, due)


@pytest.mark.parametrize(("at", "which"), [(123.456, "interface"), (5.0, "node")])
def test_the_deadline_it_asks_for_is_when_the_interface_fails(at: float, which: str) -> None:
    lm = LinkMonitor(CFG, 1)
    lm.heard(2, PRIV, at)
    due = lm.next_deadline(at)
    assert due is not None
    if which == "interface":
        assert due == at + FAIL
        assert len(lm.check(due)) == 1, "no 1123 at the instant the monitor asked to be ticked"
    else:
        lm.check(due)
        due = lm.next_deadline(due)
        assert due == at + DOWN
        assert not lm.hears(2, due), "the peer is still heard at the instant the monitor asked for"


def test_usable_means_heard_and_not_failed() -> None:
    lm = LinkMonitor(CFG, 1)
    assert not lm.usable(2, PRIV)  # never heard: cluster traffic must not rely on it
    lm.heard(2, PRIV, 0.0)
    assert lm.usable(2, PRIV)
    assert not lm.usable(2, PUB)
    lm.check(FAIL + EPS)
    assert not lm.usable(2, PRIV)
    lm.heard(2, PRIV, 1.0)
    assert lm.usable(2, PRIV)
    lm.forget()
    assert not lm.usable(2, PRIV)
