"""Journal write cost per event: orjson (the `fast` extra) against the stdlib encoder.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/journal_write.py [--evaluations 50000] [--repeats 3]

Writes proposed/started/completed for each evaluation through ``JournalWriter`` with one
flush per evaluation (the controller flushes once per loop turn), alternating the two
encoders, and prints CPU microseconds per event (median of the repeats) and the ratio.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from tether.events import Completed, Event, Proposed, Started
from tether.log import journal


def events(n: int) -> list[Event]:
    out: list[Event] = []
    for i in range(n):
        out += [Proposed(t=1.0 + i, eval_id=i, x=(0.1 * i, 0.2), tag="random"),
                Started(t=1.0 + i, eval_id=i, worker="w1"),
                Completed(t=2.0 + i, eval_id=i, worker="w1", value=0.5 * i)]
    return out


def cpu_per_event(evs: list[Event], path: Path) -> float:
    w = journal.JournalWriter(path)
    t0 = time.process_time()
    for k, e in enumerate(evs):
        w.append(e)
        if k % 3 == 2:
            w.flush()
    w.close()
    return (time.process_time() - t0) / len(evs) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--evaluations", type=int, default=50_000)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    if journal.orjson is None:
        raise SystemExit("orjson is not installed (pip install -e '.[fast]')")
    fast_mod, evs = journal.orjson, events(a.evaluations)
    res: dict[str, list[float]] = {"orjson": [], "stdlib json": []}
    with tempfile.TemporaryDirectory() as d:
        for r in range(a.repeats):
            for name in res:
                journal.orjson = fast_mod if name == "orjson" else None  # type: ignore[assignment]
                res[name].append(cpu_per_event(evs, Path(d) / f"{name}{r}.jsonl"))
    journal.orjson = fast_mod  # type: ignore[assignment]
    med = {k: statistics.median(v) for k, v in res.items()}
    print(f"orjson {fast_mod.__version__}, {len(evs):,} events, {a.repeats} repeats")
    for k, v in med.items():
        print(f"{k:12s} {v:5.2f} us/event CPU (median; {min(res[k]):.2f}-{max(res[k]):.2f})")
    print(f"stdlib / orjson: {med['stdlib json'] / med['orjson']:.2f}x")


if __name__ == "__main__":
    main()
