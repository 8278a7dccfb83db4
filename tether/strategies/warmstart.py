"""Warm starts: a previous run's completed evaluations become prior data for a strategy.

``tether controller --warm-start OLD.jsonl`` calls :func:`apply_warm_start` before the
run starts (and again before the log is replayed on ``--resume``, since prior data is
not in the new log). The old log's ``run_started`` event names its variables; they are
matched to the new space by name, in any order. Points outside the new bounds are left
out, as are failed and killed evaluations. Each prior result reaches the strategy as a
completed :class:`~tether.records.Record` through :meth:`Strategy.warm_start`; prior
results do not count towards the new budget.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tether.errors import ConfigError, LogError
from tether.events import Completed, Event, Partial, Proposed, RunStarted, parse_event
from tether.log.journal import iter_events
from tether.records import Record, Status
from tether.space import Space
from tether.strategies.base import Strategy

WARM_TAG = "warm-start"


def prior_records(events: Iterable[Event | dict[str, Any]], space: Space) -> list[Record]:
    """Completed evaluations of a log's events, mapped onto ``space`` (see module doc)."""
    order: list[int] | None = None
    points: dict[int, tuple[float, ...]] = {}
    partials: dict[int, list[float]] = {}
    out: list[Record] = []
    for n, raw in enumerate(events):
        ev = parse_event(raw, f"event {n}") if isinstance(raw, dict) else raw
        if isinstance(ev, RunStarted):
            order = _column_order(ev.data.get("space"), space)
        elif isinstance(ev, Proposed):
            points[ev.eval_id] = ev.x
        elif isinstance(ev, Partial):
            partials.setdefault(ev.eval_id, []).append(ev.value)
        elif isinstance(ev, Completed) and math.isfinite(ev.value):
            raw_x = points.get(ev.eval_id)
            x = None if raw_x is None else _reorder(list(raw_x), order, space)
            if x is not None and space.contains(x):
                out.append(Record(ev.eval_id, x, Status.COMPLETED, value=ev.value, tag=WARM_TAG,
                                  partials=tuple(partials.get(ev.eval_id, ())),
                                  t_finished=ev.t))
    return out


def _column_order(items: Any, space: Space) -> list[int] | None:
    """Index in the old point of each new variable; None: same order assumed."""
    if not isinstance(items, list):
        return None
    names = [str(i.get("name")) for i in items if isinstance(i, dict)]
    if sorted(names) == sorted(space.names):
        return [names.index(n) for n in space.names]
    raise ConfigError(f"warm start: the old run's variables {names} do not match this "
                      f"run's {list(space.names)}")


def _reorder(raw: list[float], order: list[int] | None, space: Space) -> tuple[float, ...] | None:
    if order is None:
        return tuple(raw) if len(raw) == space.dim else None
    if len(raw) <= max(order):
        return None
    return tuple(raw[i] for i in order)


def load_prior(path: str | Path, space: Space) -> list[Record]:
    """Read a JSONL log (a torn last line is ignored) and return its prior records."""
    try:
        return prior_records(iter_events(path), space)
    except LogError as exc:
        raise ConfigError(f"warm start: {exc}") from None


def apply_warm_start(strategy: Strategy, path: str | Path, space: Space) -> int:
    """Tell ``strategy`` the completed evaluations of the log at ``path``; return how many."""
    records = load_prior(path, space)
    strategy.warm_start(records)
    return len(records)
