from typing import Any

import numpy as np
import pytest

from tether.controller.scripted import ScriptedController
from tether.errors import StrategyError
from tether.records import Record, Status
from tether.space import Space
from tether.strategies.asktell import AskTellStrategy
from tether.strategies.warmstart import WARM_TAG


class FakeOptimizer:
    """Optuna-like: ask() returns a trial object; tell(trial, value)."""

    def __init__(self) -> None:
        self.n = 0
        self.told: list[tuple[int, float | None]] = []

    def ask(self) -> dict[str, Any]:
        self.n += 1
        return {"number": self.n, "params": {"b": 0.1 * self.n, "a": 0.5}}

    def tell(self, trial: dict[str, Any], value: float | None) -> None:
        self.told.append((trial["number"], value))


def test_ask_tell_round_trip_with_failures_and_name_mapping() -> None:
    space = Space(("a", "b"), (0.0, 0.0), (1.0, 1.0))
    opt = FakeOptimizer()
    s = AskTellStrategy.wrap(space, opt, point=lambda t: t["params"])
    sc = ScriptedController(space, s)
    r1, r2, r3 = sc.accept_eval(), sc.accept_eval(), sc.accept_eval()
    assert r1.x == (0.5, 0.1) and r2.x == (0.5, 0.2)
    sc.complete(r2, 7.0)
    sc.fail(r1)
    sc.kill(r3)
    assert opt.told == [(2, 7.0), (1, None), (3, None)]


def test_refused_points_are_told_as_failures_and_asked_once() -> None:
    space = Space.unit(1)
    asked: list[int] = []
    told: list[tuple[Any, float | None]] = []

    def ask() -> list[float]:
        asked.append(1)
        return [2.0 if len(asked) == 1 else 0.5]

    s = AskTellStrategy(space, ask, lambda h, v: told.append((h, v)))
    sc = ScriptedController(space, s)
    assert s.propose(sc.view) == s.propose(sc.view) and len(asked) == 1
    with pytest.raises(StrategyError):
        sc.accept_eval()  # outside the box: the core refuses, the optimizer hears None
    assert told == [([2.0], None)]
    assert sc.accept_eval().x == (0.5,)


def test_bad_points_and_prior_data() -> None:
    space = Space.unit(2)
    s = AskTellStrategy(space, lambda: [0.1, 0.2, 0.3], lambda h, v: None)
    sc = ScriptedController(space, s)
    with pytest.raises(StrategyError):
        sc.proposal()
    got: list[tuple[tuple[float, ...], float]] = []
    s2 = AskTellStrategy(space, lambda: [0.1, 0.2], lambda h, v: None,
                         prior=lambda x, v: got.append((x, v)))
    s2.warm_start([Record(0, (0.3, 0.4), Status.COMPLETED, value=1.5, tag=WARM_TAG)])
    assert got == [((0.3, 0.4), 1.5)]
    assert np.isfinite(got[0][1])
