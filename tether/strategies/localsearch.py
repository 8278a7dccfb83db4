"""A local optimizer (bounded Nelder-Mead) turned from a serial routine into the ask model.

The Nelder-Mead iteration is written as a generator: it *yields* the batch of points
it needs next (the d starting vertices, then one trial point at a time, or d points
for a shrink) and is *sent* their values. The strategy proposes the points of the
current batch, collects their results in whatever order they come back, and resumes
the generator when the batch is complete. Nothing blocks and no thread is involved;
while the batch waits for results the strategy proposes nothing, so alone it keeps
at most d workers busy, and beside others (:class:`~tether.strategies.compose.Merged`)
it leaves the remaining workers to them.

It starts from the best completed point of the run (or of the warm-start data, or the
centre of the box), and when the simplex has shrunk below ``tol`` it restarts from the
best point then known with half the previous step.
"""

from __future__ import annotations

import math
from collections.abc import Generator, Mapping, Sequence
from typing import Any

import numpy as np

from tether.records import COMPLETED, FAILED, KILLED, PROPOSED, Evaluate, Proposal, Record, RunView
from tether.space import Space
from tether.strategies.base import Options, Strategy

Batches = Generator[list[np.ndarray], list[float], None]


def nelder_mead(x0: np.ndarray, f0: float | None, step: float, tol: float) -> Batches:
    """Nelder-Mead in the unit cube (points are projected onto it), as a generator."""
    d = x0.size
    verts = [x0.copy()]
    for i in range(d):
        v = x0.copy()
        v[i] = v[i] + step if v[i] + step <= 1.0 else v[i] - step
        verts.append(v)
    # a known starting value saves one evaluation
    fvals = list((yield verts)) if f0 is None else [f0, *(yield verts[1:])]
    simplex, f = np.array(verts), np.array(fvals, dtype=float)
    while True:
        order = np.argsort(f, kind="stable")
        simplex, f = simplex[order], f[order]
        if np.max(np.abs(simplex[1:] - simplex[0])) < tol:
            return
        centroid = simplex[:-1].mean(axis=0)
        xr = np.clip(2 * centroid - simplex[-1], 0.0, 1.0)
        (fr,) = yield [xr]
        if fr < f[0]:
            xe = np.clip(3 * centroid - 2 * simplex[-1], 0.0, 1.0)
            (fe,) = yield [xe]
            simplex[-1], f[-1] = (xe, fe) if fe < fr else (xr, fr)
            continue
        if fr < f[-2]:
            simplex[-1], f[-1] = xr, fr
            continue
        outside = fr < f[-1]
        xc = centroid + 0.5 * ((xr if outside else simplex[-1]) - centroid)
        (fc,) = yield [xc]
        if fc < (fr if outside else f[-1]):
            simplex[-1], f[-1] = xc, fc
            continue
        shrunk = [simplex[0] + 0.5 * (v - simplex[0]) for v in simplex[1:]]
        simplex[1:] = shrunk
        f[1:] = yield shrunk


class LocalSearch(Strategy):
    """Bounded Nelder-Mead from the best point, driven by events (resumable)."""

    name = "local"

    def __init__(self, space: Space, *, step: float = 0.1, tol: float = 1e-4,
                 tag: str | None = None) -> None:
        self.space = space
        self.step0 = step
        self.step = step
        self.tol = tol
        self.tag = tag or self.name
        self._prior: Record | None = None
        self.gen: Batches | None = None
        self.batch: list[np.ndarray] = []
        self.n_sent = 0
        self.slot_of: dict[int, int] = {}  # eval id -> index in the current batch
        self.values: dict[int, float] = {}
        self.restarts = 0

    def warm_start(self, records: Sequence[Record]) -> None:
        done = [r for r in records if r.value is not None and self.space.contains(r.x)]
        if done:
            self._prior = min(done, key=lambda r: float(r.value or 0.0))

    def _begin(self, view: RunView) -> tuple[Batches, list[np.ndarray]]:
        best = view.best
        if self._prior is not None and (best is None or (self._prior.value or 0.0)
                                        < (best.value or 0.0)):
            best = self._prior
        if best is None or best.value is None:
            x0, f0 = np.full(self.space.dim, 0.5), None
        else:
            x0, f0 = self.space.to_unit(best.x), float(best.value)
        gen = nelder_mead(x0, f0, self.step, self.tol)
        return gen, next(gen)

    def propose(self, view: RunView) -> Proposal | None:
        if self.gen is None:
            _, batch = self._begin(view)  # a peek: the start is fixed when it is proposed
            return Evaluate.at(self.space.from_unit(batch[0]), self.tag)
        if self.n_sent < len(self.batch):
            return Evaluate.at(self.space.from_unit(self.batch[self.n_sent]), self.tag)
        return None  # waiting for this batch's results

    def on_event(self, kind: str, record: Record, view: RunView) -> None:
        if kind == PROPOSED and record.tag == self.tag:
            if self.gen is None:
                self.gen, self.batch = self._begin(view)
                self.n_sent, self.slot_of, self.values = 0, {}, {}
            self.slot_of[record.eval_id] = self.n_sent
            self.n_sent += 1
        elif kind in (COMPLETED, FAILED, KILLED) and record.eval_id in self.slot_of:
            value = record.value if kind == COMPLETED and record.value is not None else math.inf
            self.values[self.slot_of.pop(record.eval_id)] = float(value)
            if len(self.values) >= len(self.batch) and self.n_sent >= len(self.batch):
                self._advance()

    def _advance(self) -> None:
        assert self.gen is not None
        results = [self.values[i] for i in range(len(self.batch))]
        self.n_sent, self.values = 0, {}
        try:
            self.batch = self.gen.send(results)
        except StopIteration:
            self.gen, self.batch = None, []
            self.restarts += 1
            self.step = self.step / 2 if self.step / 2 >= 10 * self.tol else self.step0


def make_local(space: Space, budget: int, options: Mapping[str, Any]) -> Strategy:
    o = Options("local", options)
    s = LocalSearch(space, step=o.get("step", 0.1, float), tol=o.get("tol", 1e-4, float))
    o.done()
    return s
