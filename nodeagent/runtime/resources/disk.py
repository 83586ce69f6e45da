"""Physical Disk: a shared disk owned by one node at a time, through its SCSI-2 reservation.

Theory of operation
-------------------
Private property ``Disk``: the disk's name, the image ``DIR/disks/NAME.img`` (a ``shareddisk``
disk). The initiator is this node's name, as for the quorum disk.

Online is the arbitration of MSCS.md "Disk arbitration", the same challenge the core runs for the
quorum (core/quorum.py), done here with the shareddisk API:

1. RESERVE. If it succeeds the disk was free (released by an orderly offline or move): online at
   once, no wait.
2. Otherwise someone holds it (a dead owner never releases a SCSI-2 reservation): challenge - bus
   RESET, wait ``challenge_wait_s``, RESERVE again. A live owner re-reserves within its renewal
   interval (shorter than the wait), so the second RESERVE conflicts and online fails ("... defended
   by NODE1"); a dead one does not, and the disk is ours.
3. ``AfterFence`` (set by the cluster service, not by the admin: core/resources.py): the group was
   placed here after its lost owner's fence, so that owner has halted, died or stands frozen, and
   cannot defend. The challenge resets and reserves without the wait: the fence already was it.

While online a defender task re-issues RESERVE every ``quorum_renew_interval_s``. A renewal that
conflicts or cannot reach the disk means the disk was lost: the resource fails (unsolicited report)
and stops defending. LooksAlive: the last renewal succeeded and was issued less than
``quorum_lease_s`` ago; IsAlive: a fenced read of block 0 succeeds (only the holder may read a
SCSI-2 reserved disk). Offline stops the defender and RELEASEs. Terminate does the same, quickly.
``abandon`` (the node process goes away) closes the handle WITHOUT releasing: a crashed host leaves
its reservation behind, and the survivor's challenge is what breaks it.

The quorum disk (``config.quorum_disk``) is arbitrated by the cluster service itself (the core's
arbiter, with challenge, lease and SCSI-3 if configured). Its Physical Disk resource does not fight
the arbiter: online checks that this node holds the reservation, LooksAlive/IsAlive re-check it,
offline and terminate leave it alone (the core releases the quorum when the node stops).

Disk calls block briefly (an flock and a few pread/pwrite): they run in a worker thread (or inline
for in-memory test disks, ``Host.disks_in_thread``). A call in flight is never abandoned, so the
handle is never closed under a running call.

Disk faults (diskfaults.py, ``wolfpack fault disk``): the host's opener hands out handles that fail
with ``DiskUnavailable`` while this node's path to the disk is lost; every call here maps that to a
``ResourceError``, so a lost path fails the next renewal (the resource fails, and the core's restart
policy, then failover, takes it from there) and every online attempt on this node. A slow disk
(``Host.disk_faults``) delays each call before it runs, in the worker thread or by ``trio.sleep``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

import trio

from nodeagent.config import is_disk_name
from nodeagent.runtime.resources.base import FailureCallback, Host, Resource, ResourceError, prop_str
from shareddisk import DiskError, Outcome, SharedDisk

T = TypeVar("T")

DEFENDER_STOP_BOUND_S = 10.0  # a renewal in flight is bounded by the image lock timeout (5 s)

log = logging.getLogger("nodeagent.resources.disk")


class PhysicalDisk(Resource):
    rtype = "Physical Disk"

    def __init__(self, name: str, group: str, props: dict[str, Any], host: Host, on_failure: FailureCallback):
        super().__init__(name, group, props, host, on_failure)
        self.disk_name = prop_str(props, "Disk", max_len=64).strip()
        if not is_disk_name(self.disk_name):
            raise ResourceError(
                f"private property Disk = {self.disk_name!r}: a disk name of letters and digits"
            )
        self.me = host.node_name
        self.quorum = self.disk_name.upper() == host.config.quorum_disk.upper()
        self._disk: SharedDisk | None = None
        self._defender: trio.CancelScope | None = None
        self._lease_until = 0.0
        self._lost: str | None = None
        self._defender_done = trio.Event()
        self._defender_done.set()  # no defender yet

    def online_timeout_s(self) -> float:
        return 10 * self.host.config.timing.challenge_wait_s + 30.0

    # -- actions ------------------------------------------------------------------------------------
    async def online(self) -> str:
        timing = self.host.config.timing
        disk = await self._open()
        if self.quorum:
            return await self._check_quorum_holder()
        issued = time.monotonic()
        outcome = await self._call(disk.reserve, self.me)
        detail = f"disk {self.disk_name} reserved"
        if outcome is not Outcome.OK:
            holder = await self._holder()
            # Challenge: break the reservation, give a live defender time to re-reserve, try again.
            # After a fence (AfterFence) the holder must have stopped: no defender to wait for.
            await self._call(disk.reset, self.me)
            if not self.props.get("AfterFence"):
                await trio.sleep(timing.challenge_wait_s)
            issued = time.monotonic()
            if await self._call(disk.reserve, self.me) is not Outcome.OK:
                now_holder = await self._holder()
                raise ResourceError(
                    f"disk {self.disk_name} is defended by {now_holder or holder or 'another node'}"
                )
            detail = f"disk {self.disk_name} reserved after a challenge (was held by {holder or 'unknown'})"
        self._lease_until = issued + timing.quorum_lease_s
        self._lost = None
        self._defender_done = trio.Event()
        self._defender = self.host.background(f"{self.name} defender", self._defend, self.on_failure)
        return detail

    async def offline(self) -> str:
        if self.quorum:
            self._close()
            await trio.lowlevel.checkpoint()
            return f"quorum disk {self.disk_name} left to the cluster service"
        await self._release()
        return f"disk {self.disk_name} released"

    async def terminate(self) -> None:
        if self.quorum:
            self._close()
            await trio.lowlevel.checkpoint()
            return
        try:
            await self._release()
        except ResourceError as e:
            log.warning("%s: terminate: %s", self.name, e.detail)

    def abandon(self) -> None:
        self._close()

    async def looks_alive(self) -> str:
        if self.quorum:
            return await self._check_quorum_holder()
        await trio.lowlevel.checkpoint()
        if self._lost is not None:
            raise ResourceError(self._lost)
        if time.monotonic() >= self._lease_until:
            raise ResourceError(f"disk {self.disk_name}: no successful renewal within the lease")
        return f"disk {self.disk_name} defended"

    async def is_alive(self) -> str:
        if self.quorum:
            return await self._check_quorum_holder()
        await self.looks_alive()
        disk = self._require_disk()
        await self._call(disk.read_block, self.me, 0)
        return f"disk {self.disk_name} readable"

    # -- helpers -------------------------------------------------------------------------------------
    async def _defend(self) -> None:
        timing = self.host.config.timing
        done = self._defender_done
        try:
            disk = self._require_disk()
            lost: str | None = None
            while lost is None:
                await trio.sleep(timing.quorum_renew_interval_s)
                issued = time.monotonic()
                try:
                    outcome = await self._call(disk.reserve, self.me)
                except ResourceError as e:
                    lost = f"disk {self.disk_name}: renewal failed: {e.detail}"
                    break
                if outcome is not Outcome.OK:
                    lost = (
                        f"disk {self.disk_name}: reservation lost to {await self._holder() or 'another node'}"
                    )
                    break
                self._lease_until = max(self._lease_until, issued + timing.quorum_lease_s)
        finally:
            done.set()
        self._lost = lost
        self.on_failure(lost)

    async def _check_quorum_holder(self) -> str:
        disk = self._disk or await self._open()
        holder = (await self._call(disk.read_reservation)).holder
        if holder != self.me:
            raise ResourceError(
                f"quorum disk {self.disk_name} is held by {holder or 'no one'}, not {self.me}"
            )
        return f"quorum disk {self.disk_name} held by this node's cluster service"

    async def _release(self) -> None:
        # The defender's renewal in flight must land before RELEASE, or it would re-reserve after it.
        self._stop_defender()
        with trio.move_on_after(DEFENDER_STOP_BOUND_S):
            await self._defender_done.wait()
        disk = self._disk
        if disk is None:
            await trio.lowlevel.checkpoint()
            return
        try:
            await self._call(disk.release, self.me)
        finally:
            self._close()

    async def _holder(self) -> str | None:
        if self._disk is None:
            return None
        try:
            return (await self._call(self._disk.read_reservation)).holder
        except ResourceError:
            return None

    async def _open(self) -> SharedDisk:
        if self._disk is None:
            self._disk = await self._call(self.host.disk_opener, self.disk_name)
        return self._disk

    def _require_disk(self) -> SharedDisk:
        if self._disk is None:
            raise ResourceError(f"disk {self.disk_name} is not open")
        return self._disk

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        """One blocking disk call, off the event loop; disk errors become ``ResourceError``."""

        faults = self.host.disk_faults
        delay_s = faults.delay_s(self.disk_name) if faults is not None else 0.0

        def run() -> T:
            if delay_s > 0 and self.host.disks_in_thread:
                time.sleep(delay_s)  # a slow disk (diskfaults.py), in the worker thread
            try:
                return fn(*args)
            except (DiskError, OSError, ValueError) as e:
                text = str(e)
                said = text.lower().startswith(f"disk {self.disk_name.lower()}")
                raise ResourceError(text if said else f"disk {self.disk_name}: {text}") from None

        if self.host.disks_in_thread:
            return await trio.to_thread.run_sync(run)
        await trio.sleep(delay_s)  # 0: a plain checkpoint
        return run()

    def _stop_defender(self) -> None:
        if self._defender is not None:
            self._defender.cancel()
            self._defender = None

    def _close(self) -> None:
        self._stop_defender()
        disk, self._disk = self._disk, None
        if disk is not None:
            try:
                disk.close()
            except Exception as e:
                log.warning("%s: closing disk %s failed: %s", self.name, self.disk_name, e)
