"""The cluster directory: where it is, what is in it, and how ``wolfpack up`` creates it.

Theory of operation
-------------------
Everything the command knows about a cluster comes from one directory (CONTRACT.md, "Cluster
directory layout"): ``cluster.toml``, ``disks/NAME.img`` and ``nodes/NAME/`` with the node's pid,
incarnation, event log, process log and control socket. ``ClusterDir`` only names those paths; the
node processes write most of the files.

Creating a cluster validates every input first (the edition rules, the node count, the speed, the
cluster number) so that a refused ``up`` leaves nothing behind; then it picks a free
cluster number, writes the disks and node folders, and writes ``cluster.toml`` last, atomically: a
directory holding a ``cluster.toml`` is always complete. If any step fails the steps already done
are undone.

A cluster number C is free when every node address of the plan (127.C.1.N and 127.C.2.N, UDP 3343)
can be bound right now and no sibling cluster directory (``DIR/../*/cluster.toml``) claims C: the
bind test finds running clusters, the sibling scan finds stopped ones next to this one.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import re
import secrets
import shutil
import socket
import tempfile
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w

from nodeagent.config import (
    CLUSTER_PORT,
    MAX_DISK_NAME,
    MAX_NODES,
    ClusterConfig,
    Net,
    NodeConfig,
    check_node_set,
    default_config_dict,
    is_disk_name,
    load_cluster_file,
)
from nodeagent.errors import ConfigError
from shareddisk import create_disk

CLAIM_S = 60.0  # how long a picked cluster number stays claimed for its `up`
DATA_DISK_BYTES = 16 * 2**20  # a data disk (EVS, MSDTC, mounted volume) made by evs/resource create

DEFAULT_DIR = "lab"
ENV_DIR = "WOLFPACK_DIR"
MAX_SIBLINGS_SCANNED = 200  # bound the scan of DIR/.. for other clusters
MAX_CLUSTER_NUMBER = 250
QUORUM_DISK_BYTES = 16 * 2**20

# Defaults of `wolfpack up` for a new cluster; None in UpOptions means "not given".
DEFAULT_NODES = 3
DEFAULT_SPEED = 10.0
DEFAULT_QUORUM = "disk"
DEFAULT_ARBITRATION = "scsi2"
DEFAULT_EDITION = "enterprise"


def resolve_dir(arg: str | None) -> Path:
    """The cluster directory: the argument, else $WOLFPACK_DIR, else ./lab; always absolute."""
    raw = arg or os.environ.get(ENV_DIR) or DEFAULT_DIR
    return Path(raw).expanduser().resolve()


@dataclass(frozen=True, slots=True)
class ClusterDir:
    """The paths of one cluster directory (nothing here touches the disk)."""

    root: Path

    @property
    def cluster_file(self) -> Path:
        return self.root / "cluster.toml"

    @property
    def disks_dir(self) -> Path:
        return self.root / "disks"

    @property
    def nodes_dir(self) -> Path:
        return self.root / "nodes"

    def disk_path(self, name: str) -> Path:
        return self.disks_dir / f"{name}.img"

    def provision_disk(self, name: str) -> bool:
        """Create disks/NAME.img (a data disk, like an admin provisioning a LUN) when it is missing;
        True when it was created."""
        if not is_disk_name(name):
            raise ConfigError(f"disk name {name!r}: letters and digits only, at most {MAX_DISK_NAME}")
        path = self.disk_path(name)
        if path.exists():
            return False
        self.disks_dir.mkdir(exist_ok=True)
        create_disk(path, DATA_DISK_BYTES)
        return True

    def node_dir(self, name: str) -> Path:
        return self.nodes_dir / name

    def pid_file(self, name: str) -> Path:
        return self.node_dir(name) / "pid"

    def incarnation_file(self, name: str) -> Path:
        return self.node_dir(name) / "incarnation"

    def events_file(self, name: str) -> Path:
        return self.node_dir(name) / "events.jsonl"

    def node_log(self, name: str) -> Path:
        return self.node_dir(name) / "node.log"

    def control_sock(self, name: str) -> Path:
        return self.node_dir(name) / "control.sock"

    def db_file(self, name: str) -> Path:
        return self.node_dir(name) / "db.json"


def open_cluster(root: Path) -> tuple[ClusterDir, ClusterConfig]:
    """The directory and its validated configuration, or a one-line ConfigError."""
    cdir = ClusterDir(root)
    if not cdir.cluster_file.is_file():
        raise ConfigError(f"{root} is not a wolfpack cluster directory (no cluster.toml)")
    return cdir, load_cluster_file(cdir.cluster_file)


def read_int_file(path: Path) -> int | None:
    """A small decimal file (pid, incarnation); None when missing or not a number."""
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None


# -- creating a cluster ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UpOptions:
    """The cluster-shaping flags of ``wolfpack up``; None means the user did not give the flag."""

    nodes: int | None = None
    speed: float | None = None
    quorum: str | None = None
    arbitration: str | None = None
    edition: str | None = None
    cluster_number: int | None = None

    def config_dict(self, number: int, key: bytes) -> dict[str, Any]:
        return default_config_dict(
            number=number,
            key=key,
            nodes=self.nodes if self.nodes is not None else DEFAULT_NODES,
            speed=self.speed if self.speed is not None else DEFAULT_SPEED,
            quorum=self.quorum or DEFAULT_QUORUM,
            arbitration=self.arbitration or DEFAULT_ARBITRATION,
            edition=(self.edition or DEFAULT_EDITION).lower(),
        )


# ConfigError messages name cluster.toml keys; a user of `up` typed flags.
_FLAG_OF_KEY = {
    "speed": "--speed",
    "number": "--cluster-number",
    "quorum": "--quorum",
    "arbitration": "--arbitration",
    "edition": "--edition",
}


def _as_flag_error(err: ConfigError) -> ConfigError:
    message = str(err)
    match = re.match(r"\[cluster\] (\w+)(?: =)?", message)
    if match and match.group(1) in _FLAG_OF_KEY:
        message = _FLAG_OF_KEY[match.group(1)] + message[match.end() :]
    return ConfigError(message)


def validate_new(opts: UpOptions) -> ClusterConfig:
    """Check every input of a new cluster before anything is created; returns a throw-away config."""
    nodes = opts.nodes if opts.nodes is not None else DEFAULT_NODES
    edition = (opts.edition or DEFAULT_EDITION).lower()
    if nodes < 1:
        raise ConfigError(f"--nodes {nodes}: a cluster needs at least one node")
    # The edition rules first: "Standard cannot cluster" says more than "node id 9 out of range".
    check_node_set(tuple(NodeConfig(name=f"NODE{i}", id=i) for i in range(1, nodes + 1)), edition)
    if nodes > MAX_NODES:
        raise ConfigError(f"--nodes {nodes}: a server cluster has at most {MAX_NODES} nodes")
    number = opts.cluster_number if opts.cluster_number is not None else 1
    try:
        return ClusterConfig.from_dict(opts.config_dict(number, bytes(32)))
    except ConfigError as e:
        raise _as_flag_error(e) from None


def number_is_bindable(number: int) -> bool:
    """True when no process holds any node address of cluster ``number`` (UDP 3343)."""
    return all(
        _bindable((f"127.{number}.{int(net)}.{node_id}", CLUSTER_PORT))
        for net in Net
        for node_id in range(1, MAX_NODES + 1)
    )


def sibling_numbers(root: Path) -> set[int]:
    """Cluster numbers claimed by other cluster directories next to ``root`` (bounded scan)."""
    numbers: set[int] = set()
    try:
        entries = sorted(root.parent.iterdir())[:MAX_SIBLINGS_SCANNED]
    except OSError:
        return numbers
    for entry in entries:
        if entry == root:
            continue
        try:
            with (entry / "cluster.toml").open("rb") as f:
                value = tomllib.load(f).get("cluster", {}).get("number")
        except (OSError, tomllib.TOMLDecodeError, AttributeError):
            continue
        if isinstance(value, int) and not isinstance(value, bool):
            numbers.add(value)
    return numbers


def claim_number(number: int, root: Path) -> bool:
    """Claim ``number`` machine-wide for CLAIM_S seconds (False: someone else claimed it recently).

    Two `up`s started at the same moment (parallel tests, scripts) would otherwise both find the same
    number bindable before either has started its nodes. A claim is a file created with O_EXCL in
    the temp directory; it only has to outlive the start-up, after which the bound sockets speak.
    """
    claims = Path(tempfile.gettempdir()) / "wolfpack-claims"
    claims.mkdir(exist_ok=True)
    path = claims / str(number)
    with contextlib.suppress(FileNotFoundError):
        if time.time() - path.stat().st_mtime < CLAIM_S:
            return False
        path.unlink()
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as f:
        f.write(f"{root}\n")
    return True


def claim_free_number(
    numbers: range, addresses: Callable[[int], list[tuple[str, int]]], owner: Path
) -> int | None:
    """The first number in ``numbers`` whose ``addresses(number)`` are all bindable now, claimed
    (``claim_number``); None when there is none. For in-process clusters (tests) that bind only
    some addresses of a number."""
    for number in numbers:
        if all(_bindable(addr) for addr in addresses(number)) and claim_number(number, owner):
            return number
    return None


def _bindable(addr: tuple[str, int]) -> bool:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind(addr)
    except OSError:
        return False
    finally:
        sock.close()
    return True


def pick_cluster_number(
    root: Path, bindable: Callable[[int], bool] = number_is_bindable, requested: int | None = None
) -> int:
    taken = sibling_numbers(root)
    if requested is not None:
        if not bindable(requested):
            raise ConfigError(f"--cluster-number {requested}: 127.{requested}.x.x:{CLUSTER_PORT} is in use")
        return requested
    real = bindable is number_is_bindable  # (tests pass a fake and want no machine-wide claims)
    for number in range(1, MAX_CLUSTER_NUMBER + 1):
        if number not in taken and bindable(number) and (not real or claim_number(number, root)):
            return number
    raise ConfigError(f"no free cluster number from 1 to {MAX_CLUSTER_NUMBER} (every one is in use)")


def _header(config: ClusterConfig) -> str:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    timing = "\n".join(f"#   {k} = {v:g}" for k, v in config.timing.as_dict().items())
    return (
        f"# wolfpack cluster settings, written by `wolfpack up` at {now}.\n"
        "# Editable: a node reads this file when it starts (wolfpack down; wolfpack up to apply).\n"
        "# [timing] takes overrides in lab seconds (already divided by speed), like `cluster /prop`.\n"
        f"# At speed {config.speed:g} the values are:\n{timing}\n\n"
    )


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def make_quorum_disk(path: Path) -> None:
    from shareddisk import create_disk

    create_disk(path, size_bytes=QUORUM_DISK_BYTES).close()


def create_cluster(
    root: Path,
    opts: UpOptions,
    *,
    make_disk: Callable[[Path], None] = make_quorum_disk,
    bindable: Callable[[int], bool] = number_is_bindable,
) -> tuple[ClusterDir, ClusterConfig]:
    """Validate, then create ``root`` as a new cluster directory. Undoes everything on failure."""
    cdir = ClusterDir(root)
    validate_new(opts)
    if root.exists() and not root.is_dir():
        raise ConfigError(f"{root} exists and is not a directory")
    if root.is_dir() and any(root.iterdir()):
        raise ConfigError(f"{root} is not empty and has no cluster.toml; use a new or empty directory")
    number = pick_cluster_number(root, bindable, opts.cluster_number)
    config = ClusterConfig.from_dict(opts.config_dict(number, secrets.token_bytes(32)))

    created_root = not root.exists()
    try:
        root.mkdir(parents=True, exist_ok=True)
        cdir.disks_dir.mkdir()
        for node in config.nodes:
            cdir.node_dir(node.name).mkdir(parents=True)
        if config.quorum.value == "disk":
            make_disk(cdir.disk_path(config.quorum_disk))
        _write_atomically(cdir.cluster_file, _header(config) + tomli_w.dumps(config.to_dict()))
    except BaseException:
        _undo(root, created_root)
        raise
    return cdir, config


def _undo(root: Path, created_root: bool) -> None:
    if created_root:
        shutil.rmtree(root, ignore_errors=True)
        return
    # The directory was there (and empty) before: empty it again.
    for entry in list(root.iterdir()) if root.is_dir() else []:
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                entry.unlink()


def check_matches(cdir: ClusterDir, config: ClusterConfig, opts: UpOptions) -> None:
    """Refuse flags of ``up`` that contradict an existing cluster.toml (one line naming each)."""
    given: list[str] = []
    has: list[str] = []

    def differ(flag: str, value: object, key: str, current: object) -> None:
        given.append(f"{flag} {value}")
        has.append(f"{key} = {current}")

    if opts.nodes is not None and opts.nodes != len(config.nodes):
        differ("--nodes", opts.nodes, "nodes", len(config.nodes))
    if opts.speed is not None and opts.speed != config.speed:
        differ("--speed", f"{opts.speed:g}", "speed", f"{config.speed:g}")
    if opts.quorum is not None and opts.quorum != config.quorum.value:
        differ("--quorum", opts.quorum, "quorum", config.quorum.value)
    if opts.arbitration is not None and opts.arbitration != config.arbitration.value:
        differ("--arbitration", opts.arbitration, "arbitration", config.arbitration.value)
    if opts.edition is not None and opts.edition.lower() != config.edition:
        differ("--edition", opts.edition, "edition", config.edition)
    if opts.cluster_number is not None and opts.cluster_number != config.number:
        differ("--cluster-number", opts.cluster_number, "number", config.number)
    if given:
        raise ConfigError(
            f"{', '.join(given)}: {cdir.cluster_file} already has {', '.join(has)}; "
            "edit cluster.toml or use a new DIR"
        )
