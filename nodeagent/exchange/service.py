"""The host program of an Exchange service process: ``python -m nodeagent.exchange.service``.

Theory of operation
-------------------
The node's resource monitor starts one of these per service-process resource (serviceproc.py), the
way exres.dll starts store.exe or inetinfo.exe on Windows. The command line says everything::

    python -m nodeagent.exchange.service --role inetinfo --lifeline-fd 5 --ready-fd 7 \\
        --spec '{"server": "EVS1.wolfpack.lab", "address": "127.7.3.2",
                 "listeners": [{"protocol": "smtp", "port": 2525}], "disk": null, "options": {}}'

(the role is on the command line so that ``ps`` shows what each process is). In order:

1. parse and check the spec (``parse_spec``: a bad one exits with ``EXIT_USAGE`` and one line on
   stderr);
2. start the lifeline watcher: fd ``--lifeline-fd`` is the read end of a pipe whose write end only
   the node holds. Nobody ever writes to it; when the node process ends - even by SIGKILL - the
   kernel closes the write end, the read returns EOF and this process ``os._exit``s at once (no
   clean-up that could hang: a crashed server takes its services with it). PR_SET_PDEATHSIG, set by
   the node at spawn (child.py), is a second line of defence;
3. bind a TCP listener per ``listeners`` entry on ``address`` (a bind failure is reported on the
   readiness pipe and the process exits with ``EXIT_BIND``);
4. start the role's own work, if the role has any (``Role.main``);
5. write one JSON line on fd ``--ready-fd`` - ``{"ready": true, "pid": P, "listening": [[A, P], ..]}``
   or ``{"ready": false, "error": "..."}`` - and close it: the resource reports Online only then, so
   Online means the sockets are really there;
6. serve until SIGTERM (graceful: listeners closed, connections cancelled, exit 0) or lifeline EOF.

Each accepted connection gets a sans-IO session from its protocol's factory (``Session``: bytes
in, events out, h11-style) and this module only moves bytes: what the session wants to send is sent
first (an SMTP greeting), then every chunk received goes to ``receive`` - ``b""`` once the peer
has closed its side - the events go to the protocol's handler, if it has one (where the I/O a
protocol needs lives, e.g. making a message durable before the session acknowledges it), and the
session's output is sent back. A session that raises, a peer that resets, a client idle longer
than ``idle_timeout_s``: each ends that connection only, logged, never the process. At most
``max_connections`` connections per listener are served at once; past that a new one is closed at
once.

The tables: ``PROTOCOLS`` names each protocol's session factory (and optional event handler) by
import path, imported when a listener needs it, so wiring a protocol machine in is one entry. A
listener may also name its session factory directly (``"session": "module:attr"``): that is how a
lab (or a test) runs its own protocol in this host. ``ROLES`` says which roles exist and whether
they host protocol listeners.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import ipaddress
import json
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import trio

EXIT_USAGE = 2  # bad command line or spec
EXIT_BIND = 3  # a listener could not be bound
EXIT_LIFELINE = 4  # the node went away (lifeline EOF)
EXIT_CRASH = 5  # an internal error escaped

MAX_LISTENERS = 8
MAX_SPEC = 64 * 1024
RECEIVE_CHUNK = 64 * 1024
DEFAULT_MAX_CONNECTIONS = 256
DEFAULT_IDLE_TIMEOUT_S = 600.0
MAX_OPTIONS_JSON = 16 * 1024

log = logging.getLogger("nodeagent.exchange.service")


# -- the session interface --------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Connection:
    """What a session factory is told about its connection."""

    server: str  # the virtual server's name, e.g. EVS1.wolfpack.lab (greetings use it)
    protocol: str
    local: tuple[str, int]
    peer: tuple[str, int]
    options: Mapping[str, Any]  # the spec's options (the role's settings)
    disk: str | None  # the EVS disk image, for roles that use it


class Session(Protocol):
    """A sans-IO protocol session (one connection): bytes in, events out, bytes to send."""

    def receive(self, data: bytes) -> Sequence[object]:
        """Feed what arrived (``b""``: the peer closed its side); returns the events it made."""
        ...

    def data_to_send(self) -> bytes:
        """What the session wants sent now (and forgets it)."""
        ...

    @property
    def closed(self) -> bool:
        """True once the session is over; the host then closes the connection."""
        ...


SessionFactory = Callable[[Connection], Session]
EventHandler = Callable[[Session, Sequence[object]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class ProtocolEntry:
    session: str  # "module:attr" of a SessionFactory
    handler: str | None = None  # "module:attr" of an EventHandler (None: events need no I/O)


# protocol -> entry. One line per protocol machine, e.g. when nodeagent/exchange/smtp.py exists:
#     "smtp": ProtocolEntry("nodeagent.exchange.smtp:SmtpSession", "nodeagent.exchange.delivery:handle"),
PROTOCOLS: dict[str, ProtocolEntry] = {}


@dataclass(frozen=True, slots=True)
class Role:
    listeners: bool  # hosts protocol virtual servers
    main: str | None = None  # "module:attr" of ``async def main(spec: Spec) -> None``: the role's own work


# role -> what it is. inetinfo.exe hosts protocol virtual servers; store.exe ("store") gets its entry
# with its ``main`` when the store (mailstore.py) is wired in.
ROLES: dict[str, Role] = {
    "inetinfo": Role(listeners=True),
}


# -- the spec -----------------------------------------------------------------------------------------
class SpecError(Exception):
    """The command line or spec is not acceptable; the message says why, in one line."""


@dataclass(frozen=True, slots=True)
class Listener:
    protocol: str
    port: int
    session: str  # "module:attr"
    handler: str | None


@dataclass(frozen=True, slots=True)
class Spec:
    role: str
    server: str
    address: str
    listeners: tuple[Listener, ...]
    disk: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S


def parse_spec(role: str, raw: str) -> Spec:
    """Check the role and the JSON spec; raises ``SpecError`` naming what is wrong."""
    if role not in ROLES:
        raise SpecError(f"unknown role {role[:40]!r} (known: {', '.join(sorted(ROLES))})")
    if len(raw) > MAX_SPEC:
        raise SpecError(f"spec longer than {MAX_SPEC} bytes")
    try:
        data = json.loads(raw)
    except ValueError as e:
        raise SpecError(f"spec is not JSON: {e}") from None
    if not isinstance(data, dict):
        raise SpecError("spec must be a JSON object")
    server = data.get("server")
    if not isinstance(server, str) or not 0 < len(server) <= 255:
        raise SpecError("spec.server must be a name of 1 to 255 characters")
    address = data.get("address")
    try:
        address = str(ipaddress.IPv4Address(address if isinstance(address, str) else ""))
    except ValueError:
        raise SpecError(f"spec.address = {address!r}: not an IPv4 address") from None
    raw_listeners = data.get("listeners", [])
    if not isinstance(raw_listeners, list) or len(raw_listeners) > MAX_LISTENERS:
        raise SpecError(f"spec.listeners must be a list of at most {MAX_LISTENERS}")
    if raw_listeners and not ROLES[role].listeners:
        raise SpecError(f"role {role} hosts no protocol listeners")
    listeners = tuple(_listener(i, x) for i, x in enumerate(raw_listeners))
    ports = [x.port for x in listeners]
    if len(set(ports)) != len(ports):
        raise SpecError("spec.listeners: two listeners on one port")
    disk = data.get("disk")
    if disk is not None and (not isinstance(disk, str) or not disk):
        raise SpecError("spec.disk must be a path or null")
    options = data.get("options", {})
    if not isinstance(options, dict) or len(json.dumps(options)) > MAX_OPTIONS_JSON:
        raise SpecError(f"spec.options must be an object of at most {MAX_OPTIONS_JSON} bytes as JSON")
    max_conn = data.get("max_connections", DEFAULT_MAX_CONNECTIONS)
    if not isinstance(max_conn, int) or isinstance(max_conn, bool) or not 1 <= max_conn <= 10_000:
        raise SpecError("spec.max_connections must be a whole number from 1 to 10000")
    idle = data.get("idle_timeout_s", DEFAULT_IDLE_TIMEOUT_S)
    if not isinstance(idle, int | float) or isinstance(idle, bool) or not 0.1 <= idle <= 86400:
        raise SpecError("spec.idle_timeout_s must be a number of seconds from 0.1 to 86400")
    return Spec(role, server, address, listeners, disk, options, max_conn, float(idle))


def _listener(index: int, raw: Any) -> Listener:
    where = f"spec.listeners[{index}]"
    if not isinstance(raw, dict):
        raise SpecError(f"{where} must be an object")
    protocol = raw.get("protocol")
    if not isinstance(protocol, str) or not 0 < len(protocol) <= 16 or not protocol.isalnum():
        raise SpecError(f"{where}.protocol must be a short alphanumeric name")
    port = raw.get("port")
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        raise SpecError(f"{where}.port = {port!r}: must be a whole number from 1 to 65535")
    session = raw.get("session")
    handler = raw.get("handler")
    if session is None:
        entry = PROTOCOLS.get(protocol.lower())
        if entry is None:
            known = ", ".join(sorted(PROTOCOLS)) or "none yet"
            raise SpecError(f"{where}: no session machine for protocol {protocol!r} (known: {known})")
        session, handler = entry.session, entry.handler
    for key, value in (("session", session), ("handler", handler)):
        if value is not None and (not isinstance(value, str) or value.count(":") != 1):
            raise SpecError(f"{where}.{key} must be 'module:attribute'")
    return Listener(protocol.lower(), port, str(session), handler if handler is None else str(handler))


def load_object(path: str) -> Any:
    """``module:attr`` -> the object (raises ``SpecError``)."""
    module_name, _, attr = path.partition(":")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as e:
        raise SpecError(f"cannot load {path}: {e}") from None


# -- serving -----------------------------------------------------------------------------------------
async def serve_connection(
    stream: trio.SocketStream,
    factory: SessionFactory,
    handler: EventHandler | None,
    info: Connection,
    idle_timeout_s: float,
) -> None:
    """Move bytes between one connection and its session until either side is done."""
    try:
        session = factory(info)
        await _flush(stream, session)
        while not session.closed:
            with trio.move_on_after(idle_timeout_s) as idle:
                data = await stream.receive_some(RECEIVE_CHUNK)
            if idle.cancelled_caught:
                log.info("%s %s: idle for %g s: closed", info.protocol, info.peer, idle_timeout_s)
                return
            events = session.receive(data)
            if handler is not None and events:
                await handler(session, events)
            await _flush(stream, session)
            if not data:
                return  # the peer closed its side and the session has had its last word
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as e:
        log.debug("%s %s: connection lost: %s", info.protocol, info.peer, e)
    except Exception:
        # A protocol machine's bug ends its connection, never the server (nor other connections).
        log.exception("%s %s: session failed", info.protocol, info.peer)
    finally:
        with trio.move_on_after(1.0):  # aclose can block on a full send buffer; bound it
            await stream.aclose()


async def _flush(stream: trio.SocketStream, session: Session) -> None:
    out = session.data_to_send()
    if out:
        await stream.send_all(out)


def _peer(stream: trio.SocketStream) -> tuple[str, int]:
    try:
        host, port = stream.socket.getpeername()[:2]
        return str(host), int(port)
    except OSError:
        return ("?", 0)


def load_machines(spec: Spec) -> list[tuple[SessionFactory, EventHandler | None]]:
    """Each listener's session factory and event handler (raises ``SpecError``), before binding."""
    return [
        (load_object(x.session), load_object(x.handler) if x.handler else None) for x in spec.listeners
    ]


async def _serve_listener(
    spec: Spec,
    listener: Listener,
    machine: tuple[SessionFactory, EventHandler | None],
    sock: trio.SocketListener,
    nursery: trio.Nursery,
) -> None:
    factory, handler = machine
    limiter = trio.CapacityLimiter(spec.max_connections)
    local = (spec.address, listener.port)

    async def one(stream: trio.SocketStream) -> None:
        try:
            limiter.acquire_nowait()
        except trio.WouldBlock:
            log.warning("%s %s: connection limit reached: refused", listener.protocol, local)
            await stream.aclose()
            return
        try:
            info = Connection(spec.server, listener.protocol, local, _peer(stream), spec.options, spec.disk)
            await serve_connection(stream, factory, handler, info, spec.idle_timeout_s)
        finally:
            limiter.release()

    await trio.serve_listeners(one, [sock], handler_nursery=nursery)


async def watch_lifeline(fd: int) -> None:
    """Exit the process at once when the node's end of the lifeline closes (the node is gone)."""
    stream = trio.lowlevel.FdStream(fd)
    while True:
        try:
            data = await stream.receive_some(64)
        except (trio.BrokenResourceError, OSError):
            data = b""
        if not data:
            log.warning("lifeline closed: the node is gone; exiting")
            os._exit(EXIT_LIFELINE)


def _say(fd: int | None, message: dict[str, Any]) -> None:
    if fd is None:
        return
    try:
        os.write(fd, (json.dumps(message) + "\n").encode())
    except OSError as e:  # the node stopped waiting: nothing to tell
        log.warning("cannot signal readiness: %s", e)
    finally:
        os.close(fd)


async def bind(spec: Spec) -> list[trio.SocketListener]:
    """One TCP listener per spec listener on ``spec.address`` (raises OSError naming the address)."""
    bound: list[trio.SocketListener] = []
    try:
        for listener in spec.listeners:
            sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_STREAM)
            # SO_REUSEADDR lets a new owner bind while the dead owner's connections sit in TIME_WAIT;
            # it does not let two processes listen on one address.
            sock.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_REUSEADDR, 1)
            try:
                await sock.bind((spec.address, listener.port))
                sock.listen(128)
            except OSError as e:
                sock.close()
                where = f"{spec.address}:{listener.port}"
                raise OSError(e.errno, f"cannot listen on {where}: {e.strerror}") from None
            bound.append(trio.SocketListener(sock))
    except BaseException:
        for x in bound:
            x.socket.close()
        raise
    return bound


async def run(spec: Spec, lifeline_fd: int | None, ready_fd: int | None) -> int:
    async with trio.open_nursery() as nursery:
        if lifeline_fd is not None:
            nursery.start_soon(watch_lifeline, lifeline_fd)
        try:
            machines = load_machines(spec)
        except SpecError as e:
            log.error("%s", e)
            _say(ready_fd, {"ready": False, "error": str(e)})
            nursery.cancel_scope.cancel()
            return EXIT_USAGE
        try:
            socks = await bind(spec)
        except OSError as e:
            _say(ready_fd, {"ready": False, "error": e.strerror or str(e)})
            nursery.cancel_scope.cancel()
            return EXIT_BIND
        async with trio.open_nursery() as connections:
            for listener, machine, sock in zip(spec.listeners, machines, socks, strict=True):
                nursery.start_soon(_serve_listener, spec, listener, machine, sock, connections)
            role = ROLES[spec.role]
            if role.main is not None:
                main = load_object(role.main)
                nursery.start_soon(main, spec)
            listening = [[spec.address, s.socket.getsockname()[1]] for s in socks]
            _say(ready_fd, {"ready": True, "pid": os.getpid(), "listening": listening})
            log.info("%s for %s ready: %s", spec.role, spec.server, listening)
            with trio.open_signal_receiver(signal.SIGTERM) as signals:
                async for _ in signals:
                    log.info("SIGTERM: stopping")
                    break
            connections.cancel_scope.cancel()
        nursery.cancel_scope.cancel()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nodeagent.exchange.service")
    parser.add_argument("--role", required=True)
    parser.add_argument("--spec", required=True, help="the JSON spec (see the module docstring)")
    parser.add_argument("--lifeline-fd", type=int, default=None)
    parser.add_argument("--ready-fd", type=int, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format=f"%(asctime)s {args.role}[%(process)d] %(message)s"
    )
    try:
        spec = parse_spec(args.role, args.spec)
    except SpecError as e:
        print(f"{parser.prog}: {e}", file=sys.stderr)
        _say(args.ready_fd, {"ready": False, "error": str(e)})
        return EXIT_USAGE
    try:
        return trio.run(functools.partial(run, spec, args.lifeline_fd, args.ready_fd))
    except Exception:
        log.exception("internal error")
        return EXIT_CRASH


if __name__ == "__main__":
    sys.exit(main())
