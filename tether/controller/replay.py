"""Rebuild a controller core (records and strategy state) from a journal's events.

The strategy is told the same event stream it saw before the crash, in the same order,
which is how resumable strategies rebuild their state (see strategies/base.py).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from tether.errors import LogError
from tether.records import Record, Status

if TYPE_CHECKING:
    from tether.controller.core import ControllerCore

_TERMINAL = {"completed": Status.COMPLETED, "failed": Status.FAILED, "killed": Status.KILLED}


def replay_into(core: ControllerCore, events: Iterable[dict[str, Any]]) -> int:
    """Apply ``events`` to a fresh core without logging anything; return how many."""
    n = 0
    for ev in events:
        n += 1
        kind = ev.get("event")
        if kind == "run_started":
            if math.isnan(core.t0):  # a resumed run keeps the clock of its first start
                core.t0 = float(ev.get("t", math.nan))
            continue
        if "eval_id" not in ev:
            continue  # worker_joined, worker_left, run_finished: workers must rejoin anyway
        try:
            _apply(core, str(kind), ev)
        except (KeyError, TypeError, ValueError) as exc:
            raise LogError(f"cannot replay event seq={ev.get('seq')}: {exc!r}") from None
    if math.isnan(core.t0):
        raise LogError("log has no run_started event")
    return n


def _apply(core: ControllerCore, kind: str, ev: dict[str, Any]) -> None:
    view = core.view
    eid = int(ev["eval_id"])
    t = float(ev.get("t", math.nan))
    if kind == "proposed":
        rec = Record(eid, tuple(float(v) for v in ev["x"]), tag=str(ev.get("tag", "")),
                     t_proposed=t)
        view.put(rec)
        core._next_id = max(core._next_id, eid + 1)
    else:
        rec = view.records[eid]
        if kind == "started":
            rec = replace(rec, status=Status.RUNNING, worker=ev.get("worker"),
                          attempt=int(ev.get("attempt", rec.attempt)), t_started=t)
        elif kind == "partial":
            rec = replace(rec, partials=(*rec.partials, float(ev["value"])))
        elif kind == "requeued":
            rec = replace(rec, status=Status.PENDING, worker=None,
                          attempt=int(ev.get("attempt", rec.attempt)))
        elif kind in _TERMINAL:
            best_before = view.best
            value = ev.get("value")
            rec = replace(rec, status=_TERMINAL[kind], value=None if value is None else float(value),
                          error=ev.get("error"), worker=ev.get("worker", rec.worker),
                          failures=rec.failures + (kind == "failed"), t_finished=t)
            view.put(rec)
            if view.best is not best_before:
                core._last_improvement = view.n_completed
        elif kind != "lost":
            return
        view.put(rec)
    core.strategy.on_event(kind, view.records[eid], view)
