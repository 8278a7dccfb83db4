"""Asynchronous (async-bo) versus synchronous batch (batch-bo) Bayesian optimization.

    PYTHONPATH=$PWD python examples/async_vs_sync.py [--scenario branin|heavy]
        [--seeds 5] [--first 0] [--jobs 1] [--json OUT] [--out async_vs_sync.png]

Two scenarios, equal evaluations for both strategies:
- ``branin`` (default): scaled Branin, 3 workers, 30 evaluations, evaluation times
  proportional to the sum of the coordinates (0.1 + u0 + u1 seconds), so some points are
  slow and a synchronous batch waits for its slowest member.
- ``heavy``: Hartmann 6-D, 8 workers, 96 evaluations, heavy-tailed evaluation times drawn
  from a lognormal distribution (mu 0, sigma 1; evaluation k of seed s takes
  ``tether.heavy.duration(s, k)``, independent of the point), as when some evaluations
  hit a slow node or a hard case.

Prints wall time, worker busy share (over the whole run and up to the last dispatch),
where the idle worker time went, and final regret per strategy, and plots best regret
against evaluations and against time, side by side. ``--jobs J`` runs seeds in J
processes (results do not depend on it); ``--json OUT`` keeps one object per run.

The real-daemon counterpart of ``heavy`` is ``benchmarks/daemon_vs_sim.py``.

The runner is a parameter: ``simulated`` (default) uses tether's simulated-time
controller; another runner (e.g. real worker processes through the daemon, ``branin``
only) only has to return a :class:`Trace` for a strategy name and a seed (see ``RUNNERS``).
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import json
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tether.problems import BRANIN_MIN, HARTMANN6_MIN, hartmann6, heavy_durations  # noqa: E402
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


SCENARIOS = {
    "branin": Scenario("Scaled Branin, 3 workers, delay 0.1 + u0 + u1", 2, scaled_branin,
                       BRANIN_MIN, 3, 30, 3, lambda seed: delay),
    "heavy": Scenario("Hartmann6, 8 workers, lognormal(0, 1) durations", 6, hartmann6,
                      HARTMANN6_MIN, 8, 96, 12, heavy_durations),
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
    busy: float  # share of worker-time spent evaluating, whole run
    # the same share up to the last dispatch, while work remained to be handed out
    busy_dispatch: float = float("nan")
    drain: float = float("nan")  # share of all worker-time idle after the last dispatch
    schedule_wall: float = float("nan")  # zero-cost schedule of the same durations
    ask_cpu: float = 0.0  # CPU seconds the strategy spent in propose(), simulated runs
    seed: int = 0

    def regret(self) -> np.ndarray:
        return np.minimum.accumulate(self.values) - SC.fmin


def shares(spans: list[tuple[float, float]], workers: int, t0: float = 0.0
           ) -> tuple[float, float, float, float]:
    """Wall, busy share (whole run), busy share up to the last dispatch, drain share.

    ``spans`` are (start, end) of every evaluation. The whole run is [t0, last end]; up to
    the last dispatch is [t0, last start], the time during which the strategy still had
    evaluations of its budget to hand out. After it no worker can be given work (the
    budget is spent) and the pool drains: the drain share is the worker-time idle in
    (last start, last end] over all worker-time, so busy + drain + idle before the last
    dispatch = 1.
    """
    t_end = max(e for _, e in spans) - t0
    t_last = max(s for s, _ in spans) - t0
    busy = sum(e - s for s, e in spans)
    busy_before = sum(min(e - t0, t_last) - (s - t0) for s, e in spans)
    drain = workers * (t_end - t_last) - (busy - busy_before)
    return (t_end, busy / (workers * t_end), busy_before / (workers * t_last) if t_last > 0
            else float("nan"), drain / (workers * t_end))


def zero_cost_wall(durations: list[float], workers: int) -> float:
    """Wall time of ``durations`` (in dispatch order) with no optimizer time at all.

    Each evaluation starts on the first worker to become free (greedy list scheduling):
    an asynchronous strategy that hands out work at once reaches exactly this, whatever
    its points, so its wall time and busy share are the durations' doing alone.
    """
    free = [0.0] * workers
    end = 0.0
    for d in durations:
        t = heapq.heappop(free) + d
        end = max(end, t)
        heapq.heappush(free, t)
    return end


def busy_by_budget(seeds: range, budgets: tuple[int, ...] = (96, 192, 384, 768)) -> None:
    """Whole-run busy share of the zero-cost asynchronous schedule at larger budgets.

    Only for durations keyed on the evaluation number (``heavy``): there an asynchronous
    run's wall time *is* this schedule's (checked per run by the table's "zero-cost
    schedule" column), so the drain's share can be read off without the optimizer.
    """
    x = np.zeros(SC.dim)
    for n in budgets:
        share = []
        for seed in seeds:
            dur = SC.durations(seed)
            d = [dur(x) for _ in range(n)]
            share.append(sum(d) / (SC.workers * zero_cost_wall(d, SC.workers)))
        q1, med, q3 = 100 * np.percentile(share, [25, 50, 75])
        print(f"  {n} evaluations ({n // SC.workers} per worker): busy share, whole run "
              f"{med:.1f} % ({q1:.1f}–{q3:.1f}); runs >= 95 %: "
              f"{sum(v >= 0.95 for v in share)} of {len(share)}")


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
    recs = sorted((r for r in res.records.values()
                   if np.isfinite(r.t_started) and np.isfinite(r.t_finished)),
                  key=lambda r: r.eval_id)
    # evaluation ids are dispatch order (what the heavy scenario's durations are keyed on)
    assert [r.eval_id for r in recs] == list(range(len(recs)))
    assert all(a.t_started <= b.t_started for a, b in itertools.pairwise(recs))
    done = sorted((r for r in recs if r.status is Status.COMPLETED), key=lambda r: r.t_finished)
    wall, busy, busy_d, drain = shares([(r.t_started, r.t_finished) for r in recs], SC.workers)
    sched = (zero_cost_wall([r.t_finished - r.t_started for r in recs], SC.workers)
             if strategy == "async-bo" else float("nan"))  # a batch waits by design
    return Trace(np.array([r.t_finished for r in done]),
                 np.array([r.value for r in done], dtype=float), wall, busy, busy_d, drain,
                 sched, sum(ask_cpu), seed)


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
        raise SystemExit("the daemon runner has the branin scenario only; for heavy: "
                         "benchmarks/daemon_vs_sim.py")
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
    wall, busy, busy_d, drain = shares([(started[e["eval_id"]], e["t"]) for e in done],
                                       workers_n, t0)
    return Trace(t, np.array([e["value"] for e in done], dtype=float), wall, busy, busy_d,
                 drain, seed=seed)


RUNNERS: dict[str, Callable[[str, int], Trace]] = {"simulated": run_simulated,
                                                   "daemon": run_daemon}


def _init(scenario: str, ask_ahead: int) -> None:
    global ASK_AHEAD, SC
    ASK_AHEAD, SC = ask_ahead, SCENARIOS[scenario]


def _one(job: tuple[str, str, int]) -> Trace:
    runner, strategy, seed = job
    return RUNNERS[runner](strategy, seed)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenario", default="branin", choices=sorted(SCENARIOS))
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--first", type=int, default=0, help="first seed (default 0)")
    ap.add_argument("--jobs", type=int, default=1,
                    help="runs in parallel processes (simulated runner; default 1)")
    ap.add_argument("--runner", default="simulated", choices=sorted(RUNNERS))
    ap.add_argument("--out", default="async_vs_sync.png")
    ap.add_argument("--json", help="write one object per run to this file")
    ap.add_argument("--ask-ahead", type=int, default=0,
                    help="async-bo's ask_ahead option (points prepared while all workers are busy)")
    a = ap.parse_args()
    _init(a.scenario, a.ask_ahead)
    seeds = range(a.first, a.first + a.seeds)
    jobs = [(a.runner, name, seed) for name in ("async-bo", "batch-bo") for seed in seeds]
    if a.jobs > 1 and a.runner == "simulated":
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # spawn: a forked child would inherit TensorFlow's threads in whatever state
        with ProcessPoolExecutor(a.jobs, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=_init, initargs=(a.scenario, a.ask_ahead)) as ex:
            results = list(ex.map(_one, jobs))
    else:
        results = [_one(job) for job in jobs]
    traces = {name: [t for (_, n, _), t in zip(jobs, results, strict=True) if n == name]
              for name in ("async-bo", "batch-bo")}
    _table(traces)
    walls = {n: np.array([t.wall for t in ts]) for n, ts in traces.items()}
    ratio = np.median(walls["async-bo"]) / np.median(walls["batch-bo"])
    paired = walls["async-bo"] / walls["batch-bo"]
    print(f"async / sync wall time: {ratio:.2f} (ratio of medians); per seed: median "
          f"{np.median(paired):.2f}, quartiles {np.percentile(paired, 25):.2f}-"
          f"{np.percentile(paired, 75):.2f}, max {paired.max():.2f} "
          f"(uniformly spread points would give {spread_bound():.2f})")
    if a.scenario == "heavy":
        print("the same durations, asynchronous and zero-cost, with a larger budget:")
        busy_by_budget(seeds)
    if a.json:
        Path(a.json).write_text(json.dumps(
            [{"strategy": n, "seed": t.seed, "wall": t.wall, "busy": t.busy,
              "busy_to_last_dispatch": t.busy_dispatch, "drain": t.drain,
              "zero_cost_wall": t.schedule_wall, "regret": float(t.regret()[-1]),
              "evaluations": len(t.values), "ask_cpu": t.ask_cpu}
             for n, ts in traces.items() for t in ts], indent=1) + "\n")
        print(f"json: {a.json}")
    _plot(traces, a.out, a.runner)


def _q(values: Any, fmt: str = "{:.2f}", scale: float = 1.0) -> str:
    """Median (quartiles)."""
    v = np.asarray(values, dtype=float) * scale
    if np.isnan(v).all():
        return "–"
    q1, med, q3 = np.percentile(v, [25, 50, 75])
    return f"{fmt.format(med)} ({fmt.format(q1)}–{fmt.format(q3)})"


def _table(traces: dict[str, list[Trace]]) -> None:
    print("median (quartiles) over seeds; busy shares and drain in % of worker time")
    print("| strategy | wall time (s) | zero-cost schedule (s) | busy, whole run | busy, to last "
          "dispatch | drain | final regret | runs >= 0.05 | ask CPU per evaluation |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, ts in traces.items():
        reg = np.array([t.regret()[-1] for t in ts])
        asks = np.median([t.ask_cpu / len(t.values) for t in ts]) * 1e3
        print(f"| {name} | {_q([t.wall for t in ts])} | {_q([t.schedule_wall for t in ts])} "
              f"| {_q([t.busy for t in ts], '{:.1f}', 100)} "
              f"| {_q([t.busy_dispatch for t in ts], '{:.1f}', 100)} "
              f"| {_q([t.drain for t in ts], '{:.1f}', 100)} "
              f"| {_q(reg, '{:.1e}')} | {(reg >= 0.05).sum()} of {len(reg)} | {asks:.0f} ms |")
        if len(ts) <= 10:
            print("  per seed: wall " + " ".join(f"{t.wall:.1f}" for t in ts)
                  + " | regret " + " ".join(f"{r:.1e}" for r in reg))
        pooled = sum(t.busy * t.wall for t in ts) / sum(t.wall for t in ts)
        print(f"  {name}: busy share pooled over all runs (total busy / total worker-time) "
              f"{100 * pooled:.1f}%")


def _plot(traces: dict[str, list[Trace]], out: str, runner: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    alpha = 0.6 if max(len(ts) for ts in traces.values()) <= 10 else 0.12
    for (name, ts), color in zip(traces.items(), ("C0", "C1"), strict=False):
        for i, t in enumerate(ts):
            label = name if i == 0 and alpha > 0.5 else None
            ax1.semilogy(np.arange(1, len(t.values) + 1), t.regret(), color=color, alpha=alpha,
                         label=label)
            ax2.semilogy(t.t_done, t.regret(), color=color, alpha=alpha, label=label)
        if alpha < 0.5:  # many runs: the median curve on top of the faint individual ones
            n = min(len(t.values) for t in ts)
            ax1.semilogy(np.arange(1, n + 1), np.median([t.regret()[:n] for t in ts], axis=0),
                         color=color, lw=2.5, label=f"{name} (median of {len(ts)})")
            grid = np.linspace(0, max(t.wall for t in ts), 400)
            # best regret so far at each time; nan before a run's first result
            at = [np.array([t.regret()[k - 1] if k else np.nan
                            for k in np.searchsorted(t.t_done, grid, side="right")]) for t in ts]
            with warnings.catch_warnings():  # before any run's first result: all nan
                warnings.simplefilter("ignore", RuntimeWarning)
                mid = np.nanmedian(at, axis=0)
            ax2.semilogy(grid, mid, color=color, lw=2.5, label=f"{name} (median of {len(ts)})")
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
