import math
from collections.abc import Callable

import numpy as np
import pytest

from tether.controller.local import SimulatedController
from tether.controller.scripted import ScriptedController
from tether.controller.settings import RunSettings
from tether.errors import ConfigError
from tether.problems import BRANIN_MIN, branin, sphere
from tether.records import Evaluate, Proposal, Record, RunView, Status
from tether.space import Space
from tether.strategies.base import Strategy
from tether.strategies.compose import Checked, Merged, Retry
from tether.strategies.dycors import DYCORS
from tether.strategies.localsearch import LocalSearch, nelder_mead
from tether.strategies.sampling import RandomSampling


class Const(Strategy):
    """Always proposes the same point (or None) and counts what it is told."""

    def __init__(self, x: tuple[float, ...] | None, tag: str) -> None:
        self.x, self.tag, self.name = x, tag, tag
        self.events: list[tuple[str, int]] = []
        self.accepted = 0
        self.rejected: list[str] = []

    def propose(self, view: RunView) -> Proposal | None:
        return None if self.x is None else Evaluate(self.x, self.tag)

    def on_accepted(self, proposal: Proposal, record: Record | None) -> None:
        self.accepted += 1

    def on_rejected(self, proposal: Proposal, reason: str) -> None:
        self.rejected.append(reason)

    def on_event(self, kind: str, record: Record, view: RunView) -> None:
        self.events.append((kind, record.eval_id))


def test_merged_cycle_and_every_child_sees_every_event() -> None:
    a, b = Const((0.1,), "a"), Const((0.9,), "b")
    sc = ScriptedController(Space.unit(1), Merged(Space.unit(1), [a, b]))
    tags = [sc.accept_eval().tag for _ in range(4)]
    assert tags == ["a", "b", "a", "b"]
    sc.complete(0, 1.0)
    assert a.events == b.events and ("completed", 0) in a.events
    assert a.accepted == 2 and b.accepted == 2


def test_merged_priority_skips_children_with_nothing_to_do() -> None:
    a, b = Const(None, "a"), Const((0.9,), "b")
    sc = ScriptedController(Space.unit(1), Merged(Space.unit(1), [a, b], mode="priority"))
    assert [sc.accept_eval().tag for _ in range(2)] == ["b", "b"]
    a.x = (0.2,)
    assert sc.accept_eval().tag == "a"


def test_merged_best_picks_the_lowest_predicted_point() -> None:
    space = Space.unit(1)
    lo, hi = Const((0.05,), "lo"), Const((0.95,), "hi")
    seed = Const((0.0,), "seed")
    m = Merged(space, [seed, hi, lo], mode="best")
    sc = ScriptedController(space, m, workers=10)
    for x in (0.0, 0.5, 1.0):  # f(x) = x: lower is better to the left
        seed.x = (x,)
        sc.complete(sc.accept(Evaluate((x,), "seed")) or 0, x)
    seed.x = None
    assert sc.accept_eval().tag == "lo"


def test_merged_rejects_bad_modes() -> None:
    with pytest.raises(ConfigError):
        Merged(Space.unit(1), [Const(None, "a")], mode="vote")
    with pytest.raises(ConfigError):
        Merged(Space.unit(1), [])


def test_retry_reproposes_failed_points_up_to_max_failures() -> None:
    inner = Const((0.3,), "c")
    r = Retry(inner, max_failures=2)
    sc = ScriptedController(Space.unit(1), r, workers=1)
    first = sc.accept_eval()
    inner.x = (0.7,)
    sc.fail(first)
    second = sc.accept_eval()
    assert second.x == (0.3,) and second.eval_id != first.eval_id
    assert second.tag == "c:retry"
    sc.fail(second)
    assert r.abandoned == [(0.3,)]
    assert sc.accept_eval().x == (0.7,)
    assert inner.accepted == 2  # the retry was not the inner strategy's proposal


def test_retried_design_points_do_not_use_up_the_design() -> None:
    space = Space.unit(2)
    d = DYCORS(space, 30, seed=0)
    sc = ScriptedController(space, Retry(d, max_failures=2), workers=2)
    a = sc.accept_eval()
    sc.fail(a)
    again = sc.accept_eval()
    assert again.x == a.x and again.tag == "dycors:design:retry"
    assert d.n_design_proposed == 1
    assert sc.accept_eval().x == tuple(d.design[1])


def test_checked_clips_and_never_spins_on_non_finite_points() -> None:
    inner = Const((1.5,), "c")
    sc = ScriptedController(Space.unit(1), Checked(Space.unit(1), inner))
    assert sc.accept_eval().x == (1.0,)
    inner.x = (math.nan,)
    chk = sc.strategy
    assert isinstance(chk, Checked)
    assert chk.propose(sc.view) is None  # one evaluation is in flight: wait
    assert len(inner.rejected) == chk.max_bad
    sc.complete(0, 1.0)
    p = chk.propose(sc.view)
    assert p is not None and type(p).__name__ == "Terminate"


def test_core_does_not_spin_on_a_strategy_repeating_a_bad_point() -> None:
    inner = Const((2.0,), "bad")
    ctl = SimulatedController(Space.unit(1), inner, sphere, workers=2)
    res = ctl.run()
    assert res.reason.startswith("stalled") and res.records == {}
    assert len(inner.rejected) >= 1


def test_nelder_mead_generator_minimises_a_quadratic() -> None:
    gen = nelder_mead(np.array([0.8, 0.9]), None, 0.1, 1e-6)
    batch = next(gen)
    best = math.inf
    try:
        for _ in range(500):
            vals = [sphere(x) for x in batch]
            best = min(best, *vals)
            batch = gen.send(vals)
    except StopIteration:
        pass
    assert best < 1e-8


def test_local_search_alone_and_out_of_order() -> None:
    space = Space(("a", "b"), (-1.0, -1.0), (1.0, 1.0))
    rng = np.random.default_rng(0)
    res = SimulatedController(space, LocalSearch(space, step=0.2), lambda x: sphere(x / 2 + 0.5),
                              workers=3, settings=RunSettings(budget=120),
                              duration=lambda x: float(rng.random())).run()
    assert res.reason == "budget"
    assert res.best is not None and res.best.value is not None and res.best.value < 1e-6


def test_dycors_plus_local_search_share_evaluations() -> None:
    space = Space.unit(2)
    local = LocalSearch(space, step=0.05)
    m = Merged(space, [DYCORS(space, 40, seed=0), local], mode="cycle")
    res = SimulatedController(space, m, branin, workers=4,
                              settings=RunSettings(budget=40)).run()
    assert res.reason == "budget"
    tags = {r.tag for r in res.records.values()}
    assert {"local", "dycors:design"} <= tags
    assert res.best is not None and (res.best.value or 0) - BRANIN_MIN < 1e-2
    # the local search started from a DYCORS point: its first vertex is a step away
    first_local = min(r.eval_id for r in res.records.values() if r.tag == "local")
    assert first_local > 0


def test_random_child_has_no_tag_but_merged_still_counts() -> None:
    space = Space.unit(2)
    m = Merged(space, [RandomSampling(space, seed=1), Const((0.5, 0.5), "c")])
    sc = ScriptedController(space, m)
    recs = [sc.accept_eval() for _ in range(4)]
    assert [r.tag for r in recs] == ["", "c", "", "c"]
    assert all(r.status is Status.RUNNING for r in recs)


def _replayed_proposals_match(make: Callable[[], Strategy], budget: int = 25) -> None:
    from tether.controller.core import ControllerCore
    from tether.log.journal import MemoryJournal

    space = Space.unit(2)
    rng = np.random.default_rng(11)
    live = make()
    ctl = SimulatedController(space, live, branin, workers=3,
                              settings=RunSettings(budget=budget),
                              duration=lambda x: float(rng.random()))
    res = ctl.run()
    fresh = make()
    core = ControllerCore(space, fresh, RunSettings(budget=budget + 10), MemoryJournal(),
                          lambda: 0.0)
    core.replay(res.events)
    ctl.core.view.budget = budget + 10
    assert live.propose(ctl.core.view) == fresh.propose(core.view)


def test_merged_dycors_and_local_search_resume_from_events() -> None:
    space = Space.unit(2)
    _replayed_proposals_match(lambda: Merged(space, [DYCORS(space, 40, seed=2),
                                                     LocalSearch(space, step=0.05)]))
    _replayed_proposals_match(lambda: LocalSearch(space, step=0.1), budget=30)
    _replayed_proposals_match(lambda: Retry(DYCORS(space, 40, seed=5)))


def test_merged_forwards_urgent_kills_from_a_child() -> None:
    from tether.strategies.earlystop import MedianStopping

    space = Space.unit(1)
    stopper = MedianStopping(Const((0.5,), "a"), min_steps=0, min_others=1)
    sc = ScriptedController(space, Merged(space, [stopper, Const((0.2,), "b")]), workers=2)
    r1, r2 = sc.accept_eval(), sc.accept_eval()
    sc.partial(r1, 1.0)
    sc.partial(r2, 5.0)
    assert sc.record(r2).status is Status.KILLED and sc.record(r1).status is Status.RUNNING
