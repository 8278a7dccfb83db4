"""The heavy-tailed scenario's objective (tether/heavy.py): durations keyed on the run's
seed and the evaluation number, the lognormal they follow, and the program real workers
run. No timing is asserted: the program is run at a scale where it sleeps microseconds."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

from tether import heavy
from tether.problems import HEAVY_MU, HEAVY_SIGMA, hartmann6, heavy_duration, heavy_durations

PROGRAM = [sys.executable, "-I", "-S", heavy.__file__]


def test_durations_are_a_function_of_seed_and_index_only() -> None:
    assert heavy.duration(3, 17) == heavy.duration(3, 17)
    assert heavy.duration(3, 17) != heavy.duration(4, 17) != heavy.duration(3, 18)
    assert heavy.duration(3, 17, scale=0.25) == pytest.approx(0.25 * heavy.duration(3, 17))
    # pinned: a change of the draw would silently change every recorded figure
    assert heavy.duration(0, 0) == pytest.approx(0.7775673368, rel=1e-9)


def test_durations_follow_the_scenarios_lognormal() -> None:
    assert (HEAVY_MU, HEAVY_SIGMA) == (0.0, 1.0)
    logs = np.log([heavy_duration(s, k) for s in range(4) for k in range(5000)])
    # 20 000 fixed draws: standard errors 0.007 (mean) and 0.005 (sd), so these bounds
    # are about 4 standard errors wide and the draws are the same on every run
    assert abs(logs.mean() - HEAVY_MU) < 0.03
    assert abs(logs.std() - HEAVY_SIGMA) < 0.03
    other = np.log([heavy.duration(0, k, mu=-1.0, sigma=0.5) for k in range(5000)])
    assert other.mean() == pytest.approx(-1.0, abs=0.03)
    assert other.std() == pytest.approx(0.5, abs=0.03)


def test_simulated_durations_are_the_kth_draw_in_dispatch_order() -> None:
    dur = heavy_durations(5, scale=2.0)
    x = np.zeros(6)
    assert [dur(x) for _ in range(4)] == [2.0 * heavy_duration(5, k) for k in range(4)]


def test_value_is_hartmann6() -> None:
    for x in np.random.default_rng(1).random((20, 6)):
        assert heavy.hartmann6(list(x)) == pytest.approx(hartmann6(x), rel=1e-12)


def test_program_prints_the_value_and_rejects_bad_usage() -> None:
    x = [0.2, 0.15, 0.48, 0.28, 0.31, 0.66]
    out = subprocess.run([*PROGRAM, "7", "3", *map(str, x), "1e-6"], capture_output=True,
                         text=True, timeout=60, check=True)
    assert math.isclose(float(out.stdout.split()[-1]), hartmann6(np.array(x)), rel_tol=1e-12)
    bad = subprocess.run([*PROGRAM, "7", "3"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "usage" in bad.stderr


def test_busy_share_definitions_of_the_tutorial() -> None:
    from examples.async_vs_sync import shares, zero_cost_wall

    # two workers: (0, 1) then (1, 2) on one, (0, 3) on the other; last dispatch at 1
    wall, busy, to_last, drain = shares([(0.0, 1.0), (0.0, 3.0), (1.0, 2.0)], 2)
    assert (wall, busy, to_last, drain) == pytest.approx((3.0, 5 / 6, 1.0, 1 / 6))
    # idle before the last dispatch: the second evaluation starts late
    wall, busy, to_last, drain = shares([(0.0, 1.0), (0.0, 3.0), (1.5, 2.0)], 2)
    assert (busy, to_last, drain) == pytest.approx((4.5 / 6, 2.5 / 3, 1 / 6))
    assert zero_cost_wall([1.0, 3.0, 1.0], 2) == 3.0
    assert zero_cost_wall([1.0, 1.0, 3.0], 2) == 4.0
