"""The node agent's exceptions, all below ``shareddisk.errors.WolfpackError``.

The CLI catches ``WolfpackError``, prints its message on one line and exits non-zero: a user's
mistake never shows a traceback.
"""

from __future__ import annotations

from shareddisk.errors import DiskError, DiskUnavailable, ReservationConflict, WolfpackError

__all__ = [
    "AdminRefused",
    "ConfigError",
    "DiskError",
    "DiskUnavailable",
    "LocalProtocolError",
    "NodeUnreachable",
    "RemoteProtocolError",
    "ReservationConflict",
    "WolfpackError",
]


class ConfigError(WolfpackError):
    """cluster.toml, a command-line value or a cluster directory is not acceptable."""


class LocalProtocolError(WolfpackError):
    """We were about to send something the protocol does not allow (a bug on our side)."""


class RemoteProtocolError(WolfpackError):
    """A peer sent something malformed or unauthenticated. The receive loop counts and drops these."""


class NodeUnreachable(WolfpackError):
    """A node's control socket does not answer (the node is down, frozen or not started)."""


class AdminRefused(WolfpackError):
    """An admin request was refused by a cluster rule; ``rule`` names it in MSCS words."""

    def __init__(self, rule: str, detail: str = "") -> None:
        self.rule = rule
        super().__init__(f"{rule}: {detail}" if detail else rule)
