"""How fast ``tether log summary`` and ``export`` read a large log (issue 13, item 4).

Generates a synthetic but contract-valid log of N events (by default 1,000,000: 250,000
evaluations, each ``proposed``, ``started``, one ``partial`` and a terminal event, with a
few failures, kills and lost/requeued workers), then times, each in a fresh process:

- ``json.loads`` over every line (the floor the issue compares against),
- ``tether log summary LOG --json``,
- ``tether log export LOG --format csv --out FILE``,

and reports wall seconds and peak RSS (``ru_maxrss`` of the child).

usage: python benchmarks/log_tools.py [--events 1000000] [--keep DIR] [--repeats 3] [--log LOG]
Run from the repository root. Optional faster decoder: have ``orjson`` importable.

Measured 2026-11-30 on the shared 2-core machine (load average 8-13, so wall time is
about 3x CPU time; compare CPU), Python 3.11.7, 1,000,002 events / 249,810 evaluations,
125 MB, best of 3, CPU seconds (peak RSS):

| command                       | json (stdlib)  | orjson 3.13.0  |
| ---                           | ---            | ---            |
| json.loads loop (the floor)   | 2.93 (42 MB)   | 2.92 (42 MB)   |
| journal.iter_events loop      | 5.66           | 5.88           |
| tether log summary --json     | 7.30 (211 MB)  | 4.80 (211 MB)  |
| tether log export csv         | 9.48 (211 MB)  | 6.8 (216 MB)   |
| tether log export json        | 9.67           | 7.55           |

Of the summary's 4.8 s with orjson, decoding is ~0.6 s, ``tether.events.parse_event``
~2.1 s and the fold into rows ~0.9 s.
"""

from __future__ import annotations

import argparse
import heapq
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
    """The events of one evaluation that starts at ``t`` on ``worker``, in time order."""
    x = tuple(rng.random() for _ in range(DIM))
    value = sum((c - 0.3) ** 2 for c in x)
    dur = rng.uniform(0.5, 2.0)
    evs: list[Event] = [Proposed(t, eid, x), Started(t + 0.001, eid, worker)]
    if rng.random() < 0.001:  # its worker is lost: the attempt ends, it runs again
        evs += [Lost(t + dur, eid, worker, 0, "heartbeats stopped"),
                Requeued(t + dur, eid, 1, "worker lost"),
                Started(t + dur + 0.01, eid, worker, attempt=1)]
        t += dur + 0.01
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
    """Write a time-ordered log of about ``events`` events; return how many were written.

    A small discrete-event simulation: each of WORKERS workers takes the next evaluation
    as soon as it is free, so the worker timeline is realistic (busy, never overlapping).
    """
    rng = random.Random(seed)
    w = JournalWriter(path)
    t0 = 1.7e9
    space = [{"name": f"x{i}", "low": 0.0, "high": 1.0} for i in range(DIM)]
    w.append(RunStarted(t0, {"space": space, "strategy": {"name": "random", "options": {}},
                             "run": {"budget": events // 4}}))
    free = [(t0 + 0.01 * k, k) for k in range(WORKERS)]  # (when free, worker)
    later: list[tuple[float, int, Event]] = []  # events due in the future, by time
    order = 0
    for k in range(WORKERS):
        w.append(WorkerJoined(t0, f"w{k}"))
    eid = 0
    completed = 0
    while w.seq + len(later) < events - 1:
        t, k = heapq.heappop(free)
        while later and later[0][0] <= t:
            ev = heapq.heappop(later)[2]
            completed += isinstance(ev, Completed)
            w.append(ev)
        evs = _evaluation(rng, eid, t, f"w{k}")
        for ev in evs:
            order += 1
            heapq.heappush(later, (ev.t, order, ev))
        heapq.heappush(free, (evs[-1].t + 0.002, k))
        eid += 1
        if eid % 4096 == 0:
            w.flush()
    while later:
        ev = heapq.heappop(later)[2]
        completed += isinstance(ev, Completed)
        w.append(ev)
    w.append(RunFinished(ev.t + 0.01, "budget", completed, 0.0, (0.3,) * DIM,
                         {"failed": 0, "killed": 0}))
    w.close()
    return w.seq


def _child(argv: list[str]) -> tuple[float, float, float]:
    """Run ``argv`` to completion; return its wall seconds, CPU seconds and peak RSS (MB).

    On a shared, loaded machine wall time mostly measures the neighbours; the child's own
    CPU time (user + system, from ``wait4``) is what compares two commands fairly.
    """
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, env=_env(), cwd=ROOT)
    _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage, not the maximum
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{argv} exited {proc.returncode}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def _env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(ROOT) + os.pathsep + e.get("PYTHONPATH", "")
    return e


JSON_LOOP = ("import json,sys\nloads=json.loads\nn=0\n"
             "with open(sys.argv[1],encoding='utf-8') as fh:\n"
             "    for ln in fh:\n        loads(ln); n+=1\nprint(n)\n")


EVENTS_LOOP = ("import sys\nfrom tether.log.journal import iter_events\n"
               "print(sum(1 for _ in iter_events(sys.argv[1])))\n")


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
            "journal.iter_events loop": [py, "-c", EVENTS_LOOP, str(log)],
            "tether log summary --json": [py, "-m", "tether", "log", "summary", str(log), "--json"],
            "tether log export --format csv": [py, "-m", "tether", "log", "export", str(log),
                                               "--format", "csv", "--out", str(d / "out.csv")],
            "tether log export --format json": [py, "-m", "tether", "log", "export", str(log),
                                                "--format", "json", "--out", str(d / "out.json")],
        }
        from tether.log.read import DECODER

        print(f"load average {os.getloadavg()[0]:.1f}; python {sys.version.split()[0]}; "
              f"decoder {DECODER}")
        print(f"| command | CPU s, best of {a.repeats} | CPU s, all | wall s, all | peak RSS MB |")
        print("| --- | --- | --- | --- | --- |")
        for name, argv in cmds.items():
            runs = [_child(argv) for _ in range(a.repeats)]
            cpu = [c for _, c, _ in runs]
            print(f"| {name} | {min(cpu):.2f} | {' '.join(f'{c:.2f}' for c in cpu)} | "
                  f"{' '.join(f'{w:.1f}' for w, _, _ in runs)} | "
                  f"{max(r for _, _, r in runs):.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
