"""Service processes: resources whose work is a real OS process, as a resource DLL starts a service.

Theory of operation
-------------------
On Windows exres.dll starts store.exe or inetinfo.exe and answers LooksAlive/IsAlive by asking the
service and its virtual servers. Here a ``ServiceProcess`` resource starts
``python -m nodeagent.exchange.service --role ROLE ...`` (exchange/service.py), a trio program, as a
child of the node process (so ``wolfpack freeze`` of the node, which stops the node's whole process
tree, freezes its services too: a hung server), and supervises it:

- Online: two pipes are made. The *lifeline*: the child gets its read end, only the node holds the
  write end (non-inheritable, so no other child keeps it open). Nobody writes to it; when the node
  process ends, even by SIGKILL, the kernel closes the write end and the child, which watches its
  end, exits at once. PR_SET_PDEATHSIG (child.py) is the second line. The *readiness* pipe: the
  child writes one JSON line once its listening sockets are bound (or why it could not bind them).
  Online succeeds only on ``{"ready": true}``, so Online means it really serves; an error line, an
  exit before the line, or no line within the online bound fails the online with the child's words.
- The child's exit is seen at once by a pidfd watcher (child.py). An exit while the resource is
  online - ``kill -9`` of the service process - is a resource failure, reported through
  ``on_failure``: the core's restart policy and then group failover apply, as for any resource.
- LooksAlive: the process exists and is not a zombie (psutil). IsAlive: the same, plus every
  expected address:port is in LISTEN state in the process's own sockets
  (``psutil.Process.net_connections``), so a service that lost its listener is caught.
- Offline: SIGTERM (the service closes its listeners and exits), ``STOP_GRACE_S``, then SIGKILL.
  Terminate: SIGKILL. Then the lifeline's write end is closed.
- The child's stderr (its log) is appended to ``NODE_DIR/svc-RESOURCE.log``.

Process layout (a design choice): one process per protocol resource (``ProtocolServer``), not one
inetinfo process per EVS hosting every protocol. Each resource then supervises exactly one child,
so a failure is the failure of that one resource and its restart policy acts on that process alone,
with no reference counting between resources of a group and no control channel to add or drop a
virtual server in a running process. The cost, a Python interpreter per protocol (~20 MB), is small
on a lab machine. The role name stays ``inetinfo`` so that ``ps`` reads as on Windows.

Private properties of ``ProtocolServer``: ``Address`` (the virtual IP to bind), ``Port`` (default:
the protocol's well-known port when the node runs as root, else its unprivileged default),
``ServerName`` (the name in greetings; default the group's name), ``Session`` (optional
``module:attr`` of a session factory, instead of the protocol's entry in exchange/service.py's
``PROTOCOLS`` - for a lab's own protocol, and for tests), ``Disk`` (optional disk image path).
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import subprocess
import sys
from typing import IO, Any, ClassVar

import psutil
import trio

from nodeagent.runtime.resources.base import (
    FailureCallback,
    Host,
    Resource,
    ResourceError,
    prop_int,
    prop_str,
)
from nodeagent.runtime.resources.child import Child

STOP_GRACE_S = 3.0  # SIGTERM -> SIGKILL
READY_TIMEOUT_S = 20.0  # the child binds its sockets well within this
MAX_READY_LINE = 4096
MAX_SPEC_PROP = 1024

SERVICE_MODULE = "nodeagent.exchange.service"


def running_as_root() -> bool:
    return os.geteuid() == 0


class ServiceProcess(Resource):
    """A resource whose work is one supervised ``nodeagent.exchange.service`` process."""

    role: ClassVar[str] = "inetinfo"

    def __init__(self, name: str, group: str, props: dict[str, Any], host: Host, on_failure: FailureCallback):
        super().__init__(name, group, props, host, on_failure)
        self._child: Child | None = None
        self._lifeline: int | None = None  # the write end, held by the node only
        self._stopping = False
        self.listening: list[tuple[str, int]] = []

    # -- what subclasses say --------------------------------------------------------------------------
    def spec(self) -> dict[str, Any]:
        """The JSON spec handed to the service (exchange/service.py's ``parse_spec`` checks it)."""
        raise NotImplementedError

    def expected_listeners(self) -> list[tuple[str, int]]:
        """The address:port pairs IsAlive expects in LISTEN state."""
        spec = self.spec()
        return [(str(spec["address"]), int(x["port"])) for x in spec.get("listeners", [])]

    # -- the resource DLL entry points ----------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        return self._child.pid if self._child is not None else None

    def online_timeout_s(self) -> float:
        return READY_TIMEOUT_S + 10.0

    async def online(self) -> str:
        argv = [
            sys.executable, "-m", SERVICE_MODULE, "--role", self.role, "--spec", json.dumps(self.spec()),
        ]  # fmt: skip
        lifeline_r, lifeline_w = os.pipe()  # both non-inheritable (PEP 446); pass_fds opens one up
        ready_r, ready_w = os.pipe()
        argv += ["--lifeline-fd", str(lifeline_r), "--ready-fd", str(ready_w)]
        out = self._open_log()
        try:
            # Spawned here, in the trio thread, for PR_SET_PDEATHSIG (child.py).
            child = Child.spawn(
                argv,
                self.name,
                stdout=out if out is not None else subprocess.DEVNULL,
                stderr=subprocess.STDOUT if out is not None else subprocess.DEVNULL,
                pass_fds=(lifeline_r, ready_w),
            )
        except OSError as e:
            os.close(lifeline_w)
            os.close(ready_r)
            raise ResourceError(f"cannot start the {self.role} service: {e.strerror or e}") from None
        finally:
            os.close(lifeline_r)  # the child's ends: the node must not hold them
            os.close(ready_w)
            if out is not None:
                out.close()
        self._child, self._lifeline = child, lifeline_w
        try:
            pidfd = child.open_pidfd()
        except OSError as e:
            os.close(ready_r)
            raise ResourceError(f"cannot watch process {child.pid}: {e}") from None
        self.host.background(f"{self.name} watcher", lambda: self._watch(child, pidfd), self.on_failure)
        reply = await self._await_ready(child, ready_r)
        if not reply.get("ready"):
            raise ResourceError(f"{self.role} service did not start: {str(reply.get('error'))[:300]}")
        self.listening = [(str(a), int(p)) for a, p in reply.get("listening", [])]
        shown = ", ".join(f"{a}:{p}" for a, p in self.listening) or "no listeners"
        return f"{self.role} process {child.pid} serving {shown}"

    async def offline(self) -> str:
        child = self._child
        self._stopping = True
        if child is None or child.reaped:
            self._close_lifeline()
            await trio.lowlevel.checkpoint()
            return "not running"
        stopped = await child.stop(STOP_GRACE_S)
        self._close_lifeline()
        if not stopped:
            return f"{self.role} process {child.pid} did not stop within {STOP_GRACE_S:g} s: killed"
        return f"{self.role} process {child.pid} stopped ({child.exit_detail})"

    async def terminate(self) -> None:
        self._stopping = True
        if self._child is not None:
            await self._child.kill()
        else:
            await trio.lowlevel.checkpoint()
        self._close_lifeline()

    def abandon(self) -> None:
        self._stopping = True
        if self._child is not None:
            self._child.abandon()
        self._close_lifeline()

    async def looks_alive(self) -> str:
        await trio.lowlevel.checkpoint()
        child = self._child
        if child is None:
            raise ResourceError("not started")
        if child.exited.is_set():
            raise ResourceError(f"{self.role} process {child.pid} {child.exit_detail}")
        try:
            status = psutil.Process(child.pid).status()
        except psutil.Error as e:
            raise ResourceError(f"{self.role} process {child.pid}: {e}") from None
        if status == psutil.STATUS_ZOMBIE:
            raise ResourceError(f"{self.role} process {child.pid} has exited")
        return f"{self.role} process {child.pid} {status}"

    async def is_alive(self) -> str:
        detail = await self.looks_alive()
        assert self._child is not None
        try:
            conns = psutil.Process(self._child.pid).net_connections(kind="tcp")
        except psutil.Error as e:
            raise ResourceError(f"{self.role} process {self._child.pid}: {e}") from None
        listening = {(c.laddr.ip, c.laddr.port) for c in conns if c.status == psutil.CONN_LISTEN}
        missing = [f"{a}:{p}" for a, p in self.expected_listeners() if (a, p) not in listening]
        if missing:
            where = ", ".join(missing)
            raise ResourceError(f"{self.role} process {self._child.pid} is not listening on {where}")
        return f"{detail}, listening" if self.listening else detail

    # -- helpers -------------------------------------------------------------------------------------
    async def _await_ready(self, child: Child, fd: int) -> dict[str, Any]:
        stream = trio.lowlevel.FdStream(fd)
        line = b""
        try:
            with trio.move_on_after(READY_TIMEOUT_S):
                while b"\n" not in line and len(line) < MAX_READY_LINE:
                    chunk = await stream.receive_some(MAX_READY_LINE)
                    if not chunk:
                        break
                    line += chunk
        finally:
            await stream.aclose()
        if b"\n" not in line:
            if not line:
                with trio.move_on_after(1.0):  # it closed the pipe: it is exiting; say how
                    await child.exited.wait()
                why = child.exit_detail or f"no readiness within {READY_TIMEOUT_S:g} s"
                return {"ready": False, "error": f"process {child.pid} {why}".strip()}
            return {"ready": False, "error": "unreadable readiness line"}
        try:
            reply = json.loads(line.split(b"\n", 1)[0])
        except ValueError:
            reply = None
        if not isinstance(reply, dict):
            return {"ready": False, "error": "unreadable readiness line"}
        return reply

    async def _watch(self, child: Child, pidfd: int) -> None:
        await child.watch(pidfd)
        if not self._stopping:
            self.on_failure(f"{self.role} process {child.pid} {child.exit_detail}")

    def _close_lifeline(self) -> None:
        if self._lifeline is not None:
            fd, self._lifeline = self._lifeline, None
            os.close(fd)

    def _open_log(self) -> IO[bytes] | None:
        if self.host.log_dir is None:
            return None
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", self.name)[:64]
        try:
            return (self.host.log_dir / f"svc-{safe}.log").open("ab")
        except OSError:
            return None


class ProtocolServer(ServiceProcess):
    """A protocol virtual server (SMTP, HTTP, POP3, IMAP4) in its own inetinfo-role process."""

    rtype: ClassVar[str] = "Protocol Virtual Server"
    protocol: ClassVar[str] = ""
    root_port: ClassVar[int] = 0  # the well-known port, used when the node runs as root
    user_port: ClassVar[int] = 0  # the documented unprivileged default

    def __init__(self, name: str, group: str, props: dict[str, Any], host: Host, on_failure: FailureCallback):
        super().__init__(name, group, props, host, on_failure)
        raw = prop_str(props, "Address", max_len=64).strip()
        try:
            self.address = str(ipaddress.IPv4Address(raw))
        except ValueError:
            raise ResourceError(f"private property Address = {raw!r}: not an IPv4 address") from None
        self.proto = prop_str(props, "Protocol", self.protocol or None, max_len=16).strip().lower()
        default_port = self.root_port if running_as_root() else self.user_port
        self.port = prop_int(props, "Port", default_port or 0, 1, 65535)
        self.server = prop_str(props, "ServerName", group, max_len=255).strip() or group
        session = prop_str(props, "Session", "", max_len=MAX_SPEC_PROP).strip()
        self.session = session or None
        disk = prop_str(props, "Disk", "", max_len=MAX_SPEC_PROP).strip()
        self.disk = disk or None

    @property
    def service_key(self) -> str | None:
        return self.proto.upper()

    def spec(self) -> dict[str, Any]:
        listener: dict[str, Any] = {"protocol": self.proto, "port": self.port}
        if self.session is not None:
            listener["session"] = self.session
        return {"server": self.server, "address": self.address, "listeners": [listener], "disk": self.disk}


def protocol_server_class(rtype: str, protocol: str, root_port: int, user_port: int) -> type[ProtocolServer]:
    """A ``ProtocolServer`` type for one protocol, e.g. ("SMTP Virtual Server Instance", "smtp", 25, 2525)."""
    attrs: dict[str, Any] = {
        "rtype": rtype, "protocol": protocol, "root_port": root_port, "user_port": user_port,
    }  # fmt: skip
    cls_name = "".join(c for c in rtype.title() if c.isalnum()) + "Process"
    return type(cls_name, (ProtocolServer,), attrs)
