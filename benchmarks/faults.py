"""Fault-recovery figures, measured on real processes over 127.0.0.1.

1. SIGKILL of a busy worker -> `requeued` in the log (the controller's detection time).
2. SIGKILL + restart (`--resume`) of the controller -> every worker rejoined.

usage: python benchmarks/faults.py [--repeats 5] [--workers 4]
Run from the repository root. Prints a markdown table; times come from the log's `t`.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.integration.harness import Cluster, events_of, wait_for

SETTINGS = {"default (1 s x 3)": "heartbeat = 1.0\nliveness = 3\n",
            "fast (0.2 s x 3)": "heartbeat = 0.2\nliveness = 3\n"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def worker_kill_to_requeue(run: str) -> float:
    with tempfile.TemporaryDirectory() as d:
        c = Cluster(Path(d))
        try:
            c.start_controller(config=c.config(budget=50, run=run))
            victim = c.start_worker(python="tests.integration.objectives:slow", name="victim")
            wait_for(lambda: events_of(c.log, "started"), 60, "an evaluation to start")
            t_kill = time.time()
            c.kill(victim)
            req = wait_for(lambda: events_of(c.log, "requeued"), 60, "requeued")
            return float(req[0]["t"]) - t_kill
        finally:
            c.close()


def controller_restart_to_rejoin(run: str, workers: int) -> tuple[float, float]:
    """(restart -> all rejoined, restart -> first result accepted), in seconds."""
    with tempfile.TemporaryDirectory() as d:
        c = Cluster(Path(d))
        try:
            port = free_port()
            cfg = c.config(budget=100_000, run=run)
            bind = ["--bind", f"tcp://127.0.0.1:{port}"]
            c.start_controller(*bind, config=cfg)
            for _ in range(workers):
                c.start_worker(python="tests.integration.objectives:sleepy")
            wait_for(lambda: len(events_of(c.log, "worker_joined")) >= workers, 60, "joins")
            wait_for(lambda: len(events_of(c.log, "completed")) >= 20, 60, "progress")
            c.kill(c.controller)  # type: ignore[arg-type]
            t0 = time.time()
            c.start_controller(*bind, "--resume", config=cfg)

            def after_restart(kind: str) -> list[dict]:
                evs = events_of(c.log)
                idx = max(i for i, e in enumerate(evs) if e["event"] == "run_started")
                return [e for e in evs[idx:] if e["event"] == kind]

            joined = wait_for(lambda: (j := after_restart("worker_joined")) and
                              len({e["worker"] for e in j}) >= workers and j, 60, "rejoin")
            done = wait_for(lambda: after_restart("completed"), 60, "a result")
            return max(float(e["t"]) for e in joined) - t0, float(done[0]["t"]) - t0
        finally:
            c.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--workers", type=int, default=4)
    a = ap.parse_args()
    print(f"# fault recovery, {time.strftime('%Y-%m-%d %H:%M')}, repeats={a.repeats}")
    print("| settings | worker SIGKILL -> requeued (s) | controller restart -> "
          f"{a.workers} workers rejoined (s) | restart -> first result (s) |")
    print("|---|---|---|---|")
    for label, run in SETTINGS.items():
        req = [worker_kill_to_requeue(run) for _ in range(a.repeats)]
        rj = [controller_restart_to_rejoin(run, a.workers) for _ in range(a.repeats)]
        fmt = lambda xs: f"{statistics.median(xs):.2f} ({min(xs):.2f}-{max(xs):.2f})"  # noqa: E731
        print(f"| {label} | {fmt(req)} | {fmt([r[0] for r in rj])} | {fmt([r[1] for r in rj])} |",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
