"""Property-based tests of the codec: whatever a peer sends, decode() returns a well-typed
message of an allowed type or raises RemoteProtocolError, and nothing else."""

from __future__ import annotations

import math
from dataclasses import fields
from typing import Any

import msgpack
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tether.errors import RemoteProtocolError
from tether.protocol import codec
from tether.protocol import messages as m

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ALL_TYPES: tuple[type, ...] = (*m.WORKER_MESSAGES, *m.CONTROLLER_MESSAGES)
NAMES = {cls: name for name, cls in codec._TYPES.items()}
DIRECTIONS = st.sampled_from([None, m.WORKER_MESSAGES, m.CONTROLLER_MESSAGES])

# everything msgpack can carry (ints within its 64-bit range)
scalars = (st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=20)
           | st.binary(max_size=20))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)

# a well-typed value for each field type the messages use
ints = st.integers(-(2**63), 2**63 - 1)
finite = st.floats(allow_nan=False, allow_infinity=False)
GOOD: dict[str, st.SearchStrategy[Any]] = {
    "int": ints, "float": finite, "str": st.text(max_size=30),
    "tuple[float, ...]": st.lists(finite, max_size=6).map(tuple),
    "tuple[str, ...]": st.lists(st.text(max_size=8), max_size=4).map(tuple),
    "tuple[EvalRef, ...]": st.lists(st.tuples(ints, ints), max_size=4).map(tuple),
    "dict[str, Any]": st.dictionaries(st.text(max_size=8), values, max_size=4),
}


def message_of(cls: type) -> st.SearchStrategy[m.Message]:
    return st.builds(cls, **{f.name: GOOD[str(f.type)] for f in fields(cls)})


messages = st.sampled_from(ALL_TYPES).flatmap(message_of)


def well_typed(msg: m.Message) -> bool:
    """Every field has the Python type the dataclass promises (what decode() guarantees)."""
    checks = {"int": lambda v: type(v) is int, "float": lambda v: type(v) is float,
              "str": lambda v: type(v) is str,
              "tuple[float, ...]": lambda v: type(v) is tuple and all(type(i) is float for i in v),
              "tuple[str, ...]": lambda v: type(v) is tuple and all(type(i) is str for i in v),
              "tuple[EvalRef, ...]": lambda v: type(v) is tuple and all(
                  type(p) is tuple and len(p) == 2 and all(type(i) is int for i in p) for p in v),
              "dict[str, Any]": lambda v: type(v) is dict and all(type(k) is str for k in v)}
    return all(checks[str(f.type)](getattr(msg, f.name)) for f in fields(type(msg)))


def decode_or_refuse(data: bytes, allowed: tuple[type, ...] | None,
                     max_size: int = codec.MAX_MESSAGE) -> m.Message | None:
    """decode(); None when it refused with the documented error (anything else propagates)."""
    try:
        msg = codec.decode(data, allowed, max_size=max_size)
    except RemoteProtocolError:
        return None
    assert type(msg) in (allowed or ALL_TYPES)
    assert well_typed(msg)
    # what was accepted can be sent on unchanged (bytes compared: NaN != NaN)
    assert codec.encode(codec.decode(codec.encode(msg))) == codec.encode(msg)
    return msg


@SETTINGS
@given(st.binary(max_size=512), DIRECTIONS)
def test_arbitrary_bytes(data: bytes, allowed: tuple[type, ...] | None) -> None:
    decode_or_refuse(data, allowed)


@SETTINGS
@given(values, DIRECTIONS)
def test_arbitrary_msgpack(obj: Any, allowed: tuple[type, ...] | None) -> None:
    decode_or_refuse(msgpack.packb(obj, use_bin_type=True), allowed)


@st.composite
def wrong_messages(draw: st.DrawFn) -> dict[Any, Any]:
    """A map shaped like a message, with any field missing, mistyped or extra."""
    cls = draw(st.sampled_from(ALL_TYPES))
    body: dict[Any, Any] = {
        "v": draw(st.sampled_from([m.PROTOCOL_VERSION]) | values),
        "t": draw(st.sampled_from([NAMES[cls]]) | st.sampled_from(sorted(codec._TYPES)) | values),
    }
    for f in fields(cls):
        choice = draw(st.sampled_from(["good", "any", "missing"]))
        if choice == "good":
            body[f.name] = draw(GOOD[str(f.type)])
        elif choice == "any":
            body[f.name] = draw(values)
    body.update(draw(st.dictionaries(st.text(max_size=8) | st.integers(), values, max_size=3)))
    return body


@SETTINGS
@given(wrong_messages(), DIRECTIONS)
def test_well_formed_but_wrong_messages(body: dict[Any, Any],
                                        allowed: tuple[type, ...] | None) -> None:
    try:
        data = msgpack.packb(body, use_bin_type=True)
    except (TypeError, ValueError, OverflowError):
        assume(False)  # not representable in msgpack: cannot arrive on the wire
    msg = decode_or_refuse(data, allowed)
    if msg is not None:  # accepted: the fields it carries are the ones that were sent
        for f in fields(type(msg)):
            if f.name in body and str(f.type) in ("int", "str"):
                assert getattr(msg, f.name) == body[f.name]


@SETTINGS
@given(messages, st.data())
def test_round_trip_and_truncation(msg: m.Message, data: st.DataObject) -> None:
    wire = codec.encode(msg)
    back = codec.decode(wire)
    assert codec.encode(back) == wire
    if not _has_nan([getattr(back, f.name) for f in fields(type(back))]):
        assert back == msg
    cut = data.draw(st.integers(0, len(wire) - 1))
    decode_or_refuse(wire[:cut], None)  # a truncated frame is refused, never a crash
    pos = data.draw(st.integers(0, len(wire) - 1))
    flipped = wire[:pos] + bytes([wire[pos] ^ data.draw(st.integers(1, 255))]) + wire[pos + 1:]
    decode_or_refuse(flipped, data.draw(DIRECTIONS))


@SETTINGS
@given(messages, st.integers(1, 64))
def test_size_limit(msg: m.Message, limit: int) -> None:
    wire = codec.encode(msg)
    got = decode_or_refuse(wire, None, max_size=limit)
    assert (got is None) if len(wire) > limit else (got is not None)


def _has_nan(v: Any) -> bool:
    if isinstance(v, float):
        return math.isnan(v)
    if isinstance(v, dict):
        return any(_has_nan(i) for i in v.values())
    if isinstance(v, (list, tuple)):
        return any(_has_nan(i) for i in v)
    return False
