"""Trieste's asynchronous local penalization as a tether Strategy, for side-by-side runs.

Runs only in the benchmark's own environment (``benchmarks/.venv-trieste``, with
``pip install trieste``); tether itself never imports Trieste. The emulation follows
the issue's seed setup: GPR with an RBF kernel, noise fixed at 1e-5, Trieste's default
Scipy hyperparameter fit on every tell, ``AsynchronousGreedy(LocalPenalization)``, one
point per ask. The initial points are evaluated first (the adapter waits for them),
then every free worker gets one ask, and each result is one tell followed by one ask.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

from tether.records import COMPLETED, Evaluate, Proposal, Record, RunView
from tether.space import Space
from tether.strategies.base import Strategy

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# The same thread settings tether's controller uses, so the comparison is like for like.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")


def _trieste() -> Any:
    import gpflow
    import tensorflow as tf
    import trieste
    from trieste.acquisition.function import LocalPenalization
    from trieste.acquisition.rule import AsynchronousGreedy
    from trieste.ask_tell_optimization import AskTellOptimizer
    from trieste.data import Dataset
    from trieste.models.gpflow import GaussianProcessRegression

    tf.get_logger().setLevel("ERROR")
    try:
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        pass
    return dict(gpflow=gpflow, tf=tf, trieste=trieste, LP=LocalPenalization,
                AG=AsynchronousGreedy, ATO=AskTellOptimizer, Dataset=Dataset,
                GPR=GaussianProcessRegression)


def build_optimizer(x: np.ndarray, y: np.ndarray, dim: int, noise: float = 1e-5) -> Any:
    t = _trieste()
    gpflow, tf = t["gpflow"], t["tf"]
    space = t["trieste"].space.Box([0.0] * dim, [1.0] * dim)
    data = t["Dataset"](tf.constant(x, tf.float64), tf.constant(y.reshape(-1, 1), tf.float64))
    kernel = gpflow.kernels.SquaredExponential(lengthscales=[0.2] * dim)
    gpr = gpflow.models.GPR(data.astuple(), kernel, noise_variance=noise)
    gpflow.set_trainable(gpr.likelihood, False)
    model = t["GPR"](gpr)
    rule = t["AG"](builder=t["LP"](space))
    return t["ATO"](space, data, model, rule), t


class TriesteAsyncLP(Strategy):
    """Trieste AsynchronousGreedy + LocalPenalization behind tether's Strategy interface."""

    name = "trieste-async-lp"

    def __init__(self, space: Space, initial_points: int = 3, seed: int = 0,
                 noise: float = 1e-5) -> None:
        self.space = space
        self.noise = noise
        self.initial = initial_points
        self.rng = np.random.default_rng(seed)
        self.design = self.rng.random((initial_points, space.dim))
        self.opt: Any = None
        self.t: Any = None
        self.ask_times: list[float] = []
        self.tell_times: list[float] = []
        self._asked: np.ndarray | None = None  # Trieste's point, until the core takes it
        self._by_id: dict[int, np.ndarray] = {}  # eval id -> the point Trieste asked

    def propose(self, view: RunView) -> Proposal | None:
        k = len(view.records)
        if k < self.initial:
            return Evaluate.at(self.space.from_unit(self.design[k]))
        if self.opt is None:
            done = [r for r in view.completed()]
            if len(done) < self.initial:
                return None  # the seed setup: the initial points come back first
            x = self.space.to_unit(np.array([r.x for r in done]))
            y = np.array([r.value for r in done], dtype=float)
            self.opt, self.t = build_optimizer(x, y, self.space.dim, self.noise)
        if self._asked is None:  # asked once; offered again until the core takes it
            t0 = time.perf_counter()
            self._asked = self.opt.ask().numpy()
            self.ask_times.append(time.perf_counter() - t0)
        return Evaluate.at(self.space.from_unit(self._asked[0]))

    def on_accepted(self, proposal: Proposal, record: Record | None) -> None:
        if self._asked is not None and record is not None:
            self._by_id[record.eval_id] = self._asked
            self._asked = None

    def on_event(self, kind: str, record: Record, view: RunView) -> None:
        if kind != COMPLETED or record.eval_id not in self._by_id or record.value is None:
            return
        tf = self.t["tf"]
        # Trieste drops a pending point when a told row equals it: tell exactly the
        # point it asked, found by evaluation id (tether's coordinates may differ in the
        # last bit off the unit box). As in the seed notebook, a failed point stays
        # pending; examples/asktell_trieste.py sets the pending points by id instead.
        x = self._by_id.pop(record.eval_id)
        data = self.t["Dataset"](tf.constant(x, tf.float64),
                                 tf.constant([[float(record.value)]], tf.float64))
        t0 = time.perf_counter()
        self.opt.tell(data)
        self.tell_times.append(time.perf_counter() - t0)
