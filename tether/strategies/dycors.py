"""DYCORS (Regis and Shoemaker, 2013) as in pySOT, made safe for any completion order.

The algorithm, in the unit cube:

1. evaluate a symmetric Latin hypercube design (``initial_points``, default 2(d+1));
2. fit a cubic RBF with a linear tail to the completed points;
3. make candidates by perturbing the best point: each coordinate is perturbed with a
   probability that falls with the evaluations spent, ``min(20/d, 1)(1 - ln n / ln B)``
   (at least ``1/d``), by a normal step of standard deviation ``sigma``;
4. score candidates by ``w * s + (1 - w) * (1 - dist)``, with the surrogate value ``s``
   and the distance ``dist`` to the nearest evaluated *or pending* point both rescaled
   to [0, 1], the weight ``w`` cycling through ``weights``; candidates closer than
   ``dtol`` to an evaluated or pending point are never proposed;
5. adapt ``sigma``: double it after ``succtol`` successes in a row, halve it after
   ``failtol`` failures in a row; when it reaches its minimum 0.2/64 (or after
   ``4 * failtol`` failures), restart from a fresh design.

Differences from pySOT, for asynchronous use:

- when the design is used up but fewer than d+1 results are back (or every candidate
  is too close to a known point), the strategy proposes a space-filling point (the
  farthest of random points from all known ones) instead of crashing or waiting; it
  never returns ``None`` while asked for work;
- ``polish`` (on by default): the greediest weight's turn, and the last two proposals
  of the budget, go to the surrogate's minimum within 2 sigma of the best point
  (bounded TNC on the RBF's analytic gradient) instead of the best candidate. With
  several evaluations in flight each model is used for several proposals, which slows
  the final refinement; this restores it (see docs/benchmarks.md).

All state is derived from ``on_event`` (proposals are recognised by their ``tag``), and
randomness is keyed by the number of records, so a replayed log rebuilds the strategy.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import scipy.optimize
from scipy.spatial.distance import cdist

from tether.errors import ConfigError
from tether.records import COMPLETED, FAILED, KILLED, PROPOSED, Evaluate, Proposal, Record, RunView
from tether.space import Space
from tether.strategies.base import Options, Strategy, rng_for
from tether.strategies.rbf import CubicRBF

_DESIGN_STREAM = 1 << 40  # rng counters for designs, far from the per-record counters
_ENDGAME = 2  # the last proposals of the budget all go to the surrogate's minimum


def symmetric_lhs(n: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    """A symmetric Latin hypercube of ``n`` points in [0, 1]^dim (corners included).

    Row ``i`` and row ``n-1-i`` are mirror images through the centre, which spreads the
    points and makes the linear tail of the RBF well determined. Redrawn until the
    design has full affine rank (symmetric designs can be degenerate).
    """
    if n < 2:
        return rng.random((max(n, 0), dim))
    half = n // 2
    for _ in range(100):
        levels = np.empty((n, dim), dtype=int)
        for j in range(dim):
            pick = rng.permutation(half)
            flip = rng.random(half) < 0.5
            pick = np.where(flip, n - 1 - pick, pick)
            levels[:half, j] = pick
            levels[n - 1 - np.arange(half), j] = n - 1 - pick
            if n % 2:
                levels[half, j] = half
        x = levels / (n - 1.0)
        if n < dim + 1 or np.linalg.matrix_rank(np.hstack([np.ones((n, 1)), x])) == dim + 1:
            return x
    return rng.random((n, dim))


class DYCORS(Strategy):
    """pySOT-style DYCORS with pending-point awareness. See the module docstring."""

    name = "dycors"

    def __init__(
        self,
        space: Space,
        budget: int,
        *,
        initial_points: int | None = None,
        seed: int | None = 0,
        num_candidates: int | None = None,
        weights: Sequence[float] = (0.3, 0.5, 0.8, 0.95),
        restarts: bool = True,
        dtol: float | None = None,
        tag: str | None = None,
        polish: bool = True,
    ) -> None:
        d = space.dim
        self.space = space
        self.budget = budget
        self.seed = seed
        self.n_initial = min(budget, initial_points if initial_points is not None else 2 * (d + 1))
        if self.n_initial < 0:
            raise ConfigError("[strategy] initial_points must be >= 0")
        self.num_candidates = num_candidates or min(100 * d, 5000)
        if not weights or any(not 0.0 <= w <= 1.0 for w in weights):
            raise ConfigError("[strategy] weights must be numbers in [0, 1]")
        self.weights = tuple(float(w) for w in weights)
        self.restarts = restarts
        self.polish = polish
        self.dtol = dtol if dtol is not None else 1e-3 * math.sqrt(d)
        self.tag = tag or self.name
        self.sigma_max, self.sigma_min = 0.2, 0.2 * 0.5**6
        self.succtol, self.failtol = 3, max(d, 4)
        self.maxfailtol = 4 * self.failtol
        self.model = CubicRBF()
        self._prior: list[tuple[np.ndarray, float]] = []
        self._avoid: list[np.ndarray] = []  # failed or killed points: do not retry blindly
        self.epoch = -1
        self._new_epoch(self.n_initial)

    # ------------------------------------------------------------------ state
    def _new_epoch(self, n_design: int) -> None:
        self.epoch += 1
        rng = rng_for(self.seed, _DESIGN_STREAM + self.epoch)
        self.design = symmetric_lhs(n_design, self.space.dim, rng)
        self.n_design_proposed = 0
        self.x_data: list[np.ndarray] = []
        self.f_data: list[float] = []
        if self.epoch == 0:
            for x, f in self._prior:
                self.x_data.append(x)
                self.f_data.append(f)
        self._fitted_n = -1
        self.sigma = self.sigma_max
        self.status = 0  # > 0: successes in a row, < 0: failures in a row
        self.failcount = 0
        self.fbest = math.inf
        self.last_adjust_id = -1  # only results proposed after an adjustment count
        self.n_adaptive = 0

    @property
    def design_tag(self) -> str:
        return f"{self.tag}:design"

    def warm_start(self, records: Sequence[Record]) -> None:
        for r in records:
            if r.value is None or not math.isfinite(r.value) or not self.space.contains(r.x):
                continue
            self._prior.append((self.space.to_unit(r.x), float(r.value)))
        if self.epoch == 0 and not self.x_data:
            # prior data replaces design points; what remains of the design still spreads
            left = max(0, self.n_initial - len(self._prior))
            self.epoch = -1
            self._new_epoch(left)

    def on_event(self, kind: str, record: Record, view: RunView) -> None:
        if kind == PROPOSED:
            if record.tag == self.design_tag:
                self.n_design_proposed += 1
            elif record.tag == self.tag:
                self.n_adaptive += 1
        elif kind == COMPLETED and record.value is not None:
            u = self.space.to_unit(record.x)
            self.x_data.append(u)
            self.f_data.append(float(record.value))
            if record.tag == self.tag and record.eval_id > self.last_adjust_id:
                self._adjust(float(record.value), view)
        elif kind in (FAILED, KILLED):
            self._avoid.append(self.space.to_unit(record.x))

    def _adjust(self, value: float, view: RunView) -> None:
        # as in pySOT, the reference is the best *adaptive* result of this epoch, so the
        # first adaptive result is a success: sigma stays large early, which explores
        ref = self.fbest
        if value < ref - 1e-3 * abs(ref) or math.isinf(ref):
            self.fbest = value
            self.status = max(1, self.status + 1)
            self.failcount = 0
        else:
            self.status = min(-1, self.status - 1)
            self.failcount += 1
        if self.status <= -self.failtol:
            self.status, self.sigma = 0, max(self.sigma / 2, self.sigma_min)
            self.last_adjust_id = max(view.records, default=-1)
        elif self.status >= self.succtol:
            self.status, self.sigma = 0, min(2 * self.sigma, self.sigma_max)
            self.last_adjust_id = max(view.records, default=-1)
        # without restarts the search goes on at the smallest step
        converged = self.sigma <= self.sigma_min or self.failcount >= self.maxfailtol
        if converged and self.restarts:
            self._new_epoch(self.n_initial)
            self.last_adjust_id = max(view.records, default=-1)

    # ------------------------------------------------------------------ proposing
    def propose(self, view: RunView) -> Proposal | None:
        rng = rng_for(self.seed, len(view.records))
        known = self._known_points(view)
        if self.n_design_proposed < len(self.design):
            u = self.design[self.n_design_proposed]
            if _min_dist(u[None, :], known)[0] < self.dtol:
                u = self._fill_point(known, rng)
            return Evaluate.at(self.space.from_unit(u), tag=self.design_tag)
        u = self._adaptive_point(view, known, rng)
        if u is None:
            return Evaluate.at(self.space.from_unit(self._fill_point(known, rng)),
                               tag=f"{self.tag}:fill")
        return Evaluate.at(self.space.from_unit(u), tag=self.tag)

    def _known_points(self, view: RunView) -> np.ndarray:
        pts = list(self.x_data) + self._avoid
        pts.extend(self.space.to_unit(r.x) for r in view.pending())
        return np.array(pts) if pts else np.zeros((0, self.space.dim))

    def _fit(self) -> bool:
        n = len(self.x_data)
        if n < CubicRBF.min_points(self.space.dim):
            return False
        if n != self._fitted_n:
            self.model.fit(np.array(self.x_data), np.array(self.f_data))
            self._fitted_n = n
        return True

    def perturb_probability(self, view: RunView) -> float:
        d = self.space.dim
        n = max(1.0, view.n_completed + view.n_in_flight - self.n_initial + 1.0)
        b = max(2.0, float(self.budget - self.n_initial))
        p = min(20.0 / d, 1.0) * (1.0 - math.log(n) / math.log(b))
        return max(p, min(1.0, 1.0 / d))

    def _candidates(self, view: RunView, rng: np.random.Generator) -> np.ndarray:
        d = self.space.dim
        best = self.x_data[int(np.argmin(self.f_data))]
        m = self.num_candidates
        mask = rng.random((m, d)) < self.perturb_probability(view)
        none = ~mask.any(axis=1)
        mask[none, rng.integers(0, d, size=int(none.sum()))] = True
        cand = best + mask * rng.normal(0.0, self.sigma, size=(m, d))
        cand = np.where(cand < 0.0, -cand, cand)  # reflect at the bounds, then clip
        cand = np.where(cand > 1.0, 2.0 - cand, cand)
        return np.clip(cand, 0.0, 1.0)

    def _adaptive_point(self, view: RunView, known: np.ndarray,
                        rng: np.random.Generator) -> np.ndarray | None:
        if not self._fit():
            return None
        cand = self._candidates(view, rng)
        dist = _min_dist(cand, known)
        ok = dist >= self.dtol
        if not ok.any():
            return None
        w = self.weights[self.n_adaptive % len(self.weights)]
        # the last proposals cannot inform later ones, so exploring with them is wasted
        endgame = view.remaining <= _ENDGAME
        if self.polish and (w == max(self.weights) or endgame):
            u = self._surrogate_minimum(known)
            if u is not None:
                return u
        cand, dist = cand[ok], dist[ok]
        s = _unit_rescale(self.model.predict(cand))
        merit = w * s + (1.0 - w) * (1.0 - _unit_rescale(dist))
        return np.asarray(cand[int(np.argmin(merit))])

    def _surrogate_minimum(self, known: np.ndarray) -> np.ndarray | None:
        """Minimise the surrogate within 2 sigma of the best point (the exploitation step).

        Asynchronous runs refine the best point more slowly than serial ones (several
        proposals share one model), so the greediest weight goes straight to the
        model's local minimum; ``None`` if it lands within ``dtol`` of a known point.
        """
        best = self.x_data[int(np.argmin(self.f_data))]
        lo = np.maximum(best - 2 * self.sigma, 0.0)
        hi = np.minimum(best + 2 * self.sigma, 1.0)
        # TNC: L-BFGS-B gives the same points but costs ~10x more per call in scipy 1.17
        res = scipy.optimize.minimize(self.model.value_and_gradient, best, jac=True,
                                      method="TNC", bounds=list(zip(lo, hi, strict=True)),
                                      options={"maxfun": 40})
        u = np.clip(np.asarray(res.x, dtype=float), 0.0, 1.0)
        if not np.all(np.isfinite(u)) or _min_dist(u[None, :], known)[0] < self.dtol:
            return None
        return u

    def _fill_point(self, known: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The farthest from every known point among random candidates (maximin)."""
        cand = rng.random((max(100, 20 * self.space.dim), self.space.dim))
        if known.shape[0] == 0:
            return np.asarray(cand[0])
        return np.asarray(cand[int(np.argmax(_min_dist(cand, known)))])


def _min_dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if b.shape[0] == 0:
        return np.full(a.shape[0], np.inf)
    return np.asarray(cdist(a, b).min(axis=1))


def _unit_rescale(v: np.ndarray) -> np.ndarray:
    lo, hi = float(np.min(v)), float(np.max(v))
    if hi - lo <= 0.0 or not math.isfinite(hi - lo):
        return np.ones_like(v)
    return (v - lo) / (hi - lo)


def make_dycors(space: Space, budget: int, options: Mapping[str, Any]) -> Strategy:
    o = Options("dycors", options)
    initial = o.get("initial_points", None, int)
    if initial is not None and initial < 0:
        raise ConfigError(f"[strategy] initial_points must be >= 0, got {initial}")
    num_cand = o.get("num_candidates", None, int)
    if num_cand is not None and num_cand < 1:
        raise ConfigError(f"[strategy] num_candidates must be >= 1, got {num_cand}")
    weights = o.get("weights", [0.3, 0.5, 0.8, 0.95], list)
    if not all(isinstance(w, (int, float)) and not isinstance(w, bool) for w in weights):
        raise ConfigError("[strategy] weights must be a list of numbers in [0, 1]")
    s = DYCORS(space, budget, initial_points=initial, seed=o.get("seed", 0, int),
               num_candidates=num_cand, weights=[float(w) for w in weights],
               restarts=o.get("restarts", True, bool), dtol=o.get("dtol", None, float),
               polish=o.get("polish", True, bool))
    o.done()
    return s
