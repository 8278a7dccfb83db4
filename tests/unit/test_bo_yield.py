"""Issue 17, sixth pass: islands that yield once converged (an island whose best
log-EI is below ``yield_logei`` asks only when no other island still asking is above
it) and the polish box's ``polish_radius``."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("gpflow")

from tests.unit.test_bo_polish import assert_islands_replay
from tests.unit.test_bo_strategy import BRANIN_MIN, branin
from tether.controller.local import SimulatedController
from tether.controller.settings import RunSettings
from tether.errors import ConfigError
from tether.records import Record
from tether.space import Space
from tether.strategies import create
from tether.strategies.base import Strategy
from tether.strategies.bo import make_async_bo, parse_options
from tether.strategies.bo.islands import Islands
from tether.strategies.sampling import RandomSampling

pytestmark = pytest.mark.bo

OPTS = {"islands": 2, "stagger": 0.3, "handover": 0.8}


def test_yield_logei_is_validated() -> None:
    sp = Space.unit(2)
    assert parse_options("async-bo", sp, {}, 30).yield_logei == -math.inf  # off
    assert parse_options("async-bo", sp, {"yield_logei": -5}, 30).yield_logei == -5.0
    for bad in ({"yield_logei": "x"}, {"yield_logei": math.nan}, {"yield_logei": True}):
        with pytest.raises(ConfigError):
            parse_options("async-bo", sp, bad, 30)
    with pytest.raises(ConfigError):
        parse_options("batch-bo", sp, {"yield_logei": -5})


def test_polish_radius_is_validated() -> None:
    sp = Space.unit(2)
    assert parse_options("async-bo", sp, {}, 30).polish_radius == 0.5  # the default
    assert parse_options("async-bo", sp, {"polish_radius": 0.25}, 30).polish_radius == 0.25
    for bad in ({"polish_radius": 0}, {"polish_radius": -1.0}, {"polish_radius": "x"}):
        with pytest.raises(ConfigError):
            parse_options("async-bo", sp, bad, 30)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_narrow_polish_box_reaches_the_branin_minimum(seed: int) -> None:
    # the seed setup with the last 10 asks in a box of a quarter lengthscale: random
    # search reaches 1e-3 with probability about 3 % per run (test_bo_polish.py)
    sp = Space.unit(2)
    opts = {"seed": seed, "kernel": "rbf", "explore": "none", "initial_points": 3,
            "polish_radius": 0.25}
    res = SimulatedController(sp, create("async-bo", sp, 30, opts), branin, workers=3,
                              settings=RunSettings(budget=30),
                              duration=lambda x: 1.0 + x.sum()).run()
    assert res.best is not None and res.best.value is not None
    assert res.best.value - BRANIN_MIN < 1e-3


def _islands(yield_logei: float) -> list[Record]:
    """24 Branin evaluations: island 0 a GP search, island 1 random sampling (which has
    no log-EI, so it never counts as converged)."""
    sp = Space.unit(2)

    def make(i: int, share: int) -> Strategy:
        if i == 1:
            return RandomSampling(sp, seed=5)
        return make_async_bo(sp, share, {"seed": 3, "explore": "none", "initial_points": 4})

    s = Islands(sp, 24, 2, 1.0, make, yield_logei=yield_logei)
    res = SimulatedController(sp, s, branin, workers=2, settings=RunSettings(budget=24),
                              duration=lambda x: 1.0 + x.sum()).run()
    assert res.reason == "budget" and len(res.completed) == 24
    return [res.records[k] for k in sorted(res.records)]


def test_a_converged_island_yields_to_the_other() -> None:
    # no island yields: the two alternate
    island = [Islands.island_of(r)[0] for r in _islands(-math.inf)]
    assert abs(island.count(0) - island.count(1)) <= 1
    # every log-EI counts as converged: the GP island asks its design points (no
    # log-EI) and then only when the other island cannot, i.e. never again
    island = [Islands.island_of(r)[0] for r in _islands(1e9)]
    first_gp = 2 * 4  # its 4 design points, alternating with island 1
    assert island[first_gp:].count(0) <= 1 and island.count(1) >= 24 - 5


def test_when_every_island_has_converged_the_best_one_asks() -> None:
    # two GP islands for which every log-EI counts as converged, one worker (each ask
    # sees every result before it): once both designs are out, every ask goes to the
    # island holding the best point so far; the fewest-points rule alternated them (no
    # exploit step: a posterior-mean ask has no log-EI, so it never yields)
    sp = Space.unit(2)

    def make(i: int, share: int) -> Strategy:
        return make_async_bo(sp, share, {"seed": 3 + i, "explore": "none",
                                         "initial_points": 4, "exploit": 0})

    s = Islands(sp, 20, 2, 1.0, make, yield_logei=1e9)
    res = SimulatedController(sp, s, branin, workers=1, settings=RunSettings(budget=20)).run()
    recs = [res.records[k] for k in sorted(res.records)]
    asked = [Islands.island_of(r)[0] for r in recs]
    assert sorted(asked[:8]) == [0] * 4 + [1] * 4  # the two designs
    for k in range(8, len(recs)):
        done = [r for r in recs[:k] if r.value is not None]
        best = min(done, key=lambda r: r.value if r.value is not None else math.inf)
        assert asked[k] == Islands.island_of(best)[0], k


def test_yielding_islands_reach_the_branin_minimum() -> None:
    sp = Space.unit(2)
    opts = dict(OPTS, seed=3, yield_logei=-5.0)
    res = SimulatedController(sp, create("async-bo", sp, 40, opts), branin, workers=3,
                              settings=RunSettings(budget=40),
                              duration=lambda x: 1.0 + x.sum()).run()
    assert res.best is not None and res.best.value is not None
    assert res.best.value - BRANIN_MIN < 1e-2
    xs = np.array([res.records[k].x for k in sorted(res.records)])
    assert (((xs[:, None, :] - xs[None, :, :]) ** 2).sum(2) + np.eye(len(xs))).min() > 0


def test_yielding_islands_replay_from_the_log() -> None:
    # whether an island yields is read from the view (its model's log-EI at this ask)
    assert_islands_replay(dict(OPTS, seed=2, polish=0.3, yield_logei=-5.0))
