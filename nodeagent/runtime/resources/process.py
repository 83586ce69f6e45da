"""Generic Application: a child process started from a command line, watched while it runs.

Theory of operation
-------------------
Private properties ``CommandLine`` (split like a POSIX shell would, no shell is run) and
``CurrentDirectory`` (default: the node process's own). Online spawns the child and is done as soon
as it runs, as MSCS's Generic Application is done once CreateProcess returns.

- The child gets its own session and process group (so a signal to the node's terminal does not
  reach it, and offline can signal everything it started), stdin from /dev/null, and stdout/stderr
  appended to ``NODE_DIR/app-RESOURCE.log`` (or /dev/null when the monitor has no log directory).
- It also gets PR_SET_PDEATHSIG = SIGKILL: when the node process dies, even by SIGKILL, the kernel
  kills the child too, as a crashed server takes its applications with it (child.py: spawning,
  watching, signalling and reaping are shared with the Exchange service processes).
- A watcher task waits on a pidfd for the child to exit and reaps it. An exit while the resource is
  online (not while we are stopping it) is a failure: unsolicited report
  ``process 1234 exited with code 3`` / ``... killed by SIGKILL``.
- Offline: SIGTERM to the process group, ``STOP_GRACE_S`` to exit, then SIGKILL. Terminate: SIGKILL
  at once.
- LooksAlive / IsAlive: the child has not exited.
"""

from __future__ import annotations

import logging
import re
import shlex
import subprocess
from pathlib import Path
from typing import IO, Any

import trio

from nodeagent.runtime.resources.base import FailureCallback, Host, Resource, ResourceError, prop_str
from nodeagent.runtime.resources.child import Child

STOP_GRACE_S = 3.0  # SIGTERM -> SIGKILL
MAX_COMMAND = 4096

log = logging.getLogger("nodeagent.resources.process")


class GenericApplication(Resource):
    rtype = "Generic Application"

    def __init__(self, name: str, group: str, props: dict[str, Any], host: Host, on_failure: FailureCallback):
        super().__init__(name, group, props, host, on_failure)
        command = prop_str(props, "CommandLine", max_len=MAX_COMMAND)
        try:
            self.argv = shlex.split(command)
        except ValueError as e:
            raise ResourceError(f"private property CommandLine: {e}") from None
        if not self.argv:
            raise ResourceError("private property CommandLine is empty")
        cwd = prop_str(props, "CurrentDirectory", "", max_len=MAX_COMMAND).strip()
        self.cwd = cwd or None
        self._child: Child | None = None
        self._stopping = False

    @property
    def service_key(self) -> str | None:
        return self.name

    @property
    def pid(self) -> int | None:
        return self._child.pid if self._child is not None else None

    @property
    def exit_detail(self) -> str:
        return self._child.exit_detail if self._child is not None else ""

    async def online(self) -> str:
        await trio.lowlevel.checkpoint()
        if self.cwd is not None and not Path(self.cwd).is_dir():
            raise ResourceError(f"CurrentDirectory {self.cwd} is not a directory")
        out = self._open_log()
        try:
            # Spawned here, in the trio thread, for PR_SET_PDEATHSIG (child.py).
            child = Child.spawn(
                self.argv,
                self.name,
                cwd=self.cwd,
                stdout=out if out is not None else subprocess.DEVNULL,
                stderr=subprocess.STDOUT if out is not None else subprocess.DEVNULL,
            )
        except OSError as e:
            raise ResourceError(f"cannot start {self.argv[0]}: {e.strerror or e}") from None
        finally:
            if out is not None:
                out.close()
        self._child = child
        try:
            pidfd = child.open_pidfd()
        except OSError as e:
            raise ResourceError(f"cannot watch process {child.pid}: {e}") from None
        self.host.background(f"{self.name} watcher", lambda: self._watch(child, pidfd), self.on_failure)
        return f"process {child.pid} started: {shlex.join(self.argv)[:200]}"

    async def offline(self) -> str:
        child = self._child
        if child is None or child.reaped:
            await trio.lowlevel.checkpoint()
            return "not running"
        self._stopping = True
        if not await child.stop(STOP_GRACE_S):
            return f"process {child.pid} did not stop within {STOP_GRACE_S:g} s: killed"
        return f"process {child.pid} stopped ({child.exit_detail})"

    async def terminate(self) -> None:
        self._stopping = True
        if self._child is None:
            await trio.lowlevel.checkpoint()
            return
        await self._child.kill()

    def abandon(self) -> None:
        self._stopping = True
        if self._child is not None:
            self._child.abandon()

    async def looks_alive(self) -> str:
        await trio.lowlevel.checkpoint()
        if self._child is None:
            raise ResourceError("not started")
        if self._child.exited.is_set():
            raise ResourceError(f"process {self._child.pid} {self._child.exit_detail}")
        return f"process {self._child.pid} running"

    # -- helpers -------------------------------------------------------------------------------------
    async def _watch(self, child: Child, pidfd: int) -> None:
        await child.watch(pidfd)
        if not self._stopping:
            self.on_failure(f"process {child.pid} {child.exit_detail}")

    def _open_log(self) -> IO[bytes] | None:
        if self.host.log_dir is None:
            return None
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", self.name)[:64]
        try:
            return (self.host.log_dir / f"app-{safe}.log").open("ab")
        except OSError as e:
            log.warning("%s: cannot open its log file: %s", self.name, e)
            return None
