"""Issue 17, eighth pass: a staggered island also fits the earlier islands' results
outside the boxes it avoids (``share_data``)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("gpflow")

from tests.unit.test_bo_polish import assert_islands_replay
from tests.unit.test_bo_strategy import BRANIN_MIN, branin
from tether.controller.local import SimulatedController
from tether.controller.settings import RunSettings
from tether.errors import ConfigError
from tether.space import Space
from tether.strategies import create
from tether.strategies.bo import parse_options
from tether.strategies.bo.islands import Islands
from tether.strategies.bo.strategy import AsyncBO, inside

pytestmark = pytest.mark.bo

OPTS = {"islands": 2, "stagger": 0.3, "handover": 0.8}


def test_share_data_is_validated() -> None:
    sp = Space.unit(2)
    assert parse_options("async-bo", sp, {}, 30).share_data is False  # off
    assert parse_options("async-bo", sp, {"share_data": True}, 30).share_data is True
    for bad in ({"share_data": 1}, {"share_data": "yes"}):
        with pytest.raises(ConfigError):
            parse_options("async-bo", sp, bad, 30)
    with pytest.raises(ConfigError):
        parse_options("batch-bo", sp, {"share_data": True})


def _run(share: bool) -> Islands:
    sp = Space.unit(2)
    s = create("async-bo", sp, 36, dict(OPTS, seed=3, share_data=share))
    assert isinstance(s, Islands)
    res = SimulatedController(sp, s, branin, workers=3, settings=RunSettings(budget=36),
                              duration=lambda x: 1.0 + x.sum()).run()
    assert res.reason == "budget" and res.best is not None and res.best.value is not None
    assert res.best.value - BRANIN_MIN < 1e-2
    return s


def test_a_staggered_island_fits_the_earlier_islands_points_outside_its_box() -> None:
    s = _run(True)
    first, second = s.subs
    assert isinstance(first, AsyncBO) and isinstance(second, AsyncBO)
    x, y = second.shared
    assert len(x) > 0 and len(x) == len(y)
    assert not inside(x, second.avoid).any()  # the avoided basin stays unseen
    # they are island 0's own results (rows of its data), and island 1's GP fits them
    own = first.model.targets()  # island 0 is fitted on its data only
    assert len(first.shared[0]) == 0 and len(own) > 0
    fitted = second._post
    assert fitted is not None
    for p in x:
        assert np.any(np.all(np.isclose(fitted.x, p), axis=1))
    # without the option the second island fits its own results only
    assert len(_run(False).subs[1].shared[0]) == 0  # type: ignore[attr-defined]


def test_sharing_islands_replay_from_the_log() -> None:
    # the shared points are read from the view at every ask, like the avoided box
    assert_islands_replay(dict(OPTS, seed=2, polish=0.3, share_data=True))
