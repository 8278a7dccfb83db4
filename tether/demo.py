"""``python -m tether.demo``: a controller and 3 worker processes on the scaled Branin function.

Each evaluation sleeps about 0.5 * sum(x) seconds, so evaluations finish out of order, as
they do on a cluster. Everything runs as real processes talking ZeroMQ over 127.0.0.1.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tether.log.journal import read_events
from tether.log.summary import tabulate

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
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--workers", type=int, default=3)
    ap.add_argument("--budget", type=int, default=30)
    ap.add_argument("--strategy", default="dycors")
    ap.add_argument("--log", default=None, help="default: runs/demo-TIMESTAMP.jsonl")
    a = ap.parse_args(argv)
    log = Path(a.log or f"runs/demo-{time.strftime('%Y%m%d-%H%M%S')}.jsonl").resolve()
    log.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="tether-demo-"))
    cfg = tmp / "demo.toml"
    cfg.write_text(CONFIG.format(strategy=a.strategy, budget=a.budget, log=log))
    addr = tmp / "address"
    t0 = time.perf_counter()
    tether = [sys.executable, "-m", "tether"]
    ctl = subprocess.Popen([*tether, "controller", str(cfg), "--address-file", str(addr)],
                           stdout=subprocess.DEVNULL)
    workers = [
        subprocess.Popen([*tether, "worker", "--address-file", str(addr),
                          "--python", "tether.problems:branin_delayed", "--name", f"demo-{i}"])
        for i in range(a.workers)
    ]
    print(f"demo: controller and {a.workers} workers started; log {log}", flush=True)
    codes = [ctl.wait(timeout=300)] + [w.wait(timeout=60) for w in workers]
    elapsed = time.perf_counter() - t0
    table = tabulate(read_events(log))
    best = table.best()
    if any(codes) or best is None:
        print(f"demo failed: exit codes {codes}", file=sys.stderr)
        return 1
    done = sum(r.status == "completed" for r in table.rows.values())
    point = ", ".join(f"{n}={v:.6f}" for n, v in zip(table.names, best.x))
    print(f"completed  {done} evaluations in {elapsed:.1f} s with {a.workers} workers")
    print(f"best point {point}")
    print(f"best value {best.value:.6f}   (global minimum -1.047394)")
    print(f"log        {log}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
