"""``wolfpack client`` against fake name services and a fake client endpoint (real UDP, threads)."""

from __future__ import annotations

import argparse
import io
import json
import secrets
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from nodeagent.cli import client
from nodeagent.cli.clusterdir import claim_free_number
from nodeagent.config import default_config_dict
from nodeagent.errors import ConfigError, WolfpackError

Reply = Callable[[dict[str, Any], float], dict[str, Any] | None]  # (request, seconds since start) -> reply


def free_number() -> int:
    def addrs(number: int) -> list[tuple[str, int]]:
        return [(f"127.{number}.3.1", 3344), (f"127.{number}.2.1", 3345), (f"127.{number}.2.2", 3345)]

    number = claim_free_number(range(200, 240), addrs, Path(__file__))
    if number is None:
        raise RuntimeError("no free cluster number in 200-239")
    return number


class FakeServer:
    """A UDP server in a thread: ``reply(request, elapsed_s)`` decides the answer (None: silence)."""

    def __init__(self, addr: tuple[str, int], reply: Reply) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(addr)
        self.sock.settimeout(0.02)
        self.reply = reply
        self.started = time.monotonic()
        self.requests = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, source = self.sock.recvfrom(65536)
            except TimeoutError:
                continue
            self.requests += 1
            request = json.loads(data)
            answer = self.reply(request, time.monotonic() - self.started)
            if answer is not None:
                self.sock.sendto(json.dumps({"seq": request.get("seq"), **answer}).encode(), source)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


@pytest.fixture
def lab() -> Iterator[tuple[Path, int, list[FakeServer]]]:
    """A cluster directory of 2 nodes on a free number; servers added to the list are closed after."""
    root = Path(tempfile.mkdtemp(prefix="wp", dir="/tmp"))
    number = free_number()
    data = default_config_dict(number=number, key=secrets.token_bytes(32), nodes=2)
    (root / "cluster.toml").write_text(tomli_w.dumps(data))
    servers: list[FakeServer] = []
    try:
        yield root, number, servers
    finally:
        for s in servers:
            s.close()
        shutil.rmtree(root, ignore_errors=True)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    client.add_arguments(parser)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--dir", dest="dir_opt")
    return parser.parse_args(argv)


def name_service(number: int, owner: str = "NODE1") -> Reply:
    def reply(request: dict[str, Any], _t: float) -> dict[str, Any]:
        if request.get("name", "").upper() == "EVS1":
            return {"ok": True, "name": "EVS1", "address": f"127.{number}.3.1", "port": 3344, "node": owner}
        return {"ok": False, "error": "name not found"}

    return reply


def status(node: str) -> dict[str, Any]:
    return {"ok": True, "server": "EVS1", "node": node, "address": "x", "services": {"SMTP": "Online"}}


def failover(silent_from: float, silent_until: float) -> Reply:
    """NODE1 answers, then nobody (the failover), then NODE2."""

    def reply(_request: dict[str, Any], t: float) -> dict[str, Any] | None:
        if t < silent_from:
            return status("NODE1")
        if t < silent_until:
            return None
        return status("NODE2")

    return reply


def test_json_lines_show_each_reply_the_outage_and_the_new_node(
    lab: tuple[Path, int, list[FakeServer]],
) -> None:
    root, number, servers = lab
    servers.append(FakeServer((f"127.{number}.2.1", 3345), name_service(number)))
    servers.append(FakeServer((f"127.{number}.3.1", 3344), failover(0.4, 0.9)))
    out = io.StringIO()
    code = client.run(
        parse(["EVS1", "--dir", str(root), "--interval-ms", "20", "--duration-s", "1.4", "--json"]), out
    )
    assert code == 0
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert lines[0]["event"] == "resolved"
    assert (lines[0]["address"], lines[0]["port"], lines[0]["via"]) == (f"127.{number}.3.1", 3344, "NODE1")
    replies = [x for x in lines if x["event"] == "reply"]
    assert {x["node"] for x in replies} == {"NODE1", "NODE2"}
    assert all(x["ok"] and x["rtt_ms"] >= 0 and "mono_s" in x and "time" in x for x in replies)
    outages = [x for x in lines if x["event"] == "outage"]
    assert len(outages) == 1
    outage = outages[0]
    assert 0.4 <= outage["length_s"] <= 0.8, outage
    assert (outage["node_before"], outage["node_after"]) == ("NODE1", "NODE2")
    assert outage["end_mono_s"] - outage["start_mono_s"] == pytest.approx(outage["length_s"], abs=1e-5)
    assert outage["missed"] >= 10
    summary = lines[-1]
    assert summary["event"] == "summary"
    assert summary["nodes"] == ["NODE1", "NODE2"]
    assert summary["sent"] == summary["answered"] + summary["lost"] + summary["errors"]
    assert summary["answered"] == len(replies) and summary["outages"] == 1
    assert summary["longest_outage_s"] == outage["length_s"] and summary["ongoing_outage_s"] is None
    assert summary["sent"] >= 40  # about one request every 20 ms for 1.4 s


def test_human_output_has_one_line_per_node_change_and_per_outage(
    lab: tuple[Path, int, list[FakeServer]],
) -> None:
    root, number, servers = lab
    servers.append(FakeServer((f"127.{number}.2.1", 3345), name_service(number)))
    servers.append(FakeServer((f"127.{number}.3.1", 3344), failover(0.2, 0.4)))
    out = io.StringIO()
    client.run(parse(["evs1", "--dir", str(root), "--interval-ms", "20", "--duration-s", "0.7"]), out)
    lines = out.getvalue().splitlines()
    assert lines[0].endswith(f"evs1 is 127.{number}.3.1:3344, owned by NODE1 via NODE1's name service")
    assert lines[1].endswith(f"served by NODE1 (127.{number}.3.1:3344)")
    assert "  outage 0." in lines[2] and "requests not answered" in lines[2]
    assert lines[3].endswith(f"served by NODE2 (127.{number}.3.1:3344)")
    assert lines[4].startswith(f"--- evs1 (127.{number}.3.1:3344): ")
    assert "1 outages, longest 0." in lines[4] and lines[4].endswith("served by NODE1, NODE2")
    assert len(lines) == 5


def test_a_service_that_is_not_online_counts_as_an_outage(lab: tuple[Path, int, list[FakeServer]]) -> None:
    _root, number, servers = lab

    def reply(request: dict[str, Any], t: float) -> dict[str, Any]:
        assert request["service"] == "SMTP"
        if t < 0.3:
            return {"ok": False, "node": "NODE2", "error": "service SMTP is Online Pending on NODE2"}
        return status("NODE2")

    servers.append(FakeServer((f"127.{number}.3.1", 3344), reply))
    out = io.StringIO()
    argv = [f"127.{number}.3.1:3344", "--service", "SMTP", "--interval-ms", "20", "--duration-s", "0.6"]
    client.run(parse(argv), out)  # an address: no cluster directory needed
    lines = out.getvalue().splitlines()
    assert lines[1].endswith("error from NODE2: service SMTP is Online Pending on NODE2")
    assert "outage 0." in lines[2] and "served by NODE2" in lines[3]
    assert " 0 lost;" in lines[-1] and " 0 errors" not in lines[-1]


def test_ctrl_c_ends_with_the_summary(lab: tuple[Path, int, list[FakeServer]]) -> None:
    _root, number, servers = lab
    servers.append(FakeServer((f"127.{number}.3.1", 3344), failover(0.1, 99)))

    class Interrupted(client.Client):
        def _send(self, seq: int) -> None:
            if seq > 20:
                raise KeyboardInterrupt  # the user's Ctrl-C, at a well-defined moment
            super()._send(seq)

    out = io.StringIO()
    target = client.Target(f"127.{number}.3.1", 3344)
    c = Interrupted("EVS1", target, interval_s=0.01, duration_s=None, service=None, as_json=False, out=out)
    tally = c.run()
    assert tally.sent == 20 and tally.answered >= 1
    last = out.getvalue().splitlines()[-1]
    assert last.startswith(
        f"--- EVS1 (127.{number}.3.1:3344): 20 sent, {tally.answered} answered, 0 errors, "
    )
    assert "0 outages, longest 0." in last and "; no answer for the last 0." in last
    assert last.endswith("served by NODE1")


def test_names_that_cannot_be_resolved(lab: tuple[Path, int, list[FakeServer]]) -> None:
    root, number, servers = lab
    with pytest.raises(
        WolfpackError, match=r"cannot resolve EVS1: no name service answered \(asked NODE1, NODE2"
    ):
        client.run(parse(["EVS1", "--dir", str(root), "--duration-s", "1"]), io.StringIO())
    servers.append(FakeServer((f"127.{number}.2.2", 3345), name_service(number)))
    with pytest.raises(WolfpackError, match="cannot resolve EVS9: no node's name service knows it"):
        client.run(parse(["EVS9", "--dir", str(root), "--duration-s", "1"]), io.StringIO())
    # NODE1 is down (port unreachable), NODE2 knows the name: resolved through NODE2.
    target = client.resolve("EVS1", client.name_servers(client._config(parse(["x", "--dir", str(root)]))))
    assert (target.address, target.via, target.owner) == (f"127.{number}.3.1", "NODE2", "NODE1")


def test_bad_arguments_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--interval-ms 0"):
        client.run(parse(["EVS1", "--interval-ms", "0"]))
    with pytest.raises(ConfigError, match="--duration-s -1"):
        client.run(parse(["EVS1", "--duration-s", "-1"]))
    with pytest.raises(ConfigError, match="the port must be a number"):
        client.run(parse(["127.0.0.1:99999"]))
    with pytest.raises(ConfigError, match="not a wolfpack cluster directory"):
        client.run(parse(["EVS1", "--dir", str(tmp_path)]))
