"""DYCORS final regret: tether against pySOT 0.3.3, serial, instant and uneven durations.

    PYTHONPATH=. python benchmarks/dycors_regret.py [--seeds 10] [--no-pysot]

Problems: scaled Branin on [0,1]^2 (budget 30) and Hartmann6 (budget 100), 4 workers.
Modes, all in simulated time (tether's SimulatedController, POAP's SimTeamController):
``serial`` one worker; ``instant`` 4 workers, zero durations (every proposal but the
first few is made with 3 evaluations pending); ``uneven`` 4 workers, durations drawn
from Exp(1) (results come back out of order). pySOT runs in its own virtual
environment (``benchmarks/.venv-pysot``, ``pip install pySOT==0.3.3 poap six``), made
if missing; it is not a dependency of tether. pySOT's "serial" mode uses POAP's
SerialController (each result back before the next proposal).

Prints a Markdown table: median final regret over the seeds (and how many seeds ended
in Hartmann6's local minimum, regret > 0.05), plus tether's propose time per point.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from tether.controller.local import SimulatedController
from tether.controller.settings import RunSettings
from tether.problems import BRANIN_MIN, HARTMANN6_MIN, branin, hartmann6
from tether.records import Proposal, RunView
from tether.space import Space
from tether.strategies.compose import Wrapper
from tether.strategies.dycors import DYCORS
from tether.strategies.sampling import RandomSampling

HERE = Path(__file__).resolve().parent
VENV = HERE / ".venv-pysot"
PROBLEMS = [("branin", branin, 2, 30, BRANIN_MIN), ("hartmann6", hartmann6, 6, 100, HARTMANN6_MIN)]
MODES = ("serial", "instant", "uneven")


class Timed(Wrapper):
    """Measures the wall time of each propose call."""

    def __init__(self, inner: DYCORS) -> None:
        super().__init__(inner)
        self.times: list[float] = []

    def propose(self, view: RunView) -> Proposal | None:
        t = time.perf_counter()
        p = self.inner.propose(view)
        self.times.append(time.perf_counter() - t)
        return p


def run_tether(fn: Any, dim: int, budget: int, seed: int, mode: str) -> tuple[float, list[float]]:
    space = Space.unit(dim)
    rng = np.random.default_rng(1000 + seed)
    duration = (lambda x: float(rng.exponential(1.0))) if mode == "uneven" else (lambda x: 0.0)
    strategy = Timed(DYCORS(space, budget, seed=seed))
    res = SimulatedController(space, strategy, fn, workers=1 if mode == "serial" else 4,
                              settings=RunSettings(budget=budget), duration=duration).run()
    assert res.best is not None and res.best.value is not None and res.reason == "budget"
    return float(res.best.value), strategy.times


def ensure_pysot() -> Path | None:
    py = VENV / "bin" / "python"
    if py.exists():
        return py
    try:
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "pySOT==0.3.3", "poap", "six"],
                       check=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"pySOT unavailable: {exc}", file=sys.stderr)
        return None
    return py


def run_pysot(seeds: int) -> dict[tuple[str, str], dict[str, Any]]:
    py = ensure_pysot()
    if py is None:
        return {}
    out = subprocess.run([str(py), str(HERE / "pysot_dycors.py"), str(seeds)], check=True,
                         capture_output=True, text=True, cwd=HERE.parent).stdout
    rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return {(r["problem"], r["mode"]): r for r in rows}


def fmt(regrets: list[float]) -> str:
    if not regrets:
        return "—"
    trapped = sum(r > 0.05 for r in regrets)
    median = f"{np.median(regrets):.1e}"
    return f"{median} ({trapped} trapped)" if trapped else median


def simulated_throughput(n: int = 10_000) -> float:
    space = Space.unit(2)
    t = time.perf_counter()
    res = SimulatedController(space, RandomSampling(space), lambda x: float(x.sum()), workers=8,
                              settings=RunSettings(budget=n),
                              duration=lambda x: 1.0 + float(x[0])).run()
    assert len(res.completed) == n
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--no-pysot", action="store_true")
    args = ap.parse_args()
    pysot = {} if args.no_pysot else run_pysot(args.seeds)
    print("| problem | mode | tether DYCORS | propose ms/pt (median, p90, max) "
          "| pySOT 0.3.3 DYCORS |")
    print("|---|---|---|---|---|")
    for name, fn, dim, budget, fmin in PROBLEMS:
        for mode in MODES:
            regrets, times = [], []
            for seed in range(args.seeds):
                value, t = run_tether(fn, dim, budget, seed, mode)
                regrets.append(value - fmin)
                times.extend(t)
            ms = (f"{1e3 * np.median(times):.1f}, {1e3 * np.percentile(times, 90):.1f}, "
                  f"{1e3 * np.max(times):.0f}")
            print(f"| {name} | {mode} | {fmt(regrets)} | {ms} | {pysot_cell(pysot, name, mode)} |")
    print(f"\n10,000 simulated evaluations of `random` with 8 workers: "
          f"{simulated_throughput():.2f} s")


def pysot_cell(pysot: dict[tuple[str, str], dict[str, Any]], name: str, mode: str) -> str:
    row = pysot.get((name, mode))
    if row is None:
        return "not run"
    cell = fmt(row["regrets"])
    if row["time_per_point"]:
        cell += f", {1e3 * np.median(row['time_per_point']):.1f} ms/pt"
    n = len(row["regrets"]) + row["crashes"]
    if row["crashes"]:
        cell = f"crashed {row['crashes']}/{n}" + (f"; others {cell}" if row["regrets"] else "")
    patched = pysot.get((name, mode + "-patched"))
    if patched is not None and row["crashes"]:
        cell += f"; patched to wait: {fmt(patched['regrets'])}"
        if patched["crashes"]:
            cell += f", crashed {patched['crashes']}"
    return cell


if __name__ == "__main__":
    main()
