"""What each controller generation of a chained run cost, read from its log.

    python scripts/slurm/generations.py run.jsonl

A generation starts at a ``run_started`` event (the first, then one per ``--resume``).
For each: the gap since the previous generation's last event (``gap s``: the controller
was down), how long it ran, what it completed, how many of those completions were
evaluations started under an earlier generation and carried through the gap
(``carried``), how long after it bound the workers of the previous generation were all
back (``reconnect s``), and what was re-queued or lost in it. The totals line checks
the accounting: every evaluation ended at most once (``repeated``: evaluations with more
than one terminal event, target 0) and none was left without an end in a finished run
(``unended``, target 0).
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

TERMINAL = ("completed", "failed", "killed")


def load(path: str) -> list[dict[str, Any]]:
    out = []
    for line in Path(path).read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue  # a torn last line
    return out


def generations(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    starts = [i for i, e in enumerate(events) if e["event"] == "run_started"]
    rows = []
    before: set[str] = set()
    started_in: dict[int, int] = {}
    for k, i in enumerate(starts):
        part = events[i:starts[k + 1] if k + 1 < len(starts) else len(events)]
        kinds = Counter(e["event"] for e in part)
        t0 = part[0]["t"]
        joined: dict[str, float] = {}
        for e in part:
            if e["event"] == "worker_joined":
                joined.setdefault(e["worker"], e["t"] - t0)
        back = [joined[w] for w in before if w in joined]
        for e in part:
            if e["event"] == "started":
                started_in.setdefault(e["eval_id"], k)
        carried = sum(1 for e in part if e["event"] == "completed"
                      and started_in.get(e["eval_id"], k) < k)
        rows.append({"generation": k, "seconds": part[-1]["t"] - t0,
                     "gap": t0 - events[i - 1]["t"] if i else None,
                     "completed": kinds["completed"], "carried": carried,
                     "requeued": kinds["requeued"],
                     "lost": kinds["lost"], "killed": kinds["killed"],
                     "reconnected": f"{len(back)}/{len(before)}" if k else "-",
                     "reconnect_s": max(back) if back and len(back) == len(before) else None})
        left = {e["worker"] for e in part if e["event"] == "worker_left"}
        before = (before | set(joined)) - left
    return rows


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    events = load(argv[0])
    print("gen  gap s  seconds  completed  carried  reconnected  reconnect s  requeued  lost"
          "  killed")
    for r in generations(events):
        rs = f"{r['reconnect_s']:.2f}" if r["reconnect_s"] is not None else "-"
        gap = f"{r['gap']:.1f}" if r["gap"] is not None else "-"
        print(f"{r['generation']:3d}  {gap:>5s}  {r['seconds']:7.1f}  {r['completed']:9d}  "
              f"{r['carried']:7d}  "
              f"{r['reconnected']:>11s}  {rs:>11s}  {r['requeued']:8d}  {r['lost']:4d}"
              f"  {r['killed']:6d}")
    ends = Counter(e["eval_id"] for e in events if e["event"] in TERMINAL)
    proposed = {e["eval_id"] for e in events if e["event"] == "proposed"}
    finished = any(e["event"] == "run_finished" for e in events)
    unended = len(proposed - set(ends)) if finished else 0
    print(f"total: {sum(1 for e in events if e['event'] == 'completed')} completed, "
          f"repeated {sum(1 for n in ends.values() if n > 1)}, unended {unended}"
          + ("" if finished else " (run not finished)"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
