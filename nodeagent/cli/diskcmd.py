"""``wolfpack disk create | show``: the shared disks of a cluster (``DIR/disks/NAME.img``).

Theory of operation
-------------------
A disk is an image file with a reservation record (``shareddisk``). ``create`` makes a new, zeroed,
sparse image; it never overwrites one. ``show`` reads each disk's reservation state in one
consistent snapshot (``shareddisk.describe``) and prints it the way ``sg_persist -k`` / ``-r`` would:
the SCSI-2 holder, the persistent-reservation holder and type, the registered keys (hex) and the
generation counter, which every change of registrations or reservation increments. Reading takes
the disk's lock briefly; it does not disturb the nodes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nodeagent.cli.clusterdir import ClusterDir
from nodeagent.config import MAX_DISK_NAME, is_disk_name
from nodeagent.errors import ConfigError

MIN_SIZE_MB = 1
MAX_SIZE_MB = 64 * 1024
MAX_DISKS_SHOWN = 100


def check_name(name: str) -> str:
    if not is_disk_name(name):
        raise ConfigError(f"disk name {name!r}: letters and digits only, at most {MAX_DISK_NAME}")
    return name


def create(cdir: ClusterDir, name: str, size_mb: int) -> dict[str, Any]:
    from shareddisk import create_disk, describe

    check_name(name)
    if not MIN_SIZE_MB <= size_mb <= MAX_SIZE_MB:
        raise ConfigError(f"--size-mb {size_mb}: must be from {MIN_SIZE_MB} to {MAX_SIZE_MB}")
    path = cdir.disk_path(name)
    if path.exists():
        raise ConfigError(f"disk {name} already exists ({path})")
    cdir.disks_dir.mkdir(exist_ok=True)
    disk = create_disk(path, size_bytes=size_mb * 2**20)
    try:
        info = describe(disk)
    finally:
        disk.close()
    return {**info, "path": str(path)}


def disk_paths(cdir: ClusterDir, name: str | None) -> list[Path]:
    if name is not None:
        path = cdir.disk_path(check_name(name))
        if not path.exists():
            known = ", ".join(p.stem for p in disk_paths(cdir, None)) or "none"
            raise ConfigError(f"no disk {name} in {cdir.disks_dir} (disks: {known})")
        return [path]
    if not cdir.disks_dir.is_dir():
        return []
    return sorted(cdir.disks_dir.glob("*.img"))[:MAX_DISKS_SHOWN]


def show(cdir: ClusterDir, name: str | None) -> list[dict[str, Any]]:
    from shareddisk import FileDisk, describe

    infos = []
    for path in disk_paths(cdir, name):
        disk = FileDisk.open(path)
        try:
            infos.append({**describe(disk), "path": str(path)})
        finally:
            disk.close()
    return infos


def _key(value: Any) -> str:
    return f"0x{value:x}" if isinstance(value, int) else str(value)


def _row(label: str, value: object) -> str:
    return f"  {label + ':':<20}{value}"


def render(infos: list[dict[str, Any]]) -> str:
    if not infos:
        return "no disks (wolfpack disk create NAME)"
    blocks = []
    for info in infos:
        size = info.get("size_bytes")
        size_text = f"{size / 2**20:.1f} MiB" if isinstance(size, int) else "?"
        lines = [
            f"Disk {info.get('name')}  {info.get('path')}  {size_text} "
            f"({info.get('block_count')} blocks of {info.get('block_size')} bytes)",
            _row("generation", info.get("generation")),
            _row("SCSI-2 reserved by", info.get("scsi2_holder") or "-"),
        ]
        pr = info.get("pr_holder")
        if isinstance(pr, dict):
            holder = f"{pr.get('initiator')} key {_key(pr.get('key'))} ({info.get('pr_type')})"
            lines.append(_row("PR reservation", holder))
        else:
            lines.append(_row("PR reservation", "-"))
        regs = info.get("registrations")
        keys = (
            ", ".join(f"{who} {_key(k)}" for who, k in sorted(regs.items())) if isinstance(regs, dict) else ""
        )
        lines.append(_row("registered keys", keys or "-"))
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)
