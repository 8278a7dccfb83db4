"""``python -m tether.demo`` (what ``scripts/demo`` runs): the headline on one machine.

Asynchronous Bayesian optimization (``async-bo``) of the scaled Branin function, whose
minimum is known, with a controller and 3 worker processes talking ZeroMQ over 127.0.0.1.
Each evaluation sleeps about 0.5 * sum(x) seconds and the last worker runs at half speed,
so evaluations finish out of order, as they do on a cluster: a worker that frees up gets a
new point at once while the others keep running. At the end it prints the best point, the
regret against the known minimum, where the log is, and draws a PNG (convergence and the
worker timeline) with ``tether log plot``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from tether.problems import BRANIN_MIN, branin

CONFIG = """\
[space]
x0 = [0.0, 1.0]
x1 = [0.0, 1.0]

[strategy]
name = "{strategy}"
seed = 0

[run]
budget = {budget}
bind = "tcp://127.0.0.1:0"
log = "{log}"
progress = 2.0   # a plain progress line every 2 s when not on a terminal
"""
SLOWDOWN_ENV = "TETHER_DEMO_SLOWDOWN"
START_TIMEOUT = 300.0  # seconds for the controller to listen (TensorFlow's import is slow)
RUN_TIMEOUT = 600.0


def objective(u: np.ndarray) -> float:
    """Scaled Branin taking 0.5 * sum(u) seconds, times this worker's slowdown."""
    time.sleep(0.5 * float(np.sum(u)) * float(os.environ.get(SLOWDOWN_ENV, "1")))
    return branin(u)


def _args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="scripts/demo", formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(__doc__ or "").partition("\n\n")[2].replace("``", ""),
        epilog="examples:\n  scripts/demo\n  scripts/demo --budget 50 --workers 4\n"
               "  scripts/demo --strategy dycors      (no TensorFlow needed)")
    ap.add_argument("--workers", type=int, default=3, help="worker processes (default 3)")
    ap.add_argument("--budget", type=int, default=30, help="completed evaluations (default 30)")
    ap.add_argument("--strategy", default="async-bo", help="any strategy name (default async-bo)")
    ap.add_argument("--log", default=None, help="default: runs/demo-TIMESTAMP.jsonl")
    ap.add_argument("--no-plot", action="store_true", help="skip the PNG")
    return ap.parse_args(argv)


def _short(p: Path) -> str:
    """A path relative to the working directory when it is below it: easier to copy."""
    try:
        return str(p.relative_to(Path.cwd()))
    except ValueError:
        return str(p)


def _wait(cond: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _worker_env(i: int, n: int) -> dict[str, str]:
    """The last of several workers runs at half speed: a slower node, as clusters have."""
    return dict(os.environ, **{SLOWDOWN_ENV: "2" if n > 1 and i == n - 1 else "1"})


def run_processes(a: argparse.Namespace, log: Path, tmp: Path) -> tuple[list[int], float]:
    """The controller and the workers, all at once (the workers wait for the address file
    while the controller loads TensorFlow). Their exit codes and the wall time."""
    cfg = tmp / "demo.toml"
    cfg.write_text(CONFIG.format(strategy=a.strategy, budget=a.budget, log=log))
    addr = tmp / "address"
    tether = [sys.executable, "-m", "tether"]
    t0 = time.perf_counter()
    # the controller's stderr is the demo's: its progress line, failures, what it loads
    ctl = subprocess.Popen([*tether, "controller", str(cfg), "--address-file", str(addr)],
                           stdout=subprocess.DEVNULL)
    with open(log.with_suffix(".workers.out"), "wb") as out:
        workers = [subprocess.Popen(
            [*tether, "worker", "--address-file", str(addr), "--python", "tether.demo:objective",
             "--name", f"demo-{i}"], stdout=out, stderr=subprocess.STDOUT,
            env=_worker_env(i, a.workers)) for i in range(a.workers)]
        try:
            codes = [ctl.wait(timeout=RUN_TIMEOUT)]
            if codes[0] != 0:  # workers of a controller that never listened would wait on
                for w in workers:
                    w.kill()
            codes += [w.wait(timeout=60) for w in workers]
        except subprocess.TimeoutExpired:
            for p in (ctl, *workers):
                p.kill()
            codes = [p.wait(timeout=30) for p in (ctl, *workers)]
    return codes, time.perf_counter() - t0


def read_log(log: Path) -> dict[str, Any]:
    """What the demo reports, read straight off the JSON lines (docs/log-format.md)."""
    x: dict[int, list[float]] = {}
    done: list[dict[str, Any]] = []
    failed = 0
    with log.open(encoding="utf-8") as fh:
        for line in fh:
            try:
                ev = json.loads(line)
            except ValueError:
                continue  # a torn last line
            if ev["event"] == "proposed":
                x[ev["eval_id"]] = ev["x"]
            elif ev["event"] == "completed" and ev.get("value") is not None:
                done.append(ev)
            elif ev["event"] == "failed":
                failed += 1
    per_worker: dict[str, int] = {}
    for ev in done:
        per_worker[ev.get("worker", "?")] = per_worker.get(ev.get("worker", "?"), 0) + 1
    best = min(done, key=lambda e: e["value"]) if done else None
    return {"completed": len(done), "failed": failed, "per_worker": per_worker,
            "best_value": best["value"] if best else None,
            "best_x": x.get(best["eval_id"]) if best else None}


def plot(log: Path, png: Path) -> str:
    """Draw the PNG with ``tether log plot``; what it shows, or raise RuntimeError why not."""
    base = [sys.executable, "-m", "tether", "log", "plot", str(log), "--out", str(png)]
    r = subprocess.run([*base, "--panels", "convergence,timeline"], capture_output=True,
                       text=True, timeout=300)
    shows = "convergence and worker timeline"
    if r.returncode != 0 and "--panels" in r.stderr:  # a tether log plot without panels
        r = subprocess.run(base, capture_output=True, text=True, timeout=300)
        shows = "convergence"
    if r.returncode != 0 or not png.exists():
        lines = r.stderr.strip().splitlines()
        raise RuntimeError(lines[-1] if lines else f"tether log plot exited {r.returncode}")
    return shows


def report(a: argparse.Namespace, log: Path, elapsed: float, png: Path | None,
           shows: str) -> None:
    r = read_log(log)
    names = ("x0", "x1")
    point = ", ".join(f"{n}={v:.6f}" for n, v in zip(names, r["best_x"] or []))
    workers = ", ".join(f"{w} {n}" for w, n in sorted(r["per_worker"].items()))
    failed = f", {r['failed']} failed" if r["failed"] else ""
    print()
    print(f"completed  {r['completed']} evaluations{failed} in {elapsed:.1f} s with "
          f"{a.workers} workers ({a.strategy}); per worker: {workers}")
    print(f"best point {point}")
    print(f"best value {r['best_value']:.6f}")
    print(f"regret     {r['best_value'] - BRANIN_MIN:.3g}   (known minimum {BRANIN_MIN:.6f})")
    print(f"log        {_short(log)}")
    if png is not None:
        print(f"plot       {_short(png)}   ({shows})")
    tether = Path(sys.executable).with_name("tether")
    cmd = _short(tether) if tether.exists() else "tether"
    print(f"next       {cmd} log summary {_short(log)}", flush=True)


def main(argv: list[str] | None = None) -> int:
    a = _args(argv)
    log = Path(a.log or f"runs/demo-{time.strftime('%Y%m%d-%H%M%S')}.jsonl").resolve()
    log.parent.mkdir(parents=True, exist_ok=True)
    slow = f" (demo-{a.workers - 1} at half speed)" if a.workers > 1 else ""
    print(f"demo: {a.strategy} on the scaled Branin function (2-D, known minimum "
          f"{BRANIN_MIN:.6f}), budget {a.budget}, {a.workers} workers{slow}; "
          f"each evaluation takes 0.5 * (x0 + x1) s", flush=True)
    with tempfile.TemporaryDirectory(prefix="tether-demo-") as tmp:
        codes, elapsed = run_processes(a, log, Path(tmp))
    if any(codes) or not log.exists() or read_log(log)["best_value"] is None:
        print(f"demo failed: exit codes {codes} (controller first); workers' output in "
              f"{_short(log.with_suffix('.workers.out'))}", file=sys.stderr)
        return 1
    png, shows = (None, "") if a.no_plot else (log.with_suffix(".png"), "")
    if png is not None:
        print(f"demo: drawing {_short(png)} ...", flush=True)
        try:
            shows = plot(log, png)
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            print(f"demo: no plot ({exc})", file=sys.stderr)
            png = None
    report(a, log, elapsed, png, shows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
