"""Heartbeat bookkeeping: per-interface states (events 1122/1123) and who this node still hears.

Theory of operation
-------------------
Every node sends a heartbeat on every cluster network (role 1 or 3) to every other node each
``heartbeat_interval_s``. For each (peer, network) pair this module remembers when a heartbeat (or
any cluster datagram) last arrived. An interface is Up while it was heard within
``interface_misses`` intervals, Failed after that (event 1123), and Up again when heard (event 1122).
A peer is *heard* while any of its cluster interfaces was heard within ``heartbeat_misses``
intervals; a member that is no longer heard is declared down by the membership logic (node.py).
The last heartbeat from each peer is kept too: it tells its phase, epoch and quorum owner.
"""

from __future__ import annotations

from dataclasses import dataclass

from nodeagent.config import ClusterConfig, Net
from nodeagent.core.effects import Event
from nodeagent.core.events import event
from nodeagent.core.messages import Heartbeat
from nodeagent.core.snapshot import InterfaceState, InterfaceView


@dataclass(frozen=True, slots=True)
class PeerBeat:
    """The latest heartbeat from one peer, with the incarnation it came from."""

    incarnation: int
    beat: Heartbeat
    at_s: float


class LinkMonitor:
    def __init__(self, config: ClusterConfig, node_id: int) -> None:
        self._config = config
        self._timing = config.timing
        self._node_id = node_id
        self._nets = config.cluster_nets()
        self.peers = tuple(n for n in config.node_ids if n != node_id)
        self._last_heard: dict[tuple[int, Net], float] = {}
        self._failed: set[tuple[int, Net]] = set()
        self.beats: dict[int, PeerBeat] = {}

    def heard(self, peer: int, net: Net, now_s: float) -> list[Event]:
        """Any authenticated datagram from ``peer`` on ``net`` counts as a heartbeat."""
        events = []
        key = (peer, net)
        if key in self._failed:
            # Failed -> Up
            self._failed.discard(key)
            events.append(self._event(peer, net, up=True))
        self._last_heard[key] = now_s
        return events

    def record_beat(self, peer: int, incarnation: int, beat: Heartbeat, now_s: float) -> None:
        old = self.beats.get(peer)
        # Datagrams may arrive out of order: keep the newest by (incarnation, seq).
        if old is None or (incarnation, beat.seq) >= (old.incarnation, old.beat.seq):
            self.beats[peer] = PeerBeat(incarnation, beat, now_s)

    def check(self, now_s: float) -> list[Event]:
        """Mark interfaces silent for ``interface_misses`` heartbeats as Failed (event 1123)."""
        events = []
        limit = self._timing.interface_failed_after_s
        for key, at in self._last_heard.items():
            if key not in self._failed and now_s >= at + limit:
                # Up -> Failed
                self._failed.add(key)
                events.append(self._event(key[0], key[1], up=False))
        return events

    def hears(self, peer: int, now_s: float, within_s: float | None = None) -> bool:
        window = self._timing.node_down_after_s if within_s is None else within_s
        # Compare against the same sum next_deadline() asks for, so the tick at the deadline sees it.
        return any(now_s < self._last_heard.get((peer, net), -1e18) + window for net in self._nets)

    def heard_set(self, now_s: float) -> tuple[int, ...]:
        """This node and every peer it hears, sorted."""
        return tuple(sorted([self._node_id, *(p for p in self.peers if self.hears(p, now_s))]))

    def failed(self, peer: int, net: Net) -> bool:
        return (peer, net) in self._failed

    def usable(self, peer: int, net: Net) -> bool:
        """Heard on this interface, and not declared failed since."""
        return (peer, net) in self._last_heard and (peer, net) not in self._failed

    def beat_of(self, peer: int, now_s: float) -> Heartbeat | None:
        """The peer's latest heartbeat, if the peer is still heard."""
        pb = self.beats.get(peer)
        if pb is None or not self.hears(peer, now_s):
            return None
        return pb.beat

    def next_deadline(self, now_s: float) -> float | None:
        """The next instant an interface may fail or a peer may stop being heard."""
        t = self._timing
        best: float | None = None
        for at in self._last_heard.values():
            for limit in (t.interface_failed_after_s, t.node_down_after_s):
                due = at + limit
                if due > now_s and (best is None or due < best):
                    best = due
        return best

    def last_heard_s(self, peer: int) -> float | None:
        """When anything was last heard from ``peer`` on any network (None: never, since the last forget)."""
        times = [at for (p, _), at in self._last_heard.items() if p == peer]
        return max(times) if times else None

    def forget(self) -> None:
        """Drop everything heard (the cluster service restarts after a halt)."""
        self._last_heard.clear()
        self._failed.clear()
        self.beats.clear()

    def views(self, now_s: float) -> tuple[InterfaceView, ...]:
        out = []
        for peer in self.peers:
            for netcfg in self._config.networks:
                net = netcfg.net
                at = self._last_heard.get((peer, net))
                if not netcfg.role.carries_cluster_traffic:
                    state = InterfaceState.UNAVAILABLE
                elif (peer, net) in self._failed:
                    state = InterfaceState.FAILED
                elif at is not None and now_s < at + self._timing.interface_failed_after_s:
                    state = InterfaceState.UP
                else:
                    state = InterfaceState.UNREACHABLE
                out.append(InterfaceView(peer=peer, net=net.label, state=state, last_heard_s=at))
        return tuple(out)

    def _event(self, peer: int, net: Net, *, up: bool) -> Event:
        return event(
            "interface_up" if up else "interface_failed",
            self._config.node(self._node_id).name,
            peer=self._config.node(peer).name,
            net=net.label,
            network=self._config.network(net).name,
        )
