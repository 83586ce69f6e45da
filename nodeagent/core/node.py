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
Cluster messages go on the first cluster network (by priority) whose interface to the peer has not
failed, falling back to the next, as MSCS does; heartbeats go on every cluster network.
"""

from __future__ import annotations

from nodeagent.config import ClusterConfig, Net, QuorumType
from nodeagent.core.effects import DiskOp, DiskOpKind, DiskOutcome, DiskResult, Event, Ready, Send
from nodeagent.core.links import LinkMonitor
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
from nodeagent.core.quorum import RECORD_BLOCK, ArbiterOutput, Notice, QuorumArbiter
from nodeagent.core.record import MembershipRecord
from nodeagent.core.regroup import Proposal, Regroup, largest_clique
from nodeagent.core.snapshot import NodeSnapshot, NodeState

_LIVE_PHASES = (Phase.JOINING, Phase.ARBITRATING, Phase.MEMBER, Phase.REGROUPING)
_IN_CLUSTER = (Phase.MEMBER, Phase.REGROUPING)
_PHASES = frozenset(int(p) for p in Phase)


class NodeCore:
    def __init__(self, config: ClusterConfig, node_id: int, incarnation: int, known_epoch: int = 0) -> None:
        self.config = config
        self.node_id = node_id
        self.incarnation = incarnation
        self.name = config.node(node_id).name
        self._t = config.timing
        self._nets = config.cluster_nets()
        self.links = LinkMonitor(config, node_id)
        self._op_seq = 0
        self.arbiter: QuorumArbiter | None = None
        if config.quorum == QuorumType.DISK:
            self.arbiter = QuorumArbiter(
                config.quorum_disk, node_id, config.arbitration.value == "scsi3", self._t, self._next_op_id
            )
        self.phase = Phase.STOPPED
        self.epoch = 0
        self.members: tuple[int, ...] = ()
        self.incarnations: dict[int, int] = {}
        self.quorum_owner: int | None = None
        self.known_epoch = known_epoch  # highest epoch this node ever installed (its local database)
        self.accepted_epoch = known_epoch  # highest epoch it promised (acked or proposed)
        self.paused = False
        self._installed_s = 0.0
        self._beat_seq = 0
        self._next_beat_s = 0.0
        self._join_deadline_s = 0.0
        self._restart_at_s: float | None = None
        self._regroup: Regroup | None = None
        self._regroup_round = 0
        self._proposal: Proposal | None = None
        self._joiners: set[int] = set()
        self._departed: set[int] = set()  # members that sent Leave during this epoch
        self._exit_when_released = False
        self._promised_to = 0  # the proposer we acked ``accepted_epoch`` to (it may resend)
        self.counters: dict[str, int] = {
            "regroups": 0,
            "arbitrations_won": 0,
            "arbitrations_lost": 0,
            "halts": 0,
            "memberships_installed": 0,
        }
        self._ready = Ready()

    # == public surface ===============================================================================
    def start(self, now_s: float) -> Ready:
        self._emit(
            "service_started",
            None,
            f"The Cluster Service started on {self.name}.",
            incarnation=self.incarnation,
            known_epoch=self.known_epoch,
        )
        self._enter_joining(now_s)
        self._progress(now_s)
        return self._finish(now_s)

    def on_message(self, net: Net, sender: int, incarnation: int, msg: Message, now_s: float) -> Ready:
        if self.phase not in _LIVE_PHASES or sender == self.node_id or sender not in self.config.node_ids:
            return self._finish(now_s)
        for event in self.links.heard(sender, net, now_s):
            self._ready.events.append(event)
        if isinstance(msg, Heartbeat):
            if msg.phase not in _PHASES:
                return self._finish(now_s)
            self.links.record_beat(sender, incarnation, msg, now_s)
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
        self._progress(now_s)
        return self._finish(now_s)

    def on_disk_result(self, result: DiskResult, now_s: float) -> Ready:
        if self.arbiter is not None and self.arbiter.owns(result.op_id):
            self._on_arbiter(self.arbiter.on_result(result, now_s), now_s)
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
        if self.phase in _IN_CLUSTER:
            for peer in self.members:
                if peer != self.node_id:
                    self._send_all_nets(peer, Leave(self.epoch))
        was = self.phase
        # any -> STOPPED
        self.phase = Phase.STOPPED
        self._proposal = None
        self._regroup = None
        self._emit(
            "service_stopped",
            None,
            f"The Cluster Service on {self.name} was stopped by the operator.",
            was=was.name,
        )
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
        if paused != self.paused:
            self.paused = paused
            word = "paused" if paused else "resumed"
            self._emit(f"node_{word}", None, f"Cluster node {self.name} was {word}.")
        return self._finish(now_s)

    def holds_quorum(self, now_s: float) -> bool:
        if self.phase not in _LIVE_PHASES:
            return False
        if self.arbiter is not None:
            return self.arbiter.holds_quorum(now_s)
        if self.phase not in _IN_CLUSTER or self.quorum_owner != self.node_id:
            return False
        # The leader's lease: a majority (itself included) heard lately, each still following it.
        window = self._t.interface_failed_after_s
        following = 0
        for m in self.members:
            pb = self.links.beats.get(m)
            if (
                pb is not None
                and self.links.hears(m, now_s, window)
                and pb.beat.epoch == self.epoch
                and pb.beat.quorum_owner == self.node_id
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
        )

    # == the clock ====================================================================================
    def _progress(self, now_s: float) -> None:
        """Everything that depends on time passing; safe to call at any instant."""
        if self.phase == Phase.HALTED:
            if self._restart_at_s is not None and now_s >= self._restart_at_s:
                self._emit(
                    "service_restarting",
                    None,
                    f"The Cluster Service on {self.name} is restarting after a halt.",
                )
                self._enter_joining(now_s)
            return
        if self.phase not in _LIVE_PHASES:
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
        ):
            if t is not None:
                times.append(t)
        if self._regroup is not None:
            rg = self._regroup
            times.append(
                rg.wait_until_s if rg.coordinator is not None and rg.wait_until_s else rg.activity_end_s
            )
        return min(times)

    # == sending ======================================================================================
    def _send_beats(self, now_s: float) -> None:
        self._beat_seq += 1
        beat = Heartbeat(
            seq=self._beat_seq,
            phase=int(self.phase),
            epoch=self.epoch if self.phase in _IN_CLUSTER else self.known_epoch,
            members=self.members if self.phase in _IN_CLUSTER else (),
            quorum_owner=self.quorum_owner or 0,
            paused=self.paused,
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

    def _send(self, peer: int, msg: Message) -> None:
        """Cluster traffic: the first cluster network whose interface to ``peer`` has not failed."""
        for net in self._nets:
            if not self.links.failed(peer, net):
                self._ready.sends.append(Send(net, peer, msg))
                return
        self._send_all_nets(peer, msg)

    def _send_all_nets(self, peer: int, msg: Message) -> None:
        for net in self._nets:
            self._ready.sends.append(Send(net, peer, msg))

    def _emit(self, kind: str, event_id: int | None, message: str, **fields: object) -> None:
        self._ready.events.append(Event(kind, event_id, message, dict(fields)))

    def _next_op_id(self) -> int:
        self._op_seq += 1
        return self._op_seq

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
            if beat is not None and beat.phase in _IN_CLUSTER:
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
            self._emit(
                "arbitration_started",
                None,
                f"{self.name} is arbitrating for quorum disk {self.config.quorum_disk} to form the cluster.",
                disk=self.config.quorum_disk,
                reason="form",
            )
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

    # == heartbeats and failure detection =============================================================
    def _on_heartbeat(self, sender: int, beat: Heartbeat, now_s: float) -> None:
        if (
            self.phase in _IN_CLUSTER
            and beat.phase in _IN_CLUSTER
            and beat.epoch > self.epoch
            and self.node_id not in beat.members
        ):
            name = self.config.node(sender).name
            self._halt(now_s, f"pruned: {name} is in epoch {beat.epoch}, which does not include this node")
            return
        i_own = self.phase in _IN_CLUSTER and self.quorum_owner == self.node_id
        if i_own and sender in self.members and beat.phase in _IN_CLUSTER and beat.epoch < self.epoch:
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
        if pb.at_s > grace and pb.beat.phase not in _IN_CLUSTER:
            return f"{name} is no longer in the cluster ({Phase(pb.beat.phase).name})"
        return ""

    def _on_leave(self, sender: int, msg: Leave, now_s: float) -> None:
        if self.phase in _IN_CLUSTER and sender in self.members and msg.epoch == self.epoch:
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
            self._emit(
                "regroup_started",
                1126,
                f"The Cluster Service on {self.name} started a regroup of epoch {self.epoch}: {reason}.",
                epoch=self.epoch,
                round=round_,
                reason=reason,
            )
        vote = RegroupVote(self.epoch, round_, self._regroup.votes[self.node_id], self.quorum_owner or 0)
        for peer in self.links.peers:
            self._send(peer, vote)

    def _on_vote(self, sender: int, vote: RegroupVote, now_s: float) -> None:
        if self.phase not in _IN_CLUSTER:
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
            self._emit(
                "arbitration_started",
                None,
                f"{self.name} is challenging for the quorum disk {self.config.quorum_disk} "
                f"(last owner {name}).",
                disk=self.config.quorum_disk,
                reason="regroup",
            )
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
            self._emit(
                "arbitration_won",
                None,
                f"{self.name} won the arbitration for the quorum disk {self.config.quorum_disk}.",
                disk=self.config.quorum_disk,
                disk_epoch=record.epoch,
                waited_s=round(now_s - self.arbiter.challenge_started_s, 6),
            )
            self._emit(
                "quorum_online",
                None,
                f"The quorum resource is online on {self.name}.",
                disk=self.config.quorum_disk,
            )
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
            self._emit(
                "arbitration_lost",
                None,
                f"{self.name} lost the arbitration for the quorum disk: {out.reason}.",
                disk=self.config.quorum_disk,
                reason=out.reason,
            )
            self._halt(now_s, f"another node defends the quorum disk ({out.reason})")
        elif out.notice == Notice.DEFENSE_LOST:
            self._halt(now_s, f"this node lost the quorum disk: {out.reason}")

    # == proposals ====================================================================================
    def _propose(self, now_s: float, members: tuple[int, ...], base_epoch: int) -> None:
        epoch = max(base_epoch, self.epoch, self.accepted_epoch) + 1
        self.accepted_epoch = epoch  # our own promise: never ack another proposal for this epoch
        incarnations = tuple(
            self.incarnation if m == self.node_id else self._incarnation_of(m) for m in members
        )
        prop = Proposal(epoch, members, incarnations, self.node_id, now_s + self._t.regroup_stage_timeout_s)
        prop.acks.add(self.node_id)
        self._proposal = prop
        self._send_proposal(prop)
        self._maybe_complete(now_s)

    def _incarnation_of(self, node: int) -> int:
        pb = self.links.beats.get(node)
        return pb.incarnation if pb is not None else self.incarnations.get(node, 0)

    def _send_proposal(self, prop: Proposal) -> None:
        msg = Propose(prop.epoch, prop.members, prop.incarnations, prop.owner)
        for m in prop.missing:
            self._send(m, msg)

    def _on_propose(self, sender: int, msg: Propose, now_s: float) -> None:
        if self.phase == Phase.ARBITRATING:
            return
        if msg.epoch <= self.accepted_epoch and not (
            msg.epoch == self.accepted_epoch and self._promised_to == sender
        ):
            return
        self.accepted_epoch = msg.epoch
        self._promised_to = sender
        self._send(sender, Ack(msg.epoch))

    def _on_ack(self, sender: int, msg: Ack, now_s: float) -> None:
        prop = self._proposal
        if prop is not None and msg.epoch == prop.epoch and sender in prop.members:
            prop.acks.add(sender)
            self._maybe_complete(now_s)

    def _maybe_complete(self, now_s: float) -> None:
        prop = self._proposal
        if prop is None or prop.missing or prop.record_op is not None:
            return
        if self.arbiter is None:
            self._commit(now_s)
            return
        record = MembershipRecord(prop.epoch, self.node_id, prop.members).encode()
        prop.record_op = self._next_op_id()
        self._ready.disk_ops.append(
            DiskOp(prop.record_op, self.config.quorum_disk, DiskOpKind.WRITE, block=RECORD_BLOCK, data=record)
        )

    def _proposal_timed_out(self, now_s: float) -> None:
        prop = self._proposal
        assert prop is not None
        if prop.record_op is not None:
            return  # waiting for the disk; the lease bounds how long
        acked = tuple(m for m in prop.members if m in prop.acks)
        dropped = [self.config.node(m).name for m in prop.missing]
        self._proposal = None
        self._joiners -= set(prop.missing)
        if self.arbiter is None and len(acked) < self.config.majority:
            self._halt(
                now_s,
                f"Majority Node Set: no majority acknowledged epoch {prop.epoch} "
                f"(no answer from {', '.join(dropped)})",
            )
            return
        if self.arbiter is not None and not self.arbiter.lease_valid(now_s):
            return  # the arbiter reports the loss itself
        self._emit(
            "proposal_retry",
            None,
            f"Epoch {prop.epoch} was not acknowledged by {', '.join(dropped)}; proposing without them.",
            epoch=prop.epoch,
            dropped=dropped,
        )
        self._propose(now_s, acked, base_epoch=prop.epoch)

    def _commit(self, now_s: float) -> None:
        prop = self._proposal
        assert prop is not None
        self._proposal = None
        msg = Commit(prop.epoch, prop.members, prop.incarnations, prop.owner)
        for peer in self.links.peers:
            # Everyone hears it: members install, members left out halt (pruning).
            self._send(peer, msg)
        self._install(now_s, msg)
        self._joiners -= set(prop.members)
        if self._joiners and self.phase == Phase.MEMBER:
            self._propose(now_s, tuple(sorted({*self.members, *self._joiners})), base_epoch=self.epoch)

    def _current_commit(self) -> Commit:
        return Commit(
            self.epoch,
            self.members,
            tuple(self.incarnations.get(m, 0) for m in self.members),
            self.quorum_owner or 0,
        )

    def _on_commit(self, msg: Commit, now_s: float) -> None:
        if msg.epoch <= self.epoch:
            return
        included = self.node_id in msg.members and msg.incarnations[msg.members.index(self.node_id)] == (
            self.incarnation
        )
        if included and self.phase != Phase.ARBITRATING:
            self._install(now_s, msg)
        elif not included and self.phase in _IN_CLUSTER:
            owner = self.config.node(msg.quorum_owner).name if msg.quorum_owner else "?"
            self._halt(now_s, f"pruned: epoch {msg.epoch} committed by {owner} does not include this node")

    def _install(self, now_s: float, msg: Commit) -> None:
        was_member = self.phase in _IN_CLUSTER
        old = {m: self.incarnations.get(m, 0) for m in self.members}
        new = dict(zip(msg.members, msg.incarnations, strict=True))
        # (JOINING | ARBITRATING | REGROUPING | MEMBER) -> MEMBER
        self.phase = Phase.MEMBER
        self.epoch = msg.epoch
        self.members = msg.members
        self.incarnations = new
        self.quorum_owner = msg.quorum_owner or None
        self.known_epoch = max(self.known_epoch, msg.epoch)
        self.accepted_epoch = max(self.accepted_epoch, msg.epoch)
        self._installed_s = now_s
        self._regroup = None
        self._regroup_round = 0
        self._departed.clear()
        self.counters["memberships_installed"] += 1
        names = [self.config.node(m).name for m in msg.members]
        owner = self.config.node(msg.quorum_owner).name if msg.quorum_owner else None
        if was_member:
            for m, inc in old.items():
                if m not in new or new[m] != inc:
                    self._emit(
                        "node_removed",
                        1135,
                        f"Cluster node {self.config.node(m).name} was removed from the active server "
                        "cluster membership. The Cluster service may have been stopped on the node, "
                        "the node may have failed, or it may have lost communication with the other "
                        "active server cluster nodes.",
                        peer=self.config.node(m).name,
                        epoch=msg.epoch,
                    )
            for m in msg.members:
                if m not in old or old[m] != new[m]:
                    self._emit(
                        "node_joined",
                        None,
                        f"Cluster node {self.config.node(m).name} joined the cluster.",
                        peer=self.config.node(m).name,
                        epoch=msg.epoch,
                    )
        elif msg.quorum_owner == self.node_id:
            self._emit(
                "cluster_formed",
                1061,
                f"The Cluster Service successfully formed the server cluster {self.config.name}.",
                epoch=msg.epoch,
                members=names,
            )
        else:
            self._emit(
                "cluster_joined",
                1062,
                f"The Cluster Service successfully joined the server cluster {self.config.name}.",
                epoch=msg.epoch,
                members=names,
                quorum_owner=owner,
            )
        self._emit(
            "membership_installed",
            None,
            f"Membership epoch {msg.epoch}: {', '.join(names)}; quorum owner {owner}.",
            epoch=msg.epoch,
            members=names,
            quorum_owner=owner,
        )

    # == halting =======================================================================================
    def _halt(self, now_s: float, reason: str) -> None:
        if self.phase not in _LIVE_PHASES:
            return
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
        self.links.forget()
        self._restart_at_s = now_s + self._t.restart_delay_s
        self._emit(
            "halted",
            1177,
            f"The Cluster Service on {self.name} is shutting down because it lost quorum or was "
            f"removed from the cluster: {reason}. It will restart in {self._t.restart_delay_s:g} s.",
            reason=reason,
        )

    # == status ========================================================================================
    def _view_of(self, node: int, now_s: float) -> NodeState:
        if node == self.node_id:
            return _own_state(self.phase, self.paused)
        beat = self.links.beat_of(node, now_s)
        if self.phase in _IN_CLUSTER and node in self.members:
            if self._member_gone(node, now_s):
                return NodeState.DOWN
            return NodeState.PAUSED if beat is not None and beat.paused else NodeState.UP
        if beat is None:
            return NodeState.DOWN
        if beat.phase in _IN_CLUSTER:
            return NodeState.PAUSED if beat.paused else NodeState.UP
        if beat.phase in (Phase.JOINING, Phase.ARBITRATING):
            return NodeState.JOINING
        return NodeState.DOWN


def _own_state(phase: Phase, paused: bool) -> NodeState:
    if phase in _IN_CLUSTER:
        return NodeState.PAUSED if paused else NodeState.UP
    if phase in (Phase.JOINING, Phase.ARBITRATING):
        return NodeState.JOINING
    if phase == Phase.HALTED:
        return NodeState.HALTED
    return NodeState.DOWN
