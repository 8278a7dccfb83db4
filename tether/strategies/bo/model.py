"""The surrogate: a GPflow GPR, fitted by L-BFGS-B, with a numpy posterior for the hot path.

Inputs are the unit cube (the strategy scales the space), outputs are standardized
(zero mean, unit variance over the completed values). The hyperparameters (ARD
lengthscales, signal variance and, optionally, the noise variance) live in a
``gpflow.models.GPR``; they are fitted by scipy's L-BFGS-B on their logarithms, inside
fixed box bounds, against GPflow's training loss (negative log marginal likelihood plus
the log-normal lengthscale prior), whose value and gradient are one ``tf.function``.
The data are ``tf.Variable`` objects of shape ``[None, d]`` so the compiled graph is
traced once, at construction, and reused for every data size afterwards.

Predictions are made in numpy from the fitted hyperparameters and a cached Cholesky
factor (:class:`Posterior`): with at most a few hundred observations the TensorFlow
call overhead (about 0.3–1 ms a call) dominates the arithmetic, and the acquisition
optimiser calls the posterior hundreds of times per ask. The tests check that this
posterior matches GPflow's ``predict_f`` to rounding.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.linalg import cho_factor, cho_solve, get_lapack_funcs
from scipy.optimize import minimize

from tether.errors import StrategyError
from tether.strategies.bo import _tf

SQRT5 = math.sqrt(5.0)

# Box bounds on the hyperparameters (unit-cube inputs, standardized outputs).
LENGTHSCALE_BOUNDS = (5e-3, 20.0)
VARIANCE_BOUNDS = (1e-2, 1e2)
NOISE_BOUNDS = (1e-6, 1.0)
# The fixed noise variance (standardized units) unless ``noise = "fit"``. At 1e-6 the
# noise sd was 1e-3 of the values' spread, coarser than the last digits a converging run
# resolves: 1e-8 brought the median regret from 6e-5 to 6e-6-8e-6 on Hartmann6 and from
# 1.05e-5 to 1.7e-6 on Branin, 100 seeds each, trapped runs unchanged (docs/bo.md, Ninth
# pass). Near-duplicate points that this leaves singular get jitter (Posterior).
DEFAULT_NOISE = 1e-8
LENGTHSCALE_PRIOR_SD = 1.0  # log-space; tighter (0.3) was tried and explored less on Hartmann6
# The fit is O(n^3) per L-BFGS-B step and the ask runs in the controller's loop: past
# FIT_POINTS observations the hyperparameters are fitted on a subset (the best quarter
# plus a seeded random sample of the rest), and a fit stops after FIT_SECONDS, so an
# ask stays well inside the default liveness window (3 s) at any number of observations.
FIT_POINTS = 256
FIT_SECONDS = 1.5


@dataclass(frozen=True)
class Hyper:
    """Kernel hyperparameters in model units."""

    lengthscales: np.ndarray  # (d,)
    variance: float
    noise: float


def kernel_matrix(kind: str, a: np.ndarray, b: np.ndarray, hyp: Hyper) -> np.ndarray:
    """k(a, b) for (m, d) and (n, d) arrays."""
    r2 = _scaled_sqdist(a, b, hyp.lengthscales)
    if kind == "rbf":
        return hyp.variance * np.exp(-0.5 * r2)
    r = np.sqrt(r2)
    return hyp.variance * (1.0 + SQRT5 * r + (5.0 / 3.0) * r2) * np.exp(-SQRT5 * r)


def kernel_grad(
    kind: str, a: np.ndarray, b: np.ndarray, hyp: Hyper
) -> tuple[np.ndarray, np.ndarray]:
    """k(a, b) and its gradient with respect to ``a``: shapes (m, n) and (m, n, d)."""
    inv_l2 = 1.0 / hyp.lengthscales**2
    diff = a[:, None, :] - b[None, :, :]
    r2 = np.einsum("mnd,d->mn", diff * diff, inv_l2)
    if kind == "rbf":
        k = hyp.variance * np.exp(-0.5 * r2)
        return k, -(k[:, :, None] * diff) * inv_l2
    r = np.sqrt(r2)
    e = np.exp(-SQRT5 * r)
    k = hyp.variance * (1.0 + SQRT5 * r + (5.0 / 3.0) * r2) * e
    # d/dr2 of Matérn-5/2 is smooth at r = 0 (no 1/r term), which is why it is written so.
    coef = -(5.0 / 3.0) * hyp.variance * (1.0 + SQRT5 * r) * e
    return k, coef[:, :, None] * diff * inv_l2


def _scaled_sqdist(a: np.ndarray, b: np.ndarray, ls: np.ndarray) -> np.ndarray:
    a, b = a / ls, b / ls
    r2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.maximum(r2, 0.0)


_TRTRS = get_lapack_funcs(("trtrs",), (np.empty((1, 1)),))[0]  # float64


def solve_lower(chol: np.ndarray, b: np.ndarray, trans: int = 0) -> np.ndarray:
    """``solve_triangular(chol, b, lower=True, trans=trans, check_finite=False)``: the same
    LAPACK call, without the batch-dispatch wrapper scipy puts around it, which cost
    0.1 ms a call and 3 ms of a 2-D ask (two solves per acquisition evaluation)."""
    if chol.flags.f_contiguous:
        x, info = _TRTRS(chol, b, lower=1, trans=trans)
    else:  # LAPACK wants Fortran order: solve the transposed system, as scipy does
        x, info = _TRTRS(chol.T, b, lower=0, trans=1 - trans)
    if info != 0:
        raise np.linalg.LinAlgError(f"triangular solve failed (info {info})")
    return np.asarray(x)


class Posterior:
    """GP posterior of the latent function (standardized units), in numpy."""

    def __init__(self, kind: str, x: np.ndarray, y: np.ndarray, hyp: Hyper) -> None:
        self.kind, self.x, self.y, self.hyp = kind, x, y, hyp
        k = kernel_matrix(kind, x, x, hyp)
        k[np.diag_indices_from(k)] += hyp.noise
        jitter = 0.0
        for _ in range(6):  # near-duplicate points: add jitter until the factor exists
            try:
                self.chol = cho_factor(k, lower=True, check_finite=False)
                break
            except np.linalg.LinAlgError:
                jitter = max(1e-8, 10.0 * jitter) * hyp.variance
                k[np.diag_indices_from(k)] += jitter
        else:
            raise StrategyError("GP covariance is not positive definite")
        self.alpha = cho_solve(self.chol, y, check_finite=False)

    def predict(self, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and variance at (m, d) points."""
        ks = kernel_matrix(self.kind, xs, self.x, self.hyp)
        _, var = self._whiten(ks)
        return ks @ self.alpha, var

    def _whiten(self, ks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """L⁻¹kᵀ (n, m) and the variance |L⁻¹k|², the one form both predictions use: at
        a noise floor of 1e-8, k·K⁻¹k loses its last digits near the data to K's
        conditioning, and a gradient from it disagreed with the value enough to double
        the acquisition's line-search evaluations (docs/bo.md, Ninth pass)."""
        v = solve_lower(self.chol[0], ks.T)
        return v, np.maximum(self.hyp.variance - (v * v).sum(0), 1e-12)

    def mean_grad(self, xs: np.ndarray) -> np.ndarray:
        """Gradient (m, d) of the posterior mean, without the variance's O(m n^2) solve.

        Each kernel's gradient is c(r) (x - x_n) / l^2, so the sum over the data is two
        matrix products instead of an (m, n, d) array.
        """
        hyp = self.hyp
        r2 = _scaled_sqdist(xs, self.x, hyp.lengthscales)
        if self.kind == "rbf":
            c = -hyp.variance * np.exp(-0.5 * r2)
        else:
            r = np.sqrt(r2)
            c = -(5.0 / 3.0) * hyp.variance * (1.0 + SQRT5 * r) * np.exp(-SQRT5 * r)
        ca = c * self.alpha[None, :]
        return (xs * ca.sum(1)[:, None] - ca @ self.x) / hyp.lengthscales**2

    def predict_grad(
        self, xs: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Mean, variance and their gradients (m, d) at (m, d) points."""
        ks, dk = kernel_grad(self.kind, xs, self.x, self.hyp)
        mean = ks @ self.alpha
        dmean = np.einsum("mnd,n->md", dk, self.alpha)
        v, var = self._whiten(ks)
        kinv_ks = solve_lower(self.chol[0], v, trans=1)  # (n, m)
        dvar = -2.0 * np.einsum("mnd,nm->md", dk, kinv_ks)
        return mean, var, dmean, dvar


class GPModel:
    """GPflow GPR with fixed-shape compiled training loss; see the module docstring."""

    def __init__(self, dim: int, kernel: str = "matern52", noise: float | None = DEFAULT_NOISE,
                 lengthscale: float | None = None) -> None:
        if kernel not in ("matern52", "rbf"):
            raise StrategyError(f"unknown kernel {kernel!r}")
        self.dim, self.kind = dim, kernel
        self.learn_noise = noise is None
        ns = _tf.load()
        tf, tfp, gpflow = ns.tf, ns.tfp, ns.gpflow
        self._tf = tf
        f64 = tf.float64
        # Unit-cube lengthscales grow with sqrt(d) for the same "wiggliness" per axis.
        ls0 = lengthscale if lengthscale is not None else 0.25 * math.sqrt(dim)
        self._x = tf.Variable(np.zeros((0, dim)), shape=tf.TensorShape([None, dim]),
                              dtype=f64, trainable=False)
        self._y = tf.Variable(np.zeros((0, 1)), shape=tf.TensorShape([None, 1]),
                              dtype=f64, trainable=False)
        exp = tfp.bijectors.Exp()
        kernels = gpflow.kernels
        kern_cls = kernels.Matern52 if kernel == "matern52" else kernels.SquaredExponential
        kern = kern_cls()
        kern.lengthscales = gpflow.Parameter(np.full(dim, ls0), transform=exp, dtype=f64)
        kern.variance = gpflow.Parameter(1.0, transform=exp, dtype=f64)
        # A weak prior keeps the lengthscales sensible while there are only a few points
        # (the likelihood alone then often runs them to a bound).
        kern.lengthscales.prior = tfp.distributions.LogNormal(
            tf.constant(math.log(ls0), f64), tf.constant(LENGTHSCALE_PRIOR_SD, f64))
        gpr = gpflow.models.GPR((self._x, self._y), kernel=kern, noise_variance=1e-2)
        gpr.likelihood.variance = gpflow.Parameter(
            1e-2 if noise is None else noise, transform=exp, dtype=f64,
            trainable=self.learn_noise)
        self.gpr = gpr
        self._noise = float(gpr.likelihood.variance.numpy())
        self.kernel = kern
        self._params = [kern.lengthscales, kern.variance]
        if self.learn_noise:
            self._params.append(gpr.likelihood.variance)
        self._vars = [p.unconstrained_variable for p in self._params]
        lo = [math.log(LENGTHSCALE_BOUNDS[0])] * dim + [math.log(VARIANCE_BOUNDS[0])]
        hi = [math.log(LENGTHSCALE_BOUNDS[1])] * dim + [math.log(VARIANCE_BOUNDS[1])]
        if self.learn_noise:
            lo.append(math.log(NOISE_BOUNDS[0]))
            hi.append(math.log(NOISE_BOUNDS[1]))
        self.bounds = list(zip(lo, hi, strict=False))

        sizes = [int(np.prod(v.shape)) if v.shape.rank else 1 for v in self._vars]

        # theta goes in as one tensor and is assigned inside the graph: one call per loss
        # evaluation instead of one eager assign per parameter plus the call (the assigns
        # were 0.5 ms each, a third of a 2-D loss evaluation at 100 points; Ninth pass)
        @tf.function(input_signature=[tf.TensorSpec(shape=[sum(sizes)], dtype=f64)])
        def loss_and_grad(theta: Any) -> tuple[Any, Any]:
            for v, part in zip(self._vars, tf.split(theta, sizes), strict=True):
                v.assign(tf.reshape(part, tf.shape(v)))
            with tf.GradientTape() as tape:
                loss = gpr.training_loss()
            grads = tape.gradient(loss, self._vars)
            return loss, tf.concat([tf.reshape(g, [-1]) for g in grads], 0)

        @tf.function(input_signature=[tf.TensorSpec(shape=[None, dim], dtype=f64)])
        def predict_f(xs: Any) -> tuple[Any, Any]:
            return gpr.predict_f(xs)

        self._loss_and_grad = loss_and_grad
        self._predict_f = predict_f
        self.n_fits = 0  # L-BFGS-B runs so far (tests read it to check the refit policy)
        self.y_mean, self.y_std = 0.0, 1.0
        self._xn, self._yn = np.zeros((0, dim)), np.zeros(0)
        self._warm()

    # ---------------------------------------------------------------- data
    def _warm(self) -> None:
        """Trace the compiled functions now (about a second), not on the first ask."""
        rng = np.random.default_rng(0)
        self.set_data(rng.random((4, self.dim)), rng.standard_normal(4))
        self._loss_and_grad(self._tf.constant(self.get_theta()))
        self._predict_f(rng.random((3, self.dim)))

    def set_data(self, x: np.ndarray, y: np.ndarray) -> None:
        """Unit-cube points (n, d) and raw values (n,); values are standardized here."""
        y = np.asarray(y, dtype=float)
        self.y_mean = float(y.mean()) if y.size else 0.0
        std = float(y.std()) if y.size > 1 else 0.0
        self.y_std = std if std > 1e-12 * max(1.0, abs(self.y_mean)) else 1.0
        # numpy copies for every read: a read of a tf.Variable is an eager op (0.1 ms),
        # and an ask read the data a dozen times
        self._xn = np.asarray(x, dtype=float).reshape(-1, self.dim)
        self._yn = (y - self.y_mean) / self.y_std
        self._x.assign(self._xn)
        self._y.assign(self._yn.reshape(-1, 1))

    @property
    def n(self) -> int:
        return len(self._yn)

    def targets(self) -> np.ndarray:
        """The standardized training values, (n,)."""
        return self._yn

    def standardize(self, y: np.ndarray | float) -> np.ndarray:
        return (np.asarray(y, dtype=float) - self.y_mean) / self.y_std

    # ---------------------------------------------------------------- hyperparameters
    def get_theta(self) -> np.ndarray:
        return np.concatenate([np.ravel(v.numpy()) for v in self._vars])

    def set_theta(self, theta: np.ndarray) -> None:
        i = 0
        for v in self._vars:
            size = int(np.prod(v.shape)) if v.shape.rank else 1
            v.assign(np.reshape(theta[i:i + size], v.shape))
            i += size

    @property
    def hyper(self) -> Hyper:
        # every parameter is exp of its unconstrained variable (the Exp bijectors above);
        # reading them through GPflow's transforms ran a dozen eager ops, 8 ms of a 2-D
        # ask at 100 points (Ninth pass)
        theta = np.exp(self.get_theta())
        d = self.dim
        noise = float(theta[d + 1]) if self.learn_noise else self._noise
        return Hyper(theta[:d], float(theta[d]), noise)

    def loss(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        try:
            value, grads = self._loss_and_grad(self._tf.constant(theta, self._tf.float64))
        except self._tf.errors.InvalidArgumentError:  # Cholesky failed: steer away
            return 1e10, np.zeros_like(theta)
        g = grads.numpy()
        v = float(value.numpy())
        if not (math.isfinite(v) and np.all(np.isfinite(g))):
            return 1e10, np.zeros_like(theta)
        return v, g

    def fit(self, restarts: int = 0, rng: np.random.Generator | None = None,
            maxiter: int = 200, max_points: int | None = None,
            seconds: float | None = None, max_line_search: int = 20) -> float:
        """L-BFGS-B from the current hyperparameters (a warm start) and ``restarts``
        random starts inside the bounds; keeps the best. Returns the final loss.

        On more than ``max_points`` (default FIT_POINTS) observations the fit sees a
        subset; past ``seconds`` (default FIT_SECONDS) the running start stops and no
        further start begins. ``max_line_search`` caps L-BFGS-B's steps per line search
        (scipy's ``maxls``).
        """
        rng = rng or np.random.default_rng(0)
        max_points = FIT_POINTS if max_points is None else max_points
        seconds = FIT_SECONDS if seconds is None else seconds
        full = None
        if self.n > max_points:
            full = (self._xn, self._yn.reshape(-1, 1))
            keep = fit_subset(self._yn, max_points, rng)
            self._x.assign(full[0][keep])
            self._y.assign(full[1][keep])
        try:
            return self._fit(restarts, rng, maxiter, time.perf_counter() + seconds,
                             max_line_search)
        finally:
            if full is not None:
                self._x.assign(full[0])
                self._y.assign(full[1])

    def _fit(self, restarts: int, rng: np.random.Generator, maxiter: int,
             deadline: float, max_line_search: int) -> float:
        lo, hi = np.array(self.bounds).T
        starts = [np.clip(self.get_theta(), lo, hi)]
        starts += [lo + (hi - lo) * rng.random(lo.size) for _ in range(restarts)]
        # L-BFGS-B never ends above its starting value, so the start needs no evaluation
        # of its own (that was one loss call in seven of a warm refit)
        best_theta, best_loss = starts[0], math.inf

        def out_of_time(intermediate_result: Any) -> None:
            if time.perf_counter() > deadline:
                raise StopIteration  # scipy >= 1.11 ends the run with its best point

        for theta0 in starts:
            res = minimize(self.loss, theta0, jac=True, method="L-BFGS-B", bounds=self.bounds,
                           options={"maxiter": maxiter, "maxls": max_line_search},
                           callback=out_of_time)
            if float(res.fun) < best_loss:
                best_theta, best_loss = np.asarray(res.x), float(res.fun)
            if time.perf_counter() > deadline:
                break
        self.set_theta(best_theta)
        self.n_fits += 1
        return best_loss

    # ---------------------------------------------------------------- prediction
    def posterior(self) -> Posterior:
        return Posterior(self.kind, self._xn, self._yn, self.hyper)

    def predict_tf(self, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """GPflow's own (compiled) prediction, standardized units; for checks."""
        mean, var = self._predict_f(self._tf.constant(np.asarray(xs, dtype=float)))
        return mean.numpy().ravel(), var.numpy().ravel()


def fit_subset(y: np.ndarray, m: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``m`` of the observations ``y``: the best quarter, the rest at random."""
    order = np.argsort(y, kind="stable")
    n_best = m // 4
    rest = rng.choice(order[n_best:], size=m - n_best, replace=False)
    return np.sort(np.concatenate([order[:n_best], rest]))
