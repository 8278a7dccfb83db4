"""Asynchronous (async-bo) versus synchronous batch (batch-bo) Bayesian optimization.

    PYTHONPATH=$PWD python examples/async_vs_sync.py [--seeds 5] [--out async_vs_sync.png]

Scaled Branin, 3 workers, 30 evaluations each, and evaluation times proportional to the
sum of the coordinates (0.1 + u0 + u1 seconds), so some points are slow and a
synchronous batch waits for its slowest member. Prints wall time and worker busy share
per strategy and plots best regret against evaluations and against time, side by side.

The runner is a parameter: ``simulated`` (default) uses tether's simulated-time
controller; another runner (e.g. real worker processes through the daemon) only has to
return a :class:`Trace` for a strategy name and a seed (see ``RUNNERS``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tether.problems import BRANIN_MIN  # noqa: E402
from tether.problems import branin as scaled_branin  # noqa: E402
from tether.records import Status  # noqa: E402

WORKERS, BUDGET, INITIAL = 3, 30, 3
ASK_AHEAD = 0  # async-bo's ask_ahead option (--ask-ahead)


def delay(u: np.ndarray) -> float:
    return 0.1 + float(np.sum(u))


def spread_bound(samples: int = 200_000) -> float:
    """Wall-time ratio async / sync if every point were uniform in the box (no overhead).

    A synchronous batch lasts as long as its slowest member, an asynchronous worker as
    long as the average evaluation: E[delay] / E[max of WORKERS delays]. Optimization
    concentrates points (batch members end up with similar delays), so the achievable
    ratio for a real strategy is higher than this.
    """
    u = np.random.default_rng(0).random((samples, WORKERS, 2))
    d = 0.1 + u.sum(-1)
    return float(d.mean() / d.max(1).mean())


@dataclass
class Trace:
    """One run: completion times (s from start) and values, in completion order."""

    t_done: np.ndarray
    values: np.ndarray
    wall: float  # time until the last result
    busy: float  # share of worker-time spent evaluating

    def regret(self) -> np.ndarray:
        return np.minimum.accumulate(self.values) - BRANIN_MIN


def run_simulated(strategy: str, seed: int) -> Trace:
    from tether.controller.local import SimulatedController
    from tether.controller.settings import RunSettings
    from tether.space import Space
    from tether.strategies import create

    space = Space.unit(2)
    opts = {"seed": seed, "initial_points": INITIAL}
    if strategy == "async-bo":  # same Sobol start as batch-bo: only the timing differs
        opts.update(ask_ahead=ASK_AHEAD, explore="none")
    s = create(strategy, space, BUDGET, opts)
    res = SimulatedController(space, s, scaled_branin, workers=WORKERS,
                              settings=RunSettings(budget=BUDGET), duration=delay).run()
    done = sorted((r for r in res.records.values() if r.status is Status.COMPLETED),
                  key=lambda r: r.t_finished)
    t = np.array([r.t_finished for r in done])
    busy = sum(r.t_finished - r.t_started for r in res.records.values()
               if np.isfinite(r.t_started) and np.isfinite(r.t_finished))
    return Trace(t, np.array([r.value for r in done], dtype=float), float(t[-1]),
                 busy / (WORKERS * float(t[-1])))


def run_daemon(strategy: str, seed: int) -> Trace:
    """The same run with a real controller and 3 real worker processes over 127.0.0.1."""
    import subprocess
    import tempfile

    from tether.log.journal import read_events

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        (tmp / "c.toml").write_text(
            f'[space]\nx0 = [0.0, 1.0]\nx1 = [0.0, 1.0]\n[strategy]\nname = "{strategy}"\n'
            f"seed = {seed}\ninitial_points = {INITIAL}\n"
            + (f'ask_ahead = {ASK_AHEAD}\nexplore = "none"\n' if strategy == "async-bo" else "")
            + f"[run]\nbudget = {BUDGET}\n"
            f'bind = "tcp://127.0.0.1:0"\nlog = "{tmp / "run.jsonl"}"\n')
        cmd = [sys.executable, "-m", "tether"]
        ctl = subprocess.Popen([*cmd, "controller", str(tmp / "c.toml"), "--address-file",
                                str(tmp / "addr")], stdout=subprocess.DEVNULL)
        workers = [subprocess.Popen([*cmd, "worker", "--address-file", str(tmp / "addr"),
                                     "--python", "tether.problems:branin_sum_delay"],
                                    stderr=subprocess.DEVNULL) for _ in range(WORKERS)]
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
                 busy / (WORKERS * float(t[-1])))


RUNNERS: dict[str, Callable[[str, int], Trace]] = {"simulated": run_simulated,
                                                   "daemon": run_daemon}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--runner", default="simulated", choices=sorted(RUNNERS))
    ap.add_argument("--out", default="async_vs_sync.png")
    ap.add_argument("--ask-ahead", type=int, default=0,
                    help="async-bo's ask_ahead option (points prepared while all workers are busy)")
    a = ap.parse_args()
    global ASK_AHEAD
    ASK_AHEAD = a.ask_ahead
    run = RUNNERS[a.runner]
    traces = {name: [run(name, seed) for seed in range(a.seeds)]
              for name in ("async-bo", "batch-bo")}
    print("| strategy | median wall time | median busy share | median final regret |")
    print("|---|---|---|---|")
    for name, ts in traces.items():
        print(f"| {name} | {np.median([t.wall for t in ts]):.2f} s | "
              f"{100 * np.median([t.busy for t in ts]):.0f}% | "
              f"{np.median([t.regret()[-1] for t in ts]):.1e} |")
    ratio = (np.median([t.wall for t in traces["async-bo"]])
             / np.median([t.wall for t in traces["batch-bo"]]))
    print(f"async / sync wall time: {ratio:.2f} (uniformly spread points would give "
          f"{spread_bound():.2f})")
    _plot(traces, a.out, a.runner)


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
    fig.suptitle(f"Scaled Branin, {WORKERS} workers, delay 0.1 + u0 + u1")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    print(f"plot: {out}")


if __name__ == "__main__":
    main()
