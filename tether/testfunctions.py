"""Standard test objectives on the unit cube, for tests, benchmarks and the demo."""

from __future__ import annotations

import numpy as np

#: known minima, for regret
BRANIN_MIN = -1.04739389
HARTMANN6_MIN = -3.32236801


def branin(x: np.ndarray) -> float:
    """Scaled Branin on [0,1]^2 (Picheny et al.): x0 = 15 u0 - 5, x1 = 15 u1,
    f = ((x1 - b x0^2 + c x0 - 6)^2 + (10 - 10/(8 pi)) cos x0 - 44.81) / 51.95; min -1.04739."""
    u = np.asarray(x, dtype=float)
    x0, x1 = 15.0 * u[0] - 5.0, 15.0 * u[1]
    b, c = 5.1 / (4 * np.pi**2), 5.0 / np.pi
    raw = (x1 - b * x0**2 + c * x0 - 6.0) ** 2 + 10.0 * (1 - 1 / (8 * np.pi)) * np.cos(x0)
    return float((raw - 44.81) / 51.95)


_H6_A = np.array([
    [10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14],
    [3, 3.5, 1.7, 10, 17, 8], [17, 8, 0.05, 10, 0.1, 14],
])
_H6_P = 1e-4 * np.array([
    [1312, 1696, 5569, 124, 8283, 5886], [2329, 4135, 8307, 3736, 1004, 9991],
    [2348, 1451, 3522, 2883, 3047, 6650], [4047, 8828, 8732, 5743, 1091, 381],
])
_H6_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])


def hartmann6(x: np.ndarray) -> float:
    """Hartmann 6-D on [0,1]^6, minimum -3.32237."""
    u = np.asarray(x, dtype=float)
    inner = (_H6_A * (u[None, :] - _H6_P) ** 2).sum(axis=1)
    return float(-(_H6_ALPHA * np.exp(-inner)).sum())


def sphere(x: np.ndarray) -> float:
    """Squared distance to (0.3, 0.3, ...), minimum 0: a smooth, easy check."""
    u = np.asarray(x, dtype=float)
    return float(((u - 0.3) ** 2).sum())
