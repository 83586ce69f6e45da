"""Creating a cluster directory (the part of ``wolfpack up`` that starts no process)."""

from __future__ import annotations

import shutil
import socket
import tempfile
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from nodeagent.cli import clusterdir
from nodeagent.cli.clusterdir import ClusterDir, UpOptions
from nodeagent.config import CLUSTER_PORT, QuorumType, load_cluster_file
from nodeagent.errors import ConfigError


@pytest.fixture
def tmp_root() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="wp", dir="/tmp"))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_create_writes_the_whole_layout(tmp_root: Path) -> None:
    root = tmp_root / "lab"
    cdir, config = clusterdir.create_cluster(
        root, UpOptions(nodes=4, speed=5, arbitration="scsi3"), bindable=lambda c: c >= 7
    )
    assert cdir == ClusterDir(root)
    assert sorted(p.name for p in root.iterdir()) == ["cluster.toml", "disks", "nodes"]
    assert sorted(p.name for p in (root / "nodes").iterdir()) == ["NODE1", "NODE2", "NODE3", "NODE4"]
    assert [p.name for p in (root / "disks").iterdir()] == ["Q.img"]
    assert (root / "disks" / "Q.img").stat().st_size >= 16 * 2**20

    loaded = load_cluster_file(root / "cluster.toml")
    assert loaded == config
    assert loaded.number == 7  # the first bindable number
    assert len(loaded.key) == 32
    assert loaded.speed == 5.0
    assert loaded.arbitration.value == "scsi3"
    assert loaded.quorum is QuorumType.DISK
    assert [n.name for n in loaded.nodes] == ["NODE1", "NODE2", "NODE3", "NODE4"]
    text = (root / "cluster.toml").read_text()
    assert text.startswith("# wolfpack cluster settings")
    assert "#   heartbeat_interval_s = 0.24" in text  # 1.2 s / speed 5, as documentation


def test_each_cluster_gets_its_own_key(tmp_root: Path) -> None:
    _, a = clusterdir.create_cluster(tmp_root / "a", UpOptions(), bindable=lambda c: True)
    _, b = clusterdir.create_cluster(tmp_root / "b", UpOptions(), bindable=lambda c: True)
    assert a.key != b.key


def test_majority_quorum_has_no_disk(tmp_root: Path) -> None:
    root = tmp_root / "mns"
    _, config = clusterdir.create_cluster(
        root, UpOptions(quorum="majority", nodes=5), bindable=lambda c: True
    )
    assert config.quorum is QuorumType.MAJORITY
    assert list((root / "disks").iterdir()) == []


def test_an_existing_empty_directory_is_used(tmp_root: Path) -> None:
    clusterdir.create_cluster(tmp_root, UpOptions(nodes=1), bindable=lambda c: True)
    assert (tmp_root / "cluster.toml").is_file()


def test_a_failed_create_leaves_nothing_behind(tmp_root: Path) -> None:
    def broken_disk(path: Path) -> None:
        path.write_bytes(b"half")
        raise OSError(28, "No space left on device")

    root = tmp_root / "lab"
    with pytest.raises(OSError, match="No space"):
        clusterdir.create_cluster(root, UpOptions(), make_disk=broken_disk, bindable=lambda c: True)
    assert not root.exists()

    # A directory that existed (empty) before is emptied again, not removed.
    with pytest.raises(OSError, match="No space"):
        clusterdir.create_cluster(tmp_root, UpOptions(), make_disk=broken_disk, bindable=lambda c: True)
    assert tmp_root.is_dir() and list(tmp_root.iterdir()) == []


def test_refused_input_creates_nothing(tmp_root: Path) -> None:
    root = tmp_root / "lab"
    for opts in (UpOptions(edition="standard"), UpOptions(nodes=9), UpOptions(speed=0.0)):
        with pytest.raises(ConfigError):
            clusterdir.create_cluster(root, opts, bindable=lambda c: True)
        assert not root.exists()


def test_cluster_number_skips_numbers_in_use_and_sibling_clusters(tmp_root: Path) -> None:
    clusterdir.create_cluster(tmp_root / "one", UpOptions(), bindable=lambda c: True)  # takes 1
    clusterdir.create_cluster(tmp_root / "two", UpOptions(), bindable=lambda c: c != 2)  # 2 is busy: 3
    _, third = clusterdir.create_cluster(tmp_root / "three", UpOptions(), bindable=lambda c: True)
    numbers = {
        tomllib.loads((tmp_root / d / "cluster.toml").read_text())["cluster"]["number"]
        for d in ("one", "two", "three")
    }
    assert numbers == {1, 3, 2}
    assert third.number == 2  # free again: only bound or claimed numbers are skipped


def test_no_free_cluster_number(tmp_root: Path) -> None:
    with pytest.raises(ConfigError, match="no free cluster number"):
        clusterdir.pick_cluster_number(tmp_root / "x", bindable=lambda c: False)


def test_a_requested_cluster_number_must_be_bindable(tmp_root: Path) -> None:
    assert clusterdir.pick_cluster_number(tmp_root / "x", lambda c: True, requested=42) == 42
    with pytest.raises(ConfigError, match=r"--cluster-number 42: 127\.42\.x\.x:3343 is in use"):
        clusterdir.pick_cluster_number(tmp_root / "x", lambda c: False, requested=42)


def test_bind_test_sees_a_bound_node_address() -> None:
    number = 195  # outside every range a test or lab picks from (1.., 190-193, 200-250)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind((f"127.{number}.2.5", CLUSTER_PORT))
        assert not clusterdir.number_is_bindable(number)
    finally:
        sock.close()
    assert clusterdir.number_is_bindable(number)


def test_flags_that_agree_with_cluster_toml_are_accepted(tmp_root: Path) -> None:
    root = tmp_root / "lab"
    cdir, config = clusterdir.create_cluster(root, UpOptions(nodes=2, speed=2.5), bindable=lambda c: True)
    assert config.number == 1
    clusterdir.check_matches(cdir, config, UpOptions())
    clusterdir.check_matches(
        cdir, config, UpOptions(nodes=2, speed=2.5, quorum="disk", edition="Enterprise", cluster_number=1)
    )
    with pytest.raises(ConfigError, match=r"^--speed 10: .* already has speed = 2.5; edit cluster.toml"):
        clusterdir.check_matches(cdir, config, UpOptions(speed=10.0))


def test_open_cluster_names_a_directory_without_cluster_toml(tmp_root: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        clusterdir.open_cluster(tmp_root)
    assert str(exc.value) == f"{tmp_root} is not a wolfpack cluster directory (no cluster.toml)"


def test_open_cluster_reports_a_broken_cluster_toml(tmp_root: Path) -> None:
    (tmp_root / "cluster.toml").write_text("[cluster\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        clusterdir.open_cluster(tmp_root)


def test_read_int_file(tmp_root: Path) -> None:
    (tmp_root / "pid").write_text("1234\n")
    (tmp_root / "bad").write_text("12a")
    assert clusterdir.read_int_file(tmp_root / "pid") == 1234
    assert clusterdir.read_int_file(tmp_root / "bad") is None
    assert clusterdir.read_int_file(tmp_root / "missing") is None


def test_provision_disk_creates_a_data_disk_once_and_refuses_bad_names(tmp_path: Path) -> None:
    cdir = clusterdir.ClusterDir(tmp_path)
    assert cdir.provision_disk("EVS1LOGS") is True
    assert cdir.disk_path("EVS1LOGS").stat().st_size >= clusterdir.DATA_DISK_BYTES  # (+ its header)
    assert cdir.provision_disk("EVS1LOGS") is False  # never overwritten
    for bad in ("../x", "a/b", "", "x" * 65, "EVS-1"):
        with pytest.raises(ConfigError, match="letters and digits"):
            cdir.provision_disk(bad)


def test_concurrent_picks_get_different_numbers(tmp_path: Path) -> None:
    # Two `up`s at the same moment: the claim keeps the second off the first one's number.
    first = clusterdir.pick_cluster_number(tmp_path / "a")
    second = clusterdir.pick_cluster_number(tmp_path / "b")
    assert first != second
