"""A child process the resource monitor started: spawn, watch its exit, signal it, reap it.

Theory of operation
-------------------
Shared by every resource type whose work is an OS process (Generic Application in process.py, the
Exchange service processes in serviceproc.py), so that the rules below live in one place:

- ``spawn`` runs ``subprocess.Popen`` in the calling thread, which must be the trio thread: the
  child gets PR_SET_PDEATHSIG = SIGKILL, and the kernel ties that signal to the thread that forked
  (not the process), so a child forked from a worker thread would be killed when that worker exits.
  The trio thread lives as long as the node. The child also gets its own session and process group
  (a signal to the node's terminal does not reach it; ``signal`` reaches everything it started) and
  only the file descriptors named in ``pass_fds`` (close_fds).
- ``watch`` waits on a pidfd (Linux 5.3+) for the exit, reaps the child and sets ``exited``; so an
  exit is seen the moment it happens, not at the next health check. What an exit means (a failure
  or a stop we asked for) is the caller's business.
- Signals go only to a child we started and have not reaped yet: an unreaped child (even a zombie)
  keeps its pid, so the number cannot belong to anyone else; once reaped we send nothing.
- ``stop``: SIGTERM to the group, a grace period, then SIGKILL. ``kill``: SIGKILL at once.
  ``abandon``: SIGKILL and a blocking reap, for the monitor's synchronous last word.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import signal
import subprocess
from collections.abc import Sequence
from typing import IO, Any

import trio

KILL_WAIT_S = 2.0  # after SIGKILL, how long to wait for the exit to be seen
PR_SET_PDEATHSIG = 1

log = logging.getLogger("nodeagent.resources.child")

_libc: Any = None
try:
    _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
except OSError:  # pragma: no cover - not glibc/musl: children simply do not die with the node
    _libc = None

Redirect = int | IO[bytes] | None


def die_with_parent() -> None:
    """Runs in the child between fork and exec: kill me when the thread that forked me dies."""
    if _libc is not None:
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


class Child:
    """One started child process, until it is reaped."""

    def __init__(self, proc: subprocess.Popen[bytes], what: str) -> None:
        self.proc = proc
        self.what = what
        self.exited = trio.Event()
        self.reaped = False
        self.exit_detail = ""

    @property
    def pid(self) -> int:
        return self.proc.pid

    @classmethod
    def spawn(
        cls,
        argv: Sequence[str],
        what: str,
        *,
        cwd: str | None = None,
        stdin: Redirect = subprocess.DEVNULL,
        stdout: Redirect = subprocess.DEVNULL,
        stderr: Redirect = subprocess.DEVNULL,
        pass_fds: Sequence[int] = (),
        env: dict[str, str] | None = None,
    ) -> Child:
        """Start ``argv`` (raises ``OSError`` when it cannot be started). Call from the trio thread."""
        proc = subprocess.Popen(
            list(argv),
            cwd=cwd,
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
            close_fds=True,
            pass_fds=tuple(pass_fds),
            env=env,
            preexec_fn=die_with_parent,
        )
        return cls(proc, what)

    def open_pidfd(self) -> int:
        """A pidfd for ``watch``; on failure the child is killed and ``OSError`` raised."""
        try:
            return os.pidfd_open(self.pid)
        except OSError:  # cannot happen for our unreaped child; be safe anyway
            self.abandon()
            raise

    async def watch(self, pidfd: int) -> None:
        """Return once the child has exited and is reaped (``exited`` set). Closes ``pidfd``."""
        try:
            await trio.lowlevel.wait_readable(pidfd)
        finally:
            os.close(pidfd)  # cancelled (the monitor stops): ``abandon`` kills the child
        self._reap(block=True)  # readable pidfd: the child has exited, so this does not block
        self.exited.set()

    async def stop(self, grace_s: float) -> bool:
        """SIGTERM, up to ``grace_s`` to exit, then SIGKILL. True when it stopped by itself."""
        if self.reaped:
            await trio.lowlevel.checkpoint()
            return True
        self.signal(signal.SIGTERM)
        with trio.move_on_after(grace_s):
            await self.exited.wait()
        if self.exited.is_set():
            return True
        await self.kill()
        return False

    async def kill(self) -> None:
        """SIGKILL, and wait (bounded) for the watcher to see the exit."""
        if self.reaped:
            await trio.lowlevel.checkpoint()
            return
        self.signal(signal.SIGKILL)
        with trio.move_on_after(KILL_WAIT_S):
            await self.exited.wait()

    def abandon(self) -> None:
        if not self.reaped:
            self.signal(signal.SIGKILL)
            self._reap(block=True)

    def signal(self, sig: signal.Signals) -> None:
        if self.reaped:
            return
        try:
            os.killpg(self.proc.pid, sig)
        except OSError:
            # The child left its process group (setpgid/setsid): signal the child itself, which is
            # still ours (unreaped), and let it take care of its own.
            with contextlib.suppress(OSError):
                os.kill(self.proc.pid, sig)

    def _reap(self, *, block: bool) -> None:
        if self.reaped:
            return
        try:
            code = self.proc.wait(timeout=KILL_WAIT_S) if block else self.proc.poll()
        except subprocess.TimeoutExpired:
            log.warning("%s: process %d did not exit after SIGKILL", self.what, self.proc.pid)
            return
        if code is None:
            return
        self.reaped = True
        self.exit_detail = describe_exit(code)
