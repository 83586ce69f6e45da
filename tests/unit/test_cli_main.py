"""The ``wolfpack`` command line: parsing, help, and how mistakes are reported (no node processes)."""

from __future__ import annotations

import argparse
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from nodeagent.cli import clusterdir, main
from nodeagent.cli.clusterdir import UpOptions
from nodeagent.errors import ConfigError

COMMANDS = [
    ["up"],
    ["status"],
    ["start"],
    ["stop"],
    ["kill"],
    ["freeze"],
    ["thaw"],
    ["pause"],
    ["resume"],
    ["down"],
    ["fault"],
    ["fault", "cut"],
    ["fault", "heal"],
    ["fault", "list"],
    ["log"],
    ["disk"],
    ["disk", "create"],
    ["disk", "show"],
    ["simulate"],
]


@pytest.fixture
def tmp_root() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="wp", dir="/tmp"))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def cluster(tmp_root: Path) -> Path:
    """A created (never started) 3-node cluster directory."""
    root = tmp_root / "lab"
    clusterdir.create_cluster(root, UpOptions(), bindable=lambda c: True)
    return root


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("wolfpack: error: ")
    return lines[0].removeprefix("wolfpack: error: ")


@pytest.mark.parametrize("argv", COMMANDS, ids=" ".join)
def test_every_command_has_help_with_examples(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main.main([*argv, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out
    assert "wolfpack " + argv[0] in out
    assert "--dir DIR" in out


def test_top_level_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for argv in COMMANDS:
        assert argv[0] in out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main.main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.startswith("wolfpack ")


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["bogus"],
        ["up", "--speed", "fast"],
        ["up", "--quorum", "witness"],
        ["up", "--edition", "home"],
        ["fault", "cut", "NODE1"],  # --net is required
        ["fault", "cut", "NODE1", "--net", "wifi"],
        ["kill"],
        ["disk", "create", "D", "--size-mb", "x"],
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main.main(argv)
    assert exc.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_every_command_that_prints_takes_json() -> None:
    parser = main.build_parser()
    for argv in (["up"], ["status"], ["down"], ["log"], ["fault", "list"], ["disk", "show"], ["simulate"]):
        assert parser.parse_args([*argv, "--json"]).json is True
    for verb in ("start", "stop", "kill", "freeze", "thaw", "pause", "resume"):
        assert parser.parse_args([verb, "NODE1", "--json"]).json is True


def test_dir_is_taken_from_option_positional_top_level_env_or_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    parser = main.build_parser()
    monkeypatch.delenv("WOLFPACK_DIR", raising=False)
    assert main._dir_arg(parser.parse_args(["status", "/a"])) == "/a"
    assert main._dir_arg(parser.parse_args(["status", "--dir", "/b"])) == "/b"
    assert main._dir_arg(parser.parse_args(["--dir", "/c", "kill", "NODE1"])) == "/c"
    assert main._dir_arg(parser.parse_args(["kill", "NODE1"])) is None
    assert main._dir_arg(parser.parse_args(["fault", "--dir", "/d", "cut", "NODE1", "--net", "all"])) == "/d"
    assert main._dir_arg(parser.parse_args(["fault", "heal", "--dir", "/e"])) == "/e"
    assert main._dir_arg(parser.parse_args(["disk", "--dir", "/f", "show"])) == "/f"
    assert clusterdir.resolve_dir(None) == Path.cwd() / "lab"
    monkeypatch.setenv("WOLFPACK_DIR", "/tmp/elsewhere")
    assert clusterdir.resolve_dir(None) == Path("/tmp/elsewhere")
    with pytest.raises(ConfigError, match="two cluster directories"):
        main._dir_arg(parser.parse_args(["status", "/a", "--dir", "/b"]))


def test_not_a_cluster_directory(tmp_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (
        ["status", str(tmp_root)],
        ["kill", "NODE1", "--dir", str(tmp_root)],
        ["log", str(tmp_root)],
    ):
        code, out, err = run(capsys, *argv)
        assert code == 1
        assert out == ""
        assert one_error_line(err) == f"{tmp_root} is not a wolfpack cluster directory (no cluster.toml)"


def test_unknown_node_lists_the_known_ones(cluster: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for verb in ("start", "stop", "kill", "freeze", "thaw", "pause", "resume"):
        code, _, err = run(capsys, verb, "NODE7", "--dir", str(cluster))
        assert code == 1
        assert one_error_line(err) == "unknown node 'NODE7' (this cluster has NODE1, NODE2, NODE3)"
    code, _, err = run(capsys, "log", str(cluster), "--node", "NODE7")
    assert code == 1 and "unknown node 'NODE7'" in one_error_line(err)


@pytest.mark.parametrize("verb", ["stop", "kill", "freeze", "thaw"])
def test_verbs_on_a_node_that_is_not_running(
    verb: str, cluster: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, verb, "node2", "--dir", str(cluster))
    assert code == 1
    assert one_error_line(err) == "NODE2 is not running"


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--edition", "standard"], "edition 'standard' does not support server clusters"),
        (["--edition", "web"], "edition 'web' does not support server clusters"),
        (["--nodes", "9"], "edition 'enterprise' allows at most 8 nodes, 9 configured"),
        (
            ["--edition", "win2000-advanced"],
            "edition 'win2000-advanced' allows at most 2 nodes, 3 configured",
        ),
        (["--edition", "win2000-datacenter", "--nodes", "5"], "allows at most 4 nodes, 5 configured"),
        (["--nodes", "0"], "--nodes 0: a cluster needs at least one node"),
        (["--speed", "-1"], "--speed -1.0: must be a number from 0.01 to 1000.0"),
        (["--speed", "0"], "--speed 0.0: must be a number"),
        (["--speed", "inf"], "--speed inf: must be a number"),
        (["--cluster-number", "251"], "--cluster-number 251: must be a whole number from 1 to 250"),
        (["--timeout-s", "-3"], "--timeout-s -3: must be more than 0"),
    ],
)
def test_up_refuses_bad_input_and_creates_nothing(
    flags: list[str], message: str, tmp_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_root / "new"
    code, out, err = run(capsys, "up", str(target), *flags)
    assert code == 1
    assert out == ""
    assert message in one_error_line(err)
    assert not target.exists()


def test_up_refuses_flags_that_contradict_cluster_toml(
    cluster: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = (cluster / "cluster.toml").read_text()
    code, _, err = run(capsys, "up", str(cluster), "--nodes", "5", "--quorum", "majority")
    assert code == 1
    line = one_error_line(err)
    assert line.startswith("--nodes 5, --quorum majority: ")
    assert "already has nodes = 3, quorum = disk; edit cluster.toml or use a new DIR" in line
    assert (cluster / "cluster.toml").read_text() == before
    assert not (cluster / "nodes" / "NODE1" / "node.log").exists()  # nothing was started


def test_up_refuses_a_non_empty_directory_without_cluster_toml(
    tmp_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_root / "notes.txt").write_text("mine")
    code, _, err = run(capsys, "up", str(tmp_root))
    assert code == 1
    assert "is not empty and has no cluster.toml" in one_error_line(err)
    assert sorted(p.name for p in tmp_root.iterdir()) == ["notes.txt"]


def test_errors_are_one_line_even_when_the_message_has_newlines(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(args: argparse.Namespace) -> int:
        raise ConfigError("first\nsecond")

    monkeypatch.setattr(main, "cmd_status", broken)
    code, _, err = run(capsys, "status")
    assert code == 1
    assert one_error_line(err) == "first second"


def test_ctrl_c_exits_130_without_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def interrupted(args: argparse.Namespace) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(main, "cmd_status", interrupted)
    code, out, err = run(capsys, "status")
    assert (code, out, err) == (130, "", "")


def test_os_errors_are_one_line(tmp_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_root / "file"
    blocker.write_text("")
    code, _, err = run(capsys, "up", str(blocker / "lab"))
    assert code == 1
    assert "Not a directory" in one_error_line(err) or "not a directory" in one_error_line(err)
