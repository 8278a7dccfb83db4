"""Log-EI, local penalization, the numpy posterior and the maximizer (numpy only)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import ndtr

from tether.strategies.bo.acquisition import (
    PenalizedLogEI,
    dlog_h,
    first_new,
    lipschitz,
    log_h,
    maximize,
    repeats,
)
from tether.strategies.bo.model import Hyper, Posterior

pytestmark = pytest.mark.bo


def _posterior(kind: str = "matern52", n: int = 12, d: int = 2, seed: int = 0) -> Posterior:
    rng = np.random.default_rng(seed)
    x = rng.random((n, d))
    y = np.sin(6 * x[:, 0]) + x[:, 1] ** 2
    y = (y - y.mean()) / y.std()
    return Posterior(kind, x, y, Hyper(np.full(d, 0.3), 1.0, 1e-6))


def _fd_grad(f, x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    g = np.zeros_like(x)
    for i in range(x.shape[1]):
        e = np.zeros_like(x)
        e[:, i] = eps
        g[:, i] = (f(x + e) - f(x - e)) / (2 * eps)
    return g


def test_log_h_matches_direct_formula_where_that_is_accurate() -> None:
    z = np.linspace(-8, 6, 301)
    direct = np.log(z * ndtr(z) + np.exp(-0.5 * z * z) / np.sqrt(2 * np.pi))
    np.testing.assert_allclose(log_h(z), direct, rtol=1e-9, atol=1e-12)


def test_log_h_is_finite_smooth_and_increasing_far_in_the_tail() -> None:
    z = -np.logspace(0, 4, 2000)[::-1]  # -1e4 .. -1
    v = log_h(z)
    assert np.all(np.isfinite(v))
    assert np.all(np.diff(v) > 0)
    # no jump where the asymptotic series takes over (t = 30)
    a, b = log_h(np.array([-30.0 - 1e-9, -30.0 + 1e-9]))
    assert abs(a - b) < 1e-6
    # asymptotically log h(z) ≈ log φ(z) - 2 log|z|
    t = 1e3
    assert log_h(np.array([-t]))[0] == pytest.approx(-0.5 * t * t - 0.5 * np.log(2 * np.pi)
                                                    - 2 * np.log(t), rel=1e-9)


def test_dlog_h_is_the_derivative() -> None:
    z = np.array([-200.0, -35.0, -20.0, -3.0, -0.5, 0.0, 2.0, 7.0])
    eps = 1e-6 * np.maximum(1.0, np.abs(z))
    fd = (log_h(z + eps) - log_h(z - eps)) / (2 * eps)
    np.testing.assert_allclose(dlog_h(z, log_h(z)), fd, rtol=1e-5)


@pytest.mark.parametrize("kind", ["matern52", "rbf"])
def test_posterior_gradients_match_finite_differences(kind: str) -> None:
    post = _posterior(kind, d=3)
    x = np.random.default_rng(1).random((5, 3))
    mean, var, dmean, dvar = post.predict_grad(x)
    m2, v2 = post.predict(x)
    np.testing.assert_allclose(mean, m2, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(var, v2, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(dmean, _fd_grad(lambda z: post.predict(z)[0], x), rtol=1e-4,
                               atol=1e-6)
    np.testing.assert_allclose(dvar, _fd_grad(lambda z: post.predict(z)[1], x), rtol=1e-4,
                               atol=1e-6)


@pytest.mark.parametrize("kind", ["matern52", "rbf"])
def test_mean_gradient_alone_equals_the_full_gradient(kind: str) -> None:
    post = _posterior(kind, n=30, d=3, seed=4)
    xs = np.random.default_rng(5).random((40, 3))
    np.testing.assert_allclose(post.mean_grad(xs), post.predict_grad(xs)[2],
                               rtol=1e-9, atol=1e-10)


def test_posterior_interpolates_its_data() -> None:
    rng = np.random.default_rng(5)
    x = rng.random((10, 2))
    y = rng.standard_normal(10)
    post = Posterior("matern52", x, y, Hyper(np.full(2, 0.3), 1.0, 1e-6))
    mean, var = post.predict(x)
    np.testing.assert_allclose(mean, y, atol=1e-4)
    assert np.all(var < 1e-4)


@pytest.mark.parametrize("penalizer", ["hard", "soft"])
@pytest.mark.parametrize("stable", [True, False])
def test_acquisition_gradient_matches_finite_differences(penalizer: str, stable: bool) -> None:
    post = _posterior()
    busy = np.array([[0.2, 0.7], [0.8, 0.3]])
    best = float(post.predict(post.x)[0].min())
    acq = PenalizedLogEI(post, best, busy, lipschitz(post, post.x), penalizer, stable)
    x = np.random.default_rng(2).random((6, 2))
    v, g = acq(x, True)
    v2, _ = acq(x, False)
    np.testing.assert_allclose(v, v2)
    assert g is not None
    np.testing.assert_allclose(g, _fd_grad(lambda z: acq(z, False)[0], x), rtol=1e-4,
                               atol=1e-5)


def test_hard_penalizer_vanishes_at_busy_points_soft_one_may_not() -> None:
    post = _posterior()
    best = float(post.predict(post.x)[0].min())
    # a busy point the model predicts *below* the best value: the soft penalizer's ball
    # has negative radius there, the hard one still excludes the point itself
    grid = np.random.default_rng(3).random((4000, 2))
    mu, _ = post.predict(grid)
    x_busy = grid[np.argmin(mu)][None, :]
    lip = lipschitz(post, grid)
    plain = PenalizedLogEI(post, best, np.zeros((0, 2)), lip)
    hard = PenalizedLogEI(post, best, x_busy, lip, "hard")
    soft = PenalizedLogEI(post, best, x_busy, lip, "soft")
    base = plain(x_busy, False)[0][0]
    assert hard(x_busy, False)[0][0] < base - 20  # ψ = 0 up to the 1e-12 distance floor
    assert soft(x_busy, False)[0][0] > base - 1.0
    # far away both leave the acquisition (nearly) unchanged
    far = np.array([[1.0, 1.0]]) if np.linalg.norm(x_busy - 1.0) > 0.5 else np.zeros((1, 2))
    assert hard(far, False)[0][0] == pytest.approx(plain(far, False)[0][0], abs=0.5)


def test_lipschitz_estimates_the_mean_gradient_and_has_a_floor() -> None:
    x = np.linspace(0, 1, 8)[:, None]
    post = Posterior("rbf", x, 3.0 * x[:, 0] - 1.5, Hyper(np.array([2.0]), 4.0, 1e-6))
    grid = np.linspace(0.05, 0.95, 50)[:, None]
    assert lipschitz(post, grid) == pytest.approx(3.0, rel=0.05)
    flat = Posterior("rbf", x, np.zeros(8), Hyper(np.array([0.5]), 1.0, 1e-6))
    assert lipschitz(flat, grid) == 10.0


def test_maximize_finds_the_optimum_of_a_smooth_function() -> None:
    target = np.array([0.31, 0.77, 0.05])

    def acq(x: np.ndarray, grad: bool) -> tuple[np.ndarray, np.ndarray | None]:
        diff = x - target
        return -(diff * diff).sum(1), (-2 * diff if grad else None)

    cands = np.random.default_rng(4).random((64, 3))
    x, v = maximize(acq, cands, n_starts=4)
    np.testing.assert_allclose(x, target, atol=1e-5)
    assert v == pytest.approx(0.0, abs=1e-9)


def test_maximize_never_answers_a_known_point() -> None:
    # the optimum itself is already evaluated (or in flight): the answer is the best
    # point at least REPEAT away from it, not the optimum again
    target = np.array([0.31, 0.77, 0.05])

    def acq(x: np.ndarray, grad: bool) -> tuple[np.ndarray, np.ndarray | None]:
        diff = x - target
        return -(diff * diff).sum(1), (-2 * diff if grad else None)

    cands = np.vstack([target, np.random.default_rng(4).random((64, 3))])
    x, _ = maximize(acq, cands, n_starts=4, known=target[None, :])
    assert not repeats(x[None, :], target[None, :])[0]
    assert np.abs(x - target).max() < 0.3  # still the best region, just not the point
    x0, _ = maximize(acq, cands, n_starts=4)
    assert repeats(x0[None, :], target[None, :])[0]  # without ``known`` it would repeat


def test_first_new_skips_repeats_across_blocks_in_order_of_value() -> None:
    # 40 known points ranked first (more than one block of 32), then new ones: the answer
    # is the best-ranked new candidate, exactly what masking every repeat would give
    rng = np.random.default_rng(7)
    known = rng.random((40, 2))
    fresh = rng.random((10, 2)) * 0.01 + 2.0  # far from every known point
    cands = np.vstack([known + 1e-7, fresh])
    order = np.concatenate([np.arange(40), 40 + np.arange(10)[::-1]])
    assert first_new(cands, order, known) == 49
    masked = np.flatnonzero(~repeats(cands[order], known))
    assert int(order[masked[0]]) == 49
    assert first_new(cands[:40], order[:40], known) is None


def test_solve_lower_is_scipys_triangular_solve_bit_for_bit() -> None:
    from scipy.linalg import cho_factor, solve_triangular

    from tether.strategies.bo.model import solve_lower

    rng = np.random.default_rng(0)
    a = rng.random((40, 40))
    chol = cho_factor(a @ a.T + 40 * np.eye(40), lower=True)[0]  # upper triangle: garbage
    for factor in (chol, np.ascontiguousarray(chol)):  # Fortran and C order
        for b in (rng.random((40, 5)), rng.random((5, 40)).T, rng.random(40)):
            for trans, name in ((0, "N"), (1, "T")):
                want = solve_triangular(factor, b, lower=True, trans=name, check_finite=False)
                assert np.array_equal(solve_lower(factor, b, trans), want)
