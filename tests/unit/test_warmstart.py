import json
from pathlib import Path

import numpy as np
import pytest

from tests.contract import write_log
from tether.controller.local import SimulatedController
from tether.controller.settings import RunSettings
from tether.errors import ConfigError
from tether.problems import branin
from tether.space import Space
from tether.strategies.compose import Merged
from tether.strategies.dycors import DYCORS
from tether.strategies.localsearch import LocalSearch
from tether.strategies.sampling import RandomSampling
from tether.strategies.warmstart import WARM_TAG, apply_warm_start, load_prior


def _old_log(tmp_path: Path, space: Space, n: int = 12) -> Path:
    res = SimulatedController(space, RandomSampling(space, seed=3), branin, workers=2,
                              settings=RunSettings(budget=n)).run()
    return write_log(tmp_path / "old.jsonl", res.events)


def test_prior_records_are_the_completed_evaluations(tmp_path: Path) -> None:
    space = Space.unit(2)
    path = _old_log(tmp_path, space)
    with open(path, "a") as fh:
        fh.write('{"event": "completed", "eval_')  # a torn last line is ignored
    prior = load_prior(path, space)
    assert len(prior) == 12 and all(r.tag == WARM_TAG and r.value is not None for r in prior)
    for r in prior:
        assert r.value == pytest.approx(branin(np.array(r.x)))


def test_variables_are_matched_by_name_and_out_of_bounds_points_dropped(tmp_path: Path) -> None:
    path = _old_log(tmp_path, Space.unit(2))
    swapped = Space(("x1", "x0"), (0.0, 0.0), (1.0, 0.5))
    prior = load_prior(path, swapped)
    events = [json.loads(ln) for ln in path.read_text().splitlines()]
    xs = {e["eval_id"]: e["x"] for e in events if e["event"] == "proposed"}
    assert prior and all(r.x == (xs[r.eval_id][1], xs[r.eval_id][0]) for r in prior)
    assert all(r.x[1] <= 0.5 for r in prior) and len(prior) < 12
    with pytest.raises(ConfigError):
        load_prior(path, Space(("a", "b"), (0.0, 0.0), (1.0, 1.0)))
    with pytest.raises(ConfigError):
        load_prior(tmp_path / "missing.jsonl", swapped)


def test_dycors_uses_prior_data_instead_of_a_design(tmp_path: Path) -> None:
    space = Space.unit(2)
    path = _old_log(tmp_path, space, n=12)
    s = DYCORS(space, 20, seed=0)
    assert apply_warm_start(s, path, space) == 12
    assert len(s.design) == 0 and len(s.f_data) == 12
    res = SimulatedController(space, s, branin, workers=2, settings=RunSettings(budget=20)).run()
    assert res.reason == "budget"
    assert all(r.tag.startswith("dycors") and r.tag != "dycors:design"
               for r in res.records.values())


def test_local_search_starts_from_the_prior_best(tmp_path: Path) -> None:
    space = Space.unit(2)
    path = _old_log(tmp_path, space)
    local = LocalSearch(space, step=0.05)
    m = Merged(space, [local])
    apply_warm_start(m, path, space)
    prior = load_prior(path, space)
    best = min(prior, key=lambda r: r.value or 0.0)
    p = m.propose(SimulatedController(space, m, branin).core.view)
    assert p is not None and np.abs(np.array(p.x) - np.array(best.x)).max() == pytest.approx(0.05)
