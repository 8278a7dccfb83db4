from typing import Any

import numpy as np

from tether.controller.local import PoolController
from tether.controller.settings import RunSettings
from tether.problems import branin
from tether.records import Status
from tether.space import Space
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
