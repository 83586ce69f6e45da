"""ResourceManager details: resync of states the database lacks; the AfterFence hint for disks."""

from __future__ import annotations

from nodeagent.core.clusterdb import ClusterDb, Group, Resource
from nodeagent.core.effects import ResourceReport
from nodeagent.core.resources import RESYNC_S, ResourceManager, StepOutput
from nodeagent.core.resources import S as State

SPEED = 10.0


def lab() -> tuple[ClusterDb, ResourceManager]:
    db = ClusterDb()
    db.groups["G"] = Group("G", owner="NODE1", desired="online")
    db.resources["R"] = Resource("R", "Generic Application", "G", desired="online", state="Online Pending")
    rm = ResourceManager("NODE1", SPEED)
    return db, rm


def state_requests(out: StepOutput) -> list[str]:
    return [args["state"] for cmd, args in out.requests if cmd == "resource.state"]


def test_a_state_the_database_lacks_is_sent_again_after_the_resync_interval() -> None:
    db, rm = lab()
    out = StepOutput()
    rm.step(db, 0.0, out)  # starts R: Online Pending, reported once
    assert state_requests(out) == ["Online Pending"]
    token = out.actions[0].token
    out = StepOutput()
    rm.on_report(db, ResourceReport("R", "online", token, True, ""), 0.1, out)
    assert state_requests(out) == ["Online"]  # this report is lost: the database still says pending
    assert rm.local["R"].state == State.ONLINE
    out = StepOutput()
    rm.step(db, 0.1 + RESYNC_S / SPEED - 0.01, out)
    assert state_requests(out) == []  # not before the interval
    out = StepOutput()
    rm.step(db, 0.1 + RESYNC_S / SPEED, out)
    assert state_requests(out) == ["Online"]  # said again
    db.resources["R"].state = "Online"  # it got through this time
    out = StepOutput()
    rm.step(db, 10.0, out)
    assert state_requests(out) == []


def test_disks_of_a_group_taken_after_a_fence_are_told_so() -> None:
    db, rm = lab()
    db.resources["D"] = Resource("D", "Physical Disk", "G", desired="online", private={"Disk": "DATA"})
    for after_fence in (True, False):
        db.groups["G"].after_fence = after_fence
        rm.local.clear()
        out = StepOutput()
        rm.step(db, 0.0, out)
        props = {a.resource: a.props for a in out.actions if a.action == "online"}
        assert props["D"].get("AfterFence", False) is after_fence
        assert "AfterFence" not in props["R"]  # only disks challenge
        assert "AfterFence" not in db.resources["D"].private  # a hint in the action, not a property
