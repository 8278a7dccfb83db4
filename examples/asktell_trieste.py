"""Trieste's asynchronous local penalization as a tether strategy, through ask/tell.

    tether controller run.toml --strategy examples.asktell_trieste:make_strategy

This is the seed notebook's optimizer: a Trieste ``AskTellOptimizer`` with
``AsynchronousGreedy(LocalPenalization)``, one point per ask, on a GPflow GPR with a
squared-exponential kernel and fixed noise, hyperparameters refitted (Trieste's default
Scipy fit) on every tell. Random initial points are evaluated first; the optimizer is
built once they are back. ``[strategy]`` options: ``seed`` (0), ``initial_points`` (3),
``noise`` (1e-5), ``lengthscale`` (0.2, initial, in the unit cube).

Trieste is not a dependency of tether and pins TensorFlow versions of its own: install
it where the controller runs (``scripts/peer_env.sh trieste`` makes ``.venv-trieste``);
workers never import it.

Pending points by evaluation id: Trieste's asynchronous rule removes a pending point
when a dataset row compares equal to it, and a failed or killed point, which never
reaches the dataset, stays pending for good. Here each handle is Trieste's own query
point (unit coordinates, exactly as asked), bound to its evaluation's id by the
adapter, and before every ask the rule's pending points are set to the handles tether
still has in flight: a failure, a kill or a re-queued evaluation is accounted for
exactly, and no coordinates are ever compared.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from tether.errors import ConfigError, StrategyError
from tether.space import Space
from tether.strategies.asktell import AskTellStrategy
from tether.strategies.base import Options, Strategy


class TriesteAsyncLP:
    """The ask, tell and point functions around one Trieste ``AskTellOptimizer``."""

    def __init__(self, space: Space, initial_points: int = 3, seed: int = 0,
                 noise: float = 1e-5, lengthscale: float = 0.2) -> None:
        import trieste  # noqa: F401  (fail at construction, not at the first ask)

        self.space, self.seed, self.noise, self.lengthscale = space, seed, noise, lengthscale
        self.rng = np.random.default_rng(seed)
        self.design_left = initial_points  # random points still to hand out
        self.design_out = 0  # handed out, not told yet
        self.xs: list[np.ndarray] = []  # the design's results, for the first model
        self.ys: list[float] = []
        self.opt: Any = None
        self.strategy = AskTellStrategy(space, self.ask, self.tell, point=self.point,
                                        tag="trieste-async-lp")

    def point(self, q: np.ndarray) -> np.ndarray:
        return self.space.from_unit(q[0])

    def ask(self) -> np.ndarray | None:
        if self.opt is None:
            if self.design_left > 0 or (self.design_out == 0 and not self.ys):
                self.design_left = max(0, self.design_left - 1)
                self.design_out += 1
                return self.rng.random((1, self.space.dim))
            if self.design_out > 0:
                return None  # the seed setup: the initial points come back first
            self.opt = self._build()
        self._set_pending(self.strategy.in_flight())
        from trieste.acquisition.optimizer import FailedOptimizationError

        try:
            return np.asarray(self.opt.ask().numpy(), dtype=np.float64)
        except FailedOptimizationError:
            # Trieste's acquisition optimizer gives up now and then (a flat penalized
            # acquisition, all restarts failing): a random point keeps the run going, and
            # its result is data like any other
            return self.rng.random((1, self.space.dim))

    def tell(self, q: np.ndarray, value: float | None) -> None:
        if self.opt is None:
            self.design_out -= 1
            if value is not None:
                self.xs.append(q)
                self.ys.append(value)
            return
        if value is None:
            return  # no data; it leaves the pending set with the evaluation
        import tensorflow as tf
        from trieste.data import Dataset

        try:
            self.opt.tell(Dataset(tf.constant(q, tf.float64), tf.constant([[value]], tf.float64)))
        except tf.errors.InvalidArgumentError:
            # the refit left hyperparameters whose kernel matrix has no Cholesky factor (it
            # happened once in CI: Branin's values run to hundreds, the noise is fixed at
            # 1e-5). The point is already in Trieste's dataset and model; start the
            # hyperparameters again from their initial values so the next ask has a model
            self._reset_hyperparameters()

    def _reset_hyperparameters(self) -> None:
        model = self.opt.model
        kernel = model.get_kernel()
        kernel.variance.assign(1.0)
        kernel.lengthscales.assign([self.lengthscale] * self.space.dim)
        model.update_posterior_cache()

    def _set_pending(self, handles: list[np.ndarray]) -> None:
        import tensorflow as tf
        from trieste.acquisition.rule import AsynchronousRuleState

        if not hasattr(self.opt, "_acquisition_state"):
            raise StrategyError("this Trieste version keeps its rule state elsewhere: "
                                "examples/asktell_trieste.py needs updating")
        pending = tf.constant(np.concatenate(handles), tf.float64) if handles else None
        # Trieste has no public setter; the state is what its own ask would have kept,
        # minus points that failed or were killed
        self.opt._acquisition_state = AsynchronousRuleState(pending)

    def _build(self) -> Any:
        import gpflow
        import tensorflow as tf
        from trieste.acquisition.function import LocalPenalization
        from trieste.acquisition.rule import AsynchronousGreedy
        from trieste.ask_tell_optimization import AskTellOptimizer
        from trieste.data import Dataset
        from trieste.models.gpflow import GaussianProcessRegression
        from trieste.space import Box

        tf.random.set_seed(self.seed)  # the acquisition optimiser's random starts
        dim = self.space.dim
        box = Box([0.0] * dim, [1.0] * dim)
        data = Dataset(tf.constant(np.concatenate(self.xs), tf.float64),
                       tf.constant(np.array(self.ys).reshape(-1, 1), tf.float64))
        kernel = gpflow.kernels.SquaredExponential(lengthscales=[self.lengthscale] * dim)
        gpr = gpflow.models.GPR(data.astuple(), kernel, noise_variance=self.noise)
        gpflow.set_trainable(gpr.likelihood, False)
        rule = AsynchronousGreedy(builder=LocalPenalization(box))
        return AskTellOptimizer(box, data, GaussianProcessRegression(gpr), rule)


def make_strategy(space: Space, budget: int, options: Mapping[str, Any]) -> Strategy:
    o = Options("examples.asktell_trieste", options)
    seed = o.get("seed", 0, int)
    initial = o.get("initial_points", 3, int)
    noise = o.get("noise", 1e-5, float)
    lengthscale = o.get("lengthscale", 0.2, float)
    o.done()
    if initial < 1 or noise <= 0 or lengthscale <= 0:
        raise ConfigError("[strategy] initial_points >= 1, noise > 0 and lengthscale > 0 needed")
    try:
        return TriesteAsyncLP(space, initial, seed, noise, lengthscale).strategy
    except ImportError as exc:
        raise ConfigError(f"this strategy needs trieste ({exc}): see scripts/peer_env.sh") from None
