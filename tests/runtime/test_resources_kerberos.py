"""RequireKerberos: Network Names create computer objects in the lab's directory; the SA needs one."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
from test_resources_kit import Harness, make_config

from nodeagent.runtime.directory import Directory, DirectoryError
from nodeagent.runtime.resources.monitor import ResourceMonitor

SA = "Microsoft Exchange System Attendant"
NN = "Network Name"


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    monitor = ResourceMonitor(make_config(), "NODE1")
    monitor.host.directory = Directory(tmp_path / "directory.json")
    harness = Harness(monitor)
    async with trio.open_nursery() as nursery:
        await nursery.start(monitor.run)
        yield harness
        nursery.cancel_scope.cancel()


def name_props(kerberos: int) -> dict[str, object]:
    return {"Name": "EVS1", "Address": "127.200.3.2", "RequireKerberos": kerberos}


async def test_the_sa_refuses_to_start_without_a_computer_object(h: Harness) -> None:
    with trio.fail_after(10):
        report = await h.do("EVS1 SA", SA, "online", {"StartupTime": 0}, group="EVS1")
        assert not report.ok
        assert "Network Name EVS1 has no computer object in the directory" in report.detail
        assert "RequireKerberos=1" in report.detail


async def test_require_kerberos_creates_the_object_once_and_then_the_sa_starts(
    h: Harness, tmp_path: Path
) -> None:
    with trio.fail_after(10):
        first = await h.do("EVS1 Network Name", NN, "online", name_props(1), group="EVS1")
        assert first.ok and first.detail.endswith("computer object created")
        computers = json.loads((tmp_path / "directory.json").read_text())["computers"]
        assert computers["EVS1"]["dns_name"] == "evs1.wolfpack.lab"
        assert computers["EVS1"]["created_by"] == "NODE1"
        assert (await h.do("EVS1 Network Name", NN, "offline", group="EVS1")).ok
        again = await h.do("EVS1 Network Name", NN, "online", name_props(1), group="EVS1")
        assert again.ok and again.detail.endswith("computer object reused")
        sa = await h.do("EVS1 SA", SA, "online", {"StartupTime": 0}, group="EVS1")
        assert sa.ok, sa.detail


async def test_without_require_kerberos_no_object_is_made(h: Harness, tmp_path: Path) -> None:
    with trio.fail_after(10):
        assert (await h.do("EVS1 Network Name", NN, "online", name_props(0), group="EVS1")).ok
        assert not (tmp_path / "directory.json").exists()
        assert not (await h.do("EVS1 SA", SA, "online", {"StartupTime": 0}, group="EVS1")).ok


def test_a_corrupt_directory_is_an_error_not_replaced(tmp_path: Path) -> None:
    path = tmp_path / "directory.json"
    path.write_text("{not json")
    with pytest.raises(DirectoryError, match="not valid JSON"):
        Directory(path).ensure_computer("EVS1", "evs1.wolfpack.lab", "NODE1")
    assert path.read_text() == "{not json"
    path.write_text('{"computers": {"evs1": {}}}')
    assert Directory(path).has_computer("EVS1")  # NetBIOS names: case does not matter
