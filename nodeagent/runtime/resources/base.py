"""What every resource type implements, and what the monitor lends it (the resource DLL interface).

Theory of operation
-------------------
MSCS loads a resource DLL per type into a resource monitor and calls its entry points: Online,
Offline, Terminate, LooksAlive, IsAlive. Here a resource type is a subclass of ``Resource`` and one
instance stands for one resource while this node runs it: the monitor creates it from the action's
private properties when an ``online`` arrives and keeps it until the next ``online`` (which starts
from a fresh instance). The monitor serializes the calls on one instance, bounds each with a
timeout and turns the outcome into a ``ResourceReport``:

- ``online``/``offline``/``looks_alive``/``is_alive`` return a one-line detail on success and raise
  ``ResourceError(detail)`` on failure; they may be cancelled at any await (terminate, a timeout).
- ``terminate`` must be quick, must not raise, and leaves the resource offline whatever state it was
  in (it is also the cleanup after a failed or cancelled online).
- ``abandon`` is the synchronous last word when the monitor itself goes away (the node process
  stops or is cancelled): close handles, kill child processes; it does NOT release disk
  reservations, exactly as a host that dies does not.

A resource that fails by itself (a child process exits, a disk reservation is lost) calls
``on_failure(detail)``; the monitor turns that into the unsolicited ``failed`` report. Background
work tied to the resource's life (a socket's serve loop, a disk defender) runs through
``Host.background`` so that it lives in the monitor's nursery and dies with it.

Private properties come from ``cluster resource /priv`` and may be numbers or numeric strings;
``prop_*`` read them leniently but within bounds, and raise ``ResourceError`` naming the property.
"""

from __future__ import annotations

import abc
import contextlib
import enum
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import trio

from nodeagent.config import ClusterConfig
from nodeagent.runtime.directory import Directory
from nodeagent.runtime.diskexec import DiskOpener
from nodeagent.runtime.diskfaults import DiskFaultTable
from nodeagent.runtime.resources.names import NameTable
from nodeagent.runtime.resources.registry import ResourceRegistry
from nodeagent.runtime.transport import Transport

log = logging.getLogger("nodeagent.resources")

FailureCallback = Callable[[str], None]


class ResourceError(Exception):
    """An action failed; the message is the report's one-line detail."""

    def __init__(self, detail: str) -> None:
        super().__init__(" ".join(detail.split()) or "failed")

    @property
    def detail(self) -> str:
        return str(self.args[0])


class State(enum.StrEnum):
    """Resource states as Cluster Administrator shows them (the monitor's view on this node)."""

    OFFLINE = "Offline"
    ONLINE_PENDING = "Online Pending"
    ONLINE = "Online"
    OFFLINE_PENDING = "Offline Pending"
    FAILED = "Failed"


@dataclass
class Host:
    """What the monitor lends its resources: identity, configuration, shared tables, a nursery."""

    config: ClusterConfig
    node_name: str
    transport: Transport
    names: NameTable
    registry: ResourceRegistry
    disk_opener: DiskOpener
    disks_in_thread: bool = True
    log_dir: Path | None = None  # Generic Application output goes here (None: discarded)
    # FailMode once / times:N (services.py): resource -> (arming, online failures made so far) here
    fail_counts: dict[str, tuple[str, int]] = field(default_factory=dict)
    disk_faults: DiskFaultTable | None = None  # this node's path to each disk (diskfaults.py)
    nursery: trio.Nursery | None = None
    directory: Directory | None = None  # the lab's directory (computer objects; None: no cluster dir)

    def background(
        self, what: str, fn: Callable[[], Awaitable[None]], on_crash: FailureCallback
    ) -> trio.CancelScope:
        """Run ``fn`` in the monitor's nursery until it returns or the returned scope is cancelled.

        An exception out of ``fn`` is a bug in a resource type: it is logged and reported as the
        resource's failure instead of taking the node down.
        """
        scope = trio.CancelScope()
        if self.nursery is None:
            scope.cancel()
            return scope

        async def runner() -> None:
            with scope:
                try:
                    await fn()
                except Exception as e:
                    log.exception("%s: background task crashed", what)
                    on_crash(f"{what}: internal error: {type(e).__name__}: {e}")

        self.nursery.start_soon(runner, name=what)
        return scope


class Resource(abc.ABC):
    """One resource of one type, while this node runs it."""

    rtype: ClassVar[str]
    default_service: ClassVar[str | None] = (
        None  # the key clients see in a status reply (None: not a service)
    )

    def __init__(self, name: str, group: str, props: dict[str, Any], host: Host, on_failure: FailureCallback):
        self.name = name
        self.group = group
        self.props = props
        self.host = host
        self.on_failure = on_failure

    @property
    def service_key(self) -> str | None:
        """How this resource appears in the client endpoint's ``services`` (None: it does not)."""
        return self.default_service

    def online_timeout_s(self) -> float:
        """The monitor's own bound on online/offline; the core's PendingTimeout is the real policy."""
        return 30.0

    @abc.abstractmethod
    async def online(self) -> str: ...

    @abc.abstractmethod
    async def offline(self) -> str: ...

    @abc.abstractmethod
    async def terminate(self) -> None: ...

    @abc.abstractmethod
    async def looks_alive(self) -> str: ...

    async def is_alive(self) -> str:
        return await self.looks_alive()

    def abandon(self) -> None:  # noqa: B027 - most types hold nothing that outlives their tasks
        """The monitor is going away: drop everything synchronously (no disk release)."""


# -- private properties ----------------------------------------------------------------------------


def prop_str(props: dict[str, Any], key: str, default: str | None = None, max_len: int = 1024) -> str:
    value = props.get(key, default)
    if value is None:
        raise ResourceError(f"private property {key} is not set")
    if not isinstance(value, str):
        value = str(value)
    if len(value) > max_len:
        raise ResourceError(f"private property {key} is longer than {max_len} characters")
    return value


def prop_float(props: dict[str, Any], key: str, default: float, lo: float, hi: float) -> float:
    value = props.get(key, default)
    try:
        number = float(value) if not isinstance(value, bool) else float("nan")
    except (TypeError, ValueError):
        number = float("nan")
    if not lo <= number <= hi:
        raise ResourceError(f"private property {key} = {value!r}: must be a number from {lo:g} to {hi:g}")
    return number


def prop_int(props: dict[str, Any], key: str, default: int, lo: int, hi: int) -> int:
    value = props.get(key, default)
    number = lo - 1
    if isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, int | str) and not isinstance(value, bool):
        with contextlib.suppress(ValueError):
            number = int(value)
    if not lo <= number <= hi:
        raise ResourceError(f"private property {key} = {value!r}: must be a whole number from {lo} to {hi}")
    return number
