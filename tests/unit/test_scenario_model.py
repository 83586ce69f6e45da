"""Scenario files: parsing and validation errors, conditions on crafted facts, the report shapes."""

from __future__ import annotations

from typing import Any

import pytest

from nodeagent.cli import scenariocmd
from nodeagent.errors import ConfigError
from nodeagent.scenario import conditions, model, report
from nodeagent.scenario.conditions import Facts
from nodeagent.scenario.model import ScenarioError, Step

HEAD = 'description = "test"\n[cluster]\nnodes = 2\n'


def parse(steps: str, head: str = HEAD) -> model.Scenario:
    return model.parse(head + steps, source="t.toml")


def error_of(text: str) -> str:
    with pytest.raises(ScenarioError) as info:
        model.parse(text, source="t.toml")
    message = str(info.value)
    assert "\n" not in message
    return message


# -- parsing ----------------------------------------------------------------------------------------------


def test_parses_cluster_and_steps_with_ids_and_node_names_normalised() -> None:
    s = parse(
        '[[step]]\nid = "k"\naction = "kill"\nnode = "node1"\n'
        '[[step]]\naction = "wait"\ncondition = "event"\nkind = "node_removed"\nsince = "k"\ntimeout_s = 30\n'
    )
    assert s.name == "scenario" and s.description == "test"
    assert s.cluster.nodes == 2 and s.cluster.first == "NODE1" and s.cluster.exchange_versions == ("2003",)
    kill, wait = s.steps
    assert kill.get("node") == "NODE1" and kill.id == "k" and kill.describe() == "kill NODE1"
    assert wait.condition == "event" and wait.get("since") == 1
    assert "since step 1" in wait.describe()


def test_exchange_version_list_and_networks() -> None:
    s = parse(
        '[[step]]\naction = "sleep"\nseconds = 1\n',
        head='description = "x"\n[cluster]\nevs = 1\nexchange_version = ["2000", "2003"]\n'
        "networks = { public = { role = 2 } }\n",
    )
    assert s.cluster.exchange_versions == ("2000", "2003")
    assert s.cluster.networks == {"public": {"role": 2}}


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (HEAD + '[[step]]\naction = "explode"\n', "step 1: action 'explode'"),
        (HEAD + '[[step]]\naction = "kill"\n', "step 1 (kill): missing field 'node'"),
        (HEAD + '[[step]]\naction = "kill"\nnode = "NODE3"\n', "step 1 (kill) node: 'NODE3' is not a node"),
        (HEAD + '[[step]]\naction = "kill"\nnode = "NODE1"\nspeed = 3\n', "unknown field 'speed'"),
        (HEAD + '[[step]]\naction = "wait"\ncondition = "moon"\n', "condition 'moon'"),
        (HEAD + '[[step]]\naction = "wait"\ncondition = "group_online"\n', "missing field 'group'"),
        (
            HEAD + '[[step]]\naction = "wait"\ncondition = "node_up"\nnode = "NODE1"\ntimeout_s = "x"\n',
            "step 1 (wait) timeout_s: expected a number",
        ),
        (
            HEAD + '[[step]]\naction = "assert"\ncondition = "event"\nkind = "halted"\nsince = 1\n',
            "step 1 is not before this step",
        ),
        (
            HEAD + '[[step]]\naction = "assert"\ncondition = "event"\nkind = "halted"\nsince = "nope"\n',
            "no earlier step has id 'nope'",
        ),
        (HEAD + '[[step]]\naction = "fault"\nkind = "loss"\nnode = "NODE1"\n', "needs a pct above 0"),
        (HEAD + '[[step]]\naction = "fault"\nkind = "shape"\n', "kind shape needs field 'shape'"),
        (HEAD + '[[step]]\naction = "fault"\nkind = "cut"\nnode = "NODE1"\npeer = "NODE1"\n', "from itself"),
        (HEAD + '[[step]]\naction = "sleep"\n', "exactly one of seconds"),
        (HEAD + '[[step]]\naction = "prop"\ntarget = "group"\nprops = { A = 1 }\n', "needs the group's name"),
        (HEAD + '[[step]]\naction = "client"\nname = "EVS1"\nstate = "maybe"\n', "one of on, off"),
        (HEAD, "at least one step"),
        ('[cluster]\n[[step]]\naction = "sleep"\nseconds = 1\n', "description: required"),
        ('description = "x"\ncolour = 1\n', "unknown key 'colour'"),
        (
            'description = "x"\n[cluster]\nnodes = 12\n',
            "[cluster] nodes: expected a whole number from 1 to 8",
        ),
        ('description = "x"\n[cluster]\nexchange_version = "5.5"\n', "exchange_version"),
        ('description = "x"\n[cluster]\nquorum = "majority"\nnodes = 3\nfirst = "NODE1"\n', "cannot form"),
        ('description = "x"\n[cluster]\nnodes = 3\nevs = 3\n', "at most 2 virtual servers"),
        ("description = \n", "not valid TOML"),
    ],
)
def test_errors_are_one_line_naming_the_place(text: str, needle: str) -> None:
    message = error_of(text)
    assert message.startswith("t.toml: ")
    assert needle in message, message


def test_duplicate_step_id_is_refused() -> None:
    text = (
        HEAD
        + '[[step]]\nid = "a"\naction = "kill"\nnode = "NODE1"\n'
        + '[[step]]\nid = "a"\naction = "kill"\nnode = "NODE2"\n'
    )
    assert "step 2 (kill) id: 'a' is already the id of step 1" in error_of(text)


def test_every_shipped_scenario_parses_and_has_a_description() -> None:
    shipped = scenariocmd.library()
    assert len(shipped) >= 10
    for name, path in shipped.items():
        s = model.load_file(path)
        assert s.name == name and s.description and len(s.steps) >= 3
        assert any(step.action in ("wait", "assert") for step in s.steps), name


def test_resolve_by_name_or_refuses_clearly(tmp_path: Any) -> None:
    assert scenariocmd.resolve("active-node-killed").name == "active-node-killed.toml"
    with pytest.raises(ConfigError, match="no shipped scenario"):
        scenariocmd.resolve(str(tmp_path / "nope"))


# -- conditions -------------------------------------------------------------------------------------------


def step(condition: str, **fields: Any) -> Step:
    return Step(1, "wait", {"action": "wait", "condition": condition, **fields})


def group(
    name: str, state: str, owner: str | None, target: str | None = None, res: str = "Online"
) -> dict[str, Any]:
    resources = [{"name": f"{name} IP", "state": res}, {"name": f"{name} Disk", "state": "Online"}]
    return {"name": name, "state": state, "owner": owner, "target": target, "resources": resources}


STATUS: dict[str, Any] = {
    "view_from": "NODE2",
    "quorum_owner": "NODE2",
    "nodes": [
        {"name": "NODE1", "state": "Down", "own_state": None, "process": "not running"},
        {"name": "NODE2", "state": "Up", "own_state": "Up", "process": "running"},
        {"name": "NODE3", "state": "Halted", "own_state": "Halted", "process": "running"},
    ],
    "groups": [
        group("EVS1", "Online", "NODE2"),
        {
            **group("EVS2", "Failed", "NODE2", res="Failed"),
            "resources": [{"name": "EVS2 IP", "state": "Failed"}],
        },
        group("EVS3", "Failed", "NODE2", res="Failed"),
    ],
}
EVENTS: list[dict[str, Any]] = [
    {"mono_s": 5.0, "node": "NODE2", "kind": "node_removed", "fields": {"peer": "NODE1"}},
    {"mono_s": 15.0, "node": "NODE2", "kind": "group_owner", "fields": {"group": "EVS1", "owner": "NODE2"}},
    {"mono_s": 16.0, "node": "NODE3", "kind": "halted", "fields": {"reason": "x"}},
]
CLIENT: list[dict[str, Any]] = [
    {"event": "resolved"},
    {"event": "reply", "ok": True, "node": "NODE1"},
    {"event": "outage", "length_s": 0.8},
    {"event": "reply", "ok": True, "node": "NODE2"},
]


def facts(status: dict[str, Any] | None = None, clients: dict[str, Any] | None = None) -> Facts:
    return Facts(speed=10.0, marks={0: 1.0, 1: 10.0}, status=status or STATUS, events=EVENTS,
                 clients=clients if clients is not None else {"EVS1": CLIENT})  # fmt: skip


@pytest.mark.parametrize(
    ("cond", "fields", "ok", "needle"),
    [
        ("group_online", {"group": "evs1", "node": "NODE2"}, True, "EVS1 is Online on NODE2"),
        ("group_online", {"group": "EVS1", "node": "NODE1"}, False, "Online on NODE2"),
        ("group_online", {"group": "EVS9"}, False, "not in the cluster database"),
        ("group_failed", {"group": "EVS2"}, True, "Failed"),
        ("group_failed", {"group": "EVS1"}, False, "Online"),
        ("group_failed", {"group": "EVS3"}, False, "still changing state"),
        ("group_owner", {"group": "EVS1", "node": "NODE2"}, True, "NODE2"),
        ("resource_state", {"resource": "EVS2 IP", "state": "failed"}, True, "EVS2 IP is Failed"),
        ("node_down", {"node": "NODE1"}, True, "NODE1 is Down"),
        ("node_down", {"node": "NODE3"}, True, "Halted"),
        ("node_down", {"node": "NODE2"}, False, "NODE2 is Up"),
        ("node_up", {"node": "NODE2"}, True, "Up"),
        ("node_state", {"node": "NODE3", "state": "Halted"}, True, "Halted"),
        ("quorum_owner", {"node": "NODE2"}, True, "the quorum owner is NODE2"),
        ("quorum_owner", {"node": "NODE1"}, False, "NODE2"),
        ("quorum_owner", {}, True, "NODE2"),
        ("client_served_by", {"node": "NODE2"}, True, "served by NODE2"),
        ("client_served_by", {"node": "NODE1"}, False, "served by NODE2"),
        ("client_served_by", {"node": "NODE2", "client": "EVS7"}, False, "no client EVS7"),
        ("client_outages", {"count": 1, "max_s": 10.0}, True, "1 outage, longest 0.800 s"),
        ("client_outages", {"max_s": 5.0}, False, "longest must be at most 0.500 s"),
        ("client_outages", {"max_count": 0}, False, "expected at most 0"),
        ("event", {"kind": "node_removed", "node": "NODE2", "fields": {"peer": "NODE1"}}, True, "1 event(s)"),
        ("event", {"kind": "node_removed", "since": 1}, False, "0 event(s)"),
        ("event", {"kind": "group_owner", "since": 1, "fields": {"owner": "NODE2"}}, True, "group=EVS1"),
        ("event", {"kind": "group_owner", "fields": {"owner": "NODE1"}}, False, "expected at least 1"),
        ("event", {"kind": "halted", "min_count": 2}, False, "expected at least 2"),
        ("no_event", {"kind": "halted", "node": "NODE2"}, True, "no event halted on NODE2"),
        ("no_event", {"kind": "halted", "since": 1}, False, "NODE3 halted"),
    ],
)
def test_conditions_on_crafted_facts(cond: str, fields: dict[str, Any], ok: bool, needle: str) -> None:
    verdict = conditions.evaluate(step(cond, **fields), facts())
    assert verdict.ok is ok, verdict.why
    assert needle in verdict.why, verdict.why


def test_group_online_needs_every_resource_online_and_no_move() -> None:
    status = {**STATUS, "groups": [group("EVS1", "Online", "NODE2", res="Online Pending")]}
    v = conditions.evaluate(step("group_online", group="EVS1"), facts(status))
    assert not v.ok and "not Online: EVS1 IP" in v.why
    status = {**STATUS, "groups": [group("EVS1", "Online", "NODE2", target="NODE1")]}
    v = conditions.evaluate(step("group_online", group="EVS1"), facts(status))
    assert not v.ok and "moving to NODE1" in v.why


def test_no_view_means_no_groups_and_a_stopped_client_in_an_outage_is_not_served() -> None:
    v = conditions.evaluate(step("group_online", group="EVS1"), facts({**STATUS, "view_from": None}))
    assert not v.ok and "no cluster member answers" in v.why
    stopped = [*CLIENT, {"event": "summary", "ongoing_outage_s": 2.5}]
    v = conditions.evaluate(step("client_served_by", node="NODE2"), facts(clients={"EVS1": stopped}))
    assert not v.ok and "no answer for the last 2.500 s" in v.why
    v = conditions.evaluate(step("client_outages", count=2), facts(clients={"EVS1": stopped}))
    assert v.ok, v.why


def test_facts_read_each_source_once_and_only_when_needed() -> None:
    calls = {"status": 0, "events": 0}

    def status() -> dict[str, Any]:
        calls["status"] += 1
        return STATUS

    def events() -> list[dict[str, Any]]:
        calls["events"] += 1
        return EVENTS

    f = Facts(speed=1.0, marks={0: 0.0}, status=status, events=events)
    assert conditions.evaluate(step("node_up", node="NODE2"), f).ok
    assert conditions.evaluate(step("quorum_owner"), f).ok
    assert calls == {"status": 1, "events": 0}


# -- the report -------------------------------------------------------------------------------------------


def test_report_json_and_text() -> None:
    run = report.RunResult("demo", "exchange 2003", "/tmp/x", 20.0, cluster_number=7, setup_s=6.0)
    run.steps = [
        report.StepResult(1, "kill", "kill NODE1", status=report.PASS, seconds=0.01, started_s=0.0),
        report.StepResult(2, "wait", "wait node_down NODE1", "down", report.FAIL, 1.5, 0.02, "NODE1 is Up"),
        report.StepResult(3, "assert", "assert quorum_owner"),
    ]
    doc = report.ScenarioReport("demo", "a demo", "demo.toml", [run])
    assert not doc.passed
    data = doc.as_json()
    assert data["passed"] is False and data["runs"][0]["cluster_number"] == 7
    steps = data["runs"][0]["steps"]
    assert steps[1] == {"number": 2, "id": "down", "action": "wait", "text": "wait node_down NODE1",
                        "status": "FAIL", "seconds": 1.5, "windows_s": 30.0, "started_s": 0.02,
                        "detail": "NODE1 is Up"}  # fmt: skip
    assert steps[2]["status"] == "SKIP" and steps[2]["seconds"] is None
    text = report.render(doc)
    assert "FAIL" in text and "1.50 s (30.0 s win)" in text and "=> FAIL" in text
