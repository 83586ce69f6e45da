"""Membership state and the propose / ack / commit round that changes it.

Theory of operation
-------------------
``MembershipCore`` holds what a node knows of the cluster's membership (epoch, members, their
incarnations, the quorum owner, the highest epoch it promised) and carries out the one way that
membership changes: the coordinator sends ``Propose`` to every proposed member, each member acks
an epoch above every epoch it promised before, and once every proposed member acked, the
coordinator (under disk quorum, after the fenced write of the membership record to the quorum
disk) sends ``Commit`` to every configured node. Members install it; members left out halt. A
proposal not fully acked in ``regroup_stage_timeout_s`` is re-proposed without the silent nodes
(a majority still being required under Majority Node Set). ``NodeCore`` (node.py) decides when to
propose: forming, admitting joiners, closing a regroup.
"""

from __future__ import annotations

from typing import Any

from nodeagent.config import ClusterConfig, QuorumType
from nodeagent.core.effects import DiskOp, DiskOpKind, Ready, Send
from nodeagent.core.events import event
from nodeagent.core.links import LinkMonitor
from nodeagent.core.messages import Ack, Commit, Message, Phase, Propose
from nodeagent.core.quorum import RECORD_BLOCK, QuorumArbiter
from nodeagent.core.record import MembershipRecord
from nodeagent.core.regroup import Proposal, Regroup

IN_CLUSTER = (Phase.MEMBER, Phase.REGROUPING)


class MembershipCore:
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
        self._promised: Propose | None = None  # the proposal we acked ``accepted_epoch`` for
        self.counters: dict[str, int] = {
            "regroups": 0,
            "arbitrations_won": 0,
            "arbitrations_lost": 0,
            "halts": 0,
            "memberships_installed": 0,
        }
        self._beat_sent_s: dict[int, float] = {}  # our heartbeat seq -> when we sent it
        self._owner_seq = 0  # the latest heartbeat seq we got from the quorum owner
        self._owner_life = (0, 0)  # (node, incarnation) of the owner that _owner_seq counts
        self._ready = Ready()

    def _send(self, peer: int, msg: Message) -> None:
        """Cluster traffic: the first cluster network on which ``peer`` is heard (and not failed); when
        there is none (a node that just started, or every interface failed), every cluster network."""
        for net in self._nets:
            if self.links.usable(peer, net):
                self._ready.sends.append(Send(net, peer, msg))
                return
        self._send_all_nets(peer, msg)

    def _send_all_nets(self, peer: int, msg: Message) -> None:
        for net in self._nets:
            self._ready.sends.append(Send(net, peer, msg))

    def _emit(self, kind: str, **fields: Any) -> None:
        self._ready.events.append(event(kind, self.name, **fields))

    def _next_op_id(self) -> int:
        self._op_seq += 1
        return self._op_seq

    # == proposals ====================================================================================
    def _propose(self, now_s: float, members: tuple[int, ...], base_epoch: int) -> None:
        epoch = max(base_epoch, self.epoch, self.accepted_epoch) + 1
        self.accepted_epoch = epoch  # our own promise: never ack another proposal for this epoch
        self._promised = None
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
        # A promise: ack only an epoch above every one acked or proposed before; the same proposal
        # again (a retransmission) is acked again, anything else for that epoch is refused.
        if msg.epoch < self.accepted_epoch or (msg.epoch == self.accepted_epoch and msg != self._promised):
            return
        self.accepted_epoch = msg.epoch
        self._promised = msg
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
        self._emit("proposal_retry", epoch=prop.epoch, dropped=dropped)
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
        elif not included and self.phase in IN_CLUSTER:
            owner = self.config.node(msg.quorum_owner).name if msg.quorum_owner else "?"
            self._halt(now_s, f"pruned: epoch {msg.epoch} committed by {owner} does not include this node")

    def _install(self, now_s: float, msg: Commit) -> None:
        was_member = self.phase in IN_CLUSTER
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
        if self.arbiter is not None and msg.quorum_owner != self.node_id:
            self.arbiter.abandon()  # another node owns the quorum: a challenge of ours is moot
        if self._proposal is not None and self._proposal.epoch <= msg.epoch:
            self._proposal = None  # overtaken by the membership just installed
        self._regroup = None
        self._regroup_round = 0
        self._departed.clear()
        self.counters["memberships_installed"] += 1
        names = [self.config.node(m).name for m in msg.members]
        owner = self.config.node(msg.quorum_owner).name if msg.quorum_owner else None
        if was_member:
            for m, inc in old.items():
                if m not in new or new[m] != inc:
                    self._emit("node_removed", peer=self.config.node(m).name, epoch=msg.epoch)
            for m in msg.members:
                if m not in old or old[m] != new[m]:
                    self._emit("node_joined", peer=self.config.node(m).name, epoch=msg.epoch)
        else:
            kind = "cluster_formed" if msg.quorum_owner == self.node_id else "cluster_joined"
            self._emit(kind, cluster=self.config.name, epoch=msg.epoch, members=names, quorum_owner=owner)
        self._emit("membership_installed", epoch=msg.epoch, members=names, quorum_owner=owner)
        self._on_installed(was_member)

    def _halt(self, now_s: float, reason: str) -> None:
        raise NotImplementedError  # NodeCore defines how a node halts

    def _on_installed(self, was_member: bool) -> None:
        """A membership was installed (services.py acts on it)."""
