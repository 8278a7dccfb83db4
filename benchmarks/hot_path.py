#!/usr/bin/env python3
"""The controller's own cost per evaluation, in memory: no sockets, no worker processes.

Drives the real ``ControllerSession`` + ``ControllerCore`` + ``JournalWriter`` (a log
file in a temporary directory, flushed once per round as the daemon does per loop turn)
with the ``random`` strategy: N simulated workers hello, then every ``evaluate`` the
session sends out is answered at once with a ``result``. What is left is the Python
work the controller does per evaluation (three log events, a proposal, a dispatch, an
acknowledgement), which no machine load changes much, so two trees can be compared
side by side::

    PYTHONPATH=$PWD .venv/bin/python benchmarks/hot_path.py
    PYTHONPATH=/path/to/other/tree .venv/bin/python benchmarks/hot_path.py   # A/B
    PYTHONPATH=$PWD .venv/bin/python benchmarks/hot_path.py --profile 25    # top costs

It reports CPU microseconds per evaluation (median of ``--repeats``) and, from one extra
profiled run, Python function calls per evaluation. Decoding and encoding the wire
frames and the socket calls are not in it (benchmarks/throughput.py has them); with
``--wire`` the frames are encoded and decoded too (the codec's share of the cost).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgpack

from tether.controller.core import ControllerCore
from tether.controller.session import ControllerSession
from tether.controller.settings import RunSettings
from tether.log.journal import JournalWriter
from tether.protocol import codec
from tether.protocol import messages as m
from tether.space import Space
from tether.strategies.sampling import RandomSampling


def run(n: int, workers: int, prefetch: int, profile: cProfile.Profile | None = None,
        wire: bool = False) -> float:
    """CPU seconds per evaluation for ``n`` evaluations (``wire``: through the codec)."""
    space = Space.unit(2)
    with tempfile.TemporaryDirectory() as d:
        journal = JournalWriter(Path(d) / "run.jsonl")
        settings = RunSettings(budget=n, prefetch=prefetch, hello_rate=1e9)
        core = ControllerCore(space, RandomSampling(space, seed=1), settings, journal, time.time)
        core.start()
        sess = ControllerSession(core, "bench", space.names)
        now = time.time()
        for i in range(workers):
            sess.receive(b"w%d" % i, m.Hello(f"w{i}", "s", 1, ()), now)
        done = 0
        t0 = time.process_time()
        if profile is not None:
            profile.enable()
        while core.finished is None:
            sess.settle()
            journal.flush()  # once per round, as the daemon flushes once per loop turn
            if wire:
                done += _through_codec(sess, now)
                continue
            for rid, msg in sess.outgoing():
                if type(msg) is m.Evaluate:
                    sess.receive(rid, m.Result(msg.eval_id, msg.attempt, 0.5, 1e-5), now)
                    done += 1
        if profile is not None:
            profile.disable()
        cpu = time.process_time() - t0
        journal.close()
    return cpu / max(1, done)


def _through_codec(sess: ControllerSession, now: float) -> int:
    """One round as the daemon does it: a frame per connection encoded, and each worker's
    answers decoded from one frame (packed here with msgpack, a small cost included)."""
    by_rid: dict[bytes, list[m.Message]] = {}
    for rid, msg in sess.outgoing():
        by_rid.setdefault(rid, []).append(msg)
    done = 0
    for rid, msgs in by_rid.items():
        frame = codec.encode_many(msgs)
        answers = [{"v": m.PROTOCOL_VERSION, "t": "result", "eval_id": e["eval_id"],
                    "attempt": e["attempt"], "value": 0.5, "seconds": 1e-5}
                   for e in _as_list(msgpack.unpackb(frame)) if e["t"] == "evaluate"]
        if answers:
            for msg in codec.decode_frame(msgpack.packb(answers), m.WORKER_MESSAGES):
                sess.receive(rid, msg, now)
            done += len(answers)
    return done


def _as_list(obj: Any) -> list[dict[str, Any]]:
    return obj if isinstance(obj, list) else [obj]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--evaluations", type=int, default=40_000)
    ap.add_argument("--workers", type=int, default=16)
    ap.add_argument("--prefetch", type=int, default=4, help="queued per worker (default 4)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--profile", type=int, default=0, metavar="K",
                    help="also print the K costliest functions of the profiled run")
    ap.add_argument("--wire", action="store_true",
                    help="also encode every frame sent and decode every result frame")
    ap.add_argument("--json", metavar="OUT")
    a = ap.parse_args(argv)
    try:  # the garbage collector's thresholds as the daemon sets them (trees since 2026-11-30)
        from tether import gcpolicy
        gcpolicy.tune()
    except ImportError:
        pass
    run(2_000, a.workers, a.prefetch, wire=a.wire)  # warm-up: imports, first allocations
    per = [run(a.evaluations, a.workers, a.prefetch, wire=a.wire) for _ in range(a.repeats)]
    prof = cProfile.Profile()
    run(a.evaluations, a.workers, a.prefetch, prof, wire=a.wire)
    stats = pstats.Stats(prof)
    calls = stats.total_calls / a.evaluations  # type: ignore[attr-defined]
    med = statistics.median(per) * 1e6
    import tether
    wire = " (--wire)" if a.wire else ""
    print(f"tether at {Path(tether.__file__).parent}{wire}: {med:.1f} µs CPU per evaluation "
          f"(median of {a.repeats}: {', '.join(f'{p * 1e6:.1f}' for p in per)}), "
          f"{calls:.0f} Python calls per evaluation; Python {sys.version.split()[0]}")
    if a.profile:
        stats.sort_stats("tottime").print_stats(a.profile)
    if a.json:
        out: dict[str, Any] = {"us_per_eval": med, "runs_us": [p * 1e6 for p in per],
                               "calls_per_eval": calls, "evaluations": a.evaluations,
                               "workers": a.workers, "prefetch": a.prefetch, "wire": a.wire,
                               "tether": str(Path(tether.__file__).parent)}
        Path(a.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
