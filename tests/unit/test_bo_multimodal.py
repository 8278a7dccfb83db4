"""The island setting docs/bo.md recommends for multimodal problems, as documented."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the backport
    import tomli as tomllib
import pytest

pytest.importorskip("gpflow")

from tether.controller.local import SimulatedController
from tether.controller.settings import RunSettings
from tether.problems import HARTMANN6_MIN, hartmann6
from tether.space import Space
from tether.strategies import create

pytestmark = pytest.mark.bo

DOC = Path(__file__).resolve().parents[2] / "docs" / "bo.md"


def documented_setting() -> dict[str, object]:
    """The [strategy] table of docs/bo.md's "For multimodal problems" section."""
    text = DOC.read_text()
    section = text[text.index("### For multimodal problems"):]
    block = re.search(r"```toml\n(.*?)```", section, re.S)
    assert block is not None
    table = dict(tomllib.loads(block.group(1))["strategy"])
    assert table.pop("name") == "async-bo"
    return table


@pytest.mark.parametrize("seed", [1, 3, 16])
def test_the_multimodal_setting_leaves_the_local_minimum_the_defaults_end_in(seed: int) -> None:
    # Hartmann6, 100 evaluations, 4 workers with U[0.5, 2] durations, as in
    # benchmarks/bo_regret.py: with the defaults these seeds end in the local minimum
    # (regret 0.12); the documented setting ends them in the global basin (docs/bo.md,
    # Tenth pass: 1.2e-5 or better). Each run is seeded, so this cannot pass by luck.
    sp = Space.unit(6)
    opts = dict(documented_setting(), seed=seed, initial_points=12)
    rng = np.random.default_rng(10_000 + seed)
    res = SimulatedController(sp, create("async-bo", sp, 100, opts), hartmann6, workers=4,
                              settings=RunSettings(budget=100),
                              duration=lambda u: float(rng.uniform(0.5, 2.0))).run()
    assert res.best is not None and res.best.value is not None
    assert res.best.value - HARTMANN6_MIN < 1e-3
