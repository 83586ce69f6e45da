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
  kills the child too, as a crashed server takes its applications with it. The death signal is tied
  to the thread that forked; that is the trio thread, which lives as long as the node, which is why
  the child is spawned with ``subprocess.Popen`` right here and not from a worker thread.
- A watcher task waits on a pidfd (Linux 5.3+) for the child to exit and reaps it. An exit while
  the resource is online (not while we are stopping it) is a failure: unsolicited report
  ``process 1234 exited with code 3`` / ``... killed by SIGKILL``.
- Offline: SIGTERM to the process group, ``STOP_GRACE_S`` to exit, then SIGKILL. Terminate: SIGKILL
  at once. Signals go only to the group of a child we started and have not reaped yet (a zombie
  keeps its pid, so the number cannot belong to anyone else); once reaped we send nothing.
- LooksAlive / IsAlive: the child has not exited.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import re
import shlex
import signal
import subprocess
from pathlib import Path
from typing import IO, Any

import trio

from nodeagent.runtime.resources.base import FailureCallback, Host, Resource, ResourceError, prop_str

STOP_GRACE_S = 3.0  # SIGTERM -> SIGKILL
KILL_WAIT_S = 2.0  # after SIGKILL, how long to wait for the exit to be seen
MAX_COMMAND = 4096
PR_SET_PDEATHSIG = 1

log = logging.getLogger("nodeagent.resources.process")

_libc: Any = None
try:
    _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
except OSError:  # pragma: no cover - not glibc/musl: children simply do not die with the node
    _libc = None


def _die_with_parent() -> None:
    """Runs in the child between fork and exec: kill me when the thread that forked me dies."""
    if _libc is not None:
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


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
        self._proc: subprocess.Popen[bytes] | None = None
        self._exited = trio.Event()
        self._reaped = False
        self._stopping = False
        self.exit_detail = ""

    @property
    def service_key(self) -> str | None:
        return self.name

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    async def online(self) -> str:
        await trio.lowlevel.checkpoint()
        if self.cwd is not None and not Path(self.cwd).is_dir():
            raise ResourceError(f"CurrentDirectory {self.cwd} is not a directory")
        out = self._open_log()
        try:
            # Popen here, in the trio thread, for PR_SET_PDEATHSIG (see the module docstring).
            self._proc = subprocess.Popen(
                self.argv,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=out if out is not None else subprocess.DEVNULL,
                stderr=subprocess.STDOUT if out is not None else subprocess.DEVNULL,
                start_new_session=True,
                close_fds=True,
                preexec_fn=_die_with_parent,
            )
        except OSError as e:
            raise ResourceError(f"cannot start {self.argv[0]}: {e.strerror or e}") from None
        finally:
            if out is not None:
                out.close()
        try:
            pidfd = os.pidfd_open(self._proc.pid)
        except OSError as e:  # cannot happen for our unreaped child; be safe anyway
            self._signal(signal.SIGKILL)
            self._reap(block=True)
            raise ResourceError(f"cannot watch process {self._proc.pid}: {e}") from None
        self.host.background(f"{self.name} watcher", lambda: self._watch(pidfd), self.on_failure)
        return f"process {self._proc.pid} started: {shlex.join(self.argv)[:200]}"

    async def offline(self) -> str:
        if self._proc is None or self._reaped:
            await trio.lowlevel.checkpoint()
            return "not running"
        self._stopping = True
        self._signal(signal.SIGTERM)
        with trio.move_on_after(STOP_GRACE_S):
            await self._exited.wait()
        if not self._exited.is_set():
            await self.terminate()
            return f"process {self._proc.pid} did not stop within {STOP_GRACE_S:g} s: killed"
        return f"process {self._proc.pid} stopped ({self.exit_detail})"

    async def terminate(self) -> None:
        self._stopping = True
        if self._proc is None or self._reaped:
            await trio.lowlevel.checkpoint()
            return
        self._signal(signal.SIGKILL)
        with trio.move_on_after(KILL_WAIT_S):
            await self._exited.wait()

    def abandon(self) -> None:
        self._stopping = True
        if self._proc is not None and not self._reaped:
            self._signal(signal.SIGKILL)
            self._reap(block=True)

    async def looks_alive(self) -> str:
        await trio.lowlevel.checkpoint()
        if self._proc is None:
            raise ResourceError("not started")
        if self._exited.is_set():
            raise ResourceError(f"process {self._proc.pid} {self.exit_detail}")
        return f"process {self._proc.pid} running"

    # -- helpers -------------------------------------------------------------------------------------
    async def _watch(self, pidfd: int) -> None:
        try:
            await trio.lowlevel.wait_readable(pidfd)
        finally:
            os.close(pidfd)  # cancelled (the monitor stops): ``abandon`` kills the child
        self._reap(block=True)  # readable pidfd: the child has exited, so this does not block
        self._exited.set()
        if not self._stopping:
            self.on_failure(f"process {self.pid} {self.exit_detail}")

    def _reap(self, *, block: bool) -> None:
        if self._proc is None or self._reaped:
            return
        try:
            code = self._proc.wait(timeout=KILL_WAIT_S) if block else self._proc.poll()
        except subprocess.TimeoutExpired:
            log.warning("%s: process %d did not exit after SIGKILL", self.name, self._proc.pid)
            return
        if code is None:
            return
        self._reaped = True
        self.exit_detail = _describe_exit(code)

    def _signal(self, sig: signal.Signals) -> None:
        if self._proc is None or self._reaped:
            return
        try:
            os.killpg(self._proc.pid, sig)
        except OSError:
            # The child left its process group (setpgid/setsid): signal the child itself, which is
            # still ours (unreaped), and let it take care of its own.
            with contextlib.suppress(OSError):
                os.kill(self._proc.pid, sig)

    def _open_log(self) -> IO[bytes] | None:
        if self.host.log_dir is None:
            return None
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", self.name)[:64]
        try:
            return (self.host.log_dir / f"app-{safe}.log").open("ab")
        except OSError as e:
            log.warning("%s: cannot open its log file: %s", self.name, e)
            return None
