"""pySOT 0.3.3 DYCORS on the same problems, run in its own venv (benchmarks/.venv-pysot).

Prints one JSON line per (problem, mode) with the final regret of each seed. Called by
dycors_regret.py; pySOT and POAP are not dependencies of tether. Under uneven durations
unpatched pySOT can crash (its RBF fit asserts when fewer results than the initial
design are back); such seeds are counted and reported as crashes.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np

sys.path.insert(0, __file__.rsplit("/", 1)[0] + "/..")
from tether.problems import BRANIN_MIN, HARTMANN6_MIN, branin, hartmann6


def run(fn, dim: int, budget: int, seed: int, mode: str, workers: int = 4) -> tuple[float, float]:
    """mode: "serial" (POAP SerialController: each result back before the next proposal),
    "instant" / "uneven" (SimTeamController, 4 workers, zero / exponential durations),
    "-patched" variants: the same, with pySOT patched to wait instead of fitting too early.
    """
    from poap.controller import SerialController, SimTeamController
    from pySOT.experimental_design import SymmetricLatinHypercube
    from pySOT.optimization_problems import OptimizationProblem
    from pySOT.strategy import DYCORSStrategy
    from pySOT.surrogate import CubicKernel, LinearTail, RBFInterpolant

    class Problem(OptimizationProblem):
        def __init__(self) -> None:
            self.dim, self.lb, self.ub = dim, np.zeros(dim), np.ones(dim)
            self.int_var, self.cont_var = np.array([]), np.arange(dim)

        def eval(self, x: np.ndarray) -> float:
            return fn(x)

    np.random.seed(seed)
    rng = np.random.default_rng(1000 + seed)
    prob = Problem()
    rbf = RBFInterpolant(dim=dim, lb=prob.lb, ub=prob.ub, kernel=CubicKernel(),
                         tail=LinearTail(dim))
    design = SymmetricLatinHypercube(dim=dim, num_pts=2 * (dim + 1))
    class Patched(DYCORSStrategy):
        def generate_evals(self, num_pts: int) -> None:
            if self.surrogate.num_pts >= dim + 1:  # otherwise wait for results
                super().generate_evals(num_pts)

    cls = Patched if mode.endswith("patched") else DYCORSStrategy
    strategy = cls(max_evals=budget, opt_prob=prob, exp_design=design, surrogate=rbf,
                   asynchronous=True)
    if mode == "serial":
        ctl = SerialController(objective=lambda x: fn(x))
    else:
        uneven = mode.startswith("uneven")
        delay = (lambda rec: float(rng.exponential(1.0))) if uneven else (lambda rec: 0.0)
        ctl = SimTeamController(objective=lambda x: fn(x), delay=delay, workers=workers)
    ctl.strategy = strategy
    t0 = time.perf_counter()
    res = ctl.run()
    elapsed = time.perf_counter() - t0
    n_done = sum(1 for r in ctl.fevals if r.is_completed)
    return float(res.value), elapsed / max(1, n_done)


def main() -> None:
    seeds = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    problems = [("branin", branin, 2, 30, BRANIN_MIN),
                ("hartmann6", hartmann6, 6, 100, HARTMANN6_MIN)]
    for name, fn, dim, budget, fmin in problems:
        for mode in ("serial", "instant", "instant-patched", "uneven", "uneven-patched"):
            regrets, crashes, per_point = [], 0, []
            for seed in range(seeds):
                try:
                    value, t = run(fn, dim, budget, seed, mode)
                    regrets.append(value - fmin)
                    per_point.append(t)
                except Exception:  # unpatched pySOT asserts under some completion orders
                    crashes += 1
            print(json.dumps({"problem": name, "mode": mode, "regrets": regrets,
                              "crashes": crashes, "time_per_point": per_point}), flush=True)


if __name__ == "__main__":
    main()
