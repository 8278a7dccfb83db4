"""The msgpack codec: round trips, and strictness on everything a peer might send."""

from __future__ import annotations

import math
import random
import struct
from typing import Any

import msgpack
import pytest

from tether.errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from tether.protocol import codec
from tether.protocol import messages as m

ALL_MESSAGES: list[m.Message] = [
    m.Hello("w1", "sess-1"),
    m.Hello("w2", "sess-2", slots=4, running=((3, 0), (7, 2)), host="node7", pid=4242,
            job="slurm-99"),
    m.Partial(5, 1, 0.25),
    m.Partial(5, 1, -3.5, info={"step": 3, "loss": 0.5, "tags": ["a", "b"], "nested": {"k": 1}}),
    m.Result(5, 0, 1.5),
    m.Result(5, 2, -0.0, seconds=12.25),
    m.Failure(6, 0, "ZeroDivisionError: boom\nTraceback ..."),
    m.Failure(6, 1, "exit status 3", seconds=0.5),
    m.Killed(7, 0),
    m.Killed(7, 1, reason="not running"),
    m.Drain(),
    m.Drain(remaining=30.0),
    m.Goodbye("walltime"),
    m.Goodbye("sigterm", abandoned=((1, 0), (2, 3))),
    m.Welcome("epoch-a", 1.0, 3),
    m.Welcome("epoch-b", 0.25, 5, names=("x0", "x1", "lr")),
    m.Evaluate(9, 0, (0.1, 0.2)),
    m.Evaluate(9, 1, (1e-300, -1e300, 0.0), timeout=600.0),
    m.Ack(9, 1),
    m.Kill(9, 1),
    m.Kill(9, 1, reason="eval_timeout"),
    m.Terminate(),
    m.Terminate("budget"),
    m.Drained(),
    m.Rehello(),
    m.Running(4, 1),
    m.StatusQuery(),
    m.Status({"completed": 3, "workers": [{"name": "w0"}]}),
    m.Heartbeat(),
]


def pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]


def body(msg: m.Message) -> dict[str, Any]:
    out: dict[str, Any] = msgpack.unpackb(codec.encode(msg), raw=False)
    return out


# ---------------------------------------------------------------------- round trips
@pytest.mark.parametrize("msg", ALL_MESSAGES, ids=lambda x: type(x).__name__)
def test_round_trip(msg: m.Message) -> None:
    data = codec.encode(msg)
    assert isinstance(data, bytes)
    back = codec.decode(data)
    assert type(back) is type(msg)
    assert back == msg


@pytest.mark.parametrize("msg", ALL_MESSAGES, ids=lambda x: type(x).__name__)
def test_literal_bodies_match_the_schema(msg: m.Message) -> None:
    # the per-evaluation messages are encoded from literal maps, not the schema loop:
    # same keys, same values, same order (so the same bytes)
    general = codec._general_body(msg)
    assert codec._body(msg) == general
    assert list(codec._body(msg)) == list(general)
    assert codec.encode(msg) == pack(general)


def test_every_message_type_is_covered() -> None:
    covered = {type(x) for x in ALL_MESSAGES}
    assert covered == set(m.WORKER_MESSAGES) | set(m.CONTROLLER_MESSAGES)


@pytest.mark.parametrize("msg", ALL_MESSAGES, ids=lambda x: type(x).__name__)
def test_direction_filters(msg: m.Message) -> None:
    data = codec.encode(msg)
    for allowed in (m.WORKER_MESSAGES, m.CONTROLLER_MESSAGES):
        if type(msg) in allowed:
            assert codec.decode(data, allowed) == msg
        else:
            with pytest.raises(RemoteProtocolError, match="not allowed"):
                codec.decode(data, allowed)


def test_wire_format_has_version_and_type() -> None:
    b = body(m.Ack(3, 1))
    assert b == {"v": m.PROTOCOL_VERSION, "t": "ack", "eval_id": 3, "attempt": 1}


def test_running_refs_decode_as_tuples() -> None:
    back = codec.decode(codec.encode(m.Hello("w", "s", running=((1, 0), (2, 1)))))
    assert isinstance(back, m.Hello)
    assert back.running == ((1, 0), (2, 1))
    assert all(isinstance(r, tuple) for r in back.running)


def test_ints_accepted_for_float_fields() -> None:
    data = pack({"v": 1, "t": "result", "eval_id": 1, "attempt": 0, "value": 3})
    back = codec.decode(data)
    assert isinstance(back, m.Result)
    assert back.value == 3.0 and isinstance(back.value, float)


def test_unknown_extra_fields_are_ignored() -> None:
    data = pack({"v": 1, "t": "ack", "eval_id": 1, "attempt": 0, "future": [1, 2]})
    assert codec.decode(data) == m.Ack(1, 0)


def test_float64_bit_exact() -> None:
    rng = random.Random(1234)
    values = [
        0.1, 1 / 3, math.pi, -math.e, 5e-324, 2.2250738585072014e-308, 1.7976931348623157e308,
        -0.0, 0.0, 123456789.123456789, 1e-17, 0.30000000000000004,
    ]
    values += [struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0]
               for _ in range(300)]
    values = [v for v in values if math.isfinite(v)]
    x = tuple(values)
    back = codec.decode(codec.encode(m.Evaluate(1, 0, x)))
    assert isinstance(back, m.Evaluate)
    assert len(back.x) == len(x)
    for a, b in zip(x, back.x, strict=True):
        assert struct.pack("<d", a) == struct.pack("<d", b)
    for v in values[:50]:
        r = codec.decode(codec.encode(m.Result(1, 0, v)))
        assert isinstance(r, m.Result)
        assert struct.pack("<d", r.value) == struct.pack("<d", v)


def test_nan_and_inf_survive_the_codec() -> None:
    # the codec carries them; the controller core decides what a non-finite value means
    r = codec.decode(codec.encode(m.Result(1, 0, math.inf)))
    assert isinstance(r, m.Result) and r.value == math.inf
    r = codec.decode(codec.encode(m.Result(1, 0, math.nan)))
    assert isinstance(r, m.Result) and math.isnan(r.value)


# ---------------------------------------------------------------------- encode side
def test_encode_rejects_non_messages() -> None:
    with pytest.raises(LocalProtocolError):
        codec.encode({"v": 1, "t": "ack"})  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError):
        codec.encode("heartbeat")  # type: ignore[arg-type]


def test_encode_rejects_unpackable_fields() -> None:
    with pytest.raises(LocalProtocolError):
        codec.encode(m.Partial(1, 0, 1.0, info={"obj": object()}))


# ---------------------------------------------------------------------- strictness
def test_oversized_frame() -> None:
    big = m.Failure(1, 0, "e" * (codec.MAX_MESSAGE + 10))
    data = codec.encode(big)
    assert len(data) > codec.MAX_MESSAGE
    with pytest.raises(RemoteProtocolError, match="exceeds"):
        codec.decode(data)


def test_size_limit_is_configurable_and_inclusive() -> None:
    data = codec.encode(m.Heartbeat())
    assert codec.decode(data, max_size=len(data)) == m.Heartbeat()
    with pytest.raises(RemoteProtocolError, match="exceeds"):
        codec.decode(data, max_size=len(data) - 1)


@pytest.mark.parametrize("data", [
    b"", b"\xc1", b"\x81", b"\x92\x01", b"\xdb\xff\xff\xff\xff", b"\x81\xa1v\x01\x00\x00",
], ids=["empty", "reserved-byte", "map-truncated", "array-truncated", "str32-huge", "extra-data"])
def test_not_msgpack(data: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        codec.decode(data)


@pytest.mark.parametrize("obj", [
    [1, "heartbeat"], "heartbeat", 1, None, 3.5, True, b"bytes",
], ids=["list", "str", "int", "nil", "float", "bool", "bin"])
def test_not_a_map(obj: Any) -> None:
    with pytest.raises(RemoteProtocolError, match="not a map"):
        codec.decode(pack(obj))


def test_non_string_map_keys() -> None:
    with pytest.raises(RemoteProtocolError):
        codec.decode(pack({1: 1, "t": "heartbeat"}))


@pytest.mark.parametrize("version", [None, 0, 2, "1", [1], -1, 1 << 40])
def test_wrong_or_missing_version(version: Any) -> None:
    obj: dict[str, Any] = {"t": "heartbeat"}
    if version is not None:
        obj["v"] = version
    with pytest.raises(RemoteProtocolError, match="version"):
        codec.decode(pack(obj))


@pytest.mark.parametrize("version", [True, 1.0])
def test_version_must_be_the_integer_1(version: Any) -> None:
    with pytest.raises(RemoteProtocolError, match="version"):
        codec.decode(pack({"v": version, "t": "heartbeat"}))


@pytest.mark.parametrize("t", [None, "nope", "Heartbeat", "", 5])
def test_unknown_type(t: Any) -> None:
    obj: dict[str, Any] = {"v": 1}
    if t is not None:
        obj["t"] = t
    with pytest.raises(RemoteProtocolError, match="unknown message type"):
        codec.decode(pack(obj))


@pytest.mark.parametrize("t", [[1], {"a": 1}, ["heartbeat"]], ids=["list", "map", "list-str"])
def test_unhashable_type_field(t: Any) -> None:
    with pytest.raises(RemoteProtocolError):
        codec.decode(pack({"v": 1, "t": t}))


def test_type_not_allowed_in_direction() -> None:
    # a worker must not send Evaluate; a controller must not send Result
    with pytest.raises(RemoteProtocolError, match="not allowed"):
        codec.decode(codec.encode(m.Evaluate(1, 0, (0.5,))), m.WORKER_MESSAGES)
    with pytest.raises(RemoteProtocolError, match="not allowed"):
        codec.decode(codec.encode(m.Result(1, 0, 0.5)), m.CONTROLLER_MESSAGES)
    # heartbeats are allowed both ways
    assert codec.decode(codec.encode(m.Heartbeat()), m.WORKER_MESSAGES) == m.Heartbeat()
    assert codec.decode(codec.encode(m.Heartbeat()), m.CONTROLLER_MESSAGES) == m.Heartbeat()


@pytest.mark.parametrize("msg", [x for x in ALL_MESSAGES if len(body(x)) > 2],
                         ids=lambda x: type(x).__name__)
def test_missing_required_field(msg: m.Message) -> None:
    full = body(msg)
    required = [f for f, _c, req in codec._SCHEMA[type(msg)] if req]
    for fname in required:
        partial = {k: v for k, v in full.items() if k != fname}
        with pytest.raises(RemoteProtocolError, match=f"missing field '{fname}'"):
            codec.decode(pack(partial))


def test_optional_fields_may_be_missing() -> None:
    assert codec.decode(pack({"v": 1, "t": "hello", "name": "w", "session": "s"})) == \
        m.Hello("w", "s")
    assert codec.decode(pack({"v": 1, "t": "kill", "eval_id": 1, "attempt": 0})) == m.Kill(1, 0)


BAD_FIELDS: list[tuple[str, dict[str, Any]]] = [
    # bool is not an int
    ("ack", {"eval_id": True, "attempt": 0}),
    ("ack", {"eval_id": 1, "attempt": False}),
    ("evaluate", {"eval_id": 1.0, "attempt": 0, "x": [0.5]}),
    ("evaluate", {"eval_id": "1", "attempt": 0, "x": [0.5]}),
    ("evaluate", {"eval_id": None, "attempt": 0, "x": [0.5]}),
    # str / bool / nil is not a float
    ("result", {"eval_id": 1, "attempt": 0, "value": "1.5"}),
    ("result", {"eval_id": 1, "attempt": 0, "value": True}),
    ("result", {"eval_id": 1, "attempt": 0, "value": None}),
    ("result", {"eval_id": 1, "attempt": 0, "value": 1.0, "seconds": "2"}),
    ("welcome", {"epoch": "e", "heartbeat": "1", "liveness": 3}),
    ("welcome", {"epoch": "e", "heartbeat": 1.0, "liveness": 3.0}),
    ("welcome", {"epoch": 7, "heartbeat": 1.0, "liveness": 3}),
    ("welcome", {"epoch": "e", "heartbeat": 1.0, "liveness": 3, "names": "x0"}),
    ("welcome", {"epoch": "e", "heartbeat": 1.0, "liveness": 3, "names": ["x0", 1]}),
    ("welcome", {"epoch": b"e", "heartbeat": 1.0, "liveness": 3}),
    # points
    ("evaluate", {"eval_id": 1, "attempt": 0, "x": 0.5}),
    ("evaluate", {"eval_id": 1, "attempt": 0, "x": [0.5, "0.1"]}),
    ("evaluate", {"eval_id": 1, "attempt": 0, "x": [0.5, True]}),
    ("evaluate", {"eval_id": 1, "attempt": 0, "x": {"x0": 0.5}}),
    ("evaluate", {"eval_id": 1, "attempt": 0, "x": [[0.5]]}),
    # strings
    ("failure", {"eval_id": 1, "attempt": 0, "error": 5}),
    ("failure", {"eval_id": 1, "attempt": 0, "error": None}),
    ("hello", {"name": ["w"], "session": "s"}),
    ("hello", {"name": "w", "session": "s", "pid": "12"}),
    ("hello", {"name": "w", "session": "s", "slots": True}),
    ("goodbye", {"reason": 1}),
    # running / abandoned refs
    ("hello", {"name": "w", "session": "s", "running": [1, 2]}),
    ("hello", {"name": "w", "session": "s", "running": [[1]]}),
    ("hello", {"name": "w", "session": "s", "running": [[1, 2, 3]]}),
    ("hello", {"name": "w", "session": "s", "running": [["1", 0]]}),
    ("hello", {"name": "w", "session": "s", "running": [[1, 0.0]]}),
    ("hello", {"name": "w", "session": "s", "running": [[True, 0]]}),
    ("hello", {"name": "w", "session": "s", "running": "1,0"}),
    ("hello", {"name": "w", "session": "s", "running": {"1": 0}}),
    ("goodbye", {"reason": "x", "abandoned": [[1, None]]}),
    # info map
    ("partial", {"eval_id": 1, "attempt": 0, "value": 1.0, "info": [1, 2]}),
    ("partial", {"eval_id": 1, "attempt": 0, "value": 1.0, "info": "x"}),
]


@pytest.mark.parametrize(("t", "fields"), BAD_FIELDS, ids=[f"{t}-{i}" for i, (t, _f) in
                                                           enumerate(BAD_FIELDS)])
def test_wrong_field_types(t: str, fields: dict[str, Any]) -> None:
    with pytest.raises(RemoteProtocolError, match="field"):
        codec.decode(pack({"v": 1, "t": t, **fields}))


def test_random_garbage_only_raises_remote_protocol_error() -> None:
    rng = random.Random(20261123)
    valid = [codec.encode(x) for x in ALL_MESSAGES]
    outcomes = {"ok": 0, "rejected": 0}
    for i in range(6000):
        kind = i % 3
        if kind == 0:  # pure noise
            data = rng.randbytes(rng.randrange(0, 64))
        elif kind == 1:  # noise behind a plausible map header
            data = bytes([0x80 | rng.randrange(16)]) + rng.randbytes(rng.randrange(0, 48))
        else:  # a valid message with a few bytes flipped
            buf = bytearray(rng.choice(valid))
            for _ in range(rng.randrange(1, 4)):
                buf[rng.randrange(len(buf))] = rng.randrange(256)
            data = bytes(buf)
        try:
            msg = codec.decode(data)
        except RemoteProtocolError:
            outcomes["rejected"] += 1
        else:
            assert type(msg) in codec._NAMES
            outcomes["ok"] += 1
    assert outcomes["rejected"] > 3000


@pytest.mark.parametrize("msg", ALL_MESSAGES, ids=lambda x: type(x).__name__)
def test_truncated_valid_messages(msg: m.Message) -> None:
    data = codec.encode(msg)
    for cut in range(len(data)):
        with pytest.raises(RemoteProtocolError):
            codec.decode(data[:cut])


def test_errors_share_the_root() -> None:
    assert issubclass(RemoteProtocolError, ProtocolError)
    assert issubclass(LocalProtocolError, ProtocolError)


# ------------------------------------------------------------------ batches in one frame
def test_several_messages_travel_in_one_frame() -> None:
    msgs: list[m.Message] = [m.Ack(1, 0), m.Evaluate(2, 0, (0.5,)), m.Drained()]
    frame = codec.encode_many(msgs)
    assert codec.decode_frame(frame, m.CONTROLLER_MESSAGES) == msgs
    # a single message is a plain map, readable by decode() as before
    assert codec.decode(codec.encode_many([m.Ack(1, 0)])) == m.Ack(1, 0)
    assert codec.decode_frame(codec.encode(m.Ack(1, 0))) == [m.Ack(1, 0)]


def test_a_batch_is_all_or_nothing_and_bounded() -> None:
    bad = msgpack.packb([{"v": m.PROTOCOL_VERSION, "t": "ack", "eval_id": 1, "attempt": 0},
                         {"v": m.PROTOCOL_VERSION, "t": "nope"}])
    with pytest.raises(RemoteProtocolError, match="unknown message type"):
        codec.decode_frame(bad)
    with pytest.raises(RemoteProtocolError, match="batch"):
        codec.decode_frame(msgpack.packb([]))
    big = msgpack.packb([{"v": m.PROTOCOL_VERSION, "t": "heartbeat"}] * (codec.MAX_BATCH + 1))
    with pytest.raises(RemoteProtocolError, match="batch"):
        codec.decode_frame(big)
    # a controller-only message inside a worker's batch is refused with the rest
    mixed = codec.encode_many([m.Heartbeat(), m.Evaluate(1, 0, (0.1,))])
    with pytest.raises(RemoteProtocolError, match="not allowed"):
        codec.decode_frame(mixed, m.WORKER_MESSAGES)


def test_the_result_fast_path_decodes_as_the_general_one() -> None:
    def frame(**fields: object) -> bytes:
        body = {"v": m.PROTOCOL_VERSION, "t": "result", **fields}
        return bytes(msgpack.packb(body))

    fast = codec.decode(frame(eval_id=3, attempt=1, value=0.5, seconds=0.25))
    assert fast == m.Result(3, 1, 0.5, 0.25)
    # what the fast path does not take goes the general way, with its coercions and checks
    assert codec.decode(frame(eval_id=3, attempt=1, value=2, seconds=0.0)) == m.Result(3, 1, 2.0)
    assert codec.decode(frame(eval_id=3, attempt=1, value=0.5)) == m.Result(3, 1, 0.5)
    for bad in (frame(eval_id=True, attempt=1, value=0.5, seconds=0.0),
                frame(eval_id=3, attempt=1, value="x", seconds=0.0)):
        with pytest.raises(RemoteProtocolError):
            codec.decode(bad)
    with pytest.raises(RemoteProtocolError):
        codec.decode(bytes(msgpack.packb({"v": True, "t": "result", "eval_id": 3,
                                          "attempt": 1, "value": 0.5, "seconds": 0.0})))
    with pytest.raises(RemoteProtocolError):  # a result where only the controller's may go
        codec.decode(frame(eval_id=3, attempt=1, value=0.5, seconds=0.0),
                     m.CONTROLLER_MESSAGES)


def test_the_evaluate_fast_path_decodes_as_the_general_one() -> None:
    def frame(**fields: object) -> bytes:
        body = {"v": m.PROTOCOL_VERSION, "t": "evaluate", **fields}
        return bytes(msgpack.packb(body))

    fast = codec.decode(frame(eval_id=3, attempt=1, x=[0.5, 0.25], timeout=60.0))
    assert fast == m.Evaluate(3, 1, (0.5, 0.25), 60.0) and type(fast.x) is tuple
    assert codec.decode(codec.encode(m.Evaluate(4, 0, (1e-300, -2.0), 0.0))) == \
        m.Evaluate(4, 0, (1e-300, -2.0), 0.0)
    # ints where floats go, a missing field: the general path, with its coercions
    assert codec.decode(frame(eval_id=3, attempt=1, x=[1, 0.5], timeout=0)) == \
        m.Evaluate(3, 1, (1.0, 0.5), 0.0)
    assert codec.decode(frame(eval_id=3, attempt=1, x=[0.5])) == m.Evaluate(3, 1, (0.5,))
    for bad in (frame(eval_id=3, attempt=1, x=["a"], timeout=0.0),
                frame(eval_id=3, attempt=False, x=[0.5], timeout=0.0),
                frame(eval_id=3, attempt=1, x={"a": 1.0}, timeout=0.0)):
        with pytest.raises(RemoteProtocolError):
            codec.decode(bad)
    with pytest.raises(RemoteProtocolError):  # an evaluate where only a worker's may go
        codec.decode(frame(eval_id=3, attempt=1, x=[0.5], timeout=0.0), m.WORKER_MESSAGES)
    with pytest.raises(RemoteProtocolError):  # an unhashable type field is refused, not a crash
        codec.decode(bytes(msgpack.packb({"v": 1, "t": ["evaluate"]})))
