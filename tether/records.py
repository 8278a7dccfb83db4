"""Evaluation records, strategy proposals and the read-only run view.

The controller core owns the records; everything else (strategies, the log reader,
summaries) sees frozen snapshots. A record is replaced, never mutated, on each event.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields, make_dataclass
from enum import Enum
from typing import Any, TypeVar

import numpy as np

from tether.space import Space


class Status(str, Enum):
    """Where an evaluation is. ``PENDING`` and ``RUNNING`` count as in flight."""

    PENDING = "pending"  # proposed (or re-queued), waiting for a worker
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    KILLED = "killed"

    @property
    def finished(self) -> bool:
        # identity tests: an Enum's == and hash are slow, and this runs once per event
        return self is _COMPLETED or self is _FAILED or self is _KILLED


# The members as module globals: reading one off the Enum class costs about 100 ns (five
# times a global), and the tests that use them run several times per event, a million
# times on a large --resume.
_COMPLETED, _FAILED, _KILLED = Status.COMPLETED, Status.FAILED, Status.KILLED
_T = TypeVar("_T")


# Event kinds a strategy is told about, in the order they can happen to one record.
PROPOSED, STARTED, PARTIAL, COMPLETED, FAILED, KILLED, LOST, REQUEUED = (
    "proposed", "started", "partial", "completed", "failed", "killed", "lost", "requeued",
)
EVENT_KINDS = (PROPOSED, STARTED, PARTIAL, COMPLETED, FAILED, KILLED, LOST, REQUEUED)


@dataclass(frozen=True, slots=True)
class Record:
    """One evaluation: a point, its lifecycle and its outcome."""

    eval_id: int
    x: tuple[float, ...]
    status: Status = Status.PENDING
    attempt: int = 0  # how many times the point was re-queued after a lost worker
    failures: int = 0  # failed attempts so far (retry strategies read it)
    worker: str | None = None
    value: float | None = None
    error: str | None = None
    partials: tuple[float, ...] = ()
    tag: str = ""  # who proposed it (composite strategies); logged with `proposed`
    t_proposed: float = math.nan
    t_started: float = math.nan
    t_finished: float = math.nan

    @property
    def point(self) -> np.ndarray:
        return np.asarray(self.x, dtype=float)

    @property
    def in_flight(self) -> bool:
        s = self.status  # Status.finished inlined: this runs for every event
        return not (s is _COMPLETED or s is _FAILED or s is _KILLED)


def frozen_builder(cls: type[_T]) -> Callable[..., _T]:
    """A positional constructor for the frozen slotted dataclass ``cls``, four times cheaper.

    A frozen dataclass's ``__init__`` sets each field through ``object.__setattr__``:
    1.5 µs for a 13-field Record, built three times per evaluation. The builder fills an
    unfrozen twin with the same fields (so the same slot layout) and then makes it a
    ``cls``: 0.4 µs, and the result is an ordinary frozen instance (equal, immutable).
    """
    twin = make_dataclass(f"_{cls.__name__}Builder",
                          [(f.name, f.type, f) for f in fields(cls)],  # type: ignore[arg-type]
                          slots=True)

    def build(*args: Any) -> _T:
        obj = twin(*args)
        obj.__class__ = cls
        return obj

    return build


#: ``Record(...)`` for the controller's hot path (see :func:`frozen_builder`)
build_record: Callable[..., Record] = frozen_builder(Record)


@dataclass(frozen=True, slots=True)
class Evaluate:
    """Ask the controller to evaluate ``x`` (space coordinates)."""

    x: tuple[float, ...]
    tag: str = ""

    @classmethod
    def at(cls, x: np.ndarray | list[float] | tuple[float, ...], tag: str = "") -> Evaluate:
        # tolist() gives Python floats in one C call (a generator of float() per
        # coordinate cost more than the rest of a random strategy's ask)
        return cls(tuple(np.asarray(x, dtype=float).ravel().tolist()), tag)


@dataclass(frozen=True, slots=True)
class Kill:
    """Ask the controller to kill a running or pending evaluation."""

    eval_id: int
    reason: str = "killed by strategy"


@dataclass(frozen=True, slots=True)
class Terminate:
    """Ask the controller to end the run now (in-flight evaluations are killed)."""

    reason: str = "terminated by strategy"


Proposal = Evaluate | Kill | Terminate


@dataclass
class RunView:
    """What a strategy may read about the run. The controller keeps it current.

    ``records`` holds every evaluation by id (frozen snapshots); the counters are
    maintained incrementally so reading them is O(1).
    """

    space: Space
    budget: int
    records: dict[int, Record] = field(default_factory=dict)
    n_workers: int = 0  # workers connected (slots, for multi-slot workers)
    free_slots: int = 0
    n_completed: int = 0
    now: float = 0.0
    _in_flight: dict[int, Record] = field(default_factory=dict)
    _best: Record | None = None

    # --- read side -------------------------------------------------------------
    def pending(self) -> list[Record]:
        """Evaluations in flight (waiting for a worker or running), by eval id."""
        return list(self._in_flight.values())

    @property
    def n_in_flight(self) -> int:
        return len(self._in_flight)

    def completed(self) -> Iterator[Record]:
        return (r for r in self.records.values() if r.status is Status.COMPLETED)

    @property
    def best(self) -> Record | None:
        return self._best

    @property
    def remaining(self) -> int:
        """Evaluations the budget still needs beyond those in flight."""
        return self.budget - self.n_completed - len(self._in_flight)

    # --- write side (controller only) --------------------------------------------
    def put(self, rec: Record) -> None:
        old = self.records.get(rec.eval_id)
        self.records[rec.eval_id] = rec
        if rec.in_flight:
            self._in_flight[rec.eval_id] = rec
        else:
            self._in_flight.pop(rec.eval_id, None)
        if rec.status is _COMPLETED and (old is None or old.status is not _COMPLETED):
            self.n_completed += 1
            best = self._best
            if best is None or best.value is None or (rec.value is not None and rec.value < best.value):
                self._best = rec

