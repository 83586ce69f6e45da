"""The datagram format: msgpack envelopes with an HMAC tag, decoded strictly.

Theory of operation
-------------------
Every datagram is the msgpack array
``[wire_version, msg_type, cluster_id, sender_node_id, incarnation, body, auth_tag]``, where ``body`` is
the list of the message's field values in declaration order (core/messages.py) and ``auth_tag`` is
the first 16 bytes of HMAC-SHA256, keyed with the cluster key, over the msgpack encoding of the first
six items. ``decode`` checks, in this order: size, msgpack syntax, shape, version, known type, cluster,
tag (constant-time compare), then every field's type and bounds. Anything wrong raises
``RemoteProtocolError`` with a short reason; the receive loop counts the reason and drops the
datagram. Arbitrary bytes never raise anything else (a property test checks this).
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import types
import typing
from dataclasses import dataclass
from typing import Any

import msgpack

from nodeagent.core.messages import MESSAGE_TYPES, Message, MsgType
from nodeagent.errors import LocalProtocolError, RemoteProtocolError

WIRE_VERSION = 1
MAX_DATAGRAM = 60_000  # bytes; loopback UDP allows 65,507
TAG_BYTES = 16
MAX_SEQ_LEN = 64  # longest tuple in any body
MAX_STR = 4096
MAX_INT = 2**63 - 1


@dataclass(frozen=True, slots=True)
class Envelope:
    cluster_id: int
    sender: int
    incarnation: int
    msg: Message


def _tag(key: bytes, signed: bytes) -> bytes:
    return hmac.new(key, signed, hashlib.sha256).digest()[:TAG_BYTES]


def encode(key: bytes, cluster_id: int, sender: int, incarnation: int, msg: Message) -> bytes:
    body = [_plain(getattr(msg, f.name)) for f in dataclasses.fields(msg)]
    # Refuse to send what a receiver's decode would refuse: the same checks, as our own bug.
    if not (1 <= sender <= 255 and 0 <= incarnation <= MAX_INT and 0 <= cluster_id <= MAX_INT):
        raise LocalProtocolError(f"sender {sender} / incarnation {incarnation} out of range")
    try:
        _build(msg.TYPE, body)
    except RemoteProtocolError as e:
        raise LocalProtocolError(f"{msg.TYPE.name} would be refused by its receiver: {e}") from None
    head = [WIRE_VERSION, int(msg.TYPE), cluster_id, sender, incarnation, body]
    signed = msgpack.packb(head, use_bin_type=True)
    data: bytes = msgpack.packb([*head, _tag(key, signed)], use_bin_type=True)
    if len(data) > MAX_DATAGRAM:
        raise LocalProtocolError(f"{msg.TYPE.name} is {len(data)} bytes, over the {MAX_DATAGRAM} limit")
    return data


_ARRAY7 = 0x97  # msgpack fixarray of 7: the envelope
_ARRAY6 = b"\x96"  # fixarray of 6: what the tag signs
_TAG_HEAD = bytes([0xC4, TAG_BYTES])  # bin8 of TAG_BYTES


def decode(key: bytes, cluster_id: int, data: bytes) -> Envelope:
    if len(data) > MAX_DATAGRAM:
        raise RemoteProtocolError("oversize")
    try:
        outer = msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            strict_map_key=True,
            max_array_len=MAX_SEQ_LEN * 2,
            max_map_len=MAX_SEQ_LEN,
            max_str_len=MAX_STR,
            max_bin_len=MAX_DATAGRAM,
        )
    except Exception:  # msgpack raises many types (ValueError, ExtraData, FormatError, ...)
        raise RemoteProtocolError("malformed") from None
    if not isinstance(outer, list) or len(outer) != 7:
        raise RemoteProtocolError("bad_shape")
    version, msg_type, cid, sender, incarnation, body, tag = outer
    if version != WIRE_VERSION:
        raise RemoteProtocolError("bad_version")
    if not all(_is_int(v) for v in (msg_type, cid, sender, incarnation)):
        raise RemoteProtocolError("bad_shape")
    try:
        mtype = MsgType(msg_type)
    except ValueError:
        raise RemoteProtocolError("unknown_type") from None
    if cid != cluster_id:
        raise RemoteProtocolError("wrong_cluster")
    if not isinstance(tag, bytes) or not isinstance(body, list):
        raise RemoteProtocolError("bad_shape")
    # Authenticate the bytes exactly as received, not a re-encoding of what they decode to (which
    # would let another encoding of the same values through): the envelope is fixarray(7), the six
    # signed items, then the tag as bin8; the tag signs fixarray(6) + those very item bytes.
    tail = len(_TAG_HEAD) + TAG_BYTES
    if data[0] != _ARRAY7 or data[-tail:-TAG_BYTES] != _TAG_HEAD:
        raise RemoteProtocolError("bad_auth")
    if not hmac.compare_digest(tag, _tag(key, _ARRAY6 + data[1:-tail])):
        raise RemoteProtocolError("bad_auth")
    if not (1 <= sender <= 255 and 0 <= incarnation <= MAX_INT):
        raise RemoteProtocolError("bad_sender")
    return Envelope(cluster_id=cid, sender=sender, incarnation=incarnation, msg=_build(mtype, body))


def _build(mtype: MsgType, body: list[Any]) -> Message:
    cls = MESSAGE_TYPES[mtype]
    schema = _SCHEMAS[mtype]
    if len(body) != len(schema):
        raise RemoteProtocolError("bad_body")
    values = []
    for (_name, kind), value in zip(schema, body, strict=True):
        values.append(_check(kind, value))
    return cls(*values)


def _check(kind: Any, value: Any) -> Any:
    if kind is bool:
        if isinstance(value, bool):
            return value
    elif kind is int:
        if _is_int(value) and -MAX_INT <= value <= MAX_INT:
            return value
    elif kind is str:
        if isinstance(value, str) and len(value.encode("utf-8", "surrogatepass")) <= MAX_STR:
            return value
    elif kind is bytes:
        if isinstance(value, bytes):
            return value
    elif kind is float:
        if isinstance(value, float | int) and not isinstance(value, bool):
            return float(value)
    elif typing.get_origin(kind) is tuple:
        (item,) = {a for a in typing.get_args(kind) if a is not Ellipsis}
        if isinstance(value, list) and len(value) <= MAX_SEQ_LEN:
            return tuple(_check(item, v) for v in value)
    raise RemoteProtocolError("bad_field")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _schema(cls: type[Message]) -> tuple[tuple[str, Any], ...]:
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        if isinstance(kind, types.UnionType):
            raise TypeError(f"{cls.__name__}.{f.name}: unions are not allowed on the wire")
        out.append((f.name, kind))
    return tuple(out)


_SCHEMAS: dict[MsgType, tuple[tuple[str, Any], ...]] = {t: _schema(c) for t, c in MESSAGE_TYPES.items()}
