"""Early stopping on partial results: kill evaluations that trail the median.

An objective that reports partial results (``report(v)`` in Python, ``tether:partial
<v>`` lines from a program) produces a trajectory per evaluation: step 0 is the first
partial, step 1 the second, and so on. After each partial, :class:`MedianStopping`
compares the evaluation's best value so far with the median of the best-so-far values
the *other* evaluations had at the same step (those killed before that step count as
worse than any value, so the yardstick is not just the survivors); if it is worse
(higher, as tether minimises) and at least ``min_others`` others are counted, the
evaluation is killed. Steps before ``min_steps`` are never judged (learning curves are noisy early).

The kill is proposed through :meth:`Strategy.interrupt`, so it happens at once even
when every worker is busy. Decisions depend only on the events seen, so a replayed log
makes the same ones.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tether.errors import ConfigError
from tether.records import KILLED, PARTIAL, Kill, Record, RunView, Terminate
from tether.strategies.base import Strategy
from tether.strategies.compose import Wrapper


class MedianStopping(Wrapper):
    """Wrap ``inner``; kill evaluations whose partial trajectory trails the median."""

    def __init__(self, inner: Strategy, *, min_steps: int = 1, min_others: int = 3,
                 margin: float = 0.0) -> None:
        super().__init__(inner)
        if min_steps < 0 or min_others < 1:
            raise ConfigError("median stopping needs min_steps >= 0 and min_others >= 1")
        self.min_steps = min_steps
        self.min_others = min_others
        self.margin = margin  # kill only when worse than the median by more than this
        self.curves: dict[int, list[float]] = {}  # eval id -> best-so-far per step
        self.to_kill: list[int] = []
        self.stopped: list[int] = []
        self.killed: set[int] = set()

    def interrupt(self, view: RunView) -> Kill | Terminate | None:
        while self.to_kill:
            eval_id = self.to_kill.pop(0)
            rec = view.records.get(eval_id)
            if rec is not None and rec.in_flight:
                return Kill(eval_id, "early stopping: partial result worse than the median")
        return self.inner.interrupt(view)

    def on_event(self, kind: str, record: Record, view: RunView) -> None:
        if kind == PARTIAL and record.partials:
            self._judge(record)
        elif kind == KILLED:
            self.killed.add(record.eval_id)
            if record.eval_id in self.to_kill:
                self.to_kill.remove(record.eval_id)
        self.inner.on_event(kind, record, view)

    def _judge(self, record: Record) -> None:
        curve = list(np.minimum.accumulate(np.asarray(record.partials, dtype=float)))
        self.curves[record.eval_id] = curve
        step = len(curve) - 1
        if step < self.min_steps or record.eval_id in self.stopped:
            return
        # evaluations killed before this step count as worse than any value: leaving
        # them out would compare against survivors only and kill nearly everything
        others = [c[step] if len(c) > step else np.inf for i, c in self.curves.items()
                  if i != record.eval_id and (len(c) > step or i in self.killed)]
        if len(others) < self.min_others:
            return
        if curve[step] > float(np.median(others)) + self.margin:
            self.stopped.append(record.eval_id)
            self.to_kill.append(record.eval_id)

    def warm_start(self, records: Sequence[Record]) -> None:
        for r in records:  # earlier learning curves are a fair yardstick too
            if r.partials:
                self.curves[-1 - len(self.curves)] = list(
                    np.minimum.accumulate(np.asarray(r.partials, dtype=float)))
        self.inner.warm_start(records)
