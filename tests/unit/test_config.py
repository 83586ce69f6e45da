"""ClusterConfig / Timing: parsing, round trips, editions, speed-divided timing, address plan, errors."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from hypothesis import given, settings
from hypothesis import strategies as st

from nodeagent.config import (
    CLUSTER_PORT,
    Arbitration,
    ClusterConfig,
    Net,
    NetRole,
    QuorumType,
    Timing,
    default_config_dict,
    load_cluster_file,
)
from nodeagent.errors import ConfigError, WolfpackError

KEY = bytes(range(32))


def cfg_dict(**kw: Any) -> dict[str, Any]:
    kw.setdefault("number", 7)
    kw.setdefault("key", KEY)
    kw.setdefault("nodes", 3)
    return default_config_dict(**kw)


def raises_one_line(data: dict[str, Any], *needles: str) -> str:
    """from_dict must refuse ``data`` with a ConfigError of one line that names the problem."""
    with pytest.raises(ConfigError) as info:
        ClusterConfig.from_dict(data)
    msg = str(info.value)
    assert msg and "\n" not in msg
    for needle in needles:
        assert needle in msg, (needle, msg)
    return msg


# -- round trips --------------------------------------------------------------------------------------
def test_default_dict_parses_and_round_trips_exactly() -> None:
    data = cfg_dict()
    cfg = ClusterConfig.from_dict(data)
    assert cfg.to_dict() == data
    assert ClusterConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.name == "WOLFPACK"
    assert cfg.number == 7
    assert cfg.key == KEY
    assert cfg.edition == "enterprise"
    assert cfg.speed == 10.0
    assert cfg.quorum is QuorumType.DISK
    assert cfg.arbitration is Arbitration.SCSI2
    assert cfg.quorum_disk == "Q"
    assert [(n.name, n.id) for n in cfg.nodes] == [("NODE1", 1), ("NODE2", 2), ("NODE3", 3)]
    assert cfg.node_ids == (1, 2, 3)
    assert cfg.timing == Timing.for_speed(10.0)


def test_round_trip_through_toml_file_keeps_overrides(tmp_path: Path) -> None:
    data = cfg_dict(nodes=4, quorum="majority", arbitration="scsi3", speed=2.5)
    data["timing"] = {"heartbeat_interval_s": 0.05, "heartbeat_misses": 4}
    data["networks"]["public"]["role"] = int(NetRole.CLIENT)
    path = tmp_path / "cluster.toml"
    path.write_bytes(tomli_w.dumps(ClusterConfig.from_dict(data).to_dict()).encode())
    cfg = load_cluster_file(path)
    assert cfg == ClusterConfig.from_dict(data)
    assert cfg.timing_overrides == {"heartbeat_interval_s": 0.05, "heartbeat_misses": 4}
    assert cfg.to_dict() == data
    assert cfg.timing.heartbeat_interval_s == 0.05
    assert cfg.timing.heartbeat_misses == 4
    assert cfg.timing.challenge_wait_s == pytest.approx(7.0 / 2.5)
    assert cfg.quorum is QuorumType.MAJORITY
    assert cfg.arbitration is Arbitration.SCSI3
    assert cfg.network(Net.PUBLIC).role is NetRole.CLIENT


@settings(max_examples=60, deadline=None)
@given(
    nodes=st.integers(1, 8),
    number=st.integers(1, 250),
    speed=st.floats(0.5, 1000.0, allow_nan=False),
    quorum=st.sampled_from(["disk", "majority"]),
    arbitration=st.sampled_from(["scsi2", "scsi3"]),
    edition=st.sampled_from(["enterprise", "datacenter"]),
    key=st.binary(min_size=16, max_size=64),
)
def test_round_trip_property(
    nodes: int, number: int, speed: float, quorum: str, arbitration: str, edition: str, key: bytes
) -> None:
    data = default_config_dict(
        number=number,
        key=key,
        nodes=nodes,
        speed=speed,
        quorum=quorum,
        arbitration=arbitration,
        edition=edition,
    )
    cfg = ClusterConfig.from_dict(data)
    assert cfg.to_dict() == data
    again = ClusterConfig.from_dict(tomli_w_round_trip(cfg.to_dict()))
    assert again == cfg
    assert again.timing == cfg.timing


def tomli_w_round_trip(data: dict[str, Any]) -> dict[str, Any]:
    return tomllib.loads(tomli_w.dumps(data))


def test_node_names_are_upper_cased_and_looked_up_case_insensitively() -> None:
    data = cfg_dict(nodes=2)
    data["nodes"] = [{"name": "alpha", "id": 3}, {"name": "Beta-2", "id": 5}]
    cfg = ClusterConfig.from_dict(data)
    assert [n.name for n in cfg.nodes] == ["ALPHA", "BETA-2"]
    assert cfg.node("alpha").id == 3
    assert cfg.node(5).name == "BETA-2"
    with pytest.raises(ConfigError, match="unknown node"):
        cfg.node("gamma")
    with pytest.raises(ConfigError, match="unknown node"):
        cfg.node(4)


@pytest.mark.parametrize(("count", "majority"), [(1, 1), (2, 2), (3, 2), (4, 3), (5, 3), (8, 5)])
def test_majority_is_floor_half_plus_one(count: int, majority: int) -> None:
    assert ClusterConfig.from_dict(cfg_dict(nodes=count)).majority == majority


# -- editions ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("edition", ["standard", "web", "Standard", "WEB"])
def test_editions_without_clustering_are_refused(edition: str) -> None:
    raises_one_line(cfg_dict(nodes=1, edition=edition), "does not support server clusters")


@pytest.mark.parametrize(
    ("edition", "limit"),
    [("win2000-advanced", 2), ("win2000-datacenter", 4), ("enterprise", 8), ("datacenter", 8)],
)
def test_edition_node_limits(edition: str, limit: int) -> None:
    cfg = ClusterConfig.from_dict(cfg_dict(nodes=limit, edition=edition))
    assert len(cfg.nodes) == limit
    if limit < 8:
        raises_one_line(cfg_dict(nodes=limit + 1, edition=edition), f"at most {limit} nodes")


def test_edition_is_case_insensitive_and_unknown_edition_is_refused() -> None:
    assert ClusterConfig.from_dict(cfg_dict(edition="Enterprise")).edition == "enterprise"
    raises_one_line(cfg_dict(edition="nt4"), "edition", "unknown")


def test_node_ids_above_eight_are_refused() -> None:
    data = cfg_dict(nodes=2)
    data["nodes"][1]["id"] = 9
    raises_one_line(data, "id")


# -- timing -----------------------------------------------------------------------------------------
DEFAULTS_2003 = {
    "heartbeat_interval_s": 1.2,
    "quorum_renew_interval_s": 3.0,
    "challenge_wait_s": 7.0,
    "challenge_takeover_s": 10.0,
    "regroup_activity_s": 2.4,
    "regroup_stage_timeout_s": 6.0,
    "join_timeout_s": 7.2,
    "restart_delay_s": 6.0,
}


def test_speed_ten_gives_the_lab_numbers() -> None:
    t = Timing.for_speed(10)
    assert t.heartbeat_interval_s == pytest.approx(0.12)
    assert t.node_down_after_s == pytest.approx(0.72)
    assert t.interface_failed_after_s == pytest.approx(0.24)
    assert t.quorum_renew_interval_s == pytest.approx(0.3)
    assert t.challenge_wait_s == pytest.approx(0.7)
    assert t.challenge_takeover_s == pytest.approx(1.0)
    assert t.quorum_lease_s == t.challenge_wait_s
    assert t.heartbeat_misses == 6
    assert t.interface_misses == 2


@pytest.mark.parametrize("speed", [0.5, 1, 3, 10, 100])
def test_every_duration_is_the_2003_default_divided_by_speed(speed: float) -> None:
    t = Timing.for_speed(speed)
    values = t.as_dict()
    for key, real in DEFAULTS_2003.items():
        assert values[key] == pytest.approx(real / speed), key
    assert values["heartbeat_misses"] == 6
    assert values["interface_misses"] == 2
    assert set(values) == {*DEFAULTS_2003, "heartbeat_misses", "interface_misses"}
    assert t.node_down_after_s == pytest.approx(7.2 / speed)


def test_speed_one_is_real_2003_timing() -> None:
    t = Timing.for_speed(1)
    assert t.node_down_after_s == pytest.approx(7.2)
    assert t.challenge_wait_s == 7.0
    assert t.challenge_takeover_s == 10.0


def test_overrides_are_lab_seconds_and_leave_the_rest_divided() -> None:
    t = Timing.for_speed(10, {"heartbeat_interval_s": 0.05, "heartbeat_misses": 3, "restart_delay_s": 2})
    assert t.heartbeat_interval_s == 0.05
    assert t.heartbeat_misses == 3
    assert t.node_down_after_s == pytest.approx(0.15)
    assert t.restart_delay_s == 2
    assert t.challenge_wait_s == pytest.approx(0.7)


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"heartbeat_interval": 1.0}, "heartbeat_interval: unknown setting"),
        ({"heartbeat_interval_s": "fast"}, "heartbeat_interval_s"),
        ({"heartbeat_interval_s": True}, "heartbeat_interval_s"),
        ({"heartbeat_interval_s": 0}, "heartbeat_interval_s"),
        ({"heartbeat_interval_s": -1.0}, "heartbeat_interval_s"),
        ({"heartbeat_interval_s": 3601}, "heartbeat_interval_s"),
        ({"heartbeat_misses": 2.5}, "heartbeat_misses"),
        ({"heartbeat_misses": 0}, "heartbeat_misses"),
        ({"heartbeat_misses": 101}, "heartbeat_misses"),
        ({"interface_misses": False}, "interface_misses"),
        ({"quorum_renew_interval_s": 0.7}, "quorum_renew_interval_s must be shorter than challenge_wait_s"),
        ({"quorum_renew_interval_s": 0.9}, "quorum_renew_interval_s must be shorter than challenge_wait_s"),
        ({"challenge_wait_s": 1.0}, "challenge_wait_s must be shorter than challenge_takeover_s"),
        ({"challenge_takeover_s": 0.5}, "challenge_wait_s must be shorter than challenge_takeover_s"),
        ({"interface_misses": 7}, "interface_misses may not exceed heartbeat_misses"),
    ],
)
def test_bad_overrides_are_one_line_config_errors(overrides: dict[str, Any], needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        Timing.for_speed(10, overrides)
    assert needle in str(info.value)
    assert "\n" not in str(info.value)
    assert isinstance(info.value, WolfpackError)
    data = cfg_dict()
    data["timing"] = overrides
    raises_one_line(data, needle)


def test_invariants_hold_on_boundaries() -> None:
    # renew < challenge_wait < takeover, strictly: the boundaries are refused, one step inside works.
    ok = Timing.for_speed(10, {"quorum_renew_interval_s": 0.699, "challenge_takeover_s": 0.701})
    assert ok.quorum_renew_interval_s < ok.challenge_wait_s < ok.challenge_takeover_s
    with pytest.raises(ConfigError):
        Timing.for_speed(10, {"challenge_takeover_s": 0.7})
    same = Timing.for_speed(10, {"interface_misses": 6})
    assert same.interface_failed_after_s == same.node_down_after_s


# -- address plan and networks ----------------------------------------------------------------------
def test_address_plan() -> None:
    cfg = ClusterConfig.from_dict(cfg_dict(number=42, nodes=8))
    assert CLUSTER_PORT == 3343
    assert cfg.address(1, Net.PRIVATE) == ("127.42.1.1", 3343)
    assert cfg.address(8, Net.PUBLIC) == ("127.42.2.8", 3343)
    assert cfg.virtual_ip(5) == "127.42.3.5"
    addrs = {cfg.address(n, net) for n in cfg.node_ids for net in Net}
    assert len(addrs) == 16  # every interface of every node has an address of its own


def test_default_networks() -> None:
    cfg = ClusterConfig.from_dict(cfg_dict())
    priv, pub = cfg.network(Net.PRIVATE), cfg.network(Net.PUBLIC)
    assert (priv.name, priv.role, priv.priority) == ("Private", NetRole.INTERNAL, 1)
    assert (pub.name, pub.role, pub.priority) == ("Public", NetRole.ALL, 2)
    assert cfg.cluster_nets() == (Net.PRIVATE, Net.PUBLIC)
    assert [r.carries_cluster_traffic for r in NetRole] == [False, True, False, True]


@pytest.mark.parametrize(
    ("private", "public", "expected"),
    [
        ((1, 1), (3, 2), (Net.PRIVATE, Net.PUBLIC)),
        ((1, 2), (3, 1), (Net.PUBLIC, Net.PRIVATE)),  # the admin put the public network first
        ((3, 5), (3, 5), (Net.PRIVATE, Net.PUBLIC)),  # equal priority: private first
        ((1, 1), (2, 2), (Net.PRIVATE,)),  # client-only network carries no cluster traffic
        ((1, 1), (0, 2), (Net.PRIVATE,)),  # role 0: not used by the cluster
        ((0, 1), (3, 2), (Net.PUBLIC,)),
        ((2, 1), (3, 2), (Net.PUBLIC,)),
    ],
)
def test_cluster_nets_by_role_and_priority(
    private: tuple[int, int], public: tuple[int, int], expected: tuple[Net, ...]
) -> None:
    data = cfg_dict()
    data["networks"]["private"].update(role=private[0], priority=private[1])
    data["networks"]["public"].update(role=public[0], priority=public[1])
    assert ClusterConfig.from_dict(data).cluster_nets() == expected


def test_networks_default_when_missing() -> None:
    data = cfg_dict()
    del data["networks"]
    cfg = ClusterConfig.from_dict(data)
    assert cfg.cluster_nets() == (Net.PRIVATE, Net.PUBLIC)


# -- refused values ---------------------------------------------------------------------------------
def _set(path: str, value: Any) -> dict[str, Any]:
    data = cfg_dict()
    *parents, last = path.split(".")
    table: Any = data
    for p in parents:
        table = table[int(p)] if isinstance(table, list) else table[p]
    if isinstance(table, list):
        table[int(last)] = value
    else:
        table[last] = value
    return data


@pytest.mark.parametrize(
    ("path", "value", "needle"),
    [
        ("cluster.number", 0, "number"),
        ("cluster.number", 251, "number"),
        ("cluster.number", "7", "number"),
        ("cluster.number", True, "number"),
        ("cluster.key", "xyz", "key: must be hex"),
        ("cluster.key", "00" * 15, "at least 16 bytes"),
        ("cluster.key", "", "key"),
        ("cluster.speed", 0, "speed"),
        ("cluster.speed", 1001, "speed"),
        ("cluster.speed", "fast", "speed"),
        ("cluster.quorum", "witness", "quorum: must be 'disk' or 'majority'"),
        ("cluster.arbitration", "scsi4", "arbitration: must be 'scsi2' or 'scsi3'"),
        ("cluster.quorum_disk", "Q:", "quorum_disk"),
        ("cluster.quorum_disk", "../x", "quorum_disk"),
        ("cluster.name", "", "name"),
        ("nodes", [], "at least one node"),
        ("nodes", "NODE1", "at least one node"),
        ("nodes.0", "NODE1", "entry 1"),
        ("nodes.1.name", "NODE1", "names must be unique"),
        ("nodes.1.name", "node1", "names must be unique"),
        ("nodes.1.id", 1, "ids must be unique"),
        ("nodes.1.name", "A" * 16, "at most 15"),
        ("nodes.1.name", "no_underscore", "letters, digits"),
        ("nodes.1.id", 0, "id"),
        ("networks", [], "[networks]: must be a table"),
        ("networks.dmz", {"role": 3}, "unknown network"),
        ("networks.private", 1, "must be a table"),
        ("networks.private.role", 4, "role"),
        ("networks.private.priority", 0, "priority"),
        ("timing", [], "[timing]: must be a table"),
    ],
)
def test_refused_values(path: str, value: Any, needle: str) -> None:
    raises_one_line(_set(path, value), needle)


def test_no_cluster_network_is_refused() -> None:
    data = cfg_dict()
    data["networks"]["private"]["role"] = 2
    data["networks"]["public"]["role"] = 0
    raises_one_line(data, "at least one network must carry cluster traffic")


def test_missing_cluster_section_is_refused() -> None:
    data = cfg_dict()
    del data["cluster"]
    raises_one_line(data, "[cluster]")
    data = cfg_dict()
    del data["cluster"]["number"]
    raises_one_line(data, "number")


# -- load_cluster_file ------------------------------------------------------------------------------
def test_missing_file_is_not_a_cluster_directory(tmp_path: Path) -> None:
    d = tmp_path
    with pytest.raises(ConfigError) as info:
        load_cluster_file(d / "cluster.toml")
    msg = str(info.value)
    assert "not a wolfpack cluster directory" in msg
    assert str(d) in msg
    assert "\n" not in msg


@pytest.mark.parametrize("text", ["[cluster\nnumber = 1\n", "number = = 3\n", 'key = "unterminated\n'])
def test_bad_toml_is_a_one_line_error_naming_the_file(text: str, tmp_path: Path) -> None:
    path = tmp_path / "cluster.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_cluster_file(path)
    msg = str(info.value)
    assert "not valid TOML" in msg
    assert str(path) in msg
    assert "\n" not in msg


def test_invalid_config_in_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "cluster.toml"
    path.write_text(tomli_w.dumps(cfg_dict(edition="web")))
    with pytest.raises(ConfigError) as info:
        load_cluster_file(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}: ")
    assert "does not support server clusters" in msg
    assert "\n" not in msg


def test_dns_settings_default_and_checks() -> None:
    from nodeagent.config import DNS_USER_PORT

    data = default_config_dict(number=7, key=b"k" * 16, nodes=2)
    cfg = ClusterConfig.from_dict(data)
    assert cfg.dns_domain == "wolfpack.lab" and cfg.dns_port(True) == 53
    assert cfg.dns_port(False) == DNS_USER_PORT
    cfg = ClusterConfig.from_dict({**data, "dns": {"domain": "Lab.Example.", "port": 5354}})
    assert cfg.dns_domain == "lab.example" and cfg.dns_port(True) == 5354
    assert ClusterConfig.from_dict(cfg.to_dict()) == cfg
    for bad, message in [({"domain": "no spaces"}, "DNS name"), ({"port": 70000}, "port"),
                         ({"zone": "x"}, "unknown setting")]:  # fmt: skip
        with pytest.raises(ConfigError, match=message):
            ClusterConfig.from_dict({**data, "dns": bad})
