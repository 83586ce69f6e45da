"""``wolfpack client NAME``: a client of a virtual server, measuring what a failover looks like to it.

Theory of operation
-------------------
1. Resolve NAME (a Network Name such as EVS1) through the nodes' name services: every node listens
   on its public address 127.C.2.N, UDP 3345 (runtime/resources/names.py). The request goes to every
   configured node at once, each through its own connected UDP socket (a node that is down answers
   with ICMP port unreachable, which a connected socket reports at once); the answer of the first
   node in cluster.toml order that knows the name wins, waiting at most ``RESOLVE_TIMEOUT_S``.
   NAME may also be an address ``A`` or ``A:PORT``; then nothing is resolved.
2. Every interval, send ``{"op": "status", "seq": N, "service": SVC|null}`` to address:port and wait
   for the reply with that seq, at most the interval (at least ``MIN_TIMEOUT_S``). A reply with
   ``"ok": true`` in time is *answered*; ``"ok": false`` (the service is not online there) is an
   *error*; no reply in time is *lost*. Late replies (an older seq) are counted and ignored.
3. An outage is a run of requests that were not answered: it starts at the send time of the first
   one and ends when the next answer arrives, so its length is what a user of the service waited.
   During an outage the name is resolved again every ``RERESOLVE_S``, in case it moved to another
   address.
4. Output. Human (stdout): one line when the serving node changes, one per outage with its length,
   one per distinct error, and a summary at the end (``--duration-s`` elapsed, or Ctrl-C, which is a
   normal way to stop: exit 0). ``--json``: one JSON object per line - ``resolved``, one ``reply``
   per reply, one ``outage`` per outage, and ``summary`` last; each carries ``mono_s``
   (CLOCK_MONOTONIC, comparable with the event log's ``mono_s``).

Blocking sockets: this is a plain command, not a node. A name that cannot be resolved is a
``WolfpackError`` (one line, exit 1).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import ipaddress
import json
import select
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

from nodeagent.config import ClusterConfig, Net
from nodeagent.errors import ConfigError, WolfpackError

NAME_PORT = 3345
CLIENT_PORT = 3344
MIN_TIMEOUT_S = 0.02
RESOLVE_TIMEOUT_S = 0.25
RERESOLVE_S = 0.5
MAX_DATAGRAM = 8192
MAX_INTERVAL_MS = 60_000.0
MAX_DURATION_S = 7 * 24 * 3600.0

Server = tuple[str, tuple[str, int]]  # (node name, name service address)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "name", metavar="NAME", help="the virtual server's network name (e.g. EVS1), or A[:PORT]"
    )
    parser.add_argument(
        "--interval-ms", type=float, default=50.0, metavar="MS",
        help="time between requests, and each request's timeout (at least 20 ms); default 50",
    )  # fmt: skip
    parser.add_argument(
        "--duration-s", type=float, metavar="S", help="stop after S seconds (default: Ctrl-C)"
    )
    parser.add_argument(
        "--service", metavar="SVC", help="ask for one service (e.g. SMTP): not Online = not served"
    )


# -- resolution -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    address: str
    port: int
    owner: str | None = None  # the node the name service says owns it
    via: str | None = None  # the node whose name service answered

    @property
    def addr(self) -> tuple[str, int]:
        return (self.address, self.port)


def parse_address(text: str) -> Target | None:
    """``A`` or ``A:PORT`` as a literal IPv4 target; None when ``text`` is a name."""
    host, _, port_text = text.partition(":")
    try:
        address = str(ipaddress.IPv4Address(host))
    except ValueError:
        return None
    if not port_text:
        return Target(address, CLIENT_PORT)
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigError(f"{text}: the port must be a number from 1 to 65535")
    return Target(address, int(port_text))


def name_servers(config: ClusterConfig) -> list[Server]:
    return [(n.name, (config.address(n.id, Net.PUBLIC)[0], NAME_PORT)) for n in config.nodes]


def resolve(name: str, servers: list[Server], timeout_s: float = RESOLVE_TIMEOUT_S) -> Target:
    """Ask every name service at once; the first in order that knows ``name`` wins."""
    request = json.dumps({"op": "resolve", "name": name}).encode()
    socks: dict[int, tuple[int, socket.socket]] = {}  # fd -> (index, socket)
    done: set[int] = set()
    found: dict[int, Target] = {}
    errors: dict[str, str] = {}
    try:
        for i, (node, addr) in enumerate(servers):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setblocking(False)
            try:
                s.connect(addr)
                s.send(request)
            except OSError as e:
                s.close()
                done.add(i)
                errors[node] = e.strerror or str(e)
                continue
            socks[s.fileno()] = (i, s)
        deadline = time.monotonic() + timeout_s
        while len(done) < len(servers):
            best = min(found, default=None)
            if best is not None and all(j in done for j in range(best)):
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            readable, _, _ = select.select(
                [fd for fd, (i, _s) in socks.items() if i not in done], [], [], remaining
            )
            for fd in readable:
                i, s = socks[fd]
                done.add(i)
                reply = _read_json(s, errors, servers[i][0])
                if reply is not None and reply.get("ok") is True:
                    target = _target_of(reply, servers[i][0])
                    if target is not None:
                        found[i] = target
                elif reply is not None:
                    errors[servers[i][0]] = str(reply.get("error", "refused"))[:100]
    finally:
        for _i, s in socks.values():
            s.close()
    if found:
        return found[min(found)]
    asked = ", ".join(node for node, _ in servers)
    if any(e == "name not found" for e in errors.values()):
        raise WolfpackError(f"cannot resolve {name}: no node's name service knows it (asked {asked})")
    raise WolfpackError(
        f"cannot resolve {name}: no name service answered (asked {asked}; is the cluster up?)"
    )


def _read_json(s: socket.socket, errors: dict[str, str], node: str) -> dict[str, Any] | None:
    try:
        data = s.recv(MAX_DATAGRAM + 1)
    except OSError as e:  # ECONNREFUSED: nobody listens there (the node is down)
        errors[node] = e.strerror or str(e)
        return None
    try:
        reply = json.loads(data)
    except ValueError:
        errors[node] = "bad reply"
        return None
    return reply if isinstance(reply, dict) else None


def _target_of(reply: dict[str, Any], via: str) -> Target | None:
    address, port, owner = reply.get("address"), reply.get("port", CLIENT_PORT), reply.get("node")
    if not isinstance(address, str) or not isinstance(port, int) or not 0 < port < 65536:
        return None
    try:
        address = str(ipaddress.IPv4Address(address))
    except ValueError:
        return None
    return Target(address, port, owner if isinstance(owner, str) else None, via)


# -- the request loop -----------------------------------------------------------------------------


@dataclass(slots=True)
class Tally:
    sent: int = 0
    answered: int = 0
    errors: int = 0
    late: int = 0
    outages: list[float] = field(default_factory=list)
    nodes: list[str] = field(default_factory=list)  # in the order they first served
    started_s: float = 0.0
    outage_start_s: float | None = None
    outage_missed: int = 0

    @property
    def lost(self) -> int:
        return self.sent - self.answered - self.errors


class Client:
    def __init__(
        self,
        name: str,
        target: Target,
        *,
        interval_s: float,
        duration_s: float | None,
        service: str | None,
        as_json: bool,
        out: TextIO,
        reresolve: Callable[[], Target] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.target = target
        self.interval_s = interval_s
        self.timeout_s = max(interval_s, MIN_TIMEOUT_S)
        self.duration_s = duration_s
        self.service = service
        self.as_json = as_json
        self.out = out
        self._reresolve = reresolve
        self._clock = clock
        self.tally = Tally()
        self._node: str | None = None
        self._last_error = ""
        self._last_resolve_s = 0.0
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    def run(self) -> Tally:
        """Send requests until the duration is over or Ctrl-C; then print the summary."""
        t = self.tally
        t.started_s = self._last_resolve_s = self._clock()
        self._resolved_line(self.target)
        try:
            seq = 0
            while self.duration_s is None or self._clock() - t.started_s < self.duration_s:
                seq += 1
                sent_s = self._clock()
                self._send(seq)
                reply, at_s = self._wait(seq, sent_s + self.timeout_s)
                if reply is not None and reply.get("ok") is True:
                    self._answered(reply, sent_s, at_s, seq)
                else:
                    self._missed(reply, sent_s, at_s, seq)
                pause = sent_s + self.interval_s - self._clock()
                if pause > 0:
                    time.sleep(pause)
        except KeyboardInterrupt:
            pass
        finally:
            self._sock.close()
        self._summary()
        return t

    # -- one request ------------------------------------------------------------------------------
    def _send(self, seq: int) -> None:
        request = json.dumps({"op": "status", "seq": seq, "service": self.service}).encode()
        self.tally.sent += 1
        with contextlib.suppress(OSError):  # counted as lost when no reply comes
            self._sock.sendto(request, self.target.addr)

    def _wait(self, seq: int, deadline_s: float) -> tuple[dict[str, Any] | None, float]:
        while True:
            remaining = deadline_s - self._clock()
            if remaining <= 0:
                return None, self._clock()
            self._sock.settimeout(remaining)
            try:
                data, source = self._sock.recvfrom(MAX_DATAGRAM + 1)
            except (TimeoutError, BlockingIOError):
                return None, self._clock()
            except OSError:
                continue  # an ICMP error of an earlier send: not an answer to this one
            at_s = self._clock()
            if (source[0], source[1]) != self.target.addr:
                continue
            try:
                reply = json.loads(data)
            except ValueError:
                continue
            if not isinstance(reply, dict):
                continue
            if reply.get("seq") != seq:
                self.tally.late += 1
                continue
            return reply, at_s

    def _answered(self, reply: dict[str, Any], sent_s: float, at_s: float, seq: int) -> None:
        t = self.tally
        t.answered += 1
        node = str(reply.get("node", "?"))
        self._last_error = ""
        self._emit({"event": "reply", "ok": True, "seq": seq, "node": node, "server": reply.get("server"),
                    "rtt_ms": round((at_s - sent_s) * 1000, 3), "mono_s": at_s})  # fmt: skip
        if t.outage_start_s is not None:
            length = at_s - t.outage_start_s
            t.outages.append(length)
            doc = {"event": "outage", "length_s": round(length, 6), "start_mono_s": t.outage_start_s,
                   "end_mono_s": at_s, "missed": t.outage_missed, "node_before": self._node,
                   "node_after": node, "mono_s": at_s}  # fmt: skip
            self._emit(doc, f"outage {length:.3f} s ({t.outage_missed} requests not answered)")
            t.outage_start_s, t.outage_missed = None, 0
        if node != self._node:
            self._node = node
            if node not in t.nodes:
                t.nodes.append(node)
            self._human(f"served by {node} ({self.target.address}:{self.target.port})")

    def _missed(self, reply: dict[str, Any] | None, sent_s: float, at_s: float, seq: int) -> None:
        t = self.tally
        if t.outage_start_s is None:
            t.outage_start_s = sent_s
        t.outage_missed += 1
        if reply is not None:
            t.errors += 1
            error = str(reply.get("error", "refused"))[:200]
            node = str(reply.get("node", "?"))
            self._emit(
                {"event": "reply", "ok": False, "seq": seq, "node": node, "error": error, "mono_s": at_s}
            )
            if error != self._last_error:
                self._last_error = error
                self._human(f"error from {node}: {error}")
        if self._reresolve is not None and at_s - self._last_resolve_s >= RERESOLVE_S:
            self._last_resolve_s = at_s
            try:
                target = self._reresolve()
            except WolfpackError:
                return
            if target.addr != self.target.addr:
                self.target = target
                self._resolved_line(target)

    # -- output -----------------------------------------------------------------------------------
    def _resolved_line(self, target: Target) -> None:
        via = f" via {target.via}'s name service" if target.via else ""
        owner = f", owned by {target.owner}" if target.owner else ""
        doc = {"event": "resolved", "name": self.name, "address": target.address, "port": target.port,
               "owner": target.owner, "via": target.via, "mono_s": self._clock()}  # fmt: skip
        if target.via is None:  # NAME was an address: nothing was resolved
            self._emit(doc, f"sending to {target.address}:{target.port}")
        else:
            self._emit(doc, f"{self.name} is {target.address}:{target.port}{owner}{via}")

    def _summary(self) -> None:
        t = self.tally
        now = self._clock()
        ongoing = now - t.outage_start_s if t.outage_start_s is not None else None
        longest = max([*t.outages, ongoing or 0.0], default=0.0)
        where = self.target
        doc = {"event": "summary", "name": self.name, "address": where.address, "port": where.port,
               "sent": t.sent, "answered": t.answered, "errors": t.errors, "lost": t.lost, "late": t.late,
               "outages": len(t.outages), "longest_outage_s": round(longest, 6),
               "ongoing_outage_s": None if ongoing is None else round(ongoing, 6),
               "nodes": list(t.nodes), "duration_s": round(now - t.started_s, 6), "mono_s": now}  # fmt: skip
        served = ", ".join(t.nodes) or "no node"
        still = f"; no answer for the last {ongoing:.3f} s" if ongoing is not None else ""
        text = (
            f"--- {self.name} ({where.address}:{where.port}): {t.sent} sent, {t.answered} answered, "
            f"{t.errors} errors, {t.lost} lost; {len(t.outages)} outages, longest {longest:.3f} s{still}; "
            f"served by {served}"
        )
        self._emit(doc, text, stamp=False)

    def _emit(self, doc: dict[str, Any], text: str | None = None, *, stamp: bool = True) -> None:
        if self.as_json:
            doc = {**doc, "time": _wall()}
            self.out.write(json.dumps(doc) + "\n")
            self.out.flush()
        elif text is not None:
            self._human(text, stamp=stamp)

    def _human(self, text: str, *, stamp: bool = True) -> None:
        if self.as_json:
            return
        prefix = datetime.datetime.now().strftime("%H:%M:%S.%f")[:-3] + "  " if stamp else ""
        self.out.write(prefix + text + "\n")
        self.out.flush()


def _wall() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# -- the command ----------------------------------------------------------------------------------


def _config(args: argparse.Namespace) -> ClusterConfig:
    from nodeagent.cli import clusterdir

    given = getattr(args, "dir_opt", None) or getattr(args, "top_dir", None)
    _cdir, config = clusterdir.open_cluster(clusterdir.resolve_dir(given))
    return config


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    interval_ms = float(args.interval_ms)
    if not 0 < interval_ms <= MAX_INTERVAL_MS:
        raise ConfigError(
            f"--interval-ms {interval_ms:g}: must be more than 0 and at most {MAX_INTERVAL_MS:g}"
        )
    duration_s = args.duration_s
    if duration_s is not None and not 0 < duration_s <= MAX_DURATION_S:
        raise ConfigError(f"--duration-s {duration_s:g}: must be more than 0 and at most {MAX_DURATION_S:g}")
    service = args.service
    if service is not None and not 0 < len(service) <= 64:
        raise ConfigError("--service: a service name of 1 to 64 characters, e.g. SMTP")
    name: str = args.name
    target = parse_address(name)
    reresolve: Callable[[], Target] | None = None
    if target is None:
        servers = name_servers(_config(args))
        target = resolve(name, servers)
        reresolve = lambda: resolve(name, servers)  # noqa: E731
    client = Client(
        name,
        target,
        interval_s=interval_ms / 1000.0,
        duration_s=duration_s,
        service=service,
        as_json=bool(getattr(args, "json", False)),
        out=out if out is not None else sys.stdout,
        reresolve=reresolve,
    )
    client.run()
    return 0
