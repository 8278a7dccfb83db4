"""Asynchronous (async-bo) versus synchronous batch (batch-bo) Bayesian optimization.

    PYTHONPATH=$PWD python examples/async_vs_sync.py [--scenario branin|heavy]
        [--seeds 5] [--out async_vs_sync.png]

Two scenarios, equal evaluations for both strategies:
- ``branin`` (default): scaled Branin, 3 workers, 30 evaluations, evaluation times
  proportional to the sum of the coordinates (0.1 + u0 + u1 seconds), so some points are
  slow and a synchronous batch waits for its slowest member.
- ``heavy``: Hartmann 6-D, 8 workers, 96 evaluations, heavy-tailed evaluation times drawn
  from a lognormal distribution (mu 0, sigma 1; seeded per run, independent of the point),
  as when some evaluations hit a slow node or a hard case.

Prints wall time, worker busy share and final regret per strategy and plots best regret
against evaluations and against time, side by side.

The runner is a parameter: ``simulated`` (default) uses tether's simulated-time
controller; another runner (e.g. real worker processes through the daemon, ``branin``
only) only has to return a :class:`Trace` for a strategy name and a seed (see ``RUNNERS``).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tether.problems import BRANIN_MIN, HARTMANN6_MIN, hartmann6  # noqa: E402
from tether.problems import branin as scaled_branin  # noqa: E402
from tether.records import Status  # noqa: E402

ASK_AHEAD = 0  # async-bo's ask_ahead option (--ask-ahead)


def delay(u: np.ndarray) -> float:
    return 0.1 + float(np.sum(u))


@dataclass(frozen=True)
class Scenario:
    """A problem, a worker pool and how long each evaluation takes."""

    title: str
    dim: int
    f: Callable[[np.ndarray], float]
    fmin: float
    workers: int
    budget: int
    initial: int
    # seed -> duration(u): a fresh, seeded generator per run, so both strategies of a seed
    # see the same sequence of durations
    durations: Callable[[int], Callable[[np.ndarray], float]] = field(repr=False)


def _lognormal(seed: int) -> Callable[[np.ndarray], float]:
    rng = np.random.default_rng(50_000 + seed)
    return lambda u: float(rng.lognormal(0.0, 1.0))


SCENARIOS = {
    "branin": Scenario("Scaled Branin, 3 workers, delay 0.1 + u0 + u1", 2, scaled_branin,
                       BRANIN_MIN, 3, 30, 3, lambda seed: delay),
    "heavy": Scenario("Hartmann6, 8 workers, lognormal(0, 1) durations", 6, hartmann6,
                      HARTMANN6_MIN, 8, 96, 12, _lognormal),
}
SC = SCENARIOS["branin"]  # set by --scenario


def spread_bound(samples: int = 200_000) -> float:
    """Wall-time ratio async / sync if every point were uniform in the box (no overhead).

    A synchronous batch lasts as long as its slowest member, an asynchronous worker as
    long as the average evaluation: E[delay] / E[max of one delay per worker]. Optimization
    concentrates points (batch members end up with similar delays), so the achievable
    ratio for a real strategy is higher than this.
    """
    n = samples - samples % SC.workers
    dur = SC.durations(0)
    d = np.array([dur(p) for p in np.random.default_rng(0).random((n, SC.dim))])
    d = d.reshape(-1, SC.workers)
    return float(d.mean() / d.max(1).mean())


@dataclass
class Trace:
    """One run: completion times (s from start) and values, in completion order."""

    t_done: np.ndarray
    values: np.ndarray
    wall: float  # time until the last result
    busy: float  # share of worker-time spent evaluating
    busy_dispatch: float = float("nan")  # the same up to the last dispatch (no drain)
    ask_cpu: float = 0.0  # CPU seconds the strategy spent in propose(), simulated runs

    def regret(self) -> np.ndarray:
        return np.minimum.accumulate(self.values) - SC.fmin


def run_simulated(strategy: str, seed: int) -> Trace:
    from tether.controller.local import SimulatedController
    from tether.controller.settings import RunSettings
    from tether.space import Space
    from tether.strategies import create

    space = Space.unit(SC.dim)
    opts: dict[str, Any] = {"seed": seed, "initial_points": SC.initial}
    if strategy == "async-bo":  # same Sobol start as batch-bo: only the timing differs
        opts.update(ask_ahead=ASK_AHEAD, explore="none")
    s = create(strategy, space, SC.budget, opts)
    ask_cpu = _time_asks(s)
    res = SimulatedController(space, s, SC.f, workers=SC.workers,
                              settings=RunSettings(budget=SC.budget),
                              duration=SC.durations(seed)).run()
    recs = [r for r in res.records.values()
            if np.isfinite(r.t_started) and np.isfinite(r.t_finished)]
    done = sorted((r for r in recs if r.status is Status.COMPLETED), key=lambda r: r.t_finished)
    t = np.array([r.t_finished for r in done])
    busy = sum(r.t_finished - r.t_started for r in recs)
    # Up to the last dispatch every worker could have been given work; after it the
    # budget is spent and the pool drains, batch or not.
    t_last = max(r.t_started for r in recs)
    busy_d = sum(min(r.t_finished, t_last) - r.t_started for r in recs)
    return Trace(t, np.array([r.value for r in done], dtype=float), float(t[-1]),
                 busy / (SC.workers * float(t[-1])), busy_d / (SC.workers * t_last),
                 sum(ask_cpu))


def _time_asks(strategy: Any) -> list[float]:
    """Wrap ``strategy.propose`` to record the CPU time of each call."""
    spent: list[float] = []
    propose = strategy.propose

    def timed(view: Any) -> Any:
        c0 = time.process_time()
        try:
            return propose(view)
        finally:
            spent.append(time.process_time() - c0)

    strategy.propose = timed
    return spent


def run_daemon(strategy: str, seed: int) -> Trace:
    """The same run with a real controller and 3 real worker processes over 127.0.0.1."""
    import subprocess
    import tempfile

    from tether.log.journal import read_events

    if SC is not SCENARIOS["branin"]:
        raise SystemExit("the daemon runner has the branin scenario only")
    workers_n, budget, initial = SC.workers, SC.budget, SC.initial
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        (tmp / "c.toml").write_text(
            f'[space]\nx0 = [0.0, 1.0]\nx1 = [0.0, 1.0]\n[strategy]\nname = "{strategy}"\n'
            f"seed = {seed}\ninitial_points = {initial}\n"
            + (f'ask_ahead = {ASK_AHEAD}\nexplore = "none"\n' if strategy == "async-bo" else "")
            + f"[run]\nbudget = {budget}\n"
            f'bind = "tcp://127.0.0.1:0"\nlog = "{tmp / "run.jsonl"}"\n')
        cmd = [sys.executable, "-m", "tether"]
        ctl = subprocess.Popen([*cmd, "controller", str(tmp / "c.toml"), "--address-file",
                                str(tmp / "addr")], stdout=subprocess.DEVNULL)
        workers = [subprocess.Popen([*cmd, "worker", "--address-file", str(tmp / "addr"),
                                     "--python", "tether.problems:branin_sum_delay"],
                                    stderr=subprocess.DEVNULL) for _ in range(workers_n)]
        if ctl.wait(timeout=600) != 0 or any(w.wait(timeout=60) for w in workers):
            raise RuntimeError(f"{strategy} run failed")
        events = read_events(tmp / "run.jsonl")
    started = {e["eval_id"]: e["t"] for e in events if e["event"] == "started"}
    done = [e for e in events if e["event"] == "completed"]
    # the clock starts when the workers do: the controller's TensorFlow import is not the
    # strategy's doing, and is the same for both
    t0 = min(started.values())
    t = np.array([e["t"] - t0 for e in done])
    busy = sum(e["t"] - started[e["eval_id"]] for e in done)
    return Trace(t, np.array([e["value"] for e in done], dtype=float), float(t[-1]),
                 busy / (workers_n * float(t[-1])))


RUNNERS: dict[str, Callable[[str, int], Trace]] = {"simulated": run_simulated,
                                                   "daemon": run_daemon}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenario", default="branin", choices=sorted(SCENARIOS))
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--runner", default="simulated", choices=sorted(RUNNERS))
    ap.add_argument("--out", default="async_vs_sync.png")
    ap.add_argument("--ask-ahead", type=int, default=0,
                    help="async-bo's ask_ahead option (points prepared while all workers are busy)")
    a = ap.parse_args()
    global ASK_AHEAD, SC
    ASK_AHEAD, SC = a.ask_ahead, SCENARIOS[a.scenario]
    run = RUNNERS[a.runner]
    traces = {name: [run(name, seed) for seed in range(a.seeds)]
              for name in ("async-bo", "batch-bo")}
    _table(traces)
    ratio = (np.median([t.wall for t in traces["async-bo"]])
             / np.median([t.wall for t in traces["batch-bo"]]))
    print(f"async / sync wall time: {ratio:.2f} (uniformly spread points would give "
          f"{spread_bound():.2f})")
    _plot(traces, a.out, a.runner)


def _table(traces: dict[str, list[Trace]]) -> None:
    print("| strategy | median wall time | busy share (to last dispatch) | median final regret "
          "| regret quartiles | runs >= 0.05 | ask CPU per evaluation |")
    print("|---|---|---|---|---|---|---|")
    for name, ts in traces.items():
        reg = np.array([t.regret()[-1] for t in ts])
        q1, q3 = np.percentile(reg, [25, 75])
        asks = np.median([t.ask_cpu / len(t.values) for t in ts]) * 1e3
        print(f"| {name} | {np.median([t.wall for t in ts]):.2f} s | "
              f"{100 * np.median([t.busy for t in ts]):.0f}% "
              f"({100 * np.median([t.busy_dispatch for t in ts]):.0f}%) | "
              f"{np.median(reg):.1e} | {q1:.1e}–{q3:.1e} | {(reg >= 0.05).sum()} of {len(reg)} "
              f"| {asks:.0f} ms |")
        print("  per seed: wall " + " ".join(f"{t.wall:.1f}" for t in ts)
              + " | regret " + " ".join(f"{r:.1e}" for r in reg))


def _plot(traces: dict[str, list[Trace]], out: str, runner: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for (name, ts), color in zip(traces.items(), ("C0", "C1"), strict=False):
        for i, t in enumerate(ts):
            label = name if i == 0 else None
            ax1.semilogy(np.arange(1, len(t.values) + 1), t.regret(), color=color, alpha=0.6,
                         label=label)
            ax2.semilogy(t.t_done, t.regret(), color=color, alpha=0.6, label=label)
    ax1.set_xlabel("evaluations")
    ax2.set_xlabel(f"time (s, {runner})")
    ax1.set_ylabel("best regret")
    ax1.legend()
    fig.suptitle(SC.title)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    print(f"plot: {out}")


if __name__ == "__main__":
    main()
