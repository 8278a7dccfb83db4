#!/usr/bin/env python3
"""What CURVE costs: tether's throughput with ``--keys`` on versus off, in the same run.

The runs are those of ``benchmarks/throughput.py`` (real controller and N real worker
processes on the trivial objective, rate read from the log after a 10 % warm-up, every
log checked by checklog); with CURVE the config has ``[run] keys`` and every worker
``--keys`` (one key pair shared by all workers: the handshake is per connection, so the
number of distinct keys does not change the steady-state cost). A plain pilot run picks
the budget; then plain and CURVE runs alternate (plain, CURVE, plain, CURVE, ...) so a
slow phase of the shared machine hits both alike. Reported: median rates, the
slowdown of the medians, and the paired slowdowns (each CURVE run against the plain
run just before it).

    python benchmarks/curve_cost.py [--workers 16] [--seconds 6] [--repeats 3] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import throughput as tp  # a sibling script, not an installed module

TARGET_SLOWDOWN = 0.15  # issue 14: CURVE at most 15 % slower at 16 workers


def make_keys(work: Path) -> Path:
    keys = work / "keys"
    res = subprocess.run([sys.executable, "-m", "tether", "keys", "generate", str(keys)],
                         capture_output=True, text=True, timeout=60)
    if res.returncode != 0:
        raise tp.BenchError(f"tether keys generate failed: {res.stderr.strip()}")
    return keys


def measure(a: argparse.Namespace, work: Path) -> dict[str, Any]:
    keys = make_keys(work)
    timeout = a.timeout or 10 * a.seconds + 60
    n = a.workers
    budget = a.budget
    if not budget:
        pilot = tp.run_tether(n, 3000, work, "pilot", timeout)
        budget = max(1000, int(round(pilot["rate"] * a.seconds / (1 - tp.WARMUP_FRACTION), -2)))
        print(f"pilot: {pilot['rate']:,.0f} evals/s -> budget {budget:,}", file=sys.stderr)
    runs: dict[str, list[dict[str, Any]]] = {"plain": [], "curve": []}
    for rep in range(a.repeats):
        for mode in ("plain", "curve"):
            r = tp.run_tether(n, budget, work, f"{mode}-r{rep}", timeout,
                              keys=keys if mode == "curve" else None)
            runs[mode].append(r)
            print(f"rep {rep + 1}/{a.repeats} {mode:>5}: {r['rate']:>9,.0f} evals/s "
                  f"(measured {r['measured_s']:.1f} s, controller CPU {r['controller_cpu_s']:.1f} s)",
                  file=sys.stderr)
    plain = [r["rate"] for r in runs["plain"]]
    curve = [r["rate"] for r in runs["curve"]]
    paired = [1 - c / p for p, c in zip(plain, curve)]
    slowdown = 1 - statistics.median(curve) / statistics.median(plain)
    # controller CPU per evaluation: less at the mercy of other load than a rate is
    cpu = {mode: statistics.median(1e6 * r["controller_cpu_s"] / r["completed"] for r in rs)
           for mode, rs in runs.items()}
    return {"workers": n, "budget": budget, "runs": runs, "plain": tp.summary(plain),
            "curve": tp.summary(curve), "slowdown_of_medians": slowdown,
            "controller_cpu_us_per_eval": cpu,
            "paired_slowdowns": paired, "target_slowdown": TARGET_SLOWDOWN}


def report(res: dict[str, Any]) -> str:
    p, c = res["plain"], res["curve"]
    paired = ", ".join(f"{x:+.1%}" for x in res["paired_slowdowns"])
    return "\n".join([
        "| workers | budget | plain evals/s, median (min–max) | CURVE evals/s, median (min–max) "
        "| CURVE slower by (medians) | paired, per repeat | controller CPU µs/eval, plain / CURVE |",
        "|---:|---:|---:|---:|---:|---:|---:|",
        f"| {res['workers']} | {res['budget']:,} | {tp.fmt(p['median'])} ({tp.fmt(p['min'])}–"
        f"{tp.fmt(p['max'])}) | {tp.fmt(c['median'])} ({tp.fmt(c['min'])}–{tp.fmt(c['max'])}) | "
        f"{res['slowdown_of_medians']:.1%} | {paired} | "
        f"{res['controller_cpu_us_per_eval']['plain']:.0f} / "
        f"{res['controller_cpu_us_per_eval']['curve']:.0f} |",
        "",
        f"target: at most {TARGET_SLOWDOWN:.0%} slower -> "
        f"{'met' if res['slowdown_of_medians'] <= TARGET_SLOWDOWN else 'NOT met'}",
    ])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", type=int, default=16, metavar="N")
    ap.add_argument("--seconds", type=float, default=6.0, help="measured part of each run")
    ap.add_argument("--repeats", type=int, default=3, help="pairs of plain + CURVE runs")
    ap.add_argument("--budget", type=int, help="fixed budget (no pilot run)")
    ap.add_argument("--json", metavar="OUT")
    ap.add_argument("--keep", metavar="DIR", help="keep logs and outputs in DIR")
    ap.add_argument("--timeout", type=float, help="per-run timeout (default 10 x --seconds + 60)")
    a = ap.parse_args(argv)
    if not tp.CHECKLOG.is_file():
        print(f"error: contract checker not found at {tp.CHECKLOG} (set TETHER_CHECKLOG)",
              file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, tp._on_sigterm)
    work = Path(a.keep).resolve() if a.keep else Path(tempfile.mkdtemp(prefix="tether-curve-"))
    work.mkdir(parents=True, exist_ok=True)
    load0 = os.getloadavg()
    print(f"# CURVE cost, nproc {os.cpu_count()}, load average {load0[0]:.2f} {load0[1]:.2f}",
          file=sys.stderr)
    ok = False
    try:
        res = measure(a, work)
        res.update({"loadavg_start": load0, "loadavg_end": os.getloadavg(),
                    "command": " ".join([Path(sys.executable).name, *sys.argv])})
        print(report(res))
        if a.json:
            Path(a.json).write_text(json.dumps(res, indent=2) + "\n")
        ok = True
    except tp.BenchError as exc:
        print(f"\nBENCHMARK FAILED: {exc}\n(outputs kept in {work})", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\ninterrupted; outputs kept in {work}", file=sys.stderr)
        return 130
    finally:
        tp.kill_all()
        if ok and not a.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
