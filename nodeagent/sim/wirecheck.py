"""Optional wire fidelity: pass every simulated datagram through the real encoder and decoder.

Theory of operation
-------------------
The simulator hands message objects from core to core, which is fast but would miss a message the
runtime cannot send: a field out of the wire's bounds, a type the strict decoder refuses, a datagram
over the size limit. ``WireCheck.through`` encodes the message with ``nodeagent.wire`` exactly as the
runtime does (cluster key, cluster number, sender and incarnation in the envelope, HMAC tag), decodes
it back, and returns the decoded message, or a one-line problem when the wire refuses or changes it.
Each distinct problem is reported once (``first_time``), so a message sent every heartbeat does not
flood the violation list. It roughly doubles the cost of a run, so it is off unless asked for.
"""

from __future__ import annotations

from nodeagent import wire
from nodeagent.config import ClusterConfig
from nodeagent.core.messages import Message
from nodeagent.errors import WolfpackError


class WireCheck:
    def __init__(self, config: ClusterConfig) -> None:
        self._key = config.key
        self._cluster = config.number
        self._seen: set[str] = set()

    def through(self, sender: int, incarnation: int, msg: Message) -> tuple[Message | None, str]:
        """(the message as the receiver would decode it, "") or (None, what went wrong)."""
        try:
            data = wire.encode(self._key, self._cluster, sender, incarnation, msg)
            env = wire.decode(self._key, self._cluster, data)
        except WolfpackError as e:
            return None, f"{type(e).__name__}: {e}"
        if env.msg != msg or (env.sender, env.incarnation) != (sender, incarnation):
            return None, f"decoded as {env.msg!r} from {env.sender}/{env.incarnation}"
        return env.msg, ""

    def first_time(self, msg: Message, problem: str) -> bool:
        key = f"{type(msg).__name__} {problem}"
        if key in self._seen:
            return False
        self._seen.add(key)
        return True
