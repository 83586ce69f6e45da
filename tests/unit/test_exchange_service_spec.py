"""The service host's spec check: a bad spec is refused with one line naming what is wrong."""

from __future__ import annotations

import json

import pytest

from nodeagent.exchange import service
from nodeagent.exchange.service import ProtocolEntry, SpecError, parse_spec

GOOD = {"server": "EVS1.wolfpack.lab", "address": "127.7.3.2",
        "listeners": [{"protocol": "echo", "port": 2525, "session": "m:f"}]}  # fmt: skip


def test_a_good_spec_parses() -> None:
    spec = parse_spec("inetinfo", json.dumps(GOOD))
    assert spec.address == "127.7.3.2" and spec.listeners[0].port == 2525
    assert spec.listeners[0].session == "m:f" and spec.listeners[0].handler is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"address": "nowhere"}, "not an IPv4 address"),
        ({"server": ""}, "spec.server"),
        ({"listeners": [{"protocol": "echo", "port": 0, "session": "m:f"}]}, "port = 0"),
        ({"listeners": [{"protocol": "echo", "port": 1, "session": "nocolon"}]}, "module:attribute"),
        ({"listeners": [{"protocol": "gopher", "port": 70}]}, "no session machine for protocol 'gopher'"),
        ({"listeners": [{"protocol": "a", "port": 1, "session": "m:f"}] * 2}, "two listeners on one port"),
        ({"listeners": "all"}, "spec.listeners must be a list"),
        ({"idle_timeout_s": -1}, "idle_timeout_s"),
    ],
)
def test_bad_specs_are_refused(change: dict[str, object], message: str) -> None:
    with pytest.raises(SpecError, match=message):
        parse_spec("inetinfo", json.dumps({**GOOD, **change}))


def test_unknown_role_and_non_json() -> None:
    with pytest.raises(SpecError, match="unknown role"):
        parse_spec("mad", json.dumps(GOOD))
    with pytest.raises(SpecError, match="not JSON"):
        parse_spec("inetinfo", "{")


def test_a_protocol_entry_is_all_it_takes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(service.PROTOCOLS, "smtp", ProtocolEntry("x.smtp:Session", "x.delivery:handle"))
    spec = parse_spec("inetinfo", json.dumps({**GOOD, "listeners": [{"protocol": "SMTP", "port": 25}]}))
    assert spec.listeners[0] == service.Listener("smtp", 25, "x.smtp:Session", "x.delivery:handle")
