"""Strict msgpack codec: size limit, version check, type checks, typed errors only.

Decoding never raises anything but :class:`~tether.errors.RemoteProtocolError`, so a
malformed or hostile frame cannot crash the controller's loop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import MISSING, fields
from typing import Any

import msgpack

from tether.errors import LocalProtocolError, RemoteProtocolError
from tether.protocol import messages as m

MAX_MESSAGE = 1 << 20  # bytes; evaluation messages are tiny, so 1 MiB is generous

_TYPES: dict[str, type] = {
    "hello": m.Hello, "partial": m.Partial, "result": m.Result, "failure": m.Failure,
    "killed": m.Killed, "drain": m.Drain, "goodbye": m.Goodbye, "welcome": m.Welcome,
    "evaluate": m.Evaluate, "ack": m.Ack, "kill": m.Kill, "terminate": m.Terminate,
    "drained": m.Drained, "rehello": m.Rehello, "heartbeat": m.Heartbeat,
    "status_query": m.StatusQuery, "status": m.Status, "running": m.Running,
}
_NAMES: dict[type, str] = {cls: name for name, cls in _TYPES.items()}


# Every field of every message passes one of these: the exact-type test comes first
# (msgpack gives exactly int, float, str, list), the general one only for the rest.
def _int(v: Any) -> int:
    if type(v) is int or (isinstance(v, int) and not isinstance(v, bool)):
        return v
    raise TypeError("an integer")


def _float(v: Any) -> float:
    if type(v) is float:
        return v
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    raise TypeError("a number")


def _str(v: Any) -> str:
    if isinstance(v, str):
        return v
    raise TypeError("a string")


def _floats(v: Any) -> tuple[float, ...]:
    if isinstance(v, (list, tuple)):
        t = tuple(v)
        if all(type(i) is float for i in t):
            return t
        return tuple(_float(i) for i in t)
    raise TypeError("a list of numbers")


def _strs(v: Any) -> tuple[str, ...]:
    if isinstance(v, (list, tuple)):
        return tuple(_str(i) for i in v)
    raise TypeError("a list of strings")


def _refs(v: Any) -> tuple[tuple[int, int], ...]:
    if isinstance(v, (list, tuple)) and all(isinstance(i, (list, tuple)) and len(i) == 2 for i in v):
        return tuple((_int(a), _int(b)) for a, b in v)
    raise TypeError("a list of [eval_id, attempt] pairs")


def _map(v: Any) -> dict[str, Any]:
    if isinstance(v, dict) and all(isinstance(k, str) for k in v):
        return v
    raise TypeError("a map with string keys")


_CHECKS: dict[str, Callable[[Any], Any]] = {
    "int": _int, "float": _float, "str": _str, "tuple[float, ...]": _floats,
    "tuple[str, ...]": _strs, "tuple[EvalRef, ...]": _refs, "dict[str, Any]": _map,
}

# per message type: (field name, checker, required)
_SCHEMA: dict[type, list[tuple[str, Callable[[Any], Any], bool]]] = {}
for _cls in _TYPES.values():
    _SCHEMA[_cls] = [
        (f.name, _CHECKS[str(f.type)], f.default is MISSING and f.default_factory is MISSING)
        for f in fields(_cls)
    ]


MAX_BATCH = 1024  # messages in one frame

_PACKER = msgpack.Packer(use_bin_type=True)  # reused: packing is on the hot path


_V = m.PROTOCOL_VERSION

# The messages sent once per evaluation, as literal maps: the general loop over the
# schema below costs twice as much. tests/unit/test_codec.py checks they match it.
_LITERAL: dict[type, Callable[[Any], dict[str, Any]]] = {
    m.Evaluate: lambda e: {"v": _V, "t": "evaluate", "eval_id": e.eval_id,
                           "attempt": e.attempt, "x": e.x, "timeout": e.timeout},
    m.Ack: lambda a: {"v": _V, "t": "ack", "eval_id": a.eval_id, "attempt": a.attempt},
    m.Result: lambda r: {"v": _V, "t": "result", "eval_id": r.eval_id,
                         "attempt": r.attempt, "value": r.value, "seconds": r.seconds},
    m.Running: lambda r: {"v": _V, "t": "running", "eval_id": r.eval_id,
                          "attempt": r.attempt},
}


def _body(msg: m.Message) -> dict[str, Any]:
    literal = _LITERAL.get(type(msg))
    if literal is not None:
        return literal(msg)
    return _general_body(msg)


def _general_body(msg: m.Message) -> dict[str, Any]:
    name = _NAMES.get(type(msg))
    if name is None:
        raise LocalProtocolError(f"not a protocol message: {msg!r}")
    body: dict[str, Any] = {"v": m.PROTOCOL_VERSION, "t": name}
    for fname, _check, _req in _SCHEMA[type(msg)]:
        body[fname] = getattr(msg, fname)
    return body


def encode(msg: m.Message) -> bytes:
    return encode_many([msg])


def encode_many(msgs: list[m.Message]) -> bytes:
    """One frame: a single message is a map; several travel as an array of maps."""
    bodies = [_body(msg) for msg in msgs]
    try:
        packed: bytes = _PACKER.pack(bodies[0] if len(bodies) == 1 else bodies)
        return packed
    except (TypeError, ValueError, OverflowError) as exc:
        _PACKER.reset()
        raise LocalProtocolError(f"cannot encode {bodies[0]['t']}: {exc}") from None


def _unpack(data: bytes, max_size: int) -> Any:
    if len(data) > max_size:
        raise RemoteProtocolError(f"message of {len(data)} bytes exceeds {max_size}")
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises many types on hostile input
        raise RemoteProtocolError(f"not msgpack: {type(exc).__name__}") from None


def decode(data: bytes, allowed: tuple[type, ...] | None = None,
           max_size: int = MAX_MESSAGE) -> m.Message:
    """Parse one frame holding one message of one of the ``allowed`` types."""
    return _message(_unpack(data, max_size), allowed)


def decode_frame(data: bytes, allowed: tuple[type, ...] | None = None,
                 max_size: int = MAX_MESSAGE) -> list[m.Message]:
    """Parse one frame holding one message or an array of up to MAX_BATCH messages.

    The frame is all or nothing: one bad message in an array refuses the whole frame.
    """
    obj = _unpack(data, max_size)
    if isinstance(obj, list):
        if not 0 < len(obj) <= MAX_BATCH:
            raise RemoteProtocolError(f"a batch of {len(obj)} messages (1..{MAX_BATCH})")
        return [_message(o, allowed) for o in obj]
    return [_message(obj, allowed)]


def _result(obj: dict[str, Any]) -> m.Result | None:
    """A ``result`` exactly as workers write it, built without the general checks (one
    per evaluation at the controller); anything else takes the general path."""
    if len(obj) != 6:
        return None
    e, a, v, s = obj.get("eval_id"), obj.get("attempt"), obj.get("value"), obj.get("seconds")
    if type(e) is int and type(a) is int and type(v) is float and type(s) is float:
        return m.Result(e, a, v, s)
    return None


def _evaluate(obj: dict[str, Any]) -> m.Evaluate | None:
    """An ``evaluate`` exactly as the controller writes it (one per evaluation at the
    worker), the same way."""
    if len(obj) != 6:
        return None
    e, a, x, to = obj.get("eval_id"), obj.get("attempt"), obj.get("x"), obj.get("timeout")
    if (type(e) is int and type(a) is int and type(x) is list and type(to) is float
            and all(type(i) is float for i in x)):
        return m.Evaluate(e, a, tuple(x), to)
    return None


_FAST: dict[str, tuple[type, Callable[[dict[str, Any]], m.Message | None]]] = {
    "result": (m.Result, _result), "evaluate": (m.Evaluate, _evaluate)}


def _message(obj: Any, allowed: tuple[type, ...] | None) -> m.Message:
    if not isinstance(obj, dict):
        raise RemoteProtocolError("message is not a map")
    version = obj.get("v")
    kind = obj.get("t")
    fast = _FAST.get(kind) if type(kind) is str else None
    if (fast is not None and type(version) is int and version == m.PROTOCOL_VERSION
            and (allowed is None or fast[0] in allowed)):
        quick = fast[1](obj)
        if quick is not None:
            return quick
    if type(version) is not int or version != m.PROTOCOL_VERSION:
        raise RemoteProtocolError(f"unsupported protocol version {version!r}")
    cls = _TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise RemoteProtocolError(f"unknown message type {obj.get('t')!r}")
    if allowed is not None and cls not in allowed:
        raise RemoteProtocolError(f"message type {obj['t']!r} not allowed in this direction")
    kwargs: dict[str, Any] = {}
    for fname, check, required in _SCHEMA[cls]:
        if fname not in obj:
            if required:
                raise RemoteProtocolError(f"{obj['t']}: missing field {fname!r}")
            continue
        try:
            kwargs[fname] = check(obj[fname])
        except TypeError as exc:
            raise RemoteProtocolError(f"{obj['t']}: field {fname!r} must be {exc}") from None
    msg: m.Message = cls(**kwargs)
    return msg

