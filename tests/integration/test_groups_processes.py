"""Resource groups and Exchange virtual servers on real node processes (issue 3), driven as a user would.

Every lab is built with `wolfpack up --nodes 2 --evs 1` (MSDTC, Exchange setup on each node, EVS1
with its preferred owner NODE1, brought online) unless a test needs something else. Waits poll
`status --json` or the nodes' events.jsonl with generous deadlines (a busy 2-core CI machine);
"nothing happens" is checked by watching the status for a fixed window, as the membership tests do.
The order in which resources come online is read from the resource_state events of the node that
runs the group: one node appends its events in the order its core made the changes.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from evs_status import Status, group, online_on, resources

from nodeagent.cli.lab import WOLFPACK, Lab

pytestmark = pytest.mark.integration

Factory = Callable[..., Lab]

SA = "EVS1 System Attendant"
IS = "EVS1 Information Store"
SMTP = "EVS1 SMTP Virtual Server"
EXCHANGE_2003 = {
    SA: "Microsoft Exchange System Attendant",
    IS: "Microsoft Exchange Information Store",
    "EVS1 Message Transfer Agent": "Microsoft Exchange Message Transfer Agent",
    "EVS1 Routing Service": "Microsoft Exchange Routing Service",
    "EVS1 Microsoft Search": "Microsoft Search",
    SMTP: "SMTP Virtual Server Instance",
    "EVS1 HTTP Virtual Server": "HTTP Virtual Server Instance",
}
GROUP_SETTLE_S = 60.0  # a failover or a move of EVS1 takes a few seconds at speed 10
QUIET_WINDOW_S = 4.0  # 40 s of Windows time at speed 10: long past any failover or failback


# -- helpers -------------------------------------------------------------------------------------------------


def online_order(lab: Lab, node: str, since: float, grp: str = "EVS1") -> dict[str, int]:
    """Resource -> position of its first resource_state Online event on ``node`` since ``since``."""
    order: dict[str, int] = {}
    for i, e in enumerate(lab.events_of("resource_state", node, since)):
        f = e["fields"]
        if f["group"] == grp and f["state"] == "Online":
            order.setdefault(f["resource"], i)
    return order


def online_times(lab: Lab, node: str, since: float, grp: str = "EVS1") -> dict[str, float]:
    times: dict[str, float] = {}
    for e in lab.events_of("resource_state", node, since):
        f = e["fields"]
        if f["group"] == grp and f["state"] == "Online":
            times.setdefault(f["resource"], e["mono_s"])
    return times


def all_online_events(lab: Lab, node: str, since: float, s: Status) -> dict[str, int]:
    """Wait until every EVS1 resource has an Online event on ``node`` since ``since``."""
    names = set(resources(s, "EVS1"))
    found: dict[str, int] = lab.wait_for(
        f"an Online event on {node} for every EVS1 resource",
        lambda: (lambda o: o if names <= set(o) else None)(online_order(lab, node, since)),
        GROUP_SETTLE_S,
    )
    return found


def assert_dependency_order(order: dict[str, int], s: Status) -> None:
    """Every resource came online after everything it depends on."""
    for name, r in resources(s, "EVS1").items():
        for dep in r["depends_on"]:
            assert order[dep] < order[name], f"{name} came Online before its dependency {dep}"


def watch_group(lab: Lab, seconds: float, check: Callable[[Status], None]) -> Status:
    """Apply ``check`` to every status seen for ``seconds`` (nothing must happen meanwhile)."""
    end = time.monotonic() + seconds
    s = lab.status()
    check(s)
    while time.monotonic() < end:
        s = lab.status()
        check(s)
    return s


def structure(s: Status) -> dict[str, Any]:
    """What the configuration says, without run-time state."""
    return {
        g["name"]: {
            "preferred_owners": g["preferred_owners"],
            "props": g.get("props"),
            "resources": {
                r["name"]: (r["type"], sorted(r["depends_on"]), r["possible_owners"], r.get("private"))
                for r in g["resources"]
            },
        }
        for g in s["groups"]
    }


def refusal(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 1, f"expected a refusal (exit 1), got {proc.returncode}: {proc.stderr}"
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line, got: {proc.stderr!r}"
    return lines[0]


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    text = path.read_text()
    complete = text[: text.rfind("\n") + 1]  # a line being written is not read yet
    return [json.loads(line) for line in complete.splitlines() if line.strip()]


# -- 1. the standard lab -------------------------------------------------------------------------------------


def test_up_with_evs_builds_cluster_group_and_exchange_2003_virtual_server(lab_factory: Factory) -> None:
    lab = lab_factory(2, "--evs", "1", "--exchange-setup-s", "5")
    s = lab.status()
    cg = group(s, "Cluster Group")
    assert cg["state"] == "Online" and cg["owner"] in ("NODE1", "NODE2")
    cres = resources(s, "Cluster Group")
    assert set(cres) == {"Cluster IP Address", "Cluster Name", "Disk Q:", "MSDTC"}
    assert all(r["state"] == "Online" for r in cres.values())
    assert cres["Cluster Name"]["depends_on"] == ["Cluster IP Address"]
    assert cres["MSDTC"]["type"] == "Distributed Transaction Coordinator"

    evs = group(s, "EVS1")
    assert evs["state"] == "Online" and evs["owner"] == "NODE1"
    assert evs["preferred_owners"] == ["NODE1"]
    assert evs["props"]["AutoFailbackType"] == 0  # recommended: EVS groups prevent failback
    res = resources(s, "EVS1")
    types = {n: r["type"] for n, r in res.items()}
    assert {n: t for n, t in types.items() if n in EXCHANGE_2003} == EXCHANGE_2003
    assert sorted(t for n, t in types.items() if n not in EXCHANGE_2003) == [
        "IP Address", "Network Name", "Physical Disk",
    ]  # fmt: skip
    assert not {"POP3 Virtual Server Instance", "IMAP4 Virtual Server Instance"} & set(types.values())
    assert all(r["state"] == "Online" for r in res.values())
    assert res[SA]["depends_on"] and set(res[SA]["depends_on"]) == {"EVS1 Network Name", "EVS1 Disk"}
    assert res["EVS1 Network Name"]["depends_on"] == ["EVS1 IP Address"]
    assert res[SMTP]["depends_on"] == [SA] and res[IS]["depends_on"] == [SA]  # the 2003 tree
    for name in EXCHANGE_2003:
        assert res[name]["possible_owners"] == ["NODE1", "NODE2"]

    ex = json.loads(lab.cli("exchange", "status", "--json").stdout)
    assert ex["installed"] == {"NODE1": "2003", "NODE2": "2003"}
    assert ex["installing"] is None
    assert ex["evs"]["EVS1"]["version"] == "2003"


# -- 2. kill -9 of the owner, seen by a client ---------------------------------------------------------------


def test_kill_owner_fails_evs_over_and_client_sees_one_outage(lab_factory: Factory) -> None:
    lab = lab_factory(2, "--evs", "1", "--exchange-setup-s", "5")
    out_path = lab.dir / "client.jsonl"
    cmd = [*WOLFPACK, "client", "EVS1", "--json", "--duration-s", "10", "--dir", str(lab.dir)]
    with out_path.open("w") as out, (lab.dir / "client.err").open("w") as err:
        client = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
    try:
        lab.wait_for(
            "the client's first reply from NODE1",
            lambda: [e for e in read_jsonl(out_path) if e["event"] == "reply" and e.get("node") == "NODE1"],
        )
        killed_at = time.monotonic()
        lab.cli("kill", "NODE1")
        s = lab.wait_status("EVS1 Online on NODE2", online_on("NODE2"), GROUP_SETTLE_S)
        assert client.wait(timeout=60) == 0, (lab.dir / "client.err").read_text()
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()

    lines = read_jsonl(out_path)
    assert lines[0]["event"] == "resolved" and lines[0]["owner"] == "NODE1"
    served = [e["node"] for e in lines if e["event"] == "reply" and e["ok"]]
    switch = served.index("NODE2")
    assert switch > 0 and set(served[:switch]) == {"NODE1"} and set(served[switch:]) == {"NODE2"}
    outages = [e for e in lines if e["event"] == "outage"]
    assert len(outages) == 1, outages
    assert outages[0]["node_before"] == "NODE1" and outages[0]["node_after"] == "NODE2"
    assert outages[0]["start_mono_s"] >= killed_at - 0.5  # the outage is the kill's, not a hiccup
    summary = lines[-1]
    assert summary["event"] == "summary" and summary["nodes"] == ["NODE1", "NODE2"]
    assert summary["outages"] == 1 and summary["ongoing_outage_s"] is None

    order = all_online_events(lab, "NODE2", killed_at, s)
    assert order["EVS1 IP Address"] < order["EVS1 Network Name"] < order[SA] < order[IS]
    assert order[SA] < order[SMTP]
    assert_dependency_order(order, s)


# -- 3. Exchange 2000 vs 2003 dependency trees ---------------------------------------------------------------


@pytest.mark.parametrize("version", ["2000", "2003"])
def test_smtp_waits_for_the_store_only_with_exchange_2000(lab_factory: Factory, version: str) -> None:
    lab = lab_factory(2, "--evs", "1", "--exchange-setup-s", "5", "--exchange-version", version)
    s = lab.status()
    smtp_dep = resources(s, "EVS1")[SMTP]["depends_on"]
    assert smtp_dep == ([IS] if version == "2000" else [SA])
    moved_at = time.monotonic()
    lab.cli("group", "EVS1", "move", "--to", "NODE2", timeout=90)
    s = lab.wait_status("EVS1 Online on NODE2", online_on("NODE2"), GROUP_SETTLE_S)
    order = all_online_events(lab, "NODE2", moved_at, s)
    assert_dependency_order(order, s)
    times = online_times(lab, "NODE2", moved_at)
    if version == "2000":
        assert order[IS] < order[SMTP]
        assert times[SMTP] > times[IS]
    else:
        # SMTP starts with the store, once the SA is online, and its start-up is shorter.
        assert order[SA] < order[SMTP] < order[IS]
        assert times[SMTP] < times[IS]


# -- 4. restart in place, then failover past RestartThreshold ------------------------------------------------


def test_failed_resource_restarts_in_place_then_fails_the_group_over(lab_factory: Factory) -> None:
    lab = lab_factory(2, "--evs", "1", "--exchange-setup-s", "5")
    s = lab.status()
    assert resources(s, "EVS1")[SMTP]["props"]["RestartThreshold"] == 3
    start = time.monotonic()

    def smtp_states() -> list[str]:
        return [
            e["fields"]["state"]
            for e in lab.events_of("resource_state", "NODE1", start)
            if e["fields"]["resource"] == SMTP
        ]

    def restarted(failures: int) -> Callable[[], bool]:
        def pred() -> bool:
            states = smtp_states()
            return states.count("Failed") == failures and states[-1] == "Online"

        return pred

    for n in range(1, 4):  # failures 1..3: restarted where it runs
        lab.cli("resource", SMTP, "fail")
        lab.wait_for(f"failure {n} of SMTP and its restart on NODE1", restarted(n), GROUP_SETTLE_S)
        s = lab.wait_status(f"EVS1 Online on NODE1 after restart {n}", online_on("NODE1"), GROUP_SETTLE_S)
        assert group(s, "EVS1")["owner"] == "NODE1"
    failed = [e for e in lab.events_of("resource_failed", "NODE1", start) if e["fields"]["resource"] == SMTP]
    assert len(failed) == 3
    assert not [e for e in lab.events_of("resource_state", "NODE2", start) if e["fields"]["group"] == "EVS1"]

    fourth = time.monotonic()
    lab.cli("resource", SMTP, "fail")  # past RestartThreshold 3: the group fails over
    s = lab.wait_status("EVS1 Online on NODE2", online_on("NODE2"), GROUP_SETTLE_S)
    assert SMTP in online_order(lab, "NODE2", fourth)
    assert smtp_states().count("Failed") == 4


# -- 5. failback ---------------------------------------------------------------------------------------------


def kill_owner_then_restart_it(lab: Lab) -> float:
    """Kill NODE1 (EVS1's owner); once EVS1 runs on NODE2, start NODE1 again; returns when it started."""
    lab.cli("kill", "NODE1")
    lab.wait_status("EVS1 Online on NODE2", online_on("NODE2"), GROUP_SETTLE_S)
    started_at = time.monotonic()
    lab.cli("start", "NODE1", timeout=90)
    return started_at


def test_failback_allowed_moves_evs_home_when_preferred_owner_returns(lab_factory: Factory) -> None:
    lab = lab_factory(2, "--evs", "1", "--exchange-setup-s", "5")
    lab.cli("group", "EVS1", "prop", "AutoFailbackType=1")
    props = group(lab.status(), "EVS1")["props"]
    assert props["AutoFailbackType"] == 1 and props["FailbackWindowStart"] == -1
    started_at = kill_owner_then_restart_it(lab)
    lab.wait_status("EVS1 back Online on NODE1", online_on("NODE1"), GROUP_SETTLE_S)
    moving = [e for e in lab.events_of("group_moving", since=started_at) if e["fields"]["group"] == "EVS1"]
    assert moving and moving[0]["fields"]["reason"] == "failback"
    assert moving[0]["fields"]["source"] == "NODE2" and moving[0]["fields"]["target"] == "NODE1"


def test_failback_prevented_keeps_evs_on_the_survivor(lab_factory: Factory) -> None:
    # Regression: the restarted NODE1 once ran EVS1's resources from its stale clusterdb.json and its
    # failover requests moved EVS1 back although AutoFailbackType=0 (fixed in 75b6c2d and 2e9c2ad).
    lab = lab_factory(2, "--evs", "1", "--exchange-setup-s", "5")
    assert group(lab.status(), "EVS1")["props"]["AutoFailbackType"] == 0
    started_at = kill_owner_then_restart_it(lab)

    def stays(s: Status) -> None:
        g = group(s, "EVS1")
        where = f"{g['state']} on {g['owner']}"
        assert g["owner"] == "NODE2" and g.get("target") is None, f"EVS1 left NODE2: {where}"

    watch_group(lab, QUIET_WINDOW_S, stays)
    ran = [e for e in lab.events_of("resource_state", "NODE1", started_at) if e["fields"]["group"] == "EVS1"]
    assert not ran, f"NODE1 ran EVS1's resources although it does not own it: {ran[:3]}"


# -- 6. pause and evict --------------------------------------------------------------------------------------


def test_paused_node_takes_no_group_until_resumed_and_evict_is_refused(lab_factory: Factory) -> None:
    lab = lab_factory(2, "--evs", "1", "--exchange-setup-s", "5")
    evict = lab.cli("node", "NODE1", "evict", check=False)
    line = refusal(evict)
    assert "A node cannot be removed while an Exchange virtual server runs on it" in line
    assert "EVS1" in line
    s = lab.status()
    assert lab.states(s)["NODE1"] == "Up" and group(s, "EVS1")["owner"] == "NODE1"

    lab.cli("node", "NODE2", "pause")
    lab.wait_status("NODE2 Paused", lambda s: lab.states(s)["NODE2"] == "Paused")
    killed_at = time.monotonic()
    lab.cli("kill", "NODE1")
    lab.wait_for("NODE2 to remove NODE1", lambda: lab.events_of("node_removed", "NODE2", killed_at))

    def not_online_on_paused_node(s: Status) -> None:
        g = group(s, "EVS1")
        assert g["state"] in ("Offline", "Failed"), f"EVS1 is {g['state']} on {g['owner']}"
        assert g["owner"] != "NODE2" or all(r["state"] in ("Offline", "Failed") for r in g["resources"])

    s = watch_group(lab, QUIET_WINDOW_S, not_online_on_paused_node)
    assert lab.states(s)["NODE2"] == "Paused"
    assert not [e for e in lab.events_of("resource_state", "NODE2", killed_at)
                if e["fields"]["group"] == "EVS1" and e["fields"]["state"] == "Online"]  # fmt: skip

    resumed_at = time.monotonic()
    lab.cli("node", "NODE2", "resume")
    s = lab.wait_status("EVS1 Online on the resumed NODE2", online_on("NODE2"), GROUP_SETTLE_S)
    assert lab.states(s)["NODE2"] == "Up"
    assert_dependency_order(all_online_events(lab, "NODE2", resumed_at, s), s)


# -- 7. configuration survives a full restart ----------------------------------------------------------------


def test_configuration_survives_down_and_up(lab_factory: Factory) -> None:
    lab = lab_factory(2, "--evs", "1", "--exchange-setup-s", "5")
    before = lab.status()
    lab.cli("down", str(lab.dir))
    s = lab.status()
    assert set(lab.states(s).values()) == {"Down"}
    up_at = time.monotonic()
    lab.cli("up", str(lab.dir), timeout=120)
    after = lab.wait_status("EVS1 Online again", online_on("NODE1"), GROUP_SETTLE_S)
    assert structure(after) == structure(before)
    assert resources(after, "EVS1")[SA]["possible_owners"] == ["NODE1", "NODE2"]
    assert group(after, "Cluster Group")["state"] == "Online"
    assert_dependency_order(all_online_events(lab, "NODE1", up_at, after), after)
    ex = json.loads(lab.cli("exchange", "status", "--json").stdout)
    assert ex["installed"] == {"NODE1": "2003", "NODE2": "2003"}


# -- 8. bad input --------------------------------------------------------------------------------------------


def test_setup_rules_refuse_evs_before_exchange_and_two_installs_at_once(lab_factory: Factory) -> None:
    lab = lab_factory(2)
    lab.cli("msdtc", "create")
    before = lab.status()
    line = refusal(lab.cli("evs", "create", "EVS9", check=False))
    assert "Exchange 2003 must be installed on every possible owner" in line
    assert "NODE1" in line and "NODE2" in line
    assert [g["name"] for g in lab.status()["groups"]] == [g["name"] for g in before["groups"]]

    # 6 s of setup at speed 10 (default 3 s): the refusals below must land while it runs, even on a slow box.
    lab.cli("cluster", "prop", "ExchangeSetupTime=60")
    first = lab.cli("exchange", "install", "NODE2", "--no-wait")
    assert "setup started" in first.stdout
    second = refusal(lab.cli("exchange", "install", "NODE2", "--no-wait", check=False))
    assert "one node at a time" in second and "NODE2" in second
    other = refusal(lab.cli("exchange", "install", "NODE1", "--no-wait", check=False))
    assert "one node at a time" in other
    done = lab.wait_for(
        "Exchange setup on NODE2 to finish",
        lambda: (lambda ex: ex if ex["installed"].get("NODE2") == "2003" and not ex["installing"] else None)(
            json.loads(lab.cli("exchange", "status", "--json").stdout)
        ),
        60,
    )
    assert "NODE1" not in done["installed"]
    # Still refused with one node missing: the rule names the node without Exchange.
    line = refusal(lab.cli("evs", "create", "EVS9", check=False))
    assert "must be installed on every possible owner" in line and "NODE1" in line and "NODE2" not in line
