"""Standard test problems (all on the unit box, minimised), for demos, tests and benchmarks."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from tether.heavy import MU as HEAVY_MU
from tether.heavy import SIGMA as HEAVY_SIGMA
from tether.heavy import duration as heavy_duration

BRANIN_MIN = -1.0473939180374146  # scaled Branin's minimum on [0, 1]^2
HARTMANN6_MIN = -3.3223680114155147


def branin(u: np.ndarray) -> float:
    """Scaled Branin on [0,1]^2: x0 = 15 u0 - 5, x1 = 15 u1, (f - 44.81) / 51.95."""
    x0, x1 = 15.0 * u[0] - 5.0, 15.0 * u[1]
    b, c, t = 5.1 / (4 * np.pi**2), 5.0 / np.pi, 1.0 / (8 * np.pi)
    f = (x1 - b * x0**2 + c * x0 - 6.0) ** 2 + 10.0 * (1 - t) * np.cos(x0) + 10.0
    return float((f - 54.81) / 51.95)


def branin_delayed(u: np.ndarray) -> float:
    """Scaled Branin that takes about 0.5 * sum(u) seconds, so evaluations end out of order."""
    time.sleep(0.5 * float(np.sum(u)))
    return branin(u)


_H6_A = np.array([[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14],
                  [3, 3.5, 1.7, 10, 17, 8], [17, 8, 0.05, 10, 0.1, 14]])
_H6_P = 1e-4 * np.array([[1312, 1696, 5569, 124, 8283, 5886], [2329, 4135, 8307, 3736, 1004, 9991],
                         [2348, 1451, 3522, 2883, 3047, 6650], [4047, 8828, 8732, 5743, 1091, 381]])
_H6_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])


def hartmann6(u: np.ndarray) -> float:
    """Hartmann 6-D on [0,1]^6, minimum about -3.32237."""
    x = np.asarray(u, dtype=float)
    return float(-np.sum(_H6_ALPHA * np.exp(-np.sum(_H6_A * (x - _H6_P) ** 2, axis=1))))


def trivial(u: np.ndarray) -> float:
    """As cheap as an objective gets: for throughput measurements."""
    return float(u[0])


def fails(u: np.ndarray) -> float:
    """Raises on the left half of the box: for failure handling."""
    if u[0] < 0.5:
        raise ValueError(f"bad region x0={u[0]:.3f}")
    return float(u[0])


def with_partials(u: np.ndarray, report: Any) -> float:
    """Reports three partial values (a mock learning curve) before the final one."""
    final = branin(u)
    for step in range(3):
        report(final + 1.0 / (step + 1), step=step)
    return final


def sphere(u: np.ndarray) -> float:
    """Squared distance to (0.3, 0.3, ...), minimum 0: a smooth, easy check."""
    x = np.asarray(u, dtype=float)
    return float(((x - 0.3) ** 2).sum())


def branin_sum_delay(u: np.ndarray) -> float:
    """Scaled Branin taking 0.1 + sum(u) seconds (the async-vs-sync tutorial's workload)."""
    time.sleep(0.1 + float(np.sum(u)))
    return branin(u)


def heavy_durations(seed: int, scale: float = 1.0) -> Callable[[np.ndarray], float]:
    """The heavy-tailed scenario's durations for the simulated-time controller.

    Its k-th call (the k-th dispatch, counting from 0) returns
    ``heavy_duration(seed, k)``: the controller numbers evaluations from 0 in dispatch
    order when nothing is re-queued, so this is what ``tether/heavy.py SEED {eval_id}``
    sleeps on a real worker for the same evaluation (see ``tether.heavy``).
    """
    calls = iter(range(2**62))
    return lambda x: heavy_duration(seed, next(calls), HEAVY_MU, HEAVY_SIGMA, scale)
