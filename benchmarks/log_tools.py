"""How fast ``tether log summary`` and ``export`` read a large log (issue 13, item 4).

Generates a synthetic but contract-valid log of N events (by default 1,000,000: 250,000
evaluations, each ``proposed``, ``started``, one ``partial`` and a terminal event, with a
few failures, kills and lost/requeued workers), then times, each in a fresh process:

- ``json.loads`` over every line (the floor the issue compares against),
- ``tether log summary LOG --json``,
- ``tether log export LOG --format csv --out FILE``,

and reports wall seconds and peak RSS (``ru_maxrss`` of the child).

usage: python benchmarks/log_tools.py [--events 1000000] [--keep DIR] [--repeats 3]
Run from the repository root.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tether.events import (  # noqa: E402
    Completed,
    Event,
    Failed,
    Killed,
    Lost,
    Partial,
    Proposed,
    Requeued,
    RunFinished,
    RunStarted,
    Started,
    WorkerJoined,
)
from tether.log.journal import JournalWriter  # noqa: E402

DIM = 4
WORKERS = 16


def _evaluation(rng: random.Random, eid: int, t: float, worker: str) -> list[Event]:
    x = tuple(rng.random() for _ in range(DIM))
    value = sum((c - 0.3) ** 2 for c in x)
    dur = rng.uniform(0.5, 2.0)
    evs: list[Event] = [Proposed(t, eid, x), Started(t + 0.001, eid, worker)]
    evs.append(Partial(t + dur / 2, eid, worker, value + 1.0, 0, {"epoch": 1}))
    r = rng.random()
    if r < 0.01:
        evs.append(Failed(t + dur, eid, worker, "ValueError: bad point\nTraceback ..."))
    elif r < 0.012:
        evs.append(Killed(t + dur, eid, worker, "eval_timeout (600 s) exceeded"))
    else:
        evs.append(Completed(t + dur, eid, worker, value))
    return evs


def generate(path: Path, events: int, seed: int = 0) -> int:
    """Write a log of about ``events`` events; return how many were written."""
    rng = random.Random(seed)
    w = JournalWriter(path)
    t = 1.7e9
    space = [{"name": f"x{i}", "low": 0.0, "high": 1.0} for i in range(DIM)]
    w.append(RunStarted(t, {"space": space, "strategy": {"name": "random", "options": {}},
                            "run": {"budget": events // 4}}))
    for k in range(WORKERS):
        w.append(WorkerJoined(t, f"w{k}"))
    n, eid = 0, 0
    while w.seq < events - 1:
        worker = f"w{eid % WORKERS}"
        t += 1.0 / WORKERS
        if rng.random() < 0.001:  # a lost worker: the attempt is lost and re-queued
            w.append(Proposed(t, eid, (0.5,) * DIM))
            w.append(Started(t, eid, worker))
            w.append(Lost(t + 3, eid, worker, 0, "heartbeats stopped"))
            w.append(Requeued(t + 3, eid, 1, "worker lost"))
            w.append(Started(t + 3, eid, worker, attempt=1))
            w.append(Completed(t + 4, eid, worker, 0.25 * DIM))
        else:
            for ev in _evaluation(rng, eid, t, worker):
                w.append(ev)
        eid += 1
        n += 1
        if n % 4096 == 0:
            w.flush()
    w.append(RunFinished(t + 5, "budget", eid, 0.0, (0.3,) * DIM, {"failed": 0, "killed": 0}))
    w.close()
    return w.seq


def _child(argv: list[str]) -> tuple[float, float]:
    """Run ``argv`` to completion; return (wall seconds, peak RSS in MB of that child)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, env=_env(), cwd=ROOT)
    _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage, not the maximum
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{argv} exited {proc.returncode}")
    return wall, usage.ru_maxrss / 1024


def _env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(ROOT) + os.pathsep + e.get("PYTHONPATH", "")
    return e


JSON_LOOP = ("import json,sys\nloads=json.loads\nn=0\n"
             "with open(sys.argv[1],encoding='utf-8') as fh:\n"
             "    for ln in fh:\n        loads(ln); n+=1\nprint(n)\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--keep", type=Path, help="directory to keep the generated log in")
    ap.add_argument("--log", type=Path, help="use this log instead of generating one")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        d = a.keep or Path(tmp)
        d.mkdir(parents=True, exist_ok=True)
        log = a.log or d / "big.jsonl"
        if a.log is None and not log.exists():
            t0 = time.perf_counter()
            n = generate(log, a.events)
            print(f"generated {n} events in {time.perf_counter() - t0:.1f} s: {log} "
                  f"({log.stat().st_size / 1e6:.0f} MB)", flush=True)
        py = sys.executable
        cmds = {
            "json.loads loop": [py, "-c", JSON_LOOP, str(log)],
            "tether log summary --json": [py, "-m", "tether", "log", "summary", str(log), "--json"],
            "tether log export --format csv": [py, "-m", "tether", "log", "export", str(log),
                                               "--format", "csv", "--out", str(d / "out.csv")],
            "tether log export --format json": [py, "-m", "tether", "log", "export", str(log),
                                                "--format", "json", "--out", str(d / "out.json")],
        }
        print(f"load average {os.getloadavg()[0]:.1f}; python {sys.version.split()[0]}")
        print("| command | best of %d (s) | all (s) | peak RSS (MB) |" % a.repeats)
        print("| --- | --- | --- | --- |")
        for name, argv in cmds.items():
            runs = [_child(argv) for _ in range(a.repeats)]
            walls = [w for w, _ in runs]
            print(f"| {name} | {min(walls):.2f} | {' '.join(f'{w:.2f}' for w in walls)} | "
                  f"{max(r for _, r in runs):.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
