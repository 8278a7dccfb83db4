"""Ask latency: a result arrives, the model is updated, the next point is chosen.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/bo_latency.py [--impl both]

Same protocol for both implementations, on the same data: start from ``n0`` seeded
random observations and 2 pending points; then ``steps`` times, complete the oldest
pending point (its true value) and time tether's ``propose`` (model update + ask) or
Trieste's ``tell`` + ``ask``. Cases: 2-D Branin 80 -> 100 observations, 6-D Hartmann
180 -> 200. ``--impl both`` runs Trieste in benchmarks/.venv-trieste in a subprocess.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the backport
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tether.problems import branin as scaled_branin  # noqa: E402
from tether.problems import hartmann6  # noqa: E402
from tether.records import Evaluate, Record, RunView, Status  # noqa: E402
from tether.space import Space  # noqa: E402

CASES = {"branin-2d": (2, scaled_branin, 80), "hartmann-6d": (6, hartmann6, 180)}
TRIESTE_PY = ROOT / "benchmarks" / ".venv-trieste" / "bin" / "python"


OPTIONS: dict[str, Any] = {}  # --opt k=v: further [strategy] options of tether's case


def option_value(v: str) -> Any:
    """A --opt value read as a TOML value (a bare word is a string)."""
    try:
        return tomllib.loads(f"v = {v}")["v"]
    except tomllib.TOMLDecodeError:
        return v


def tether_case(dim: int, f: Any, n0: int, steps: int,
                cpu: list[float] | None = None) -> list[float]:
    from tether.strategies import create

    space = Space.unit(dim)
    s = create("async-bo", space, 10_000, {"seed": 0, "exploit": 0, **OPTIONS})
    rng = np.random.default_rng(0)
    view = RunView(space, budget=10_000, n_workers=3)
    for i, x in enumerate(rng.random((n0, dim))):
        view.put(Record(i, tuple(x), Status.COMPLETED, value=f(x)))
    nid = n0
    pending: list[int] = []
    for _ in range(2):
        p = s.propose(view)
        assert isinstance(p, Evaluate)
        view.put(Record(nid, p.x, Status.RUNNING))
        pending.append(nid)
        nid += 1
    times = []
    for _ in range(steps):
        old = view.records[pending.pop(0)]
        view.put(Record(old.eval_id, old.x, Status.COMPLETED, value=f(np.array(old.x))))
        t0, c0 = time.perf_counter(), time.process_time()
        p = s.propose(view)
        times.append(time.perf_counter() - t0)
        if cpu is not None:
            cpu.append(time.process_time() - c0)
        assert isinstance(p, Evaluate)
        view.put(Record(nid, p.x, Status.RUNNING))
        pending.append(nid)
        nid += 1
    return times


def trieste_case(dim: int, f: Any, n0: int, steps: int) -> list[float]:
    from benchmarks.trieste_adapter import build_optimizer

    rng = np.random.default_rng(0)
    x = rng.random((n0, dim))
    opt, t = build_optimizer(x, np.array([f(p) for p in x]), dim)
    tf, dataset = t["tf"], t["Dataset"]
    pending = [opt.ask().numpy()[0] for _ in range(2)]
    times = []
    for _ in range(steps):
        q = pending.pop(0)
        new = dataset(tf.constant([q], tf.float64), tf.constant([[f(q)]], tf.float64))
        t0 = time.perf_counter()
        opt.tell(new)
        pending.append(opt.ask().numpy()[0])
        times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--impl", default="tether", choices=["tether", "trieste", "both"])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--json")
    ap.add_argument("--opt", nargs="*", default=[],
                    help="further [strategy] options k=v for tether (e.g. penalizer=believer)")
    a = ap.parse_args()
    for kv in a.opt:
        k, _, v = kv.partition("=")
        OPTIONS[k] = option_value(v)
    out: dict[str, dict[str, list[float]]] = {}
    impls = ["tether", "trieste"] if a.impl == "both" else [a.impl]
    # this script puts its own tree first on sys.path, so PYTHONPATH cannot point it at
    # another checkout: say which tree is measured (run each tree's own copy to compare)
    print(f"tether from {Path(sys.modules['tether'].__file__ or '').parent.parent}", flush=True)
    for impl in impls:
        if impl == "trieste" and a.impl == "both":
            tmp = ROOT / "benchmarks" / ".trieste-latency.json"
            env = dict(os.environ, PYTHONPATH=str(ROOT), OPENBLAS_NUM_THREADS="1")
            subprocess.run([str(TRIESTE_PY), __file__, "--impl", "trieste", "--steps",
                            str(a.steps), "--json", str(tmp)], check=True, env=env)
            out.update(json.loads(tmp.read_text()))
            tmp.unlink()
            continue
        for case, (dim, f, n0) in CASES.items():
            cpu: list[float] = []
            if impl == "tether":
                out[f"{impl} {case}"] = tether_case(dim, f, n0, a.steps, cpu)
            else:
                out[f"{impl} {case}"] = trieste_case(dim, f, n0, a.steps)
            ts = np.array(out[f"{impl} {case}"]) * 1e3
            # CPU time of this process: what the ask costs when it has a core to itself
            # (on a loaded machine the wall time adds the waits for one)
            cs = f"  cpu median {np.median(cpu) * 1e3:6.1f} ms" if cpu else ""
            print(f"{impl:8s} {case:12s} median {np.median(ts):6.1f} ms  p90 "
                  f"{np.percentile(ts, 90):6.1f} ms  max {ts.max():6.1f} ms{cs}", flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps(out))
    if a.impl == "both":
        print("\n| case | tether median (p90) | Trieste tell+ask median (p90) | ratio |")
        print("|---|---|---|---|")
        for case in CASES:
            a_, b_ = (np.array(out.get(f"{i} {case}", [np.nan])) * 1e3
                      for i in ("tether", "trieste"))
            print(f"| {case} | {np.median(a_):.0f} ms ({np.percentile(a_, 90):.0f}) | "
                  f"{np.median(b_):.0f} ms ({np.percentile(b_, 90):.0f}) | "
                  f"{np.median(b_) / np.median(a_):.1f}x |")


if __name__ == "__main__":
    main()
