"""The typed event model of the evaluation log: one class per event kind, one parser.

Every reader of the log goes through :func:`parse_event` (the controller's replay, the
``tether log`` tools, warm starts), and the controller core writes nothing but these
events, so the file and the live state cannot disagree on what an event means.

Events are plain (not frozen) slotted dataclasses: a million of them are built on a
``--resume``, and a frozen dataclass costs four times as much to build. Treat them as
values all the same.

The JSON layout is the public contract (docs/log-format.md): ``to_json`` of an event
writes exactly the fields the contract lists for its kind, plus the optional ones
documented as additions. Parsing is strict on the fields the contract requires and keeps
unknown extra fields of ``run_started`` and ``partial`` (their free-form parts); other
unknown fields are ignored, so a newer writer's additions do not break an older reader.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from tether.errors import LogError

EventKind = Literal[
    "run_started", "proposed", "started", "partial", "completed", "failed", "killed",
    "lost", "requeued", "worker_joined", "worker_left", "run_finished",
]
EVENT_KINDS: tuple[EventKind, ...] = (
    "run_started", "proposed", "started", "partial", "completed", "failed", "killed",
    "lost", "requeued", "worker_joined", "worker_left", "run_finished",
)
TERMINAL_KINDS = ("completed", "failed", "killed")


@dataclass(slots=True)
class RunStarted:
    t: float
    data: dict[str, Any] = field(default_factory=dict)  # space, strategy, run, host, ...
    kind: Literal["run_started"] = "run_started"

    def line(self, seq: int) -> dict[str, Any]:
        return {"event": "run_started", "t": self.t, "seq": seq, **self.data}


@dataclass(slots=True)
class Proposed:
    t: float
    eval_id: int
    x: tuple[float, ...]
    tag: str = ""
    kind: Literal["proposed"] = "proposed"

    def line(self, seq: int) -> dict[str, Any]:
        out: dict[str, Any] = {"event": "proposed", "t": self.t, "seq": seq,
                               "eval_id": self.eval_id, "x": list(self.x)}
        if self.tag:
            out["tag"] = self.tag
        return out


@dataclass(slots=True)
class Started:
    t: float
    eval_id: int
    worker: str
    attempt: int = 0
    adopted: bool = False
    kind: Literal["started"] = "started"

    def line(self, seq: int) -> dict[str, Any]:
        out: dict[str, Any] = {"event": "started", "t": self.t, "seq": seq,
                               "eval_id": self.eval_id, "worker": self.worker,
                               "attempt": self.attempt}
        if self.adopted:
            out["adopted"] = True
        return out


@dataclass(slots=True)
class Partial:
    t: float
    eval_id: int
    worker: str
    value: float
    step: int
    info: dict[str, Any] = field(default_factory=dict)  # report(value, **info) scalars
    kind: Literal["partial"] = "partial"

    def line(self, seq: int) -> dict[str, Any]:
        return {"event": "partial", "t": self.t, "seq": seq,
                **self.info, "eval_id": self.eval_id, "worker": self.worker,
                "value": self.value, "step": self.step}


@dataclass(slots=True)
class Completed:
    t: float
    eval_id: int
    worker: str
    value: float
    kind: Literal["completed"] = "completed"

    def line(self, seq: int) -> dict[str, Any]:
        return {"event": "completed", "t": self.t, "seq": seq,
                "eval_id": self.eval_id, "worker": self.worker, "value": self.value}


@dataclass(slots=True)
class Failed:
    t: float
    eval_id: int
    worker: str
    error: str
    kind: Literal["failed"] = "failed"

    def line(self, seq: int) -> dict[str, Any]:
        return {"event": "failed", "t": self.t, "seq": seq,
                "eval_id": self.eval_id, "worker": self.worker, "error": self.error}


@dataclass(slots=True)
class Killed:
    t: float
    eval_id: int
    worker: str
    error: str
    kind: Literal["killed"] = "killed"

    def line(self, seq: int) -> dict[str, Any]:
        return {"event": "killed", "t": self.t, "seq": seq,
                "eval_id": self.eval_id, "worker": self.worker, "error": self.error}


@dataclass(slots=True)
class Lost:
    t: float
    eval_id: int
    worker: str
    attempt: int
    reason: str
    kind: Literal["lost"] = "lost"

    def line(self, seq: int) -> dict[str, Any]:
        return {"event": "lost", "t": self.t, "seq": seq,
                "eval_id": self.eval_id, "worker": self.worker, "attempt": self.attempt,
                "reason": self.reason}


@dataclass(slots=True)
class Requeued:
    t: float
    eval_id: int
    attempt: int
    reason: str
    kind: Literal["requeued"] = "requeued"

    def line(self, seq: int) -> dict[str, Any]:
        return {"event": "requeued", "t": self.t, "seq": seq,
                "eval_id": self.eval_id, "attempt": self.attempt, "reason": self.reason}


@dataclass(slots=True)
class WorkerJoined:
    t: float
    worker: str
    slots: int = 1
    key: str = ""  # fingerprint of the worker's CURVE key, never the key
    kind: Literal["worker_joined"] = "worker_joined"

    def line(self, seq: int) -> dict[str, Any]:
        out: dict[str, Any] = {"event": "worker_joined", "t": self.t, "seq": seq,
                               "worker": self.worker, "slots": self.slots}
        if self.key:
            out["key"] = self.key
        return out


@dataclass(slots=True)
class WorkerLeft:
    t: float
    worker: str
    reason: str
    kind: Literal["worker_left"] = "worker_left"

    def line(self, seq: int) -> dict[str, Any]:
        return {"event": "worker_left", "t": self.t, "seq": seq,
                "worker": self.worker, "reason": self.reason}


@dataclass(slots=True)
class RunFinished:
    t: float
    reason: str
    completed: int
    best_value: float | None
    best_x: tuple[float, ...] | None
    extra: dict[str, Any] = field(default_factory=dict)  # failed, killed, counters
    kind: Literal["run_finished"] = "run_finished"

    def line(self, seq: int) -> dict[str, Any]:
        return {"event": "run_finished", "t": self.t, "seq": seq,
                "reason": self.reason, "completed": self.completed,
                "best_value": self.best_value,
                "best_x": None if self.best_x is None else list(self.best_x), **self.extra}


Event = (RunStarted | Proposed | Started | Partial | Completed | Failed | Killed | Lost
         | Requeued | WorkerJoined | WorkerLeft | RunFinished)
EvalEvent = Proposed | Started | Partial | Completed | Failed | Killed | Lost | Requeued
Terminal = Completed | Failed | Killed


def to_json_obj(ev: Event, seq: int) -> dict[str, Any]:
    """The log line of ``ev`` as a dict: ``event``, ``t``, ``seq`` first, then its fields.
    (Built by the event itself in one call: this runs three times per evaluation. ``t``
    is written as it is: the controller's clock is rounded to microseconds where events
    are made, ControllerCore._now, and parsed events come from such a log.)"""
    return ev.line(seq)


# ------------------------------------------------------------------------- parsing
# The checks run a million times on a large log: `type(v) is int` is the fast path (and
# excludes bool, which is an int subclass JSON decoders never produce for a number)
def _num(obj: dict[str, Any], key: str) -> float:
    v = obj[key]
    tv = type(v)
    if tv is float:
        return v
    if tv is int:
        return float(v)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise TypeError(f"{key} is not a number")
    return float(v)


def _opt_num(obj: dict[str, Any], key: str) -> float | None:
    v = obj.get(key)
    return None if v is None else _num(obj, key)


def _int(obj: dict[str, Any], key: str, default: int | None = None) -> int:
    v = obj.get(key, default)
    if type(v) is int:
        return v
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError(f"{key} is not an integer")
    return v


def _str(obj: dict[str, Any], key: str, default: str | None = None) -> str:
    v = obj.get(key, default)
    if type(v) is str:
        return v
    if v is None:  # a killed PENDING evaluation has no worker: written as null or ""
        return ""
    if not isinstance(v, str):
        raise TypeError(f"{key} is not a string")
    return v


def _point(obj: dict[str, Any], key: str) -> tuple[float, ...]:
    v = obj[key]
    if not isinstance(v, list):
        raise TypeError(f"{key} is not a list")
    if all(type(c) is float for c in v):
        return tuple(v)
    out = []
    for c in v:
        if c is None:
            out.append(math.nan)
        elif isinstance(c, bool) or not isinstance(c, (int, float)):
            raise TypeError(f"{key} holds a non-number")
        else:
            out.append(float(c))
    return tuple(out)


_BASE = frozenset(("event", "t", "seq"))
_PARTIAL_KEYS = frozenset(("event", "t", "seq", "eval_id", "worker", "value", "step"))
_FINISHED_KEYS = frozenset(("event", "t", "seq", "reason", "completed", "best_value", "best_x"))


def _build(kind: str, t: float, o: dict[str, Any]) -> Event:
    if kind == "proposed":
        return Proposed(t, _int(o, "eval_id"), _point(o, "x"), _str(o, "tag", ""))
    if kind == "started":
        return Started(t, _int(o, "eval_id"), _str(o, "worker"), _int(o, "attempt", 0),
                       bool(o.get("adopted", False)))
    if kind == "partial":
        info = {k: v for k, v in o.items() if k not in _PARTIAL_KEYS}
        return Partial(t, _int(o, "eval_id"), _str(o, "worker"), _num(o, "value"),
                       _int(o, "step", 0), info)
    if kind in TERMINAL_KINDS:
        eid, worker = _int(o, "eval_id"), _str(o, "worker", "")
        if kind == "completed":
            return Completed(t, eid, worker, _num(o, "value"))
        cls = Failed if kind == "failed" else Killed
        return cls(t, eid, worker, _str(o, "error", "") or kind)
    if kind == "lost":
        return Lost(t, _int(o, "eval_id"), _str(o, "worker", ""), _int(o, "attempt", 0),
                    _str(o, "reason", ""))
    if kind == "requeued":
        return Requeued(t, _int(o, "eval_id"), _int(o, "attempt", 0), _str(o, "reason", ""))
    if kind == "worker_joined":
        return WorkerJoined(t, _str(o, "worker"), _int(o, "slots", 1), _str(o, "key", ""))
    if kind == "worker_left":
        return WorkerLeft(t, _str(o, "worker"), _str(o, "reason", ""))
    if kind == "run_finished":
        best_x = o.get("best_x")
        extra = {k: v for k, v in o.items() if k not in _FINISHED_KEYS}
        return RunFinished(t, _str(o, "reason", ""), _int(o, "completed", 0),
                           _opt_num(o, "best_value"),
                           None if best_x is None else _point(o, "best_x"), extra)
    return RunStarted(t, {k: v for k, v in o.items() if k not in _BASE})


def parse_event(obj: Any, where: str = "") -> Event:
    """Validate one decoded log line and return its typed event.

    Raises :class:`LogError` naming ``where`` (e.g. ``run.jsonl:12``) and the problem.
    """
    if not isinstance(obj, dict):
        raise LogError(f"{where}: not an event object")
    kind = obj.get("event")
    if kind not in EVENT_KINDS:
        raise LogError(f"{where}: unknown event {kind!r}")
    try:
        t = _num(obj, "t") if obj.get("t") is not None else math.nan
        return _build(kind, t, obj)
    except (KeyError, TypeError) as exc:
        detail = f"missing {exc}" if isinstance(exc, KeyError) else str(exc)
        raise LogError(f"{where}: bad {kind} event: {detail}") from None
