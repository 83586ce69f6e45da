"""NodeCore: one node's cluster service (membership and quorum) as a pure state machine.

Theory of operation
-------------------
Phases (``Phase`` in messages.py) and their transitions::

    start -> JOINING --(a Commit that includes us)--------------------------> MEMBER
             JOINING --(join_timeout_s, no member heard, lowest joiner)-----> ARBITRATING (disk)
                                                                         or  a proposal (majority)
    ARBITRATING --(quorum disk won, membership committed)------------------> MEMBER
    ARBITRATING --(challenge lost)-----------------------------------------> HALTED
    MEMBER --(a member not heard for heartbeat_misses beats, a Leave, a vote)-> REGROUPING
    REGROUPING --(coordinator commits a membership with us)----------------> MEMBER
    REGROUPING --(pruned, no commit in time, challenge lost, no majority)--> HALTED
    MEMBER --(quorum renewal failed / lease expired; pruned)----------------> HALTED
    HALTED --(restart_delay_s: the service restarts itself)----------------> JOINING
    any --(operator stop)---------------------------------------------------> STOPPED

A node joins only through the quorum owner (it answers ``JoinRequest``), and forms a cluster only by
winning the quorum (disk: ``QuorumArbiter``; Majority Node Set: a majority of the configured nodes
acking its proposal). Regroup and proposals are explained in regroup.py, arbitration and the quorum
lease in quorum.py, heartbeats and interface states in links.py.

Every public method takes ``now_s`` and returns a ``Ready``; nothing here reads a clock or does I/O.
Cluster messages go on the first cluster network (by priority) on which the peer is heard and not
failed, falling back to every cluster network when there is none, as MSCS does; heartbeats go on every
cluster network.
"""

from __future__ import annotations

from nodeagent.config import Net
from nodeagent.core import admin
from nodeagent.core.effects import DiskOutcome, DiskResult, Ready, Send
from nodeagent.core.membership import IN_CLUSTER
from nodeagent.core.messages import (
    Ack,
    Commit,
    Heartbeat,
    JoinRequest,
    Leave,
    Message,
    Phase,
    Propose,
    RegroupVote,
)
from nodeagent.core.quorum import ArbiterOutput, Notice
from nodeagent.core.record import MembershipRecord
from nodeagent.core.regroup import Regroup, largest_clique
from nodeagent.core.services import ServicesCore
from nodeagent.core.snapshot import NodeSnapshot, NodeState
from nodeagent.errors import RemoteProtocolError

_LIVE_PHASES = (Phase.JOINING, Phase.ARBITRATING, Phase.MEMBER, Phase.REGROUPING)
_PHASES = frozenset(int(p) for p in Phase)
_BEATS_REMEMBERED = 64  # send times kept for the leader lease (8 s of beats at speed 10)
_NEVER = float("-inf")


class NodeCore(ServicesCore):
    _last_call_s: float | None = None  # the latest call into the core (stall detection)
    _stall_ended_s: float = _NEVER

    # == public surface ===============================================================================
    def start(self, now_s: float) -> Ready:
        self._emit("service_started", incarnation=self.incarnation, known_epoch=self.known_epoch)
        self._enter_joining(now_s)
        self._progress(now_s)
        return self._finish(now_s)

    def on_message(self, net: Net, sender: int, incarnation: int, msg: Message, now_s: float) -> Ready:
        if self.phase not in _LIVE_PHASES or sender == self.node_id or sender not in self.config.node_ids:
            return self._finish(now_s)
        if self._stood_still(now_s):
            return self._finish(now_s)
        if now_s >= self._stall_ended_s + self._t.heartbeat_interval_s / 2:  # not queued during a stall
            self._ready.events.extend(self.links.heard(sender, net, now_s))
        if isinstance(msg, Heartbeat):
            if msg.phase not in _PHASES:
                return self._finish(now_s)
            self.links.record_beat(sender, incarnation, msg, now_s)
            self._on_beat_version(sender, msg.db_version, now_s)
            if sender == self.quorum_owner:
                same = (sender, incarnation) == self._owner_life
                self._owner_seq = max(self._owner_seq, msg.seq) if same else msg.seq
                self._owner_life = (sender, incarnation)
            self._on_heartbeat(sender, msg, now_s)
        elif isinstance(msg, JoinRequest):
            self._on_join_request(sender, now_s)
        elif isinstance(msg, RegroupVote):
            self._on_vote(sender, msg, now_s)
        elif isinstance(msg, Propose):
            self._on_propose(sender, msg, now_s)
        elif isinstance(msg, Ack):
            self._on_ack(sender, msg, now_s)
        elif isinstance(msg, Commit):
            self._on_commit(msg, now_s)
        elif isinstance(msg, Leave):
            self._on_leave(sender, msg, now_s)
        elif self.phase in IN_CLUSTER:
            try:
                self._on_service_message(sender, msg, now_s)
            except RemoteProtocolError as e:
                self._emit("bad_message", sender=self.config.node(sender).name, reason=str(e))
        self._progress(now_s)
        return self._finish(now_s)

    def on_disk_result(self, result: DiskResult, now_s: float) -> Ready:
        if self.arbiter is not None and self.arbiter.owns(result.op_id):
            self._on_arbiter(self.arbiter.on_result(result, now_s), now_s)
        elif result.op_id == self._checkpoint_read:
            self._on_checkpoint(result)
        elif result.op_id in self._checkpoint_writes:
            self._on_checkpoint_written(result)
        elif self._proposal is not None and result.op_id == self._proposal.record_op:
            if result.outcome == DiskOutcome.OK:
                self._commit(now_s)
            else:
                self._halt(
                    now_s,
                    f"the membership record could not be written ({result.outcome.value}"
                    + (f", held by {result.holder})" if result.holder else ")"),
                )
        self._progress(now_s)
        return self._finish(now_s)

    def on_tick(self, now_s: float) -> Ready:
        self._progress(now_s)
        return self._finish(now_s)

    def stop(self, now_s: float) -> Ready:
        if self.phase in IN_CLUSTER:
            for peer in self.members:
                if peer != self.node_id:
                    self._send_all_nets(peer, Leave(self.epoch))
        was = self.phase
        if self.phase in IN_CLUSTER:
            self._stop_services()
        # any -> STOPPED
        self.phase = Phase.STOPPED
        self._proposal = None
        self._regroup = None
        self._emit("service_stopped", was=was.name)
        if self.arbiter is not None:
            out = self.arbiter.release(now_s)
            self._ready.disk_ops.extend(out.ops)
            if out.notice == Notice.RELEASED:
                self._ready.exit = True
            else:
                self._exit_when_released = True
        else:
            self._ready.exit = True
        return self._finish(now_s)

    def set_paused(self, paused: bool, now_s: float) -> Ready:
        # Pause is cluster state (the database), as `cluster node /pause`: ask the quorum owner.
        return self.on_admin(0, "node.pause" if paused else "node.resume", {"node": self.name}, now_s)

    @property
    def paused(self) -> bool:
        return self.name in self.db.paused

    def _has_quorum(self, now_s: float) -> bool:
        return self.holds_quorum(now_s)

    def holds_quorum(self, now_s: float) -> bool:
        if self.phase not in _LIVE_PHASES:
            return False
        if self.arbiter is not None:
            return self.arbiter.holds_quorum(now_s)
        if self.phase not in IN_CLUSTER or self.quorum_owner != self.node_id:
            return False
        # The leader's lease, judged on its own clock: a majority (itself included) whose latest
        # heartbeat echoes one of the leader's heartbeats sent within the window. Heartbeats that
        # waited in a socket buffer while the leader was frozen echo old beats, so they do not count.
        # Three intervals: an echo reaches the leader up to two intervals plus a network delay after
        # the beat it echoes was sent; still far inside the six intervals the others need to detect it.
        oldest = now_s - 3 * self._t.heartbeat_interval_s
        following = 0
        for m in self.members:
            pb = self.links.beats.get(m)
            if (
                m != self.node_id
                and pb is not None
                and pb.beat.epoch == self.epoch
                and pb.beat.quorum_owner == self.node_id
                and self._beat_sent_s.get(pb.beat.owner_seq, -1e18) > oldest
            ):
                following += 1
        return following + 1 >= self.config.majority

    def snapshot(self, now_s: float) -> NodeSnapshot:
        states = {n: self._view_of(n, now_s) for n in self.config.node_ids}
        return NodeSnapshot(
            node_id=self.node_id,
            name=self.name,
            incarnation=self.incarnation,
            phase=self.phase.name,
            own_state=states[self.node_id],
            epoch=self.epoch,
            members=self.members,
            quorum_owner=self.quorum_owner,
            holds_quorum=self.holds_quorum(now_s),
            paused=self.paused,
            node_states=states,
            interfaces=self.links.views(now_s),
            counters=dict(self.counters),
            db_version=self.db.version,
            groups=tuple(admin.describe_group(self.db, g) for g in self.db.groups.values()),
        )

    # == the clock ====================================================================================
    def _progress(self, now_s: float) -> None:
        """Everything that depends on time passing; safe to call at any instant."""
        if self.phase == Phase.HALTED:
            if self._restart_at_s is not None and now_s >= self._restart_at_s:
                self._emit("service_restarting")
                self._enter_joining(now_s)
            return
        if self.phase not in _LIVE_PHASES:
            return
        if self._stood_still(now_s):
            return
        self._ready.events.extend(self.links.check(now_s))
        if self.arbiter is not None:
            self._on_arbiter(self.arbiter.on_tick(now_s), now_s)
            if self.phase not in _LIVE_PHASES:
                return
        if now_s >= self._next_beat_s:
            self._next_beat_s = max(self._next_beat_s + self._t.heartbeat_interval_s, now_s)
            self._send_beats(now_s)
        if self.phase == Phase.JOINING and now_s >= self._join_deadline_s:
            self._try_form(now_s)
        if self.phase == Phase.MEMBER:
            self._detect_failures(now_s)
        if self.phase == Phase.REGROUPING:
            self._regroup_progress(now_s)
        if self._proposal is not None and now_s >= self._proposal.deadline_s:
            self._proposal_timed_out(now_s)
        self._services_step(now_s)

    def _finish(self, now_s: float) -> Ready:
        ready, self._ready = self._ready, Ready()
        ready.next_deadline_s = self._next_deadline(now_s)
        return ready

    def _next_deadline(self, now_s: float) -> float | None:
        if self.phase == Phase.HALTED:
            return self._restart_at_s
        if self.phase not in _LIVE_PHASES:
            return self.arbiter.next_deadline() if self.arbiter is not None else None
        times = [self._next_beat_s]
        for t in (
            self.links.next_deadline(now_s),
            self.arbiter.next_deadline() if self.arbiter is not None else None,
            self._join_deadline_s if self.phase == Phase.JOINING else None,
            self._proposal.deadline_s if self._proposal is not None else None,
            self.rm.next_deadline() if self.phase in IN_CLUSTER else None,
            self._services_deadline(now_s) if self.phase in IN_CLUSTER else None,
        ):
            if t is not None:
                times.append(t)
        rg = self._regroup
        if rg is not None and rg.coordinator is None:
            times.append(rg.activity_end_s)
        elif rg is not None and rg.wait_until_s is not None and self._proposal is None:
            times.append(rg.wait_until_s)  # while a proposal runs, its own deadline governs
        return min(times)

    # == sending ======================================================================================
    def _send_beats(self, now_s: float) -> None:
        self._beat_seq += 1
        self._beat_sent_s[self._beat_seq] = now_s
        self._beat_sent_s.pop(self._beat_seq - _BEATS_REMEMBERED, None)
        beat = Heartbeat(
            seq=self._beat_seq,
            phase=int(self.phase),
            epoch=self.epoch if self.phase in IN_CLUSTER else self.known_epoch,
            members=self.members if self.phase in IN_CLUSTER else (),
            quorum_owner=self.quorum_owner or 0,
            paused=self.paused,
            db_version=self.db.version,
            owner_seq=self._owner_seq,
        )
        for peer in self.links.peers:
            for net in self._nets:
                self._ready.sends.append(Send(net, peer, beat))
        if self.phase == Phase.JOINING:
            for peer in self.links.peers:
                self._send(peer, JoinRequest(self.known_epoch))
        if self._regroup is not None and self._regroup.coordinator is None:
            vote = RegroupVote(self.epoch, self._regroup.round, self._hears(now_s), self.quorum_owner or 0)
            for peer in self.links.peers:
                self._send(peer, vote)
        if self._proposal is not None and self._proposal.record_op is None:
            self._send_proposal(self._proposal)

    def _hears(self, now_s: float) -> tuple[int, ...]:
        return tuple(n for n in self.links.heard_set(now_s) if n not in self._departed)

    # == joining and forming ==========================================================================
    def _enter_joining(self, now_s: float) -> None:
        # (start | HALTED) -> JOINING
        self.phase = Phase.JOINING
        self._restart_at_s = None
        self.members = ()
        self.quorum_owner = None
        self._join_deadline_s = now_s + self._t.join_timeout_s
        self._next_beat_s = now_s

    def _joiners_heard(self, now_s: float) -> list[int]:
        out = []
        for peer in self.links.peers:
            beat = self.links.beat_of(peer, now_s)
            if beat is not None and beat.phase in (Phase.JOINING, Phase.ARBITRATING):
                out.append(peer)
        return out

    def _members_heard(self, now_s: float) -> list[int]:
        out = []
        for peer in self.links.peers:
            beat = self.links.beat_of(peer, now_s)
            if beat is not None and beat.phase in IN_CLUSTER:
                out.append(peer)
        return out

    def _try_form(self, now_s: float) -> None:
        """No cluster answered in join_timeout_s: the lowest-id joiner we hear tries to form one."""
        self._join_deadline_s = now_s + self._t.heartbeat_interval_s  # look again next beat
        if self._members_heard(now_s) or self._proposal is not None:
            return  # a cluster exists: keep asking its quorum owner to let us in
        joiners = self._joiners_heard(now_s)
        if any(j < self.node_id for j in joiners):
            return  # a lower node forms; we join it
        if self.arbiter is not None:
            # JOINING -> ARBITRATING
            self.phase = Phase.ARBITRATING
            self._emit("arbitration_started", disk=self.config.quorum_disk, reason="to form the cluster")
            self._on_arbiter(self.arbiter.challenge(now_s), now_s)
            return
        members = tuple(sorted((self.node_id, *joiners)))
        if len(members) >= self.config.majority:
            self._propose(now_s, members, base_epoch=self.known_epoch)

    def _on_join_request(self, sender: int, now_s: float) -> None:
        if self.phase != Phase.MEMBER or self.quorum_owner != self.node_id or sender in self.members:
            return
        if not self.holds_quorum(now_s):
            return
        self._joiners.add(sender)
        if self._proposal is None:
            self._propose(now_s, tuple(sorted({*self.members, *self._joiners})), base_epoch=self.epoch)

    def _stood_still(self, now_s: float) -> bool:
        """Notice a stall; halt a member whose process stood still longer than the others wait for it.

        A running node is called at least every heartbeat interval; a gap of more than two means the
        process was not running (frozen, stopped, starved). What the socket queued meanwhile is old
        news: datagrams handled in the first half interval after a stall still deliver their content,
        but they do not count as hearing the peer (on_message). Otherwise a node thawed after a short
        freeze would believe it heard the cluster just now, detect a partition that began during the
        freeze a whole freeze later than the others, and keep its groups past the fence (failover.py).
        After a stall longer than the others wait before declaring it down, it has been removed, and
        its groups may be starting elsewhere: it halts before doing anything else.
        """
        stall = 0.0
        if self._last_call_s is not None and now_s - self._last_call_s > 2 * self._t.heartbeat_interval_s:
            stall, self._stall_ended_s = now_s - self._last_call_s, now_s
        self._last_call_s = now_s
        if self.phase in IN_CLUSTER and stall > self._t.node_down_after_s:
            down = self._t.node_down_after_s
            self._halt(
                now_s,
                f"this node stood still for {stall:.3f} s; others declare a node down after {down:.3f} s",
            )
            return True
        return False

    # == heartbeats and failure detection =============================================================
    def _on_heartbeat(self, sender: int, beat: Heartbeat, now_s: float) -> None:
        if (
            self.phase in IN_CLUSTER
            and beat.phase in IN_CLUSTER
            and beat.epoch > self.epoch
            and self.node_id not in beat.members
        ):
            name = self.config.node(sender).name
            self._halt(now_s, f"pruned: {name} is in epoch {beat.epoch}, which does not include this node")
            return
        i_own = self.phase in IN_CLUSTER and self.quorum_owner == self.node_id
        if i_own and sender in self.members and beat.phase in IN_CLUSTER and beat.epoch < self.epoch:
            self._send(sender, self._current_commit())  # it missed our commit: say it again

    def _detect_failures(self, now_s: float) -> None:
        for m in self.members:
            if m == self.node_id:
                continue
            why = self._member_gone(m, now_s)
            if why:
                self._start_regroup(now_s, self._regroup_round + 1, why)
                return

    def _member_gone(self, m: int, now_s: float) -> str:
        name = self.config.node(m).name
        if m in self._departed:
            return f"{name} left the cluster"
        if not self.links.hears(m, now_s) and now_s - self._installed_s >= self._t.node_down_after_s:
            # (a member we only just learned of gets a full detection window from the install)
            return f"{name} missed {self._t.heartbeat_misses} heartbeats on every cluster network"
        pb = self.links.beats.get(m)
        if pb is None:
            return ""
        if pb.incarnation > self.incarnations.get(m, pb.incarnation):
            return f"{name} restarted (incarnation {pb.incarnation})"
        grace = self._installed_s + self._t.heartbeat_interval_s
        if pb.at_s > grace and pb.beat.phase not in IN_CLUSTER:
            return f"{name} is no longer in the cluster ({Phase(pb.beat.phase).name})"
        return ""

    def _on_leave(self, sender: int, msg: Leave, now_s: float) -> None:
        if self.phase in IN_CLUSTER and sender in self.members and msg.epoch == self.epoch:
            self._departed.add(sender)
            if self.phase == Phase.MEMBER:
                self._start_regroup(now_s, self._regroup_round + 1, f"{self.config.node(sender).name} left")

    # == regroup =======================================================================================
    def _start_regroup(self, now_s: float, round_: int, reason: str) -> None:
        if self._regroup is not None and round_ <= self._regroup.round:
            return
        first = self.phase == Phase.MEMBER
        # MEMBER -> REGROUPING (or a new round of an ongoing regroup)
        self.phase = Phase.REGROUPING
        self._regroup_round = round_
        self._proposal = None
        self._regroup = Regroup(round_, now_s, now_s + self._t.regroup_activity_s, reason)
        self._regroup.votes[self.node_id] = self._hears(now_s)
        if first:
            self.counters["regroups"] += 1
            self._emit("regroup_started", epoch=self.epoch, round=round_, reason=reason)
        vote = RegroupVote(self.epoch, round_, self._regroup.votes[self.node_id], self.quorum_owner or 0)
        for peer in self.links.peers:
            self._send(peer, vote)

    def _on_vote(self, sender: int, vote: RegroupVote, now_s: float) -> None:
        if self.phase not in IN_CLUSTER:
            return
        if vote.epoch < self.epoch and sender in self.members and self.quorum_owner == self.node_id:
            self._send(sender, self._current_commit())
            return
        if vote.epoch != self.epoch or sender not in self.members:
            return
        if self._regroup is None or vote.round > self._regroup.round:
            self._start_regroup(now_s, vote.round, f"{self.config.node(sender).name} asked for a regroup")
        rg = self._regroup
        if rg is not None and vote.round == rg.round and rg.coordinator is None:
            rg.votes[sender] = vote.hears

    def _regroup_progress(self, now_s: float) -> None:
        rg = self._regroup
        if rg is None:
            return
        if rg.coordinator is None and now_s >= rg.activity_end_s:
            self._close_regroup(now_s, rg)
        elif rg.coordinator is not None and rg.coordinator != self.node_id and self._proposal is None:
            who = self.config.node(rg.coordinator).name
            gone = self._member_gone(rg.coordinator, now_s)
            if gone:
                self._halt(now_s, f"the regroup coordinator is gone: {gone}")
            elif rg.wait_until_s is not None and now_s >= rg.wait_until_s:
                self._halt(now_s, f"no membership was committed by the regroup coordinator {who}")
        elif rg.wait_until_s is not None and now_s >= rg.wait_until_s and self._proposal is None:
            self._halt(now_s, "this node could not complete the regroup it coordinates")

    def _close_regroup(self, now_s: float, rg: Regroup) -> None:
        partition = sorted(rg.votes)
        owner = self.quorum_owner
        if self.arbiter is not None and owner in partition and owner is not None:
            coordinator = owner
        else:
            coordinator = partition[0]
        rg.coordinator = coordinator
        slack = self._t.regroup_stage_timeout_s * 2
        if self.arbiter is not None and coordinator != owner:
            slack += self._t.challenge_takeover_s
        rg.wait_until_s = now_s + slack
        if coordinator != self.node_id:
            return
        rg.candidate = tuple(m for m in largest_clique(self.node_id, rg.votes) if m in self.members)
        if self.arbiter is None:
            if len(rg.candidate) < self.config.majority:
                self._halt(
                    now_s,
                    f"Majority Node Set: only {len(rg.candidate)} of {len(self.config.nodes)} "
                    f"nodes can communicate, {self.config.majority} are needed",
                )
                return
            self._propose(now_s, rg.candidate, base_epoch=self.epoch)
        elif coordinator == owner:
            if not self.arbiter.lease_valid(now_s):
                self._halt(now_s, "the quorum owner's reservation lease expired")
                return
            self._propose(now_s, rg.candidate, base_epoch=self.epoch)
        else:
            name = self.config.node(owner).name if owner else "unknown"
            self._emit("arbitration_started", disk=self.config.quorum_disk, reason=f"challenging {name}")
            self.arbiter.abandon()  # a challenge left from an earlier round starts over
            self._on_arbiter(self.arbiter.challenge(now_s), now_s)

    # == quorum arbitration outcomes ==================================================================
    def _on_arbiter(self, out: ArbiterOutput, now_s: float) -> None:
        self._ready.disk_ops.extend(out.ops)
        if out.notice is None:
            return
        if out.notice == Notice.RELEASED:
            if self._exit_when_released:
                self._ready.exit = True
            return
        if self.phase not in _LIVE_PHASES:
            return
        if out.notice == Notice.WON:
            self.counters["arbitrations_won"] += 1
            assert self.arbiter is not None
            record = MembershipRecord.decode(self.arbiter.record)
            waited_s = round(now_s - self.arbiter.challenge_started_s, 6)
            disk = self.config.quorum_disk
            self._emit("arbitration_won", disk=disk, disk_epoch=record.epoch, waited_s=waited_s)
            self._emit("quorum_online", disk=disk)
            self._read_checkpoint()
            base = max(record.epoch, self.epoch, self.known_epoch)
            if self.phase == Phase.ARBITRATING:
                members = tuple(sorted((self.node_id, *self._joiners_heard(now_s))))
            elif self._regroup is not None and self._regroup.candidate:
                members = self._regroup.candidate
            else:
                members = (self.node_id,)
            self.quorum_owner = self.node_id
            self._propose(now_s, members, base_epoch=base)
        elif out.notice == Notice.LOST:
            self.counters["arbitrations_lost"] += 1
            self._emit("arbitration_lost", disk=self.config.quorum_disk, reason=out.reason)
            self._halt(now_s, f"another node defends the quorum disk ({out.reason})")
        elif out.notice == Notice.DEFENSE_LOST:
            self._halt(now_s, f"this node lost the quorum disk: {out.reason}")

    # == halting =======================================================================================
    def _halt(self, now_s: float, reason: str) -> None:
        if self.phase not in _LIVE_PHASES:
            return
        self._stop_services()
        # (any live phase) -> HALTED
        self.phase = Phase.HALTED
        self.counters["halts"] += 1
        if self.arbiter is not None:
            self.arbiter.abandon()
        self._proposal = None
        self._regroup = None
        self._joiners.clear()
        self._departed.clear()
        self.members = ()
        self.quorum_owner = None
        # One last heartbeat says HALTED: partition mates waiting on us stop waiting, and the failover
        # manager knows at once that our groups are stopped (services.py, fencing).
        self._send_beats(now_s)
        self.links.forget()
        self._restart_at_s = now_s + self._t.restart_delay_s
        self._emit("halted", reason=reason, restart_s=round(self._t.restart_delay_s, 6))

    # == status ========================================================================================
    def _view_of(self, node: int, now_s: float) -> NodeState:
        if node == self.node_id:
            return _own_state(self.phase, self.paused)
        beat = self.links.beat_of(node, now_s)
        if self.phase in IN_CLUSTER and node in self.members:
            if self._member_gone(node, now_s):
                return NodeState.DOWN
            paused = self.config.node(node).name in self.db.paused or (beat is not None and beat.paused)
            return NodeState.PAUSED if paused else NodeState.UP
        if beat is None:
            return NodeState.DOWN
        if beat.phase in IN_CLUSTER:
            return NodeState.PAUSED if beat.paused else NodeState.UP
        if beat.phase in (Phase.JOINING, Phase.ARBITRATING):
            return NodeState.JOINING
        return NodeState.DOWN


def _own_state(phase: Phase, paused: bool) -> NodeState:
    if phase in IN_CLUSTER:
        return NodeState.PAUSED if paused else NodeState.UP
    if phase in (Phase.JOINING, Phase.ARBITRATING):
        return NodeState.JOINING
    if phase == Phase.HALTED:
        return NodeState.HALTED
    return NodeState.DOWN
