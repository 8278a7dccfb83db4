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


class SamePoint:
    """Asks the same coordinates every time: only evaluation ids can tell them apart."""

    def __init__(self, x: list[float]) -> None:
        self.x = x
        self.asked: list[list[float]] = []
        self.told: list[tuple[int, float | None]] = []

    def ask(self) -> list[float]:
        self.asked.append(list(self.x))  # a fresh, equal handle each time
        return self.asked[-1]

    def number(self, handle: list[float]) -> int:
        return next(i for i, h in enumerate(self.asked) if h is handle)

    def tell(self, handle: list[float], value: float | None) -> None:
        self.told.append((self.number(handle), value))


def test_equal_points_are_told_by_evaluation_id_not_by_coordinates() -> None:
    space = Space.unit(2)
    opt = SamePoint([0.25, 0.75])
    s = AskTellStrategy.wrap(space, opt)
    sc = ScriptedController(space, s)
    r0, r1, r2 = sc.accept_eval(), sc.accept_eval(), sc.accept_eval()
    assert r0.x == r1.x == r2.x
    sc.complete(r2, 3.0)
    sc.fail(r0)
    sc.complete(r1, 1.0)
    assert opt.told == [(2, 3.0), (0, None), (1, 1.0)]


def test_in_flight_follows_ids_through_loss_requeue_and_kill() -> None:
    space = Space.unit(1)
    opt = SamePoint([0.5])
    s = AskTellStrategy.wrap(space, opt)
    sc = ScriptedController(space, s, workers=3)
    r0, r1, r2 = sc.accept_eval(), sc.accept_eval(), sc.accept_eval()
    assert [opt.number(h) for h in s.in_flight()] == [0, 1, 2]
    sc.lose(r1)  # re-queued: still in flight, same id, same handle
    assert sc.record(r1).status in (Status.RUNNING, Status.PENDING)
    assert [opt.number(h) for h in s.in_flight()] == [0, 1, 2] and opt.told == []
    sc.kill(r0)
    sc.complete(r1, 2.0)
    assert [opt.number(h) for h in s.in_flight()] == [2]
    assert opt.told == [(0, None), (1, 2.0)]
    sc.complete(r2, 1.0)
    assert s.in_flight() == [] and len(opt.told) == 3


def test_ask_may_wait_for_results() -> None:
    space = Space.unit(1)
    results: list[float | None] = []
    asked = [0]

    def ask() -> list[float] | None:
        if asked[0] == 1 and not results:
            return None  # e.g. an initial design that must come back first
        asked[0] += 1
        return [0.1 * asked[0]]

    s = AskTellStrategy(space, ask, lambda h, v: results.append(v))
    sc = ScriptedController(space, s)
    r0 = sc.accept_eval()
    assert sc.proposal() is None and asked == [1]
    sc.complete(r0, 0.5)
    assert sc.accept_eval().x == (0.2,) and results == [0.5]


def test_a_point_clipped_by_a_wrapper_is_bound_once_and_not_offered_again() -> None:
    from tether.strategies.compose import Checked

    space = Space.unit(1)
    told: list[tuple[Any, float | None]] = []
    handles = iter([[1.0 + 1e-12], [0.5]])  # the first is a hair outside the box
    inner = AskTellStrategy(space, lambda: next(handles), lambda h, v: told.append((h, v)))
    sc = ScriptedController(space, Checked(space, inner))
    r0 = sc.accept_eval()
    r1 = sc.accept_eval()  # a new ask, not the clipped point again
    assert (r0.x, r1.x) == ((1.0,), (0.5,))
    sc.complete(r0, 4.0)
    assert told == [([1.0 + 1e-12], 4.0)]


def test_optuna_example_in_simulated_time_tells_each_trial_its_own_result() -> None:
    pytest.importorskip("optuna", reason="optuna is in the test extra: pip install -e .[test]")
    import importlib

    from tether.controller.local import SimulatedController
    from tether.controller.settings import RunSettings
    from tether.problems import branin

    study_and_strategy = importlib.import_module("examples.asktell_optuna").study_and_strategy
    space = Space(("a", "b"), (0.0, 0.0), (1.0, 1.0))
    study, strategy = study_and_strategy(space, {"seed": 3, "initial_points": 5})
    rng = np.random.default_rng(0)
    res = SimulatedController(space, strategy, branin, workers=3, settings=RunSettings(budget=20),
                              duration=lambda x: float(rng.uniform(0.5, 2))).run()
    done = [e["eval_id"] for e in res.events if e["event"] == "completed"]
    assert done != sorted(done)  # out of order, so matching by order would go wrong
    assert len(study.trials) == len(res.records)
    for t in study.trials:
        rec = res.records[t.number]
        assert (t.params["a"], t.params["b"]) == rec.x
        if rec.status is Status.COMPLETED:
            assert t.value == rec.value
        else:  # killed at the end of the run
            assert t.state.name == "FAIL"
