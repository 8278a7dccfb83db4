"""Issue 17, seventh pass: a hand-over that waits for islands still climbing
(``handover_wait``): after ``handover`` of the budget an island keeps asking while its
model predicts a value below the run's best near its own best point."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("gpflow")

from tests.unit.test_bo_polish import assert_islands_replay
from tests.unit.test_bo_strategy import branin
from tether.controller.local import SimulatedController
from tether.controller.settings import RunSettings
from tether.errors import ConfigError
from tether.records import Evaluate, Proposal, RunView
from tether.space import Space
from tether.strategies import create
from tether.strategies.base import Strategy
from tether.strategies.bo import islands, make_async_bo, parse_options
from tether.strategies.bo.islands import Islands
from tether.strategies.bo.strategy import AsyncBO

pytestmark = pytest.mark.bo

OPTS = {"islands": 2, "stagger": 0.3, "handover": 0.5, "seed": 4}


def test_handover_wait_is_validated() -> None:
    sp = Space.unit(2)
    assert parse_options("async-bo", sp, {}, 30).handover_wait is False  # off
    assert parse_options("async-bo", sp, {"handover_wait": True}, 30).handover_wait is True
    for bad in ({"handover_wait": 1}, {"handover_wait": "yes"}):
        with pytest.raises(ConfigError):
            parse_options("async-bo", sp, bad, 30)
    with pytest.raises(ConfigError):
        parse_options("batch-bo", sp, {"handover_wait": True})


def bowl(u: np.ndarray) -> float:
    return float(((u - 0.3) ** 2).sum())


class NearMinimum(Strategy):
    """The bowl's minimizer and then points a hair from it, with the log-EI of a search
    converged from its second ask on: an island that holds the best point (0) and then
    always yields."""

    name = "near"
    last_logei = math.inf

    def __init__(self, space: Space) -> None:
        self.space = space

    def propose(self, view: RunView) -> Proposal | None:
        n = len(view.records)
        self.last_logei = math.inf if n == 0 else -math.inf
        u = 0.3 + (1e-6 * np.random.default_rng(n).standard_normal(2) if n else np.zeros(2))
        return Evaluate.at(self.space.from_unit(u), tag=self.name)


def _after_handover(wait: bool) -> list[int]:
    """The islands of the asks after the hand-over of a 30-point run on the bowl: island
    0 holds the best point and yields, island 1 is a GP search."""
    sp = Space.unit(2)

    def make(i: int, share: int) -> Strategy:
        if i == 0:
            return NearMinimum(sp)
        return make_async_bo(sp, share, {"seed": 3, "explore": "none", "initial_points": 4})

    s = Islands(sp, 30, 2, 0.5, make, yield_logei=-50.0, handover_wait=wait)
    res = SimulatedController(sp, s, bowl, workers=2, settings=RunSettings(budget=30),
                              duration=lambda x: 1.0 + x.sum()).run()
    assert res.reason == "budget" and len(res.completed) == 30
    recs = [res.records[k] for k in sorted(res.records)]
    assert res.best is not None and res.best.value == 0.0
    assert Islands.island_of(res.best)[0] == 0
    return [Islands.island_of(r)[0] for r in recs[16:]]


def test_the_handover_waits_while_another_island_predicts_below_the_best(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # before the hand-over island 0 yields every ask to the GP island; after it, without
    # the option, island 0 (the best) asks alone
    assert set(_after_handover(False)) == {0}
    # a bound no island can fail (mean - 1e3 sd): the GP island stays in and gets the
    # asks island 0 yields, i.e. all of them
    monkeypatch.setattr(islands, "WAIT_SDS", 1e3)
    assert set(_after_handover(True)) == {1}
    # a bound no island can meet (mean + 1e3 sd): the fixed hand-over
    monkeypatch.setattr(islands, "WAIT_SDS", -1e3)
    assert set(_after_handover(True)) == {0}


def test_an_unconverged_best_island_keeps_its_asks(monkeypatch: pytest.MonkeyPatch) -> None:
    # two GP islands that never yield: with every island climbing, the best one still
    # asks alone after the hand-over (the others only get the asks it yields)
    monkeypatch.setattr(islands, "WAIT_SDS", 1e3)
    sp = Space.unit(2)
    opts = dict(OPTS, handover_wait=True)
    res = SimulatedController(sp, create("async-bo", sp, 30, opts), branin, workers=3,
                              settings=RunSettings(budget=30),
                              duration=lambda x: 1.0 + x.sum()).run()
    recs = [res.records[k] for k in sorted(res.records)]
    after = [Islands.island_of(r)[0] for r in recs[15:]]
    assert len(set(after[1:])) == 1  # the first may still be the other island's


def test_predicted_min_is_the_posterior_mean_near_the_best_point() -> None:
    sp = Space.unit(2)
    s = create("async-bo", sp, 20, {"seed": 1, "explore": "none", "initial_points": 4})
    res = SimulatedController(sp, s, branin, workers=2, settings=RunSettings(budget=20),
                              duration=lambda x: 1.0 + x.sum()).run()
    bo = s.inner if hasattr(s, "inner") else s
    assert isinstance(bo, AsyncBO)
    view = RunView(sp, 20)
    for k in sorted(res.records):
        view.put(res.records[k])
    best = min(r.value for r in res.completed if r.value is not None)
    mean = bo.predicted_min(view, 1.0, 0.0)
    # the mean interpolates the data (noise 1e-8): at most the best value, and close to it
    assert mean <= best + 1e-6 and abs(mean - best) < 0.5 * abs(best - 0.397887) + 0.5
    # a lower bound lower still
    assert bo.predicted_min(view, 1.0, 2.0) < mean
    assert np.isfinite(bo.predicted_min(view, 0.1, 0.0))


@pytest.mark.parametrize("extra", [{}, {"penalizer": "believer", "explore": "none"}])
def test_waiting_islands_replay_from_the_log(extra: dict[str, object]) -> None:
    # whether an island waits is read from the view (its model at this ask); the
    # believer's pending points are the view's too (the Tenth pass's island setting)
    assert_islands_replay(dict(OPTS, seed=2, polish=0.3, yield_logei=-5.0, handover_wait=True,
                               **extra))
