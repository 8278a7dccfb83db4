"""One row per evaluation, folded from the typed events of a log, in one streaming pass.

The ``tether log`` tools need less than the controller's :class:`RunState` (no queue, no
strategy view) and must stay cheap on million-event logs, so they fold events into these
light rows. Memory grows with evaluations, not events: partial values and the per-attempt
segments of the worker timeline are kept only when asked for (``plot``).
"""

from __future__ import annotations

import gc
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from tether.events import (
    Completed,
    Event,
    Failed,
    Killed,
    Lost,
    Partial,
    Proposed,
    Requeued,
    RunFinished,
    RunStarted,
    Started,
    WorkerJoined,
    WorkerLeft,
    parse_event,
)

TERMINAL = ("completed", "failed", "killed")


class EvalRow:
    """What is known about one evaluation so far (status ``pending``/``running`` until it ends)."""

    __slots__ = ("attempts", "error", "eval_id", "n_partials", "partials", "status", "t_finished",
                 "t_proposed", "t_started", "tag", "value", "worker", "x")

    def __init__(self, eval_id: int, x: list[float], t_proposed: float | None = None,
                 tag: str = "") -> None:
        self.eval_id = eval_id
        self.x = x
        self.tag = tag
        self.status = "pending"
        self.value: float | None = None
        self.worker: str | None = None
        self.attempts = 0  # dispatches so far (the last ``started`` attempt + 1)
        self.error: str | None = None
        self.partials: list[float] = []  # filled only when partials are kept
        self.n_partials = 0
        self.t_proposed = t_proposed
        self.t_started: float | None = None  # start of the attempt that ended it
        self.t_finished: float | None = None

    @property
    def duration(self) -> float | None:
        if self.t_finished is None or self.t_started is None:
            return None
        return self.t_finished - self.t_started

    def values(self) -> tuple[Any, ...]:
        """The export row's values, in the order of ``export_columns``."""
        err = self.error.split("\n", 1)[0] if self.error else None
        return (self.eval_id, *self.x, self.status, self.value, self.worker, self.t_started,
                self.t_finished, self.duration, self.attempts, self.n_partials, err,
                self.tag or None)

    def as_dict(self, names: list[str]) -> dict[str, Any]:
        """The export row: id, coordinates by name, outcome, who, when, how often."""
        return dict(zip(export_columns(names), self.values()))


FIXED_COLUMNS = ("eval_id", "status", "value", "worker", "start", "end", "duration",
                 "attempts", "partials", "error", "tag")


def column_names(names: list[str]) -> list[str]:
    """Coordinate columns by variable name; ``x_NAME`` if a name clashes with a fixed column."""
    return [f"x_{n}" if n in FIXED_COLUMNS else n for n in names]


def export_columns(names: list[str]) -> list[str]:
    return ["eval_id", *column_names(names), *FIXED_COLUMNS[1:]]


@dataclass
class Segment:
    """One attempt on one worker, for the timeline: from ``started`` to how it ended."""

    worker: str
    t0: float
    t1: float | None
    outcome: str  # completed | failed | killed | lost | superseded | running
    eval_id: int
    attempt: int


@dataclass
class WorkerStats:
    busy: float = 0.0  # seconds spent on attempts
    connected: float = 0.0  # seconds between joining and leaving (or the end of the log)
    slots: int = 1
    attempts: int = 0
    since: float | None = None  # joined and not yet left: when
    spans: list[tuple[float, float]] = field(default_factory=list)  # kept for plots


@dataclass
class LogTable:
    names: list[str]
    rows: dict[int, EvalRow]
    counts: Counter[str] = field(default_factory=Counter)  # events per kind
    workers: dict[str, WorkerStats] = field(default_factory=dict)
    segments: list[Segment] = field(default_factory=list)
    partial_steps: dict[int, list[tuple[int, float]]] = field(default_factory=dict)
    run: dict[str, Any] = field(default_factory=dict)  # the first run_started's fields
    finished: RunFinished | None = None
    resumes: int = 0
    t_first: float | None = None
    t_last: float | None = None

    def best(self) -> EvalRow | None:
        best: EvalRow | None = None
        for r in self.rows.values():
            if r.status == "completed" and r.value is not None and (
                    best is None or r.value < (best.value or 0.0)):
                best = r
        return best

    @property
    def wall_time(self) -> float:
        if self.t_first is None or self.t_last is None:
            return 0.0
        return self.t_last - self.t_first

    @property
    def strategy(self) -> str:
        s = self.run.get("strategy")
        return str(s.get("name", "")) if isinstance(s, dict) else str(s or "")


class Tabulator:
    """Folds events into a :class:`LogTable`; feed it with :meth:`add`, then :meth:`close`."""

    def __init__(self, keep_partials: bool = False, keep_segments: bool = False) -> None:
        self.table = LogTable([], {})
        self.keep_partials = keep_partials
        self.keep_segments = keep_segments
        self._open: dict[int, tuple[str, float, int]] = {}  # eval_id -> (worker, start, attempt)
        self._closed = False
        self._handlers: dict[str, Callable[[Any], None]] = {
            "proposed": self._proposed, "partial": self._partial, "started": self._started,
            "completed": self._terminal, "failed": self._terminal, "killed": self._terminal,
            "lost": self._lost, "requeued": self._lost}

    def add_all(self, events: Iterable[Event]) -> LogTable:
        """Fold every event, then :meth:`close`: :meth:`add` inlined, with locals (it is
        the inner loop of a summary of a million-event log)."""
        was_enabled = gc.isenabled()
        gc.disable()  # see _fold
        try:
            self._fold(events)
        finally:
            if was_enabled:
                gc.enable()
        return self.close()

    def _fold(self, events: Iterable[Event]) -> None:
        # The cyclic garbage collector is off while folding: the rows are long-lived and
        # hold no cycles, yet every few hundred allocations a collection would walk all of
        # them again (a quarter of the time of a summary of a million-event log).
        tb = self.table
        counts = tb.counts
        handlers = self._handlers
        other = self._other
        first, last = tb.t_first, tb.t_last
        for ev in events:
            kind = ev.kind
            counts[kind] = counts.get(kind, 0) + 1
            t = ev.t
            prev = last
            if t == t:  # not NaN
                if first is None:
                    first = t
                last = t
            handler = handlers.get(kind)
            if handler is not None:
                handler(ev)
            else:
                tb.t_first, tb.t_last = first, last
                other(ev, prev)
        tb.t_first, tb.t_last = first, last

    def add(self, ev: Event) -> None:
        """Fold one event (a follower's way; :meth:`add_all` for a whole log)."""
        tb = self.table
        kind = ev.kind
        tb.counts[kind] = tb.counts.get(kind, 0) + 1
        prev = tb.t_last
        if ev.t == ev.t:  # not NaN
            if prev is None:
                tb.t_first = ev.t
            tb.t_last = ev.t
        handler = self._handlers.get(kind)
        if handler is not None:
            handler(ev)
        else:
            self._other(ev, prev)

    def _proposed(self, ev: Proposed) -> None:
        self.table.rows[ev.eval_id] = EvalRow(ev.eval_id, list(ev.x), ev.t, ev.tag)

    def _partial(self, ev: Partial) -> None:
        row = self.table.rows.get(ev.eval_id)
        if row is not None:
            row.n_partials += 1
            if self.keep_partials:
                row.partials.append(ev.value)
                self.table.partial_steps.setdefault(ev.eval_id, []).append((ev.step, ev.value))

    def _started(self, ev: Started) -> None:
        row = self.table.rows.get(ev.eval_id)
        if row is None:
            return
        if ev.eval_id in self._open:
            self._end_attempt(ev.eval_id, ev.t, "superseded")  # an adopted re-queue
        row.status, row.worker, row.t_started = "running", ev.worker, ev.t
        row.attempts = ev.attempt + 1
        self._open[ev.eval_id] = (ev.worker, ev.t, ev.attempt)

    def _terminal(self, ev: Completed | Failed | Killed) -> None:
        row = self.table.rows.get(ev.eval_id)
        if row is None:
            return
        row.status, row.t_finished = ev.kind, ev.t
        if ev.worker:
            row.worker = ev.worker
        if isinstance(ev, Completed):
            row.value = ev.value if ev.value == ev.value else None
        else:
            row.error = ev.error
        if ev.eval_id in self._open:
            self._end_attempt(ev.eval_id, ev.t, ev.kind)

    def _lost(self, ev: Lost | Requeued) -> None:
        row = self.table.rows.get(ev.eval_id)
        if row is None:
            return
        self._end_attempt(ev.eval_id, ev.t, "lost")  # a re-queue may come without a lost event
        if isinstance(ev, Requeued):
            row.status = "pending"

    def _end_attempt(self, eval_id: int, t: float, outcome: str) -> None:
        attempt = self._open.pop(eval_id, None)
        if attempt is None:
            return
        worker, t0, n = attempt
        w = self.table.workers.get(worker) or self._worker(worker)
        w.busy += max(0.0, t - t0)
        w.attempts += 1
        if self.keep_segments:
            self.table.segments.append(Segment(worker, t0, t, outcome, eval_id, n))

    def _worker(self, name: str) -> WorkerStats:
        w = self.table.workers.get(name)
        if w is None:
            w = self.table.workers[name] = WorkerStats()
        return w

    def _other(self, ev: Event, prev: float | None) -> None:
        tb = self.table
        if isinstance(ev, WorkerJoined):
            w = self._worker(ev.worker)
            w.slots = max(1, ev.slots)
            if w.since is None:
                w.since = ev.t
        elif isinstance(ev, WorkerLeft):
            self._disconnect(ev.worker, ev.t)
        elif isinstance(ev, RunStarted):
            if not tb.run:
                tb.run = ev.data
                tb.names = [str(s.get("name")) for s in ev.data.get("space", [])
                            if isinstance(s, dict)]
            elif ev.data.get("resumed"):
                tb.resumes += 1
                # the old controller's connections died with it; workers rejoin
                for name in list(tb.workers):
                    self._disconnect(name, ev.t if prev is None else prev)
        elif isinstance(ev, RunFinished):
            tb.finished = ev

    def _disconnect(self, name: str, t: float) -> None:
        w = self.table.workers.get(name)
        if w is None or w.since is None or t != t:
            return
        w.connected += max(0.0, t - w.since)
        if self.keep_segments:
            w.spans.append((w.since, t))
        w.since = None

    def close(self) -> LogTable:
        """Account for what is still open at the end of the log (a run still going)."""
        if self._closed:
            return self.table
        self._closed = True
        tb = self.table
        end = tb.t_last
        if end is not None:
            for eval_id, (worker, t0, n) in self._open.items():
                w = self._worker(worker)
                w.busy += max(0.0, end - t0)
                w.attempts += 1
                if self.keep_segments:
                    tb.segments.append(Segment(worker, t0, end, "running", eval_id, n))
            for name in list(tb.workers):
                self._disconnect(name, end)
        if not tb.names and tb.rows:
            tb.names = [f"x{i}" for i in range(len(next(iter(tb.rows.values())).x))]
        return tb


def tabulate(events: Iterable[Event | dict[str, Any]], keep_partials: bool = True,
             keep_segments: bool = False) -> LogTable:
    """Fold events (typed, or decoded log lines that go through ``parse_event``) into rows."""
    tab = Tabulator(keep_partials=keep_partials, keep_segments=keep_segments)
    for i, ev in enumerate(events):
        tab.add(parse_event(ev, f"event {i}") if isinstance(ev, dict) else ev)
    return tab.close()
