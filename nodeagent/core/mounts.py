"""Mounted volumes (mount points): a Physical Disk mounted in a folder of another disk of its group.

Theory of operation
-------------------
Exchange clusters often put transaction logs and stores on volumes mounted under a folder of the
group's main disk (``R:\\Logs``) instead of using more drive letters. Windows Server 2003 supports
this in a cluster with three rules, which wolfpack enforces when the cluster database changes:

1. the mounted disk is a Physical Disk resource of its own (its own shared disk, its own
   reservation and arbitration);
2. its host disk is a Physical Disk in the SAME group (a mount point cannot cross groups, since
   the two must always be owned by the same node);
3. it depends on its host disk, so it comes online after the host and goes offline before it.

A disk is a mount point when its private properties name ``MountedOn`` (the host disk resource)
and ``MountPath`` (the folder, e.g. ``R:\\Logs``). The dependency of rule 3 is added when the disk
is created and cannot be removed while the disk is mounted there; ``MountedOn`` cannot be changed
afterwards (delete and create the resource again, as on Windows, where the volume is remounted).
Anything that depends on "every disk of the group" (the System Attendant) depends on mounted disks
too: evs.py counts every Physical Disk.
"""

from __future__ import annotations

from typing import Any

from nodeagent.core.clusterdb import ClusterDb, Resource
from nodeagent.errors import AdminRefused

DISK = "Physical Disk"
MAX_PATH = 260


def host_of(r: Resource) -> str | None:
    """The host disk a mounted disk depends on (None: not a mount point)."""
    host = r.private.get("MountedOn")
    return str(host) if r.type == DISK and host else None


def mount_dependencies(db: ClusterDb, group: str, rtype: str, private: dict[str, Any]) -> list[str]:
    """Validate a new resource's mount point properties; the dependencies they imply."""
    host_name = private.get("MountedOn")
    if not host_name and not private.get("MountPath"):
        return []
    if rtype != DISK:
        raise AdminRefused("Only a Physical Disk can be a mounted volume", f"{rtype} has MountedOn/MountPath")
    if not host_name or not isinstance(host_name, str):
        raise AdminRefused("A mounted volume names its host disk", "set MountedOn to a Physical Disk")
    path = private.get("MountPath")
    if not isinstance(path, str) or not path.strip() or len(path) > MAX_PATH:
        raise AdminRefused("A mounted volume needs a folder path", f"MountPath = {path!r}")
    host = db.resources.get(host_name)
    if host is None or host.type != DISK:
        raise AdminRefused("The host of a mounted volume must be a Physical Disk", host_name)
    if host.group != group:
        raise AdminRefused(
            "A mounted volume must be in the same group as its host disk", f"{host_name} is in {host.group}"
        )
    return [host.name]


def check_dependency_removal(r: Resource, dep: str) -> None:
    if host_of(r) == dep:
        why = f"{r.name} is mounted on {dep}"
        raise AdminRefused("A mounted volume must depend on the disk that hosts it", why)


def check_private_change(r: Resource, private: dict[str, Any]) -> None:
    for key in ("MountedOn", "MountPath"):
        if key in private and private[key] != r.private.get(key):
            why = f"{key} of {r.name}: delete the resource and create it again"
            raise AdminRefused("A mounted volume cannot be moved", why)
