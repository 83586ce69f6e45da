"""Safety and liveness checks over the simulated cluster, evaluated after every step.

Theory of operation
-------------------
The simulation hands the checker one ``NodeView`` per configured node after every core call and every
fault action (a view is a plain value, so tests can also feed crafted states). The checker keeps the
history it needs and records a ``Violation(time, name, evidence)`` for each broken rule:

1. ``one_owner``: at most one node holds the quorum (``core.holds_quorum(now)``) at any instant.
   Frozen nodes count, evaluated with the global ``now``: a frozen defender whose lease is still fresh
   believes it owns the disk, and a challenger must not believe so at the same time.
2. ``agreement``: every node that installs epoch ``e`` installs the same member set for ``e``. An
   install is seen when a node is MEMBER with an (epoch, members) pair different from the last one it
   installed; the first install of an epoch, by any node and any incarnation, fixes its members.
3. ``quorum_backed``: when a node installs a membership, the membership must be backed by quorum at
   that moment. Disk quorum: the quorum disk's reservation holder (SCSI-2 holder or SCSI-3
   reservation holder) is the node the membership names as quorum owner, or that owner still holds
   a fresh lease (its ``holds_quorum(now)``). The second case is the lease argument of
   core/quorum.py: a challenger's first command changes the disk at once (SCSI-2: the bus reset
   leaves it unreserved; SCSI-3: the preempt hands it to the challenger), but the challenger cannot
   own the quorum before the defender's lease has run out, so until then the defender is still the
   owner and a membership it committed is backed. ``strict_backing=True`` drops that case and asks
   for the reservation itself, as the simulator's brief first worded the rule; runs then report
   these windows as violations. Majority: the membership has at least ``config.majority`` members.
4. ``one_group_owner`` (``check_groups``): no group has resources Online locally (in a core's resource
   manager, ``rm.local``) on two live nodes at once. A frozen node counts (it still believes it runs
   them) until a running node has installed a later membership without it: from then on its claim
   is stale and fenced (the new owner's disk reservation, the address conflict check), as in MSCS.
5. ``one_address``: no IP address is bound by two node processes at once (the simulated resource
   monitor's table of bound addresses, sim/resources.py).
6. ``online_needs_quorum``: a resource goes Online (a new entry in a node's Online set) only on a
   node whose phase is MEMBER or REGROUPING, i.e. a member of a quorum-backed membership.
7. ``final`` (``check_final``, after the settle period): every live node is MEMBER of one epoch whose
   members are exactly the live nodes, and exactly one node holds the quorum.

A rule that stays broken over many steps is recorded once per episode (it is recorded again only
after it held for a while), and at most ``MAX_VIOLATIONS`` are kept; the rest are counted in
``suppressed``. Evidence strings list nodes by name in id order, so they are deterministic.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from nodeagent.config import ClusterConfig, QuorumType
from nodeagent.core.messages import Phase

MAX_VIOLATIONS = 200


@dataclass(frozen=True, slots=True)
class Violation:
    time_s: float
    name: str  # one_owner, agreement, quorum_backed, one_group_owner, one_address, online_needs_quorum,
    # final, core_error, stuck, ...
    evidence: str

    def line(self) -> str:
        return f"{self.time_s:10.4f} {self.name}: {self.evidence}"


@dataclass(frozen=True, slots=True)
class NodeView:
    """What the checker needs from one node at one instant."""

    node_id: int
    name: str
    alive: bool  # a process exists (running or frozen)
    frozen: bool
    incarnation: int
    phase: Phase | None  # None when no process
    epoch: int
    members: tuple[int, ...]
    quorum_owner: int | None
    holds_quorum: bool
    online: tuple[tuple[str, str], ...] = ()  # (group, resource) Online in this node's resource manager


@dataclass(frozen=True, slots=True)
class Install:
    """One node installing one membership, as the checker saw it."""

    time_s: float
    node_id: int
    incarnation: int
    epoch: int
    members: tuple[int, ...]
    quorum_owner: int | None


class InvariantChecker:
    def __init__(self, config: ClusterConfig, *, strict_backing: bool = False) -> None:
        self._config = config
        self._strict_backing = strict_backing
        self._names = {n.id: n.name for n in config.nodes}
        self._epochs: dict[int, Install] = {}  # epoch -> the first install seen
        self._last_install: dict[int, tuple[int, int, tuple[int, ...]]] = {}  # node -> (inc, epoch, members)
        self._active: set[str] = set()  # keys of rules currently broken (one record per episode)
        self.violations: list[Violation] = []
        self.suppressed = 0
        self.installs = 0
        self._latest: dict[int, NodeView] = {}  # node -> the last view seen (for the group rules)
        self._online_seen: dict[int, tuple[int, frozenset[tuple[str, str]]]] = {}  # node -> (inc, online)

    # -- helpers -------------------------------------------------------------------------------------
    def _name(self, node_id: int | None) -> str:
        if node_id is None:
            return "none"
        return self._names.get(node_id, f"#{node_id}")

    def _names_of(self, ids: Sequence[int]) -> str:
        return ",".join(self._name(i) for i in sorted(ids)) or "-"

    def record(self, time_s: float, name: str, evidence: str) -> Violation | None:
        if len(self.violations) >= MAX_VIOLATIONS:
            self.suppressed += 1
            return None
        v = Violation(time_s, name, evidence)
        self.violations.append(v)
        return v

    def _episode(self, key: str, broken: bool) -> bool:
        """True when ``key`` just became broken (record it now); False while it stays broken or holds."""
        if not broken:
            self._active.discard(key)
            return False
        if key in self._active:
            return False
        self._active.add(key)
        return True

    # -- per step ------------------------------------------------------------------------------------
    def check_step(
        self,
        time_s: float,
        views: Sequence[NodeView],
        quorum_holder: Callable[[], str | None],
        *,
        holders: Sequence[int] | None = None,
        frozen_holders: Sequence[int] = (),
    ) -> list[Violation]:
        """Check rules 1-3 on the cluster as it is now. ``quorum_holder`` is read only when needed.

        ``views`` may be every node, or only the nodes that may have changed since the last check (a
        core call changes one node) when ``holders`` (every node holding the quorum now) and
        ``frozen_holders`` are given; that keeps a step's check cheap in a big cluster.
        """
        found: list[Violation] = []

        def add(name: str, evidence: str) -> None:
            v = self.record(time_s, name, evidence)
            if v is not None:
                found.append(v)

        if holders is None:
            holders = [v.node_id for v in views if v.alive and v.holds_quorum]
            frozen_holders = [v.node_id for v in views if v.alive and v.frozen and v.holds_quorum]
        holders = sorted(holders)
        if self._episode("one_owner", len(holders) > 1):
            frozen = sorted(frozen_holders)
            add(
                "one_owner",
                f"{self._names_of(holders)} all hold the quorum"
                + (f" (frozen: {self._names_of(frozen)})" if frozen else ""),
            )

        for v in sorted(views, key=lambda v: v.node_id):
            if not v.alive or v.phase is not Phase.MEMBER or v.epoch <= 0:
                continue
            members = tuple(sorted(v.members))
            last = self._last_install.get(v.node_id)
            current = (v.incarnation, v.epoch, members)
            if last is not None and last[1:] == current[1:]:
                continue  # nothing new: same membership (a restarted node re-reading it changes nothing)
            self._last_install[v.node_id] = current
            self.installs += 1
            install = Install(time_s, v.node_id, v.incarnation, v.epoch, members, v.quorum_owner)
            first = self._epochs.get(v.epoch)
            if first is None:
                self._epochs[v.epoch] = install
            elif first.members != members:
                add(
                    "agreement",
                    f"{v.name} installed epoch {v.epoch} with members {self._names_of(members)}, but "
                    f"{self._name(first.node_id)} installed it at {first.time_s:.4f} with "
                    f"{self._names_of(first.members)}",
                )
            problem = self._backing_problem(install, holders, quorum_holder)
            if problem:
                add(
                    "quorum_backed",
                    f"{v.name} installed epoch {v.epoch} ({self._names_of(members)}): {problem}",
                )
        return found

    def _backing_problem(
        self, install: Install, holders: Sequence[int], quorum_holder: Callable[[], str | None]
    ) -> str:
        if self._config.quorum is QuorumType.MAJORITY:
            if len(install.members) < self._config.majority:
                return f"{len(install.members)} members, majority is {self._config.majority}"
            return ""
        holder = quorum_holder()
        disk = self._config.quorum_disk
        if install.quorum_owner is None:
            return f"no quorum owner named; disk {disk} held by {holder or 'no one'}"
        owner = self._name(install.quorum_owner)
        if holder == owner:
            return ""
        if not self._strict_backing:
            # The owner's lease is what the core's safety rests on (core/quorum.py): while it is fresh
            # no other node can hold the quorum. Between a challenger's first disk command (SCSI-2
            # bus reset: the disk is unreserved; SCSI-3 preempt: the challenger holds it) and the end
            # of that lease, the owner is still the owner, and a commit it sent is still backed.
            if install.quorum_owner in holders:
                return ""
            return (
                f"quorum owner {owner} holds no fresh lease and disk {disk} is held by {holder or 'no one'}"
            )
        return f"quorum owner {owner} but disk {disk} held by {holder or 'no one'}"

    # -- groups and addresses -------------------------------------------------------------------------
    def check_groups(
        self, time_s: float, views: Sequence[NodeView], bindings: Mapping[int, Iterable[str]]
    ) -> list[Violation]:
        """Rules 4-6. ``views`` may be only the nodes that changed (the checker keeps the others' last
        view); ``bindings`` is every node's bound addresses now."""
        found: list[Violation] = []

        def add(name: str, evidence: str) -> None:
            v = self.record(time_s, name, evidence)
            if v is not None:
                found.append(v)

        for v in sorted(views, key=lambda v: v.node_id):
            self._latest[v.node_id] = v
            online = frozenset(v.online) if v.alive else frozenset()
            inc, before = self._online_seen.get(v.node_id, (v.incarnation, frozenset()))
            if inc != v.incarnation:
                before = frozenset()
            self._online_seen[v.node_id] = (v.incarnation, online)
            new = sorted(r for _, r in online - before)
            if new and v.phase not in (Phase.MEMBER, Phase.REGROUPING):
                phase = v.phase.name if v.phase is not None else "gone"
                add("online_needs_quorum", f"{v.name} brought {', '.join(new)} Online while {phase}")

        live = [v for v in sorted(self._latest.values(), key=lambda v: v.node_id) if v.alive]
        owners: dict[str, list[NodeView]] = {}
        for v in live:
            if v.frozen and self._fenced(v, live):
                continue
            for group in sorted({g for g, _ in v.online}):
                owners.setdefault(group, []).append(v)
        broken = {g for g, vs in owners.items() if len(vs) > 1}
        self._end_episodes("one_group_owner:", broken)
        for group in sorted(broken):
            if self._episode(f"one_group_owner:{group}", True):
                detail = "; ".join(
                    f"{v.name}{' (frozen)' if v.frozen else ''}: "
                    + ",".join(sorted(r for g, r in v.online if g == group))
                    for v in owners[group]
                )
                add("one_group_owner", f"group {group} is Online on {len(owners[group])} nodes: {detail}")

        holders: dict[str, list[int]] = {}
        for node_id in sorted(bindings):
            for address in sorted(bindings[node_id]):
                holders.setdefault(address, []).append(node_id)
        doubled = {a for a, ids in holders.items() if len(ids) > 1}
        self._end_episodes("one_address:", doubled)
        for address in sorted(doubled):
            if self._episode(f"one_address:{address}", True):
                add("one_address", f"{address} is bound by {self._names_of(holders[address])}")
        return found

    def _fenced(self, frozen: NodeView, live: Sequence[NodeView]) -> bool:
        """A running node installed a later membership without ``frozen``: its Online claims are stale."""
        return any(
            not w.frozen
            and w.phase is Phase.MEMBER
            and w.epoch > frozen.epoch
            and frozen.node_id not in w.members
            for w in live
        )

    def _end_episodes(self, prefix: str, broken: set[str]) -> None:
        for key in [k for k in self._active if k.startswith(prefix) and k[len(prefix) :] not in broken]:
            self._active.discard(key)

    # -- after the settle period ---------------------------------------------------------------------
    def check_final(self, time_s: float, views: Sequence[NodeView], note: str = "") -> list[Violation]:
        """Rule 4. ``note`` is appended to the evidence (the simulation says whether it had converged)."""
        problems: list[str] = []
        live = sorted((v for v in views if v.alive), key=lambda v: v.node_id)
        live_ids = tuple(v.node_id for v in live)
        for v in live:
            if v.frozen:
                problems.append(f"{v.name} still frozen")
            if v.phase is not Phase.MEMBER:
                problems.append(f"{v.name} is {v.phase.name if v.phase else 'gone'}")
            elif tuple(sorted(v.members)) != live_ids:
                problems.append(
                    f"{v.name} has members {self._names_of(v.members)}, live are {self._names_of(live_ids)}"
                )
        epochs = sorted({v.epoch for v in live})
        if len(epochs) > 1:
            problems.append("epochs differ: " + ", ".join(f"{v.name}={v.epoch}" for v in live))
        holders = [v.node_id for v in live if v.holds_quorum]
        if len(holders) != 1:
            problems.append(f"{len(holders)} nodes hold the quorum ({self._names_of(holders)})")
        found: list[Violation] = []
        if problems:
            violation = self.record(time_s, "final", "; ".join(problems) + note)
            if violation is not None:
                found.append(violation)
        return found


def converged(views: Sequence[NodeView]) -> bool:
    """The final rule as a predicate, for running until the cluster settles."""
    live = [v for v in views if v.alive]
    if not live:
        return False
    ids = tuple(sorted(v.node_id for v in live))
    first = live[0]
    return (
        all(
            not v.frozen
            and v.phase is Phase.MEMBER
            and v.epoch == first.epoch
            and tuple(sorted(v.members)) == ids
            for v in live
        )
        and sum(1 for v in live if v.holds_quorum) == 1
    )
