"""Cubic radial basis function interpolant with a linear tail.

The model is ``s(x) = sum_i lam_i |x - x_i|^3 + c_0 + c^T x``, fitted by solving the
augmented system ``[[Phi + eta I, P], [P^T, 0]] [lam; c] = [f; 0]`` where ``P = [1, X]``.
The small ``eta`` keeps the system solvable when points nearly coincide (several
workers can finish close points), at the price of not quite interpolating.

Values are centred and scaled before the fit so that ``eta`` means the same thing
whatever the objective's units; predictions are returned in the original units.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.linalg
from scipy.spatial.distance import cdist

from tether.errors import StrategyError


class CubicRBF:
    """Fit with :meth:`fit`, then :meth:`predict`. Points are rows of a 2-D array."""

    def __init__(self, eta: float = 1e-6) -> None:
        self.eta = eta
        self._x = np.zeros((0, 0))
        self._coef = np.zeros(0)
        self._tail = np.zeros(0)
        self._shift = 0.0
        self._scale = 1.0

    @property
    def n(self) -> int:
        return int(self._x.shape[0])

    @staticmethod
    def min_points(dim: int) -> int:
        """Fewest points with which the linear tail is determined."""
        return dim + 1

    def fit(self, x: np.ndarray, f: np.ndarray) -> None:
        x = np.atleast_2d(np.asarray(x, dtype=float))
        f = np.asarray(f, dtype=float).ravel()
        n, d = x.shape
        if n != f.size:
            raise StrategyError(f"rbf: {n} points but {f.size} values")
        if n < self.min_points(d):
            raise StrategyError(f"rbf: needs at least {d + 1} points in {d} dimensions, got {n}")
        self._shift = float(np.median(f))
        spread = float(np.max(np.abs(f - self._shift)))
        self._scale = spread if spread > 0 else 1.0
        y = (f - self._shift) / self._scale
        phi = _cubic(x, x)
        p = np.hstack([np.ones((n, 1)), x])
        a = np.zeros((n + d + 1, n + d + 1))
        a[:n, :n] = phi + self.eta * np.eye(n)
        a[:n, n:] = p
        a[n:, :n] = p.T
        rhs = np.concatenate([y, np.zeros(d + 1)])
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", scipy.linalg.LinAlgWarning)
                sol = scipy.linalg.solve(a, rhs, assume_a="sym", check_finite=False)
        except (np.linalg.LinAlgError, scipy.linalg.LinAlgWarning, ValueError):
            # points that do not span the space: least squares still gives a usable model
            sol = np.linalg.lstsq(a, rhs, rcond=None)[0]
        if not np.all(np.isfinite(sol)):
            sol = np.linalg.lstsq(a, rhs, rcond=None)[0]
        self._x = x.copy()
        self._coef = sol[:n]
        self._tail = sol[n:]

    def predict(self, z: np.ndarray) -> np.ndarray:
        """Model values at the rows of ``z`` (1-D result)."""
        if self.n == 0:
            raise StrategyError("rbf: predict before fit")
        z = np.atleast_2d(np.asarray(z, dtype=float))
        y = _cubic(z, self._x) @ self._coef + self._tail[0] + z @ self._tail[1:]
        return np.asarray(y * self._scale + self._shift)


    def value_and_gradient(self, z: np.ndarray) -> tuple[float, np.ndarray]:
        """Model value and gradient at one point (for gradient-based minimisation)."""
        z = np.asarray(z, dtype=float).ravel()
        diff = z[None, :] - self._x
        r = np.sqrt((diff * diff).sum(axis=1))
        value = float(self._coef @ (r * r * r)) + self._tail[0] + float(z @ self._tail[1:])
        grad = 3.0 * (self._coef * r) @ diff + self._tail[1:]
        return value * self._scale + self._shift, np.asarray(grad * self._scale)


def _cubic(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    # cdist beats the Gram-matrix trick here: small BLAS calls pay threading overhead
    r = cdist(a, b)
    return np.asarray(r * r * r)
