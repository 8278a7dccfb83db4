"""Real daemon versus zero-overhead simulation on the heavy-tailed scenario.

    PYTHONPATH=$PWD python benchmarks/daemon_vs_sim.py [--seeds 3] [--first 0]
        [--strategies async-bo,batch-bo] [--scale 1.0] [--json OUT]

For each seed and strategy the scenario of docs/tutorials/heavy-tails.md (Hartmann 6-D,
8 workers, 96 evaluations, 12 initial Sobol points, lognormal(0, 1) durations) runs twice:

- **simulated**: ``SimulatedController`` in simulated time; asks cost nothing, evaluation
  *k* (dispatch order) lasts ``tether.heavy.duration(seed, k) * scale`` seconds;
- **daemon**: ``python -m tether controller`` and 8 ``python -m tether worker`` processes
  over 127.0.0.1; each evaluation is ``tether/heavy.py SEED {eval_id} ...`` run by the
  worker's ``--command``, which sleeps the same duration for the same evaluation number.

Durations are keyed on the evaluation number rather than the point, so both runs give
evaluation *k* the same duration even where a few milliseconds of real overhead reorder
two completions and the strategy's later points differ (the table says how many
evaluations had identical points). The daemon's wall time runs from its first
``started`` event to its last ``completed`` one (the controller's TensorFlow import is
left out), the simulation's from 0 to its last completion. The difference is what the
daemon adds: asks on the critical path, messages, the worker's process start.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from examples.async_vs_sync import shares, zero_cost_wall  # noqa: E402
from tether import heavy  # noqa: E402
from tether.problems import HARTMANN6_MIN, heavy_durations  # noqa: E402

WORKERS, BUDGET, INITIAL, DIM = 8, 96, 12, 6
# one thread per process: the machine is small and shared, and the simulated run's
# ask CPU should not depend on how many cores happen to be idle
THREADS = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "TF_NUM_INTRAOP_THREADS": "1",
           "TF_NUM_INTEROP_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}


@dataclass
class Run:
    """One run's timing, from the simulated controller's records or the daemon's log."""

    wall: float
    busy: float  # whole run
    busy_to_last_dispatch: float
    drain: float
    regret: float
    xs: list[tuple[float, ...]]  # points in evaluation-id order
    # median time from a result to the next dispatch (the ask and its messages): zero
    # in simulated time, the daemon's own cost on every worker's timeline
    refill: float = 0.0
    # median of (result - dispatch - the evaluation's nominal duration): messages, the
    # program's start and exit, and how soon the worker notices the exit
    eval_overhead: float = 0.0


def strategy_options(strategy: str, seed: int) -> dict[str, Any]:
    opts: dict[str, Any] = {"seed": seed, "initial_points": INITIAL}
    if strategy == "async-bo":  # the tutorial's setting: the same Sobol start as batch-bo
        opts.update(ask_ahead=0, explore="none")
    return opts


def run_simulated(strategy: str, seed: int, scale: float) -> Run:
    from tether.controller.local import SimulatedController
    from tether.controller.settings import RunSettings
    from tether.space import Space
    from tether.strategies import create

    space = Space.unit(DIM)
    s = create(strategy, space, BUDGET, strategy_options(strategy, seed))
    # the worker program's own Hartmann6 (plain Python): values identical to the bit, so
    # the two runs' GPs see the same numbers
    res = SimulatedController(space, s, lambda x: heavy.hartmann6([float(v) for v in x]),
                              workers=WORKERS, settings=RunSettings(budget=BUDGET),
                              duration=heavy_durations(seed, scale)).run()
    recs = sorted(res.records.values(), key=lambda r: r.eval_id)
    _check_order([(r.eval_id, r.t_started) for r in recs], "simulated")
    wall, busy, busy_d, drain = shares([(r.t_started, r.t_finished) for r in recs], WORKERS)
    best = min(r.value for r in recs if r.value is not None)
    return Run(wall, busy, busy_d, drain, best - HARTMANN6_MIN, [tuple(r.x) for r in recs])


def _check_order(started: list[tuple[int, float]], what: str) -> None:
    """Durations are keyed on evaluation ids: they must be numbered 0.. in dispatch order."""
    ids = [i for i, _ in sorted(started, key=lambda p: (p[1], p[0]))]
    if ids != list(range(BUDGET)):
        raise RuntimeError(f"{what}: evaluation ids are not 0..{BUDGET - 1} in dispatch order")


def run_daemon(strategy: str, seed: int, scale: float, timeout: float) -> Run:
    from tether.log.journal import read_events

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        opts = "".join(f"{k} = {json.dumps(v)}\n" for k, v in strategy_options(strategy, seed).items())
        (tmp / "c.toml").write_text(
            "[space]\n" + "".join(f"x{i} = [0.0, 1.0]\n" for i in range(DIM))
            + f'[strategy]\nname = "{strategy}"\n{opts}'
            + f'[run]\nbudget = {BUDGET}\nbind = "tcp://127.0.0.1:0"\nlog = "{tmp / "run.jsonl"}"\n')
        env = dict(os.environ, PYTHONPATH=str(ROOT), **THREADS)
        program = (f"{sys.executable} -I -S {ROOT / 'tether' / 'heavy.py'} {seed} {{eval_id}} "
                   + " ".join(f"{{x{i}}}" for i in range(DIM)) + f" {scale!r}")
        cmd = [sys.executable, "-m", "tether"]
        # workers first: they poll for the address file while the controller imports
        # TensorFlow, so all eight join within one poll (0.2 s) of the first
        workers = [subprocess.Popen([*cmd, "worker", "--address-file", str(tmp / "addr"),
                                     "--command", program, "--max-wait", str(timeout)],
                                    env=env, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
                   for _ in range(WORKERS)]
        # a file, not a pipe nobody reads while the run lasts (a full pipe would block it)
        err_file = (tmp / "controller.err").open("wb")
        ctl = subprocess.Popen([*cmd, "controller", str(tmp / "c.toml"), "--address-file",
                                str(tmp / "addr")], env=env, stdout=subprocess.DEVNULL,
                               stderr=err_file)
        try:
            codes = [ctl.wait(timeout=timeout)] + [w.wait(timeout=60) for w in workers]
        finally:
            for p in [ctl, *workers]:
                if p.poll() is None:
                    p.kill()
                    p.wait()
            err_file.close()
        if any(codes):
            err = (tmp / "controller.err").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{strategy} seed {seed}: exit codes {codes}\n{err}")
        events = read_events(tmp / "run.jsonl")
    started = {e["eval_id"]: e["t"] for e in events if e["event"] == "started"}
    done = {e["eval_id"]: e for e in events if e["event"] == "completed"}
    xs = {e["eval_id"]: tuple(e["x"]) for e in events if e["event"] == "proposed"}
    if len(done) != BUDGET or len(started) != BUDGET:
        raise RuntimeError(f"{strategy} seed {seed}: {len(done)} completed, {len(started)} "
                           f"started (retries or failures: not comparable)")
    _check_order(list(started.items()), "daemon")
    t0 = min(started.values())
    wall, busy, busy_d, drain = shares([(started[i], done[i]["t"]) for i in done], WORKERS, t0)
    best = min(e["value"] for e in done.values())
    ends = np.sort([e["t"] for e in done.values()])
    # each dispatch after the first result, against the latest result before it
    lags = [t - ends[k - 1] for t in started.values()
            if (k := int(np.searchsorted(ends, t))) > 0]
    over = [done[i]["t"] - started[i] - heavy.duration(seed, i, scale=scale) for i in done]
    return Run(wall, busy, busy_d, drain, best - HARTMANN6_MIN, [xs[i] for i in sorted(xs)],
               float(np.median(lags)), float(np.median(over)))


def same_prefix(a: list[tuple[float, ...]], b: list[tuple[float, ...]],
                atol: float = 1e-6) -> int:
    """How many evaluations, in id order, had the same point (to ``atol``) in both runs.

    Not bit for bit: the worker's program computes Hartmann6 in plain Python, the
    simulation with numpy, and values one rounding apart steer the GP fit's optimizer a
    little differently.
    """
    n = 0
    for p, q in zip(a, b, strict=False):
        if not np.allclose(p, q, rtol=0, atol=atol):
            break
        n += 1
    return n


HEADER = ("| strategy | seed | simulated wall (s) | daemon wall (s) | daemon / simulated - 1 "
          "| busy to last dispatch, sim / daemon | busy whole run, sim / daemon "
          "| same points | regret sim / daemon | refill latency (ms) | evaluation overhead (ms) "
          "| model (s) | load |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|")


def model_wall(row: dict[str, Any]) -> float:
    """The asynchronous zero-cost schedule with the daemon's measured costs added.

    Every evaluation lengthened by the run's median evaluation overhead and refill
    latency: if this matches the daemon's wall time, those two costs are the whole
    difference from the simulation (nan for batch runs, whose waits are not greedy).
    """
    if row["strategy"] != "async-bo":
        return float("nan")
    extra = row["daemon"].get("eval_overhead", np.nan) + row["daemon"]["refill"]
    return zero_cost_wall([heavy.duration(row["seed"], k, scale=row["scale"]) + extra
                           for k in range(BUDGET)], WORKERS)


def format_row(row: dict[str, Any]) -> str:
    sim, real = row["sim"], row["daemon"]
    return (f"| {row['strategy']} | {row['seed']} | {sim['wall']:.2f} | {real['wall']:.2f} | "
            f"{100 * (real['wall'] / sim['wall'] - 1):+.1f} % | "
            f"{100 * sim['busy_to_last_dispatch']:.1f} / {100 * real['busy_to_last_dispatch']:.1f} % "
            f"| {100 * sim['busy']:.1f} / {100 * real['busy']:.1f} % | {row['same_points']} of "
            f"{BUDGET} | {sim['regret']:.1e} / {real['regret']:.1e} | {1e3 * real['refill']:.0f} | "
            f"{1e3 * real.get('eval_overhead', np.nan):.0f} | {model_wall(row):.2f} | {row['load']:.1f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 epilog="Prints one row per run and a summary per strategy.")
    ap.add_argument("--seeds", type=int, default=3, help="runs per strategy (default 3)")
    ap.add_argument("--first", type=int, default=0, help="first seed (default 0)")
    ap.add_argument("--strategies", default="async-bo,batch-bo",
                    help="comma-separated (default async-bo,batch-bo)")
    ap.add_argument("--scale", type=float, default=1.0,
                    help="multiply every duration (default 1: median 1 s, mean 1.65 s)")
    ap.add_argument("--timeout", type=float, default=900.0,
                    help="seconds a daemon run may take before it is killed (default 900)")
    ap.add_argument("--json", help="write one object per run to this file")
    ap.add_argument("--report", metavar="JSON", help="print an earlier run's table again")
    a = ap.parse_args()
    if a.seeds < 1 or a.scale <= 0:
        ap.error("--seeds must be >= 1 and --scale > 0")
    if a.report:
        rows = json.loads(Path(a.report).read_text())
        print(HEADER)
        for row in rows:
            print(format_row(row))
        _summary(rows)
        return
    os.environ.update(THREADS)
    rows = []
    print(HEADER)
    for strategy in a.strategies.split(","):
        for seed in range(a.first, a.first + a.seeds):
            sim = run_simulated(strategy, seed, a.scale)
            t = time.time()
            real = run_daemon(strategy, seed, a.scale, a.timeout)
            # the 1-minute load average as the daemon run ends: asks on the critical path
            # slow down when the 2-core machine is shared
            row = {"strategy": strategy, "seed": seed, "scale": a.scale,
                   "same_points": same_prefix(sim.xs, real.xs),
                   "daemon_seconds": time.time() - t, "load": os.getloadavg()[0],
                   "sim": {k: v for k, v in asdict(sim).items() if k != "xs"},
                   "daemon": {k: v for k, v in asdict(real).items() if k != "xs"}}
            rows.append(row)
            print(format_row(row), flush=True)
    _summary(rows)
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1) + "\n")
        print(f"json: {a.json}")


def _summary(rows: list[dict[str, Any]]) -> None:
    walls: dict[str, dict[str, list[float]]] = {}
    for r in rows:
        w = walls.setdefault(r["strategy"], {"sim": [], "daemon": []})
        w["sim"].append(r["sim"]["wall"])
        w["daemon"].append(r["daemon"]["wall"])
    for name, w in walls.items():
        rel = np.array(w["daemon"]) / np.array(w["sim"]) - 1
        print(f"{name}: daemon / simulated - 1: mean {100 * rel.mean():+.1f} %, "
              f"range {100 * rel.min():+.1f} to {100 * rel.max():+.1f} % over {len(rel)} seed(s)")
    if {"async-bo", "batch-bo"} <= walls.keys():
        for kind in ("sim", "daemon"):
            ratio = np.array(walls["async-bo"][kind]) / np.array(walls["batch-bo"][kind])
            print(f"async / batch wall time, {kind}: per seed "
                  + " ".join(f"{x:.2f}" for x in ratio))


if __name__ == "__main__":
    main()
