"""Ask time of async-bo at many observations (6-D), bounded fit against the unbounded one.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/bo_large.py [--sizes 200 400 800 1600 3200]

The ask runs in the controller's loop, so its worst case must stay inside the liveness
window (3 s by default). For each size n: a fresh strategy, n seeded random Hartmann6
observations and 3 pending points; "first" is the first ask (a multi-start fit: the
slowest step of the refit policy), "next" the median of the 5 asks that follow, one new
result each (warm-started fit). The baseline, in the same run, fits on all the data with
no time limit (what tether did before FIT_POINTS/FIT_SECONDS); it is skipped past
``--baseline-max`` observations because it takes minutes there.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as in the controller (docs/bo.md)
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tether.problems import hartmann6  # noqa: E402
from tether.records import Evaluate, Record, RunView, Status  # noqa: E402
from tether.space import Space  # noqa: E402


def ask_times(n: int, bounded: bool) -> tuple[float, float]:
    from tether.strategies import create
    from tether.strategies.bo import model

    model.FIT_POINTS, model.FIT_SECONDS = (256, 1.5) if bounded else (10**9, float("inf"))
    space = Space.unit(6)
    s = create("async-bo", space, 100_000, {"seed": 0, "exploit": 0})
    rng = np.random.default_rng(n)
    view = RunView(space, budget=100_000, n_workers=4)
    for i, x in enumerate(rng.random((n, 6))):
        view.put(Record(i, tuple(x), Status.COMPLETED, value=hartmann6(x)))
    pending = []
    for j in range(3):
        view.put(Record(n + j, tuple(rng.random(6)), Status.RUNNING))
        pending.append(n + j)
    times = []
    for _ in range(6):
        t0 = time.perf_counter()
        p = s.propose(view)
        times.append(time.perf_counter() - t0)
        assert isinstance(p, Evaluate)
        old = view.records[pending.pop(0)]
        view.put(Record(old.eval_id, old.x, Status.COMPLETED, value=hartmann6(np.array(old.x))))
        nid = max(view.records) + 1
        view.put(Record(nid, p.x, Status.RUNNING))
        pending.append(nid)
    return times[0], float(np.median(times[1:]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="*", default=[200, 400, 800, 1600, 3200])
    ap.add_argument("--baseline-max", type=int, default=800)
    a = ap.parse_args()
    ask_times(50, bounded=True)  # warm-up: first-call costs belong to neither column
    print("| observations | first ask (s) | next asks, median (s) | unbounded first / next (s) "
          "| first: unbounded / bounded |")
    print("|---|---|---|---|---|")
    for n in a.sizes:
        first, nxt = ask_times(n, bounded=True)
        if n <= a.baseline_max:
            b_first, b_next = ask_times(n, bounded=False)
            base, ratio = f"{b_first:.2f} / {b_next:.2f}", f"{b_first / first:.1f}×"
        else:
            base, ratio = "(skipped)", "-"
        print(f"| {n} | {first:.2f} | {nxt:.2f} | {base} | {ratio} |", flush=True)


if __name__ == "__main__":
    main()
