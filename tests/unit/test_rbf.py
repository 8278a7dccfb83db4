import numpy as np
import pytest

from tether.errors import StrategyError
from tether.strategies.rbf import CubicRBF


def test_interpolates_and_predicts_smooth_function() -> None:
    rng = np.random.default_rng(0)
    x = rng.random((40, 2))
    f = np.sin(3 * x[:, 0]) + x[:, 1] ** 2
    m = CubicRBF()
    m.fit(x, f)
    assert np.allclose(m.predict(x), f, atol=1e-4)
    z = rng.random((200, 2)) * 0.8 + 0.1
    err = np.abs(m.predict(z) - (np.sin(3 * z[:, 0]) + z[:, 1] ** 2))
    assert np.median(err) < 0.02


def test_reproduces_linear_functions_exactly() -> None:
    x = np.random.default_rng(1).random((10, 3))
    f = 2.0 + x @ np.array([1.0, -3.0, 0.5])
    m = CubicRBF()
    m.fit(x, f)
    z = np.random.default_rng(2).random((5, 3))
    assert np.allclose(m.predict(z), 2.0 + z @ np.array([1.0, -3.0, 0.5]), atol=1e-6)


def test_duplicate_points_do_not_break_the_fit() -> None:
    x = np.array([[0.1, 0.1], [0.5, 0.5], [0.9, 0.2], [0.5, 0.5], [0.3, 0.8]])
    f = np.array([1.0, 2.0, 3.0, 2.0, 0.0])
    m = CubicRBF()
    m.fit(x, f)
    assert np.all(np.isfinite(m.predict(np.random.default_rng(0).random((20, 2)))))


def test_too_few_points_is_an_error() -> None:
    with pytest.raises(StrategyError):
        CubicRBF().fit(np.zeros((2, 2)), np.zeros(2))
    with pytest.raises(StrategyError):
        CubicRBF().predict(np.zeros((1, 2)))
