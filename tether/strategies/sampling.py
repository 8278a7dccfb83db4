"""Sampling strategies: ``random``, ``lhs`` and ``fixed``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from tether.errors import ConfigError
from tether.records import Evaluate, Proposal, RunView, Terminate
from tether.space import Space
from tether.strategies.base import Options, Strategy, rng_for


class RandomSampling(Strategy):
    """Uniform random points in the box; point *k* depends only on (seed, k)."""

    name = "random"
    prefetch = "auto"  # points do not depend on results: nothing lost by handing them early

    BLOCK = 1024  # points drawn per generator: seeding costs more than drawing

    def __init__(self, space: Space, seed: int | None = 0) -> None:
        self.space = space
        self.seed = seed
        self._block = -1
        self._draws: list[tuple[float, ...]] = []

    def propose(self, view: RunView) -> Proposal | None:
        block, i = divmod(len(view.records), self.BLOCK)
        if block != self._block:
            rng = rng_for(self.seed, block)
            # as tuples of floats once per block, not a numpy row per point (Evaluate.at)
            draws = self.space.from_unit(rng.random((self.BLOCK, self.space.dim)))
            self._draws = [tuple(row) for row in draws.tolist()]
            self._block = block
        return Evaluate(self._draws[i])


class LatinHypercube(Strategy):
    """Latin hypercube designs of ``size`` points (default: the budget), one after another."""

    name = "lhs"
    prefetch = "auto"  # points do not depend on results: nothing lost by handing them early

    def __init__(self, space: Space, size: int, seed: int | None = 0) -> None:
        self.space = space
        self.size = max(1, size)
        self.seed = seed
        self._block = -1
        self._design = np.zeros((0, space.dim))

    def propose(self, view: RunView) -> Proposal | None:
        k = len(view.records)
        block, i = divmod(k, self.size)
        if block != self._block:
            from scipy.stats import qmc  # scipy.stats is slow to import: only when used

            rng = rng_for(self.seed, block)
            self._design = qmc.LatinHypercube(d=self.space.dim, seed=rng).random(self.size)
            self._block = block
        return Evaluate.at(self.space.from_unit(self._design[i]))


class FixedPoints(Strategy):
    """Evaluate the rows of a CSV or NPY file in order, then end the run.

    CSV files may have a header row naming the variables (any order); without one the
    columns are taken in space order.
    """

    name = "fixed"
    prefetch = "auto"  # points do not depend on results: nothing lost by handing them early

    def __init__(self, space: Space, points: np.ndarray) -> None:
        if points.ndim != 2 or points.shape[1] != space.dim:
            raise ConfigError(
                f"fixed points must have {space.dim} columns, got shape {points.shape}"
            )
        bad = [i for i, row in enumerate(points) if not space.contains(row)]
        if bad:
            raise ConfigError(f"fixed points row {bad[0]} is outside the space or not finite")
        self.space = space
        self.points = points

    def propose(self, view: RunView) -> Proposal | None:
        k = len(view.records)
        if k < len(self.points):
            return Evaluate.at(self.points[k])
        if view.n_in_flight == 0:
            return Terminate("fixed points exhausted")
        return None


def load_points(path: str | Path, space: Space) -> np.ndarray:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"[strategy] points file not found: {p}")
    if p.suffix == ".npy":
        try:
            return np.atleast_2d(np.load(p, allow_pickle=False)).astype(float)
        except (ValueError, OSError) as exc:
            raise ConfigError(f"[strategy] points file {p} is not a numeric .npy: {exc}") from None
    lines = [ln for ln in p.read_text().splitlines() if ln.strip()]
    if not lines:
        raise ConfigError(f"[strategy] points file is empty: {p}")
    head = [c.strip() for c in lines[0].split(",")]
    try:
        [float(c) for c in head]
        order = list(range(space.dim))
        rows = lines
    except ValueError:
        missing = [n for n in space.names if n not in head]
        if missing:
            raise ConfigError(f"[strategy] points file {p} lacks column(s) {missing}") from None
        order = [head.index(n) for n in space.names]
        rows = lines[1:]
    width = len(head)
    try:
        data = [[float(r.split(",")[j]) for j in order] for r in rows]
    except (ValueError, IndexError) as exc:
        raise ConfigError(f"[strategy] points file {p} has a bad row: {exc}") from None
    if any(len(r.split(",")) != width for r in rows):
        raise ConfigError(f"[strategy] points file {p}: rows differ in their number of columns")
    return np.array(data, dtype=float).reshape(-1, space.dim)


def make_random(space: Space, budget: int, options: Mapping[str, Any]) -> Strategy:
    o = Options("random", options)
    s = RandomSampling(space, seed=o.get("seed", 0, int))
    o.done()
    return s


def make_lhs(space: Space, budget: int, options: Mapping[str, Any]) -> Strategy:
    o = Options("lhs", options)
    size = o.get("size", budget, int)
    if size < 1:
        raise ConfigError(f"[strategy] lhs size must be >= 1, got {size}")
    s = LatinHypercube(space, size=size, seed=o.get("seed", 0, int))
    o.done()
    return s


def make_fixed(space: Space, budget: int, options: Mapping[str, Any]) -> Strategy:
    o = Options("fixed", options)
    path = o.get("points", None, str)
    o.done()
    if path is None:
        raise ConfigError("[strategy] fixed needs points = \"FILE.csv|FILE.npy\"")
    return FixedPoints(space, load_points(path, space))
