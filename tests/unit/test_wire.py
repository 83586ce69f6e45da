"""The datagram format: round trips of every message, strict decoding, authentication, limits."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import typing
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from nodeagent.core.messages import (
    MESSAGE_TYPES,
    Ack,
    AdminResult,
    Commit,
    DbSnapshot,
    Heartbeat,
    Leave,
    Message,
    MsgType,
    Phase,
    Propose,
)
from nodeagent.errors import LocalProtocolError, RemoteProtocolError, WolfpackError
from nodeagent.wire import (
    MAX_DATAGRAM,
    MAX_INT,
    MAX_SEQ_LEN,
    MAX_STR,
    TAG_BYTES,
    WIRE_VERSION,
    Envelope,
    decode,
    encode,
)

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
CID = 7

# -- strategies: valid field values for every message type --------------------------------------------
ints = st.integers(-MAX_INT, MAX_INT)
counters = st.integers(0, MAX_INT)
node_ids = st.integers(1, 8)
id_tuples = st.lists(node_ids, max_size=8, unique=True).map(lambda xs: tuple(sorted(xs)))


@st.composite
def members_with_incarnations(draw: st.DrawFn) -> tuple[tuple[int, ...], tuple[int, ...]]:
    members = draw(id_tuples)
    incs = tuple(draw(counters) for _ in members)
    return members, incs


# Field values by name where the protocol gives them a meaning; by type otherwise. Deriving the
# strategies from the declarations keeps this test honest when a field is appended to a message.
NAMED: dict[str, st.SearchStrategy[Any]] = {
    "phase": st.sampled_from([int(p) for p in Phase]),
    "quorum_owner": st.integers(0, 8),
    "members": id_tuples,
    "hears": id_tuples,
}


def by_type(kind: Any, extreme: bool) -> st.SearchStrategy[Any]:
    if kind is bool:
        return st.booleans()
    if kind is int:
        return ints if extreme else counters
    if kind is str:
        return st.text(max_size=200 if extreme else 40)
    if kind is bytes:
        return st.binary(max_size=2000 if extreme else 200)
    if typing.get_origin(kind) is tuple:
        return st.lists(ints, max_size=MAX_SEQ_LEN).map(tuple) if extreme else id_tuples
    raise AssertionError(f"no strategy for {kind}")


def message_strategy(cls: type[Message], extreme: bool = False) -> st.SearchStrategy[Message]:
    hints = typing.get_type_hints(cls)

    @st.composite
    def build(draw: st.DrawFn) -> Message:
        kw: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name == "incarnations" and not extreme:
                kw[f.name] = tuple(draw(counters) for _ in kw["members"])  # parallel to members
            elif f.name in NAMED and not extreme:
                kw[f.name] = draw(NAMED[f.name])
            else:
                kw[f.name] = draw(by_type(hints[f.name], extreme))
        return cls(**kw)

    return build()


def plain(cls: type[Message], **values: Any) -> Message:
    """A message with every field not given set to 0 / False / ()."""
    hints = typing.get_type_hints(cls)
    zero: dict[Any, Any] = {int: 0, bool: False, str: "", bytes: b""}
    kw = {f.name: values.get(f.name, zero.get(hints[f.name], ())) for f in dataclasses.fields(cls)}
    return cls(**kw)


STRATEGIES: dict[MsgType, st.SearchStrategy[Any]] = {t: message_strategy(c) for t, c in MESSAGE_TYPES.items()}
messages = st.one_of(*STRATEGIES.values())
# Extreme but still valid: any int in range, tuples of up to MAX_SEQ_LEN items.
extreme_messages = st.one_of(*(message_strategy(c, extreme=True) for c in MESSAGE_TYPES.values()))
senders = st.integers(1, 255)
cluster_ids = st.integers(1, 250)


def test_every_message_type_has_a_strategy() -> None:
    assert set(STRATEGIES) == set(MESSAGE_TYPES) == set(MsgType)


def reason(data: bytes, key: bytes = KEY, cluster_id: int = CID) -> str:
    with pytest.raises(RemoteProtocolError) as info:
        decode(key, cluster_id, data)
    return str(info.value)


def forge(head: list[Any], key: bytes = KEY) -> bytes:
    """A datagram built from the documented format (not from encode): head + HMAC-SHA256[:16] tag."""
    signed = msgpack.packb(head, use_bin_type=True)
    tag = hmac.new(key, signed, hashlib.sha256).digest()[:TAG_BYTES]
    return bytes(msgpack.packb([*head, tag], use_bin_type=True))


def body_of(msg: Message) -> list[Any]:
    return [
        list(v) if isinstance(v, tuple) else v
        for v in (getattr(msg, f.name) for f in dataclasses.fields(msg))
    ]


# -- round trips ------------------------------------------------------------------------------------
@pytest.mark.parametrize("mtype", list(MsgType))
@settings(max_examples=60, deadline=None)
@given(data=st.data(), cid=cluster_ids, sender=senders, incarnation=counters)
def test_round_trip_every_type(
    mtype: MsgType, data: st.DataObject, cid: int, sender: int, incarnation: int
) -> None:
    msg = data.draw(STRATEGIES[mtype])
    assert msg.TYPE is mtype
    raw = encode(KEY, cid, sender, incarnation, msg)
    env = decode(KEY, cid, raw)
    assert env == Envelope(cluster_id=cid, sender=sender, incarnation=incarnation, msg=msg)
    assert type(env.msg) is type(msg)


@settings(max_examples=150, deadline=None)
@given(msg=extreme_messages, sender=senders, incarnation=counters)
def test_round_trip_extreme_values(msg: Message, sender: int, incarnation: int) -> None:
    assert decode(KEY, CID, encode(KEY, CID, sender, incarnation, msg)).msg == msg


def test_encoding_follows_the_documented_format() -> None:
    msg = Commit(epoch=5, members=(1, 2, 3), incarnations=(4, 5, 6), quorum_owner=1)
    raw = encode(KEY, CID, 2, 9, msg)
    items = msgpack.unpackb(raw, raw=False)
    assert items[:6] == [WIRE_VERSION, int(MsgType.COMMIT), CID, 2, 9, [5, [1, 2, 3], [4, 5, 6], 1]]
    assert raw == forge(items[:6])
    assert len(items[6]) == TAG_BYTES
    # And a datagram forged from the spec decodes to the message.
    assert decode(KEY, CID, forge([1, 7, CID, 4, 0, [11]])).msg == Leave(11)


# -- rejection reasons -------------------------------------------------------------------------------
HB = plain(Heartbeat, seq=1, phase=1)


def hb_body(**changes: Any) -> list[Any]:
    """A valid heartbeat body with some fields replaced by (possibly invalid) raw values."""
    names = [f.name for f in dataclasses.fields(Heartbeat)]
    body = body_of(plain(Heartbeat, seq=1, phase=1, epoch=1, members=(1, 2), quorum_owner=1))
    for name, value in changes.items():
        body[names.index(name)] = value
    return body


def test_wrong_key_is_bad_auth() -> None:
    assert reason(encode(KEY, CID, 1, 1, HB), key=OTHER_KEY) == "bad_auth"


def test_wrong_cluster() -> None:
    assert reason(encode(KEY, CID + 1, 1, 1, HB)) == "wrong_cluster"


def test_unknown_type() -> None:
    assert reason(forge([WIRE_VERSION, 99, CID, 1, 1, []])) == "unknown_type"
    assert reason(forge([WIRE_VERSION, 0, CID, 1, 1, []])) == "unknown_type"


def test_oversize() -> None:
    assert reason(b"\x00" * (MAX_DATAGRAM + 1)) == "oversize"


@pytest.mark.parametrize(
    ("head", "why"),
    [
        ([2, 7, CID, 1, 1, [1]], "bad_version"),
        ([WIRE_VERSION, 7, CID, 0, 1, [1]], "bad_sender"),
        ([WIRE_VERSION, 7, CID, 256, 1, [1]], "bad_sender"),
        ([WIRE_VERSION, 7, CID, 1, -1, [1]], "bad_sender"),
        ([WIRE_VERSION, 7, CID, 1, 1, []], "bad_body"),
        ([WIRE_VERSION, 7, CID, 1, 1, [1, 2]], "bad_body"),
        ([WIRE_VERSION, 7, CID, 1, 1, ["1"]], "bad_field"),
        ([WIRE_VERSION, 7, CID, 1, 1, [True]], "bad_field"),
        ([WIRE_VERSION, 7, CID, 1, 1, [1.5]], "bad_field"),
        ([WIRE_VERSION, 7, CID, 1, 1, [2**63]], "bad_field"),
        ([WIRE_VERSION, 1, CID, 1, 1, hb_body()], None),
        ([WIRE_VERSION, 1, CID, 1, 1, hb_body(paused=1)], "bad_field"),  # a bool must be a bool
        ([WIRE_VERSION, 1, CID, 1, 1, hb_body(seq=False)], "bad_field"),  # and an int not a bool
        ([WIRE_VERSION, 1, CID, 1, 1, hb_body(members=[1, "2"])], "bad_field"),
        ([WIRE_VERSION, 1, CID, 1, 1, hb_body(members=[[1]])], "bad_field"),
        ([WIRE_VERSION, 1, CID, 1, 1, hb_body(members=5)], "bad_field"),
        ([WIRE_VERSION, 1, CID, 1, 1, hb_body(members=list(range(MAX_SEQ_LEN + 1)))], "bad_field"),
        ([WIRE_VERSION, 1, CID, 1, 1, hb_body(members=list(range(MAX_SEQ_LEN)))], None),
        ([WIRE_VERSION, 1, CID, 1, 1, hb_body()[:-1]], "bad_body"),
        ([WIRE_VERSION, "7", CID, 1, 1, [1]], "bad_shape"),
        ([WIRE_VERSION, 7, CID, True, 1, [1]], "bad_shape"),
        ([WIRE_VERSION, 7, CID, 1, 1, {"epoch": 1}], "bad_shape"),
    ],
)
def test_strict_decoding_reasons(head: list[Any], why: str | None) -> None:
    if why is None:  # the valid control case next to its broken variants
        assert decode(KEY, CID, forge(head)).sender == head[3]
    else:
        assert reason(forge(head)) == why


def test_bad_shapes_and_malformed_bytes() -> None:
    assert reason(b"") == "malformed"
    assert reason(b"\xc1") == "malformed"  # a byte msgpack never uses
    assert reason(encode(KEY, CID, 1, 1, HB) + b"\x00") == "malformed"  # trailing data
    assert reason(msgpack.packb({"a": 1})) == "bad_shape"
    assert reason(msgpack.packb([1, 2, 3])) == "bad_shape"
    assert reason(msgpack.packb(list(range(8)))) == "bad_shape"
    good = msgpack.unpackb(encode(KEY, CID, 1, 1, HB), raw=False)
    good[6] = "not bytes"
    assert reason(msgpack.packb(good, use_bin_type=True)) == "bad_shape"


def test_decoding_never_reorders_the_checks_to_leak_auth() -> None:
    # A correctly shaped datagram with a bad tag is refused before its fields are looked at.
    head = [WIRE_VERSION, 7, CID, 1, 1, ["not an int"]]
    raw = msgpack.packb([*head, b"\x00" * TAG_BYTES], use_bin_type=True)
    assert reason(raw) == "bad_auth"


# -- encoding limits ---------------------------------------------------------------------------------
def test_encode_of_a_too_large_message_is_a_local_protocol_error() -> None:
    huge = plain(Heartbeat, seq=1, phase=1, members=(2**62,) * 7000)
    with pytest.raises(LocalProtocolError) as info:
        encode(KEY, CID, 1, 1, huge)
    assert "HEARTBEAT" in str(info.value)
    assert isinstance(info.value, WolfpackError)
    big = plain(DbSnapshot, version=1, payload=b"x" * MAX_DATAGRAM)
    with pytest.raises(LocalProtocolError, match="over the 60000 limit"):
        encode(KEY, CID, 1, 1, big)
    # Just under the limit is fine, and round-trips.
    fits = plain(DbSnapshot, version=1, payload=b"x" * (MAX_DATAGRAM - 100))
    assert decode(KEY, CID, encode(KEY, CID, 1, 1, fits)).msg == fits


@pytest.mark.parametrize("text", ["x" * MAX_STR, "é" * (MAX_STR // 2)])
def test_strings_up_to_the_limit_round_trip(text: str) -> None:
    msg = plain(AdminResult, request_id=1, error=text)
    assert decode(KEY, CID, encode(KEY, CID, 1, 1, msg)).msg == msg


def test_a_long_non_ascii_string_is_refused_by_encode_or_delivered() -> None:
    msg = plain(AdminResult, request_id=1, error="é" * MAX_STR)  # 4096 characters, 8192 bytes
    try:
        data = encode(KEY, CID, 1, 1, msg)
    except LocalProtocolError:
        return
    try:
        assert decode(KEY, CID, data).msg == msg
    except RemoteProtocolError as e:
        raise AssertionError(f"encode produced a datagram decode refuses: {e}") from None


@settings(max_examples=150, deadline=None)
@given(msg=extreme_messages, sender=st.integers(-2, 300), incarnation=st.integers(-2, 2**64))
def test_encode_either_refuses_or_produces_what_decode_accepts(
    msg: Message, sender: int, incarnation: int
) -> None:
    try:
        data = encode(KEY, CID, sender, incarnation, msg)
    except LocalProtocolError:
        return
    assert decode(KEY, CID, data) == Envelope(CID, sender, incarnation, msg)


@pytest.mark.parametrize(
    ("sender", "msg"),
    [
        (1, plain(Heartbeat, seq=-1 - MAX_INT, phase=1)),
        (1, plain(Heartbeat, seq=1, phase=1, members=tuple(range(MAX_SEQ_LEN + 1)))),
        (1, Ack(epoch=MAX_INT + 1)),
        (0, Ack(epoch=1)),
        (256, Ack(epoch=1)),
    ],
)
def test_encode_refuses_what_decode_would_refuse(sender: int, msg: Message) -> None:
    # LocalProtocolError's contract: "we were about to send something the protocol does not allow".
    with pytest.raises(LocalProtocolError):
        encode(KEY, CID, sender, 1, msg)


def test_encode_refuses_an_incarnation_decode_would_refuse() -> None:
    with pytest.raises(LocalProtocolError):
        encode(KEY, CID, 1, -1, Leave(1))
    with pytest.raises(LocalProtocolError):
        encode(KEY, CID, 1, MAX_INT + 1, Leave(1))


# -- robustness properties -----------------------------------------------------------------------------
@settings(max_examples=400, deadline=None)
@given(data=st.binary(max_size=512))
def test_arbitrary_bytes_only_ever_raise_remote_protocol_error(data: bytes) -> None:
    try:
        env = decode(KEY, CID, data)
    except RemoteProtocolError:
        return
    # Only a correctly authenticated datagram can be accepted; random bytes never are.
    raise AssertionError(f"random bytes accepted: {env}")


scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**64), 2**64 - 1)
    | st.integers(-3, 300)
    | st.floats()
    | st.text(max_size=8)
    | st.binary(max_size=16)
)
msgpack_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=3), children, max_size=3)
    ),
    max_leaves=8,
)
# Body items a sloppy or hostile peer might send: mostly the right kinds, sometimes not.
body_items = st.one_of(
    st.integers(0, 300),
    st.booleans(),
    st.lists(st.integers(0, 8), max_size=8),
    scalars,
    st.lists(st.integers(-3, 300) | st.booleans() | st.text(max_size=2), max_size=70),
)


def _pack(value: Any) -> bytes | None:
    try:
        return bytes(msgpack.packb(value, use_bin_type=True))
    except (OverflowError, ValueError, TypeError):
        return None


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=msgpack_values)
def test_arbitrary_msgpack_only_ever_raises_remote_protocol_error(value: Any) -> None:
    data = _pack(value)
    assume(data is not None)
    assert data is not None
    with pytest.raises(RemoteProtocolError):
        decode(KEY, CID, data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    mtype=st.sampled_from(list(MsgType)),
    data=st.data(),
    sender=st.integers(1, 255) | st.integers(-5, 300),
    incarnation=counters | st.integers(-5, 2**64 - 1),
)
def test_authenticated_garbage_bodies_are_refused_or_valid(
    mtype: MsgType, data: st.DataObject, sender: int, incarnation: int
) -> None:
    width = len(dataclasses.fields(MESSAGE_TYPES[mtype]))
    size = data.draw(st.just(width) | st.integers(0, 8), label="size")
    body = data.draw(st.lists(body_items, min_size=size, max_size=size), label="body")
    # Even a peer holding the key cannot make decode raise anything else, or build an invalid message.
    try:
        data = forge([WIRE_VERSION, int(mtype), CID, sender, incarnation, body])
    except (OverflowError, ValueError, TypeError):
        assume(False)
        return
    try:
        env = decode(KEY, CID, data)
    except RemoteProtocolError as e:
        event(str(e))
        return
    event("accepted")
    assert isinstance(env.msg, MESSAGE_TYPES[mtype])
    assert 1 <= env.sender <= 255
    assert encode(KEY, CID, env.sender, env.incarnation, env.msg) is not None
    assert decode(KEY, CID, encode(KEY, CID, env.sender, env.incarnation, env.msg)) == env


@settings(max_examples=200, deadline=None)
@given(msg=messages, sender=senders, incarnation=counters, data=st.data())
def test_tampering_with_any_byte_is_rejected(
    msg: Message, sender: int, incarnation: int, data: st.DataObject
) -> None:
    raw = encode(KEY, CID, sender, incarnation, msg)
    pos = data.draw(st.integers(0, len(raw) - 1), label="pos")
    flip = data.draw(st.integers(1, 255), label="xor")
    tampered = bytearray(raw)
    tampered[pos] ^= flip
    with pytest.raises(RemoteProtocolError):
        decode(KEY, CID, bytes(tampered))


@pytest.mark.parametrize("msg", [HB, Commit(9, (1, 2, 3), (4, 5, 6), 1), Leave(2)])
def test_tampering_exhaustively(msg: Message) -> None:
    # Every position, every possible replacement byte: nothing is accepted but the original.
    raw = encode(KEY, CID, 3, 17, msg)
    for pos in range(len(raw)):
        for value in range(256):
            if value == raw[pos]:
                continue
            tampered = raw[:pos] + bytes([value]) + raw[pos + 1 :]
            try:
                env = decode(KEY, CID, tampered)
            except RemoteProtocolError:
                continue
            raise AssertionError(f"byte {pos} set to {value:#x} accepted as {env}")


def test_body_forged_from_spec_matches_body_of() -> None:
    msg = Propose(4, (1, 3), (2, 2), 1)
    raw = encode(KEY, CID, 1, 1, msg)
    assert msgpack.unpackb(raw, raw=False)[5] == body_of(msg)
