from collections.abc import Callable

import numpy as np

from tether.controller.local import SimulatedController
from tether.controller.scripted import ScriptedController
from tether.controller.settings import RunSettings
from tether.records import Status
from tether.space import Space
from tether.strategies.earlystop import MedianStopping
from tether.strategies.sampling import FixedPoints, RandomSampling


def test_trailing_evaluation_is_killed_even_with_every_worker_busy() -> None:
    space = Space.unit(1)
    pts = np.array([[0.1], [0.2], [0.3], [0.4]])
    s = MedianStopping(FixedPoints(space, pts), min_steps=1, min_others=3)
    sc = ScriptedController(space, s, budget=4, workers=4)
    recs = [sc.accept_eval() for _ in range(4)]
    assert sc.view.free_slots == 0
    for r, curve in zip(recs, ([5.0, 4.0], [5.0, 3.0], [5.0, 3.5], [5.0, 9.0]), strict=True):
        for v in curve:
            sc.partial(r, v)
    # step 1: best-so-far 4.0, 3.0, 3.5 for the others; the last (5.0) trails the median
    assert sc.record(recs[3]).status is Status.KILLED
    assert [sc.record(r).status for r in recs[:3]] == [Status.RUNNING] * 3
    assert s.stopped == [recs[3].eval_id]


def test_nothing_is_judged_before_min_steps_or_without_enough_others() -> None:
    space = Space.unit(1)
    s = MedianStopping(FixedPoints(space, np.array([[0.1], [0.2], [0.3]])), min_steps=1,
                       min_others=3)
    sc = ScriptedController(space, s, budget=3, workers=3)
    recs = [sc.accept_eval() for _ in range(3)]
    for r, v in zip(recs, (1.0, 2.0, 99.0), strict=True):
        sc.partial(r, v)
        sc.partial(r, v)
    assert all(sc.record(r).status is Status.RUNNING for r in recs)


def test_simulated_learning_curves_stop_bad_points_early() -> None:
    space = Space.unit(1)

    def curve(x: np.ndarray, report: Callable[..., None]) -> float:
        final = float(x[0])  # lower x learns to a lower loss
        for k in range(5):
            report(final + 1.0 / (k + 1), step=k)
        return final

    s = MedianStopping(RandomSampling(space, seed=4), min_steps=1, min_others=3)
    res = SimulatedController(space, s, curve, workers=4, settings=RunSettings(budget=30)).run()
    killed = [r for r in res.records.values() if r.status is Status.KILLED]
    done = [r for r in res.records.values() if r.status is Status.COMPLETED]
    assert res.reason == "budget" and len(done) == 30 and killed
    # what was killed was worse than the median of what completed
    assert np.median([r.x[0] for r in killed]) > np.median([r.x[0] for r in done])
