from typing import Any

import numpy as np

from tether.controller.local import PoolController
from tether.controller.settings import RunSettings
from tether.problems import branin
from tether.records import Evaluate, Proposal, RunView, Status
from tether.space import Space
from tether.strategies.base import Strategy
from tether.strategies.dycors import DYCORS
from tether.strategies.earlystop import MedianStopping
from tether.strategies.sampling import RandomSampling


def test_thread_pool_runs_dycors_to_the_budget() -> None:
    space = Space.unit(2)
    res = PoolController(space, DYCORS(space, 25, seed=1), branin, workers=3,
                         settings=RunSettings(budget=25)).run()
    assert res.reason == "budget" and len(res.completed) == 25


def test_failures_partials_and_kills_on_threads() -> None:
    space = Space.unit(1)
    calls: list[float] = []

    def objective(x: np.ndarray, report: Any) -> float:
        calls.append(float(x[0]))
        if len(calls) % 5 == 0:
            raise RuntimeError("flaky")
        for k in range(3):
            report(float(x[0]) + 1.0 / (k + 1))
        return float(x[0])

    s = MedianStopping(RandomSampling(space, seed=2), min_steps=1, min_others=2)
    res = PoolController(space, s, objective, workers=2, settings=RunSettings(budget=12)).run()
    assert res.reason == "budget"
    failed = [r for r in res.records.values() if r.status is Status.FAILED]
    assert failed and "flaky" in (failed[0].error or "")
    assert any(r.partials for r in res.records.values())


def test_process_pool() -> None:
    space = Space.unit(2)
    res = PoolController(space, RandomSampling(space, seed=0), branin, workers=2,
                         processes=True, settings=RunSettings(budget=6)).run()
    assert res.reason == "budget" and len(res.completed) == 6


# ------------------------------------------------------------------ one objective contract
def _tuple_objective(x: np.ndarray) -> tuple[float, list[float]]:
    return 1.0, [2.0]


def test_every_in_process_controller_refuses_what_a_worker_refuses() -> None:
    from tether.controller.serial import SerialController
    from tether.controller.simulated import SimulatedController

    space = Space.unit(1)
    runs = [
        SerialController(space, RandomSampling(space, seed=1), _tuple_objective,
                         settings=RunSettings(budget=3, max_failures=3)).run(),
        PoolController(space, RandomSampling(space, seed=1), _tuple_objective, workers=2,
                       settings=RunSettings(budget=3, max_failures=3)).run(),
        SimulatedController(space, RandomSampling(space, seed=1), _tuple_objective, workers=2,
                            settings=RunSettings(budget=3, max_failures=3)).run(),
    ]
    for res in runs:
        assert res.reason == "too many failures" and not res.completed
        failed = [r for r in res.records.values() if r.status is Status.FAILED]
        assert failed and all("return a float" in (r.error or "") for r in failed)


def test_serial_controller_runs_reports_kills_and_stops() -> None:
    from tether.controller.serial import SerialController

    space = Space.unit(2)
    seen: list[float] = []

    def objective(x: np.ndarray, report: Any) -> float:
        for k in range(3):
            report(float(x[0]) + k, epoch=k)
        if x[1] > 0.9:
            raise RuntimeError("too high")
        seen.append(float(x[0]))
        return float(x[0] ** 2 + x[1] ** 2)

    res = SerialController(space, RandomSampling(space, seed=3), objective,
                           settings=RunSettings(budget=12)).run()
    assert res.reason == "budget" and len(res.completed) == 12
    assert sorted(seen) == sorted(r.x[0] for r in res.completed)
    partials = [e for e in res.events if e["event"] == "partial"]
    assert partials and {e["epoch"] for e in partials} == {0, 1, 2}
    assert res.best is not None and res.best.value == min(r.value or 0 for r in res.completed)


def test_in_process_controller_stalls_cleanly() -> None:
    from tether.controller.serial import SerialController

    class Once(Strategy):
        def __init__(self) -> None:
            self.done = False

        def propose(self, view: RunView) -> Proposal | None:
            if self.done:
                return None
            self.done = True
            return Evaluate((0.5,))

    space = Space.unit(1)
    res = SerialController(space, Once(), lambda x: 1.0, settings=RunSettings(budget=5)).run()
    assert res.reason.startswith("stalled") and len(res.completed) == 1
