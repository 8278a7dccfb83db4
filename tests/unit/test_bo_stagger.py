"""Staggered islands (issue 17): a later island starts late, from a Sobol design, and
keeps out of a box around the earlier islands' best points."""

from __future__ import annotations

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
from tether.strategies.bo import parse_options
from tether.strategies.bo.islands import Islands
from tether.strategies.bo.strategy import AsyncBO, inside

pytestmark = pytest.mark.bo

OPTS = {"islands": 2, "stagger": 0.3, "handover": 0.8}


def _run(opts: dict[str, object], budget: int) -> tuple[list[Record], Record]:
    sp = Space.unit(2)
    res = SimulatedController(sp, create("async-bo", sp, budget, opts), branin, workers=3,
                              settings=RunSettings(budget=budget),
                              duration=lambda x: 1.0 + x.sum()).run()
    assert res.reason == "budget" and len(res.completed) == budget and res.best is not None
    return [res.records[k] for k in sorted(res.records)], res.best


def test_stagger_is_validated() -> None:
    sp = Space.unit(2)
    assert parse_options("async-bo", sp, {}, 30).stagger == 0.0  # independent islands
    assert parse_options("async-bo", sp, OPTS, 30).stagger == 0.3
    for bad in ({"stagger": 1.0}, {"stagger": -0.1}, {"stagger": "x"}):
        with pytest.raises(ConfigError):
            parse_options("async-bo", sp, bad, 30)
    with pytest.raises(ConfigError):
        parse_options("batch-bo", sp, {"stagger": 0.3})


def test_an_avoided_box_is_kept_out_of() -> None:
    # the design and every log-EI ask of a search told to avoid a box stay outside it
    sp = Space.unit(2)
    s = create("async-bo", sp, 14, {"seed": 1, "explore": "none", "initial_points": 4,
                                     "polish": 0, "exploit": 0})
    assert isinstance(s, AsyncBO)
    box = (np.array([0.5, 0.5]), np.array([0.3, 1.0]))  # the middle band, all of x2
    s.avoid = [box]
    res = SimulatedController(sp, s, branin, workers=2, settings=RunSettings(budget=14),
                              duration=lambda x: 1.0 + x.sum()).run()
    xs = np.array([res.records[k].x for k in sorted(res.records)])
    assert not inside(xs, [box]).any()


def test_staggered_island_starts_late_then_they_alternate() -> None:
    records, best = _run(dict(OPTS, seed=3), 40)
    island = [Islands.island_of(r)[0] for r in records]
    # island 1 starts once 0.3 of the budget is out (12 points), from a Sobol design,
    # asks alone until it has half as many (6), then the two alternate
    assert island[:12] == [0] * 12 and island[12:18] == [1] * 6
    # island 0 has the run's DYCORS start (min(4(d+1), budget/3) = 12), not its share's (6)
    tags = [Islands.island_of(r)[1] for r in records if Islands.island_of(r)[0] == 0]
    assert [t.startswith("async-bo:dycors") for t in tags[:13]] == [True] * 12 + [False]
    assert Islands.island_of(records[12])[1] == "async-bo"
    assert abs(island[18:32].count(0) - island[18:32].count(1)) <= 1
    assert len(set(island[33:])) == 1  # past the hand-over (32 points) one island asks
    assert best.value is not None and best.value - BRANIN_MIN < 1e-2
    # island 1's design skips points it has handed out already, though the box it
    # avoids moves between asks (it used to hand out the same Sobol point twice)
    xs = np.array([r.x for r in records])
    assert (((xs[:, None, :] - xs[None, :, :]) ** 2).sum(2) + np.eye(len(xs))).min() > 0


def test_staggered_islands_replay_from_the_log() -> None:
    # at every cut a rebuilt strategy asks from the island the live one asked from
    assert_islands_replay(dict(OPTS, seed=2, polish=0.3))
