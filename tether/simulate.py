"""``tether simulate``: the config's strategy in simulated time, over several seeds.

A cheap Python stand-in for the real objective runs in this process; each evaluation
takes a simulated duration (``--durations``), so ``--workers`` workers finishing out of
order are reproduced in milliseconds (:class:`~tether.controller.simulated.SimulatedController`).
Run *k* sets the strategy's ``seed`` to ``first + k``; random durations are drawn from a
generator keyed by the same seed, so a run is reproducible whatever ``--jobs`` is.

Duration specs (simulated seconds):

- ``const`` (1 s each) or ``const:SECONDS``;
- ``uniform:A:B`` (0 <= A <= B, B > 0);
- ``lognormal:MU:SIGMA``: ``exp(N(MU, SIGMA²))``, heavy-tailed, median ``exp(MU)``;
- ``module:function``: called with the point (a 1-D array, space coordinates), returns
  the seconds (finite, >= 0).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tether import __version__
from tether.controller.settings import Config, load_config
from tether.errors import ConfigError
from tether.simspec import Duration, load_function, make_objective, parse_durations
from tether.strategies import create
from tether.strategies.base import Strategy

#: regret thresholds of the table's two counts (issue 17): "found it" and "trapped"
NEAR, FAR = 1e-3, 0.05


@dataclass(frozen=True)
class Plan:
    """Everything a run needs, as plain data (it crosses to ``--jobs`` processes)."""

    config: Config
    objective: str  # module:function
    workers: int
    durations: str = "const"
    fmin: float | None = None
    logs: str | None = None
    t0: float = 0.0  # Unix time the logs' simulated clock starts at
    sys_path: list[str] = field(default_factory=list)


@dataclass
class RunSummary:
    """One run's outcome: the ``--json`` object."""

    seed: int
    best_value: float | None
    best_x: list[float] | None
    regret: float | None
    evaluations: int  # completed
    wall: float  # simulated seconds
    busy: float | None  # share of worker time spent evaluating
    failed: int = 0
    finished: str = ""
    log: str | None = None


def add_subparser(sub: Any) -> None:
    """Register ``tether simulate`` (called by tether.cli)."""
    s = sub.add_parser("simulate", help="run the config's strategy in simulated time",
                       description="Run the config's strategy against a cheap Python stand-in "
                       "in simulated time, for several seeds, and summarise the outcomes.")
    s.add_argument("config", metavar="CONFIG.toml", help="[space], [strategy], [run], as for "
                   "tether controller")
    s.add_argument("--python", required=True, metavar="module:function",
                   help="the stand-in objective (as for tether worker)")
    s.add_argument("--workers", required=True, type=int, metavar="N", help="simulated workers")
    s.add_argument("--durations", default="const", metavar="SPEC",
                   help="const[:SECONDS] (default 1 s) | uniform:A:B | lognormal:MU:SIGMA | "
                   "module:function of the point")
    s.add_argument("--seeds", type=int, default=1, metavar="K", help="runs (default 1)")
    s.add_argument("--first", type=int, default=0, metavar="S",
                   help="the first run's strategy seed (default 0)")
    s.add_argument("--jobs", type=int, default=1, metavar="J", help="runs in parallel processes (default 1)")
    s.add_argument("--fmin", type=float, metavar="VALUE",
                   help="the known minimum: report regret (best - VALUE)")
    s.add_argument("--json", dest="json_out", metavar="OUT", help="write one object per run")
    s.add_argument("--logs", metavar="DIR", help="keep each run's evaluation log here")


def run_simulate(a: argparse.Namespace) -> int:
    """``tether simulate``: check everything, run the seeds, print the table."""
    plan, seeds = prepare(a)
    jobs = min(a.jobs, len(seeds))
    results = run_all(plan, seeds, jobs, progress=_progress)
    print(format_table(plan, results))
    if a.json_out:
        Path(a.json_out).write_text(json.dumps([asdict(r) for r in results], indent=1) + "\n")
    return 0


def prepare(a: argparse.Namespace) -> tuple[Plan, list[int]]:
    """Validate the arguments (ConfigError, exit 2) before any run starts."""
    for name in ("workers", "seeds", "jobs"):
        if getattr(a, name) < 1:
            raise ConfigError(f"--{name} must be >= 1, got {getattr(a, name)}")
    if a.fmin is not None and not math.isfinite(a.fmin):
        raise ConfigError(f"--fmin must be a finite number, got {a.fmin}")
    config = load_config(a.config)
    # `tether` as a console script does not put the working directory on sys.path, but
    # a user's stand-in (and duration function) usually lives there, as with python -m
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    parse_durations(a.durations, 0)  # a bad spec fails here, with its own message
    load_function(a.python, "--python")
    seeds = list(range(a.first, a.first + a.seeds))
    new_strategy(config, seeds[0])  # unknown options, unknown strategy: exit 2 before running
    if a.json_out and not Path(a.json_out).resolve().parent.is_dir():
        raise ConfigError(f"--json {a.json_out}: no such directory")
    if a.logs:
        _check_logs_dir(Path(a.logs), seeds)
    plan = Plan(config, a.python, a.workers, a.durations, a.fmin, a.logs, time.time(),
                list(sys.path))
    return plan, seeds


def _check_logs_dir(logs: Path, seeds: Sequence[int]) -> None:
    try:
        logs.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--logs {logs}: {exc.strerror or exc}") from None
    for seed in seeds:  # logs are append-only: never mix two runs in one file
        if log_path(str(logs), seed).exists():
            raise ConfigError(f"--logs: {log_path(str(logs), seed)} already exists "
                              "(use another directory)")


def log_path(logs: str, seed: int) -> Path:
    return Path(logs) / f"seed-{seed}.jsonl"


def new_strategy(config: Config, seed: int) -> Strategy:
    options = dict(config.strategy_options, seed=seed)
    try:
        return create(config.strategy, config.space, config.run.budget, options)
    except ConfigError as exc:
        if "seed" in str(exc):
            raise ConfigError(f"{exc} (tether simulate sets [strategy] seed for each run)") from None
        raise


def run_all(plan: Plan, seeds: Sequence[int], jobs: int,
            progress: Callable[[RunSummary], None] | None = None) -> list[RunSummary]:
    """Run every seed, in parallel processes when ``jobs`` > 1; results in seed order."""
    if jobs <= 1:
        out = []
        for seed in seeds:
            out.append(run_one(plan, seed))
            if progress:
                progress(out[-1])
        return out
    import multiprocessing

    # spawn, not fork: a forked TensorFlow (async-bo) can hang in its thread pools
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
        futures = [pool.submit(run_one, plan, seed) for seed in seeds]
        results = []
        for fut in futures:
            results.append(fut.result())
            if progress:
                progress(results[-1])
    return results


def run_one(plan: Plan, seed: int) -> RunSummary:
    """One run in simulated time; writes its log if ``plan.logs`` is set."""
    from tether.controller.simulated import SimulatedController

    for p in reversed(plan.sys_path):  # a spawned process: find the user's modules again
        if p not in sys.path:
            sys.path.insert(0, p)
    objective = make_objective(plan.objective)
    duration: Duration = parse_durations(plan.durations, seed)
    strategy = new_strategy(plan.config, seed)  # [run] max_failures ends hopeless runs
    sim = SimulatedController(plan.config.space, strategy, objective, workers=plan.workers,
                              settings=plan.config.run, duration=duration)
    result = sim.run()
    events = result.events
    summary = summarise(events, seed, plan.workers, result.elapsed, plan.fmin,
                        sim.busy_seconds)
    summary.finished = result.reason
    if plan.logs:
        path = log_path(plan.logs, seed)
        write_log(path, events, run_started_info(plan, seed, path), plan.t0)
        summary.log = str(path)
    return summary


def summarise(events: Sequence[dict[str, Any]], seed: int, workers: int, wall: float,
              fmin: float | None, busy_seconds: float) -> RunSummary:
    """Best value and counts from a run's events; the busy share from ``busy_seconds``,
    the simulator's own count of time spent running (with prefetch, a queued
    evaluation's wait lies between its `started` and its outcome, so the log would
    overstate it)."""
    best: dict[str, Any] | None = None
    counts = {"completed": 0, "failed": 0}
    xs: dict[int, list[float]] = {}
    for e in events:
        kind = e["event"]
        if kind == "proposed":
            xs[e["eval_id"]] = list(e["x"])
        elif kind in counts:
            counts[kind] += 1
            if kind == "completed" and (best is None or e["value"] < best["value"]):
                best = e
    value = None if best is None else float(best["value"])
    return RunSummary(
        seed=seed, best_value=value,
        best_x=None if best is None else xs.get(best["eval_id"]),
        regret=None if value is None or fmin is None else value - fmin,
        evaluations=counts["completed"], wall=wall,
        busy=busy_seconds / (workers * wall) if wall > 0 else None, failed=counts["failed"])


def run_started_info(plan: Plan, seed: int, path: Path) -> dict[str, Any]:
    """What a daemon's ``run_started`` says, plus how the run was simulated."""
    c = plan.config
    return {
        "space": c.space.to_json(),
        "strategy": {"name": c.strategy, "options": dict(c.strategy_options, seed=seed)},
        "run": dict(c.run.to_json(), log=str(path)),
        "tether": __version__,
        "simulated": {"objective": plan.objective, "workers": plan.workers,
                      "durations": plan.durations, "seed": seed, "t0": plan.t0},
    }


def write_log(path: Path, events: Sequence[dict[str, Any]], info: dict[str, Any],
              t0: float) -> None:
    """The events as a journal file; ``t`` is ``t0`` plus simulated seconds, so
    differences of ``t`` (durations, wall time in ``tether log summary``) are simulated."""
    from tether.events import parse_event
    from tether.log.journal import JournalWriter

    writer = JournalWriter(path)
    try:
        for e in events:
            obj = {**e, "t": t0 + e["t"]}
            if e["event"] == "run_started":
                obj.update(info)
            writer.append(parse_event(obj, str(path)))
    finally:
        writer.close()


def _progress(r: RunSummary) -> None:
    best = "none" if r.best_value is None else f"{r.best_value:.6g}"
    regret = "" if r.regret is None else f", regret {r.regret:.3g}"
    print(f"seed {r.seed}: best {best}{regret}, {r.evaluations} completed, "
          f"{r.wall:.4g} simulated s ({r.finished})", file=sys.stderr, flush=True)


def _quartiles(values: Sequence[float | None], digits: int = 4) -> str:
    v = np.array([x for x in values if x is not None], dtype=float)
    if v.size == 0:
        return f"{'-':>11}{'-':>11}{'-':>11}"
    q1, med, q3 = np.percentile(v, [25, 50, 75])
    return "".join(f"{q:>11.{digits}g}" for q in (med, q1, q3))


def format_table(plan: Plan, results: Sequence[RunSummary]) -> str:
    """One table: median and quartiles per figure, then the counts against ``--fmin``."""
    c = plan.config
    seeds = [r.seed for r in results]
    lines = [
        f"tether simulate: {len(results)} run(s), seeds {min(seeds)}-{max(seeds)}, "
        f"strategy {c.strategy}, {plan.workers} workers, durations {plan.durations}, "
        f"budget {c.run.budget}",
        f"{'':18}{'median':>11}{'25%':>11}{'75%':>11}",
        f"{'best value':18}" + _quartiles([r.best_value for r in results], 6),
    ]
    if plan.fmin is not None:
        lines.append(f"{'regret':18}" + _quartiles([r.regret for r in results]))
    lines += [
        f"{'wall (simulated s)':18}" + _quartiles([r.wall for r in results]),
        f"{'busy share':18}" + _quartiles([r.busy for r in results]),
        f"{'completed':18}" + _quartiles([float(r.evaluations) for r in results]),
    ]
    n = len(results)
    if plan.fmin is not None:
        regrets = [math.inf if r.regret is None else r.regret for r in results]
        near = sum(g <= NEAR for g in regrets)
        far = sum(g >= FAR for g in regrets)
        lines.append(f"runs within {NEAR:g} of fmin: {near} of {n}; "
                     f"runs >= {FAR:g} above fmin: {far} of {n}")
    else:
        lines.append("(give --fmin for regret and the runs within 1e-3 / >= 0.05 of it)")
    empty = sum(r.best_value is None for r in results)
    if empty:
        lines.append(f"runs with no completed evaluation: {empty} of {n}")
    return "\n".join(lines)
