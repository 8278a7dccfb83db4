"""The ``async-bo`` and ``batch-bo`` strategies.

Both read everything they need from the :class:`~tether.records.RunView` at each ask:
the GP data are the completed records, the penalized ("busy") points are the records in
flight plus the failed ones. Nothing a replay must rebuild is kept between asks (the
fitted hyperparameters are only a warm start, and a resumed run refits from scratch on
its first ask), which is what ``--resume`` needs. Pending points are identified by
evaluation id through ``view.pending()``, never by comparing coordinates.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import ndtri
from scipy.stats import qmc, rankdata

from tether.records import Evaluate, Proposal, Record, RunView, Status
from tether.space import Space
from tether.strategies.base import Strategy, rng_for
from tether.strategies.bo.acquisition import AcqFn, PenalizedLogEI, lipschitz, maximize, repeats
from tether.strategies.bo.model import DEFAULT_NOISE, GPModel, Posterior

MIN_DATA = 2  # completed values needed before the GP takes over from the design
# rng_for counters at or above this draw the design; below it, per-ask candidates.
DESIGN_STREAM = 1 << 30
# L-BFGS-B iterations of a warm-started refit. One new result moves the optimum little:
# at 200 points in 6-D a converged refit took 10-15 loss calls (about 55 ms) to gain
# 0.001-0.01 nats; three iterations (about 6 calls) get within 0.004 nats of it, and the
# next refit starts from there, so the hyperparameters still track the optimum.
WARM_ITERS = 3
# Line-search steps of a warm refit (scipy's default is 20). Most take 1-2; the rare one
# that does not converge in a few ran all 20 (34 loss calls, 70 ms at 100 points in 2-D)
# and the next refit continues from the best point anyway (Ninth pass).
WARM_LINE_SEARCH = 5
# Past 2 * REFIT_GROWTH observations a warm refit waits until the data have grown by
# 1/REFIT_GROWTH (every 2 results at 100, every 4 at 200): one point among hundreds
# barely moves the hyperparameters, and the refit is half of such an ask. Below that
# (every run of 100 evaluations or fewer) nothing changes.
REFIT_GROWTH = 50
# Polish phase: log-EI is maximized in a box around the incumbent whose half-width is
# this many fitted lengthscales per axis (clipped to [POLISH_MIN, 0.5] of the cube), so
# the last asks refine the incumbent's basin instead of exploring the rest of the cube.
# The default of the ``polish_radius`` option.
POLISH_RADIUS = 0.5
POLISH_MIN = 0.02
# An avoided box (a staggered island keeps out of an earlier island's basin) costs this
# much log-EI inside: far below any log-EI the maximizer sees, so inside wins only if
# every candidate is inside.
AVOID_PENALTY = 1e3


@dataclass(frozen=True)
class BOSettings:
    """Options of the ``[strategy]`` table (see docs/bo.md)."""

    initial_points: int
    seed: int | None = 0
    kernel: str = "matern52"  # matern52 | rbf
    acquisition: str = "logei"  # logei | ei (plain log of EI, for comparison)
    penalizer: str = "hard"  # hard | soft | believer
    noise: float | None = DEFAULT_NOISE  # fixed noise variance (standardized units); None: fitted
    refit_every: int = 1  # new results between hyperparameter fits
    restarts: int = 2  # random L-BFGS-B restarts at full refits
    candidates: int = 0  # quasi-random candidates per ask (rounded up to 2^k); 0: auto
    n_starts: int = 6  # candidates polished by L-BFGS-B
    warp: str = "none"  # none | copula: GP on normal scores of the ranks
    exploit: int = 1  # the last asks of the budget minimize the posterior mean instead
    ask_ahead: int = 0  # async-bo: points prepared while every worker is busy
    explore: str = "none"  # async-bo: none | dycors (the first explore_evals points)
    explore_evals: int = 0
    islands: int = 1  # async-bo: independent searches (islands.py)
    handover: float = 0.8  # async-bo: share of the budget after which the best island asks
    polish: float = 0.35  # async-bo: share of the budget at the end spent around the incumbent
    stagger: float = 0.0  # async-bo islands: share of the budget before island i > 0 starts
    yield_logei: float = -math.inf  # async-bo islands: an island converged below it yields
    polish_radius: float = POLISH_RADIUS  # polish box half-width, in fitted lengthscales
    handover_wait: bool = False  # async-bo islands: the hand-over waits for climbing islands


class BayesOpt(Strategy):
    """Shared machinery: initial design, model upkeep, one penalized acquisition step."""

    name = "bo"

    def __init__(self, space: Space, settings: BOSettings) -> None:
        self.space = space
        self.settings = settings
        self.dim = space.dim
        self.model = GPModel(self.dim, kernel=settings.kernel, noise=settings.noise)
        # Scrambled Sobol, 2^m points so the sequence keeps its balance properties.
        m = max(6, math.ceil(math.log2(max(2, settings.initial_points))) + 1)
        sobol = qmc.Sobol(self.dim, scramble=True, seed=rng_for(settings.seed, DESIGN_STREAM))
        self.design = sobol.random_base2(m)
        want = settings.candidates or min(1024, 256 + 128 * self.dim)
        self._cand_m = max(4, math.ceil(math.log2(want)))  # Sobol wants a power of two
        self._n_data = -1  # completed count the model was last updated for
        self._n_fitted = 0  # completed count at the last hyperparameter fit
        self._n_full = 0  # completed count at the last multi-start fit
        self._post: Posterior | None = None
        self._prior_x = np.empty((0, self.dim))  # warm-start data (unit cube) and values
        self._prior_y = np.empty(0)
        # boxes (centre, half-widths; unit cube) this search keeps out of: a staggered
        # island's view of the earlier islands' basins (islands.py), set before each ask
        self.avoid: list[tuple[np.ndarray, np.ndarray]] = []
        # the penalized log-EI (standardized units) of the last log-EI ask; +inf after
        # any other ask. Islands read it to tell a converged search (yield_logei)
        self.last_logei = math.inf

    def warm_start(self, records: Sequence[Record]) -> None:
        """Prior results join the GP's data and replace as many design points."""
        keep = [r for r in records if r.value is not None and math.isfinite(r.value)
                and self.space.contains(r.x)]
        if keep:
            x = self.space.to_unit(np.array([r.x for r in keep], dtype=float))
            self._prior_x = np.vstack([self._prior_x, x])
            self._prior_y = np.concatenate([self._prior_y, [float(r.value or 0.0) for r in keep]])

    # ---------------------------------------------------------------- pieces
    @property
    def n_design(self) -> int:
        """Design points this run proposes: ``initial_points`` less the prior results."""
        return max(0, self.settings.initial_points - len(self._prior_y))

    def design_point(self, k: int) -> np.ndarray:
        """k-th initial-design point in the unit cube (beyond the table: seeded random)."""
        if k < len(self.design):
            return self.design[k]
        return rng_for(self.settings.seed, DESIGN_STREAM + 1 + k).random(self.dim)

    def in_design_phase(self, view: RunView) -> bool:
        n_done = sum(1 for _ in _completed_values(view)) + len(self._prior_y)
        return len(view.records) < self.n_design or n_done < MIN_DATA

    def update_model(self, view: RunView) -> None:
        """Give the GP the completed data; refit hyperparameters per the refit policy.

        Policy: a warm-started L-BFGS-B fit once ``refit_every`` new results, and at
        least 1/REFIT_GROWTH of the data, have arrived since the last fit; a
        multi-start fit (the warm start plus ``restarts`` random starts) on the first
        fit and whenever the data have doubled since the last multi-start fit, to
        escape a poor local optimum found on little data.
        Between fits only the data change (a new Cholesky factor, hyperparameters kept).
        """
        x, y = self.data(view)
        n = len(y)
        if n == self._n_data:
            return
        self._n_data = n
        self.model.set_data(x, warp(y, self.settings.warp))
        s = self.settings
        if self._n_full == 0 or n >= 2 * self._n_full:
            self.model.fit(restarts=s.restarts, rng=rng_for(s.seed, n))
            self._n_full = self._n_fitted = n
        elif n - self._n_fitted >= max(s.refit_every, n // REFIT_GROWTH):
            self.model.fit(maxiter=WARM_ITERS, max_line_search=WARM_LINE_SEARCH)
            self._n_fitted = n
        self._post = self.model.posterior()

    def data(self, view: RunView) -> tuple[np.ndarray, np.ndarray]:
        """Prior and completed points (unit cube) and values; failed ones never enter."""
        pts, vals = [], []
        for rec in _completed_values(view):
            pts.append(rec.x)
            vals.append(rec.value)
        x = self.space.to_unit(np.array(pts, dtype=float).reshape(-1, self.dim))
        return (np.vstack([self._prior_x, x]),
                np.concatenate([self._prior_y, np.array(vals, dtype=float)]))

    def busy_points(self, view: RunView) -> np.ndarray:
        """In-flight points (by eval id, from the view) plus failed ones, unit cube."""
        return np.vstack([self.pending_points(view), self.failed_points(view)])

    def pending_points(self, view: RunView) -> np.ndarray:
        return self._unit([r.x for r in view.pending()])

    def failed_points(self, view: RunView) -> np.ndarray:
        return self._unit([r.x for r in view.records.values() if r.status is Status.FAILED])

    def _unit(self, pts: list[tuple[float, ...]]) -> np.ndarray:
        return self.space.to_unit(np.array(pts, dtype=float).reshape(-1, self.dim))

    def next_point(self, view: RunView, extra: list[np.ndarray] | None = None,
                   local: bool = False) -> np.ndarray:
        """Maximize penalized log-EI; ``extra`` are further busy points (the batch so far).

        ``local``: only in a box around the best point (the polish phase)."""
        self.update_model(view)
        post = self._post
        assert post is not None
        s = self.settings
        pend, failed = self.pending_points(view), self.failed_points(view)
        more = [np.array(extra)] if extra else []
        busy = np.vstack([pend, failed, *more])  # busy_points(view), then the batch so far
        rng = rng_for(s.seed, len(view.records) + len(extra or ()))
        sobol = qmc.Sobol(self.dim, scramble=True, seed=rng).random_base2(self._cand_m)
        x_data, y_std = post.x, self.model.targets()
        best = float(y_std.min())
        # the gradient at every data point costs O(n^2 d) memory: a sample past 256
        some = x_data if len(x_data) <= 256 else x_data[rng.choice(len(x_data), 256, False)]
        lip = lipschitz(post, np.vstack([sobol[:200], some]))
        acq: AcqFn
        if s.penalizer == "believer":
            acq = self._believer(post, best, np.vstack([pend, *more]), failed, lip)
        else:
            acq = PenalizedLogEI(post, best, busy, lip, penalizer=s.penalizer,
                                 stable=s.acquisition == "logei")
        if self.avoid:
            acq = avoiding(acq, self.avoid)
        # Around the best observed points, at a scale set by the fitted lengthscales,
        # is where EI's sharp local optima sit once the model has converged.
        top = x_data[np.argsort(y_std)[:3]]
        scale = 0.05 * np.minimum(post.hyp.lengthscales, 1.0)
        lo, hi = np.zeros(self.dim), np.ones(self.dim)
        if local:
            lo, hi = self._box(top[0], s.polish_radius)
            sobol = lo + sobol * (hi - lo)
            top = np.clip(top, lo, hi)
        noise = rng.standard_normal((10 * len(top), self.dim)) * scale
        near = np.clip(np.repeat(top, 10, 0) + noise, lo, hi)
        x, self.last_logei = maximize(acq, np.vstack([sobol, top, near]), n_starts=s.n_starts,
                                      box=(lo, hi) if local else None,
                                      known=np.vstack([x_data, busy]))
        return x

    def _believer(self, post: Posterior, best: float, pend: np.ndarray, failed: np.ndarray,
                  lip: float) -> PenalizedLogEI:
        """log-EI of the GP that believes every in-flight point returns its posterior mean
        (the kriging believer): same hyperparameters, the pending points as data. The
        mean does not move, the variance collapses around each pending point and the
        best value is the lowest believed one, so the next ask keeps its distance from
        points in flight by the model's own lengthscales rather than by a Lipschitz
        ball. Failed points keep the hard penalty (never to be retried)."""
        if len(pend):
            mu, _ = post.predict(pend)
            post = Posterior(post.kind, np.vstack([post.x, pend]),
                             np.concatenate([post.y, mu]), post.hyp)
            best = min(best, float(mu.min()))
        return PenalizedLogEI(post, best, failed, lip,
                              stable=self.settings.acquisition == "logei")

    def _box(self, center: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
        """The box of ``radius`` fitted lengthscales per axis around ``center`` (each
        half-width clipped to [POLISH_MIN, 0.5] of the cube), inside the cube."""
        assert self._post is not None
        half = np.clip(radius * self._post.hyp.lengthscales, POLISH_MIN, 0.5)
        return np.clip(center - half, 0.0, 1.0), np.clip(center + half, 0.0, 1.0)

    def predicted_min(self, view: RunView, radius: float, sds: float) -> float:
        """The lowest ``mean - sds * sd`` of the posterior in a box of ``radius`` fitted
        lengthscales around the best point, in the values' own units (warp ``none``).

        Islands ask it after the hand-over: an island whose model expects to beat the
        run's best in its basin is still climbing (docs/bo.md, Seventh pass).
        """
        self.update_model(view)
        post = self._post
        assert post is not None
        y_std = self.model.targets()
        top = post.x[np.argsort(y_std)[:3]]
        lo, hi = self._box(top[0], radius)
        rng = rng_for(self.settings.seed, len(view.records))
        sobol = lo + qmc.Sobol(self.dim, scramble=True, seed=rng).random_base2(8) * (hi - lo)

        def neg_bound(x: np.ndarray, grad: bool) -> tuple[np.ndarray, np.ndarray | None]:
            if not grad:
                mean, var = post.predict(x)
                return -(mean - sds * np.sqrt(var)), None
            mean, var, dmean, dvar = post.predict_grad(x)
            sd = np.sqrt(var)
            return -(mean - sds * sd), -(dmean - sds * dvar / (2.0 * sd)[:, None])

        _, val = maximize(neg_bound, np.vstack([sobol, np.clip(top, lo, hi)]),
                          n_starts=self.settings.n_starts, box=(lo, hi))
        return self.model.y_mean - self.model.y_std * val

    def fitted_lengthscales(self, view: RunView) -> np.ndarray:
        """The GP's lengthscales (unit cube) once the model has this view's data."""
        self.update_model(view)
        assert self._post is not None
        return self._post.hyp.lengthscales

    def admissible_design_point(self, view: RunView) -> np.ndarray:
        """The next design point outside every avoided box (the plain one if none is).

        With boxes, that is the first design point outside them that this search has not
        proposed yet: the boxes move between asks (the other island refits), so
        counting admissible points would hand out the same point twice.
        """
        k = len(view.records)
        if not self.avoid:
            return self.design_point(k)
        pts = [r.x for r in view.records.values()]
        known = self.space.to_unit(np.array(pts, dtype=float).reshape(-1, self.dim))
        for j in range(len(self.design) + 4 * k + 64):
            u = self.design_point(j)[None, :]
            if not inside(u, self.avoid)[0] and not repeats(u, known)[0]:
                return u[0]
        return self.design_point(k)

    def exploit_point(self, view: RunView, local: bool = False) -> np.ndarray:
        """Minimizer of the posterior mean (the model's best guess), for the last asks.

        Improvement-based acquisitions keep spending on exploration to the very end;
        the last results are worth more where the model believes the minimum is. Where
        that is a point already evaluated or in flight (the model has converged on
        it), log-EI asks instead (``local``: boxed, as in the polish phase).
        """
        self.update_model(view)
        post = self._post
        assert post is not None
        rng = rng_for(self.settings.seed, len(view.records))
        sobol = qmc.Sobol(self.dim, scramble=True, seed=rng).random_base2(self._cand_m)
        y_std = self.model.targets()
        top = post.x[np.argsort(y_std)[:3]]

        def neg_mean(x: np.ndarray, grad: bool) -> tuple[np.ndarray, np.ndarray | None]:
            if not grad:
                return -post.predict(x)[0], None
            mean, _, dmean, _ = post.predict_grad(x)
            return -mean, -dmean

        x, _ = maximize(neg_mean, np.vstack([sobol, top]), n_starts=self.settings.n_starts)
        if repeats(x[None, :], np.vstack([post.x, self.busy_points(view)]))[0]:
            return self.next_point(view, local=local)  # nothing to learn there: EI
        return x

    def evaluate(self, u: np.ndarray) -> Evaluate:
        return Evaluate.at(self.space.from_unit(u), tag=self.name)


class AsyncBO(BayesOpt):
    """One point per ask, penalizing every evaluation still in flight (``async-bo``).

    With an ``explorer`` (option ``explore = "dycors"``) the first ``explore_evals``
    points come from it instead of the Sobol design; the GP then takes over with all
    results. The explorer sees every event, so a replayed log rebuilds it too.
    """

    name = "async-bo"

    def __init__(self, space: Space, settings: BOSettings,
                 explorer: Strategy | None = None) -> None:
        super().__init__(space, settings)
        self.ask_ahead = settings.ask_ahead
        self.explorer = explorer
        # the whole run's budget when this search is an island (its view's budget is
        # its share), so the polish phase is the last share of the run, not of the island
        self.run_budget: int | None = None

    def warm_start(self, records: Sequence[Record]) -> None:
        super().warm_start(records)
        if self.explorer is not None:
            self.explorer.warm_start(records)

    def on_event(self, kind: str, record: Record, view: RunView) -> None:
        if self.explorer is not None:
            self.explorer.on_event(kind, record, view)

    def propose(self, view: RunView) -> Proposal | None:
        self.last_logei = math.inf
        if self.explorer is not None and len(view.records) < self.settings.explore_evals:
            return self.explorer.propose(view)
        if self.in_design_phase(view):
            return self.evaluate(self.admissible_design_point(view))
        polish = view.remaining <= round(self.settings.polish * (self.run_budget or view.budget))
        if view.remaining <= self.settings.exploit:
            return self.evaluate(self.exploit_point(view, local=polish))
        return self.evaluate(self.next_point(view, local=polish))


class BatchBO(BayesOpt):
    """Synchronous batches the size of the worker pool (``batch-bo``).

    A batch is chosen at once, each point penalizing the ones before it; the next batch
    waits until every point of this one is back. The initial design is handed out as
    fast as workers free up (it does not depend on any result). Batch points are tagged
    ``batch-bo:<batch>:<i>/<size>``, so a resumed run finds a batch that was only partly
    handed out before the crash and completes it instead of starting a smaller one.
    """

    name = "batch-bo"

    def __init__(self, space: Space, settings: BOSettings) -> None:
        super().__init__(space, settings)
        self._queue: list[Evaluate] = []
        self._batches = -1  # batches chosen so far; -1: not yet read from the view

    def propose(self, view: RunView) -> Proposal | None:
        if self._batches < 0:  # first ask of this object: maybe a resume mid-batch
            self._batches, self._queue = self._rest_of_last_batch(view)
        if self._queue:
            return self._queue.pop(0)
        if len(view.records) < self.n_design:
            return self.evaluate(self.design_point(len(view.records)))
        if view.n_in_flight:
            return None
        if self.in_design_phase(view):  # design points failed: top up, still in step
            return self.evaluate(self.design_point(len(view.records)))
        size = max(1, min(view.n_workers, view.remaining))
        self._batches += 1
        self._queue = self._choose(view, self._batches, 0, size)
        return self._queue.pop(0)

    def _choose(self, view: RunView, k: int, n_out: int, size: int) -> list[Evaluate]:
        """Points ``n_out + 1 .. size`` of batch ``k`` (the first ``n_out`` are in the view)."""
        chosen: list[np.ndarray] = []
        for _ in range(size - n_out):
            chosen.append(self.next_point(view, extra=chosen))
        return [Evaluate.at(self.space.from_unit(u), tag=f"{self.name}:{k}:{n_out + i + 1}/{size}")
                for i, u in enumerate(chosen)]

    def _rest_of_last_batch(self, view: RunView) -> tuple[int, list[Evaluate]]:
        """The batch count and the points of the last batch not yet handed out."""
        last, size, issued = 0, 0, 0
        for rec in view.records.values():
            m = _BATCH_TAG.match(rec.tag)
            if m is None:
                continue
            k = int(m.group(1))
            if k > last:
                last, size, issued = k, int(m.group(3)), 0
            issued += k == last
        need = min(size - issued, view.remaining)
        if need <= 0 or self.in_design_phase(view):
            return last, []
        # its issued points are in the view already (busy, or data if they are back)
        return last, self._choose(view, last, size - need, size)


_BATCH_TAG = re.compile(r"^batch-bo:(\d+):(\d+)/(\d+)$")


def warp(y: np.ndarray, kind: str) -> np.ndarray:
    """Output transform before standardization.

    ``copula`` replaces values by the normal quantiles of their ranks. A few values far
    below the rest (a deep basin) otherwise sit many standard deviations under the mean,
    so expected improvement anywhere unexplored is negligible and the search stays in
    the first good basin it finds; on ranks the best value is about -2.5 (n = 100).
    """
    if kind == "none" or len(y) < 3:
        return y
    ranks = rankdata(y)
    return np.asarray(ndtri((ranks - 0.5) / len(y)), dtype=float)


def inside(x: np.ndarray, boxes: Sequence[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Which of the (m, d) points lie in any of the boxes (centre, half-widths)."""
    hit = np.zeros(len(x), dtype=bool)
    for c, h in boxes:
        hit |= np.all(np.abs(x - c) <= h, axis=1)
    return hit


def avoiding(acq: AcqFn, boxes: Sequence[tuple[np.ndarray, np.ndarray]]) -> AcqFn:
    """``acq`` less AVOID_PENALTY inside the boxes. A step, not a barrier: the
    maximizer compares values of candidates and polished points, so the step is seen;
    the gradient inside stays the acquisition's own."""
    def fn(x: np.ndarray, grad: bool) -> tuple[np.ndarray, np.ndarray | None]:
        val, g = acq(x, grad)
        return val - AVOID_PENALTY * inside(x, boxes), g
    return fn


def _completed_values(view: RunView) -> Iterator[Record]:
    for rec in view.records.values():
        if rec.status is Status.COMPLETED and rec.value is not None and math.isfinite(rec.value):
            yield rec
