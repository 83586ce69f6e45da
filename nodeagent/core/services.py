"""Cluster services on top of the membership: the replicated database, admin requests, failover, resources.

Theory of operation
-------------------
``ServicesCore`` adds to the membership core (membership.py) what runs once there is a cluster:

- **The database.** Every node has a ``Replica`` of the cluster database (gum.py). Only the quorum
  owner (while it holds quorum) commits updates; members apply them in order.
- **Admin requests.** A request may reach any node (``on_admin``); a node that is not the quorum
  owner forwards it (``Admin``) and relays the answer (``AdminResult``). The owner validates it
  (admin.py) and commits the updates.
- **The failover manager** (failover.py). It runs on the owner after every change and tick. When
  the owner first forms a cluster it creates the Cluster Group (Cluster IP Address, Cluster Name,
  and the quorum disk under disk quorum).
- **The resource manager** (resources.py). It runs on every node for the groups that node owns.
  Its state reports and failover requests go to the owner as internal admin requests; it re-sends
  them every step until the database reflects them, so a lost datagram only delays things.

The quorum disk resource is the core's own arbitration: the core answers its actions itself (online
while this node holds the quorum) instead of asking the shell.
"""

from __future__ import annotations

from typing import Any

from nodeagent.config import ClusterConfig, QuorumType
from nodeagent.core import admin
from nodeagent.core.clusterdb import ClusterDb, Group, Resource, group_update, resource_update
from nodeagent.core.durability import HeldReply, ReplyHold
from nodeagent.core.effects import (
    AdminReply,
    DiskOp,
    DiskOpKind,
    DiskOutcome,
    DiskResult,
    Ready,
    ResourceAction,
    ResourceReport,
)
from nodeagent.core.events import event
from nodeagent.core.failover import Context, place, retry_deadline
from nodeagent.core.gum import (
    CHECKPOINT_BLOCK,
    CHECKPOINT_BLOCKS,
    Replica,
    decode_checkpoint,
    encode_checkpoint,
    pack,
    unpack,
    unpack_operation,
)
from nodeagent.core.membership import IN_CLUSTER, MembershipCore
from nodeagent.core.messages import Admin, AdminResult, DbRequest, DbSnapshot, DbUpdate, Message, Phase
from nodeagent.core.resources import ResourceManager, StepOutput
from nodeagent.errors import AdminRefused

CLIENT_PORT = 3344  # the client endpoint on every virtual IP
_MAX_WAITING = 256  # admin requests forwarded and not yet answered
_STEP_LIMIT = 16  # commit/place rounds per step (each round settles more; this bounds a bug)


class ServicesCore(MembershipCore):
    def __init__(
        self,
        config: ClusterConfig,
        node_id: int,
        incarnation: int,
        known_epoch: int = 0,
        database: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(config, node_id, incarnation, known_epoch)
        self.replica = Replica(ClusterDb.from_dict(database) if database else ClusterDb())
        self.rm = ResourceManager(self.name, config.speed)
        self.wall_hour: int | None = None  # set by the shell: local hour, for failback windows
        self._waiting: dict[int, float] = {}  # forwarded admin request ids -> when
        self._snapshot_sent_s: dict[int, float] = {}
        self._setup_done_s: float | None = None  # when the running Exchange setup finishes (sequencer)
        self._checkpoint_read: int | None = None  # op id of the checkpoint read after winning the quorum
        self._checkpointed = -1  # database version last written to the quorum disk
        self._checkpoint_writes: dict[int, int] = {}  # op id -> database version it writes
        self._checkpoint_durable = -1  # the newest version a completed checkpoint write holds
        self._replies = ReplyHold()  # admin replies waiting for their change to be durable
        # A node that joins may hold an old copy (its clusterdb.json from before it went down): it must
        # not run resources on it. It is synced once the quorum owner's copy reached it.
        self._synced = False

    # == public surface ===============================================================================
    @property
    def db(self) -> ClusterDb:
        return self.replica.db

    def on_admin(self, request_id: int, cmd: str, args: dict[str, Any], now_s: float) -> Ready:
        if cmd in admin.INTERNAL_VERBS:
            self._reply(request_id, False, {}, f"{cmd} is internal to the cluster", "bad request")
        elif self._is_sequencer(now_s):
            self._serve(request_id, self.node_id, cmd, args, now_s)
        elif self.phase in IN_CLUSTER and self.quorum_owner:
            if len(self._waiting) >= _MAX_WAITING:
                self._waiting.pop(next(iter(self._waiting)))
            self._waiting[request_id] = now_s
            self._send(self.quorum_owner, Admin(request_id, pack([cmd, args])))
        else:
            why = f"{self.name} is {self.phase.name.lower()} and knows no quorum owner"
            self._reply(request_id, False, {}, why, "The cluster service is not running on a member")
        self._services_step(now_s)
        return self._finish(now_s)

    def on_resource_report(self, report: ResourceReport, now_s: float) -> Ready:
        out = StepOutput()
        self.rm.on_report(self.db, report, now_s, out)
        self._carry_out(out, now_s)
        self._services_step(now_s)
        return self._finish(now_s)

    def adopt_database(self, database: dict[str, Any]) -> None:
        """Load this node's saved copy (nodes/NAME/clusterdb.json) at start, if newer than ours."""
        db = ClusterDb.from_dict(database)
        if db.version > self.db.version:
            self.replica = Replica(db)

    def resolve(self, name: str) -> tuple[str, int, str] | None:
        """A virtual server's address, port and owner, from this node's copy (the name service)."""
        r = self.db.find_name(name)
        if r is None:
            return None
        group = self.db.groups.get(r.group)
        owner = group.owner if group is not None else None
        for dep in r.depends_on:
            ip = self.db.resources.get(dep)
            if ip is not None and ip.type == "IP Address":
                return str(ip.private.get("Address")), int(ip.private.get("Port", CLIENT_PORT)), owner or ""
        return None

    def _on_installed(self, was_member: bool) -> None:
        if self.quorum_owner == self.node_id:
            self._synced = True  # the sequencer's copy is the cluster's
        elif not was_member:
            self._synced = False
            if self.quorum_owner:
                self._send(self.quorum_owner, DbRequest(self.db.version))

    # == messages ======================================================================================
    def _on_service_message(self, sender: int, msg: Message, now_s: float) -> None:
        if isinstance(msg, DbUpdate):
            if sender == self.quorum_owner:
                self._synced = self._synced or msg.version <= self.db.version + 1
                applied, request = self.replica.on_update(msg)
                if request is not None:
                    self._send(sender, request)
                if applied:
                    self._ready.db_snapshot = self.db.to_dict()
        elif isinstance(msg, DbSnapshot):
            if self.replica.on_snapshot(msg):
                self._ready.db_snapshot = self.db.to_dict()
            if sender == self.quorum_owner and self.db.version >= msg.version:
                self._synced = True
        elif isinstance(msg, DbRequest):
            if msg.version < self.db.version:
                self._send(sender, self.replica.snapshot())
        elif isinstance(msg, Admin):
            cmd, args = unpack_operation(msg.payload)
            if self._is_sequencer(now_s):
                self._serve(msg.request_id, sender, cmd, args, now_s)
            elif msg.request_id:
                self._send(
                    sender, AdminResult(msg.request_id, False, pack({}), "not the quorum owner", "retry")
                )
        elif isinstance(msg, AdminResult) and self._waiting.pop(msg.request_id, None) is not None:
            result = unpack(msg.payload)
            self._reply(
                msg.request_id, msg.ok, result if isinstance(result, dict) else {}, msg.error, msg.rule
            )

    def _on_beat_version(self, sender: int, db_version: int, now_s: float) -> None:
        """Heartbeats carry the sender's database version: bring laggards (or ourselves) up to date."""
        if self.phase not in IN_CLUSTER:
            return
        if sender == self.quorum_owner and db_version == self.db.version:
            self._synced = True  # the owner's copy is ours
        if self.quorum_owner == self.node_id and db_version < self.db.version:
            last = self._snapshot_sent_s.get(sender, -1e18)
            if now_s - last >= 2 * self._t.heartbeat_interval_s:
                self._snapshot_sent_s[sender] = now_s
                self._send(sender, self.replica.snapshot())
        elif db_version > self.db.version and (
            self.quorum_owner == self.node_id or sender == self.quorum_owner
        ):
            self._send(sender, DbRequest(self.db.version))

    # == the sequencer ===================================================================================
    def _is_sequencer(self, now_s: float) -> bool:
        return (
            self.phase == Phase.MEMBER
            and self.quorum_owner == self.node_id
            and self._checkpoint_read is None
            and self._has_quorum(now_s)
        )

    # == the quorum disk checkpoint ====================================================================
    def _read_checkpoint(self) -> None:
        """This node just won the quorum: read the database checkpoint before sequencing anything."""
        self._checkpoint_read = self._next_op_id()
        op = DiskOp(self._checkpoint_read, self.config.quorum_disk, DiskOpKind.READ,
                    block=CHECKPOINT_BLOCK, count=CHECKPOINT_BLOCKS)  # fmt: skip
        self._ready.disk_ops.append(op)

    def _on_checkpoint(self, result: DiskResult) -> None:
        self._checkpoint_read = None
        db = decode_checkpoint(result.data) if result.outcome == DiskOutcome.OK else None
        if db is not None and db.version > self.db.version:
            self.replica = Replica(db)
            self._ready.db_snapshot = self.db.to_dict()
            self._checkpointed = db.version

    def _write_checkpoint(self) -> None:
        if self.arbiter is None or self._checkpointed == self.db.version:
            return
        data = encode_checkpoint(self.db)
        if data is None:
            self._checkpoint_durable = self.db.version  # too big for the checkpoint: nothing to wait for
        else:
            op = DiskOp(
                self._next_op_id(),
                self.config.quorum_disk,
                DiskOpKind.WRITE,
                block=CHECKPOINT_BLOCK,
                data=data,
            )
            self._ready.disk_ops.append(op)
            self._checkpoint_writes[op.op_id] = self.db.version
        self._checkpointed = self.db.version

    def _on_checkpoint_written(self, result: DiskResult) -> None:
        version = self._checkpoint_writes.pop(result.op_id)
        if result.outcome == DiskOutcome.OK:
            self._checkpoint_durable = max(self._checkpoint_durable, version)
            self._release_replies()

    def _has_quorum(self, now_s: float) -> bool:
        raise NotImplementedError  # NodeCore.holds_quorum

    def _finish(self, now_s: float) -> Ready:
        raise NotImplementedError  # NodeCore gathers the Ready

    def _serve(self, request_id: int, origin: int, cmd: str, args: dict[str, Any], now_s: float) -> None:
        try:
            updates, result, events = admin.handle(
                self.db, cmd, args if isinstance(args, dict) else {}, self._ctx(now_s)
            )
            ok, error, rule = True, "", ""
        except AdminRefused as e:
            updates, result, events = [], {}, []
            ok, error, rule = False, str(e), e.rule
        self._ready.events.extend(events)
        self._commit_db(updates)
        if not request_id:
            return
        reply = HeldReply(self.db.version, request_id, origin, ok, result, error, rule)
        for r in self._replies.hold(reply) if updates else [reply]:
            self._answer(r)
        self._release_replies()

    def _answer(self, r: HeldReply) -> None:
        if r.origin == self.node_id:
            self._reply(r.request_id, r.ok, r.result, r.error, r.rule)
        else:
            self._send(r.origin, AdminResult(r.request_id, r.ok, pack(r.result), r.error, r.rule))

    def _release_replies(self) -> None:
        """Answer the held requests whose change is durable now (durability.py)."""
        if not len(self._replies):
            return
        if self.arbiter is not None:
            durable = self._checkpoint_durable
        else:
            durable = self.db.version
            for m in self.members:
                pb = self.links.beats.get(m)
                if m != self.node_id:
                    durable = min(durable, pb.beat.db_version if pb is not None else -1)
        for r in self._replies.release(durable):
            self._answer(r)

    def _commit_db(self, updates: list[tuple[str, dict[str, Any]]]) -> None:
        if not updates:
            return
        for msg in self.replica.commit(updates):
            for m in self.members:
                if m != self.node_id:
                    self._send(m, msg)
        self._ready.db_snapshot = self.db.to_dict()

    def _ctx(self, now_s: float) -> Context:
        members = frozenset(self.config.node(m).name for m in self.members)
        nodes = tuple(n.name for n in sorted(self.config.nodes, key=lambda n: n.id))
        vip_prefix = self.config.virtual_ip(0)[:-1]
        return Context(
            self.name,
            nodes,
            members,
            self.config.speed,
            now_s,
            self.wall_hour,
            vip_prefix,
            self._fence_until(),
        )

    def _fence_until(self) -> dict[str, float]:
        """For each node outside the membership: from when it cannot be running any group (failover.py)."""
        fence_s = self._t.fence_s(self.arbiter is not None)
        out: dict[str, float] = {}
        for node in self.config.nodes:
            heard = self.links.last_heard_s(node.id)
            if node.id in self.members or heard is None:
                continue
            pb = self.links.beats.get(node.id)
            if pb is not None and pb.beat.phase not in IN_CLUSTER:
                continue  # it says it is joining or halted: a node outside the cluster runs nothing
            out[node.name] = heard + fence_s
        return out

    def _services_deadline(self, now_s: float) -> float | None:
        """The next instant the failover manager has work: a fence ending, a failed group's retry."""
        if not self._is_sequencer(now_s):
            return None
        times = [t for t in self._fence_until().values() if t > now_s]
        retry = retry_deadline(self.db)
        if retry is not None:
            times.append(retry)
        return min(times) if times else None

    def _bootstrap(self) -> list[tuple[str, dict[str, Any]]]:
        """A new cluster: the Cluster Group with its IP address, name and (disk quorum) the quorum disk."""
        cfg = self.config
        group = Group(name="Cluster Group", is_cluster_group=True, desired="online", owner=self.name)
        ip = Resource(
            "Cluster IP Address",
            "IP Address",
            group.name,
            desired="online",
            private={"Address": cfg.virtual_ip(1), "Port": CLIENT_PORT, "Network": "public"},
        )
        name = Resource(
            "Cluster Name",
            "Network Name",
            group.name,
            depends_on=[ip.name],
            desired="online",
            private={"Name": cfg.name, "Address": cfg.virtual_ip(1)},
        )
        updates = [group_update(group), resource_update(ip), resource_update(name)]
        if cfg.quorum == QuorumType.DISK:
            disk = Resource(
                f"Disk {cfg.quorum_disk}:",
                "Physical Disk",
                group.name,
                desired="online",
                private={"Disk": cfg.quorum_disk, "Quorum": True},
            )
            updates.append(resource_update(disk))
        return updates

    # == the step =======================================================================================
    def _services_step(self, now_s: float) -> None:
        if self.phase not in IN_CLUSTER:
            return
        self._release_replies()
        for _ in range(_STEP_LIMIT):
            if self._is_sequencer(now_s):
                if self.db.version == 0:
                    self._commit_db(self._bootstrap())
                updates, events = place(self.db, self._ctx(now_s))
                self._ready.events.extend(events)
                self._commit_db(updates)
                self._exchange_setup_progress(now_s)
                self._write_checkpoint()
            if not self._synced:
                return  # run no resource on a copy the quorum owner has not confirmed yet
            out = StepOutput()
            self.rm.step(self.db, now_s, out)
            if not self._carry_out(out, now_s):
                return

    def _carry_out(self, out: StepOutput, now_s: float) -> bool:
        """Do what the resource manager asked; True when the database changed (step again)."""
        self._ready.events.extend(out.events)
        version = self.db.version
        reports: list[ResourceReport] = []
        for action in out.actions:
            if action.props.get("Quorum"):
                reports.append(self._quorum_resource(action, now_s))
            else:
                self._ready.resource_actions.append(action)
        requests = list(out.requests) + [
            (
                "group.failover",
                {"name": f.group, "resource": f.resource, "reason": f.reason, "node": self.name},
            )
            for f in out.failovers
        ]
        for cmd, args in requests:
            if self._is_sequencer(now_s):
                self._serve(0, self.node_id, cmd, args, now_s)
            elif self.quorum_owner:
                self._send(self.quorum_owner, Admin(0, pack([cmd, args])))
        for report in reports:
            again = StepOutput()
            self.rm.on_report(self.db, report, now_s, again)
            self._carry_out(again, now_s)
        return self.db.version != version

    def _exchange_setup_progress(self, now_s: float) -> None:
        """An Exchange setup takes ExchangeSetupTime (30 s real by default, over speed) on its node."""
        node = self.db.installing
        if node is None:
            self._setup_done_s = None
            return
        if self._setup_done_s is None:
            self._setup_done_s = (
                now_s + float(self.db.props.get("ExchangeSetupTime", 30.0)) / self.config.speed
            )
        if now_s >= self._setup_done_s:
            version = self.db.installing_version
            done = event("exchange_setup", self.name, target=node, version=version, stage="finished")
            self._ready.events.append(done)
            self._commit_db([("set_exchange", {"node": node, "version": version, "installing": None})])
            self._setup_done_s = None

    def _quorum_resource(self, action: ResourceAction, now_s: float) -> ResourceReport:
        holds = self._has_quorum(now_s)
        ok = holds if action.action in ("online", "looks_alive", "is_alive") else True
        detail = "" if ok else "this node does not hold the quorum disk"
        return ResourceReport(action.resource, action.action, action.token, ok, detail)

    def _stop_services(self) -> None:
        self._replies.drop()
        self._checkpoint_writes.clear()
        out = StepOutput()
        self.rm.terminate_all(self.db, out)
        self._ready.resource_actions.extend(a for a in out.actions if not a.props.get("Quorum"))

    def _reply(self, request_id: int, ok: bool, result: dict[str, Any], error: str, rule: str) -> None:
        if request_id:
            self._ready.admin_replies.append(AdminReply(request_id, ok, result, error, rule))
