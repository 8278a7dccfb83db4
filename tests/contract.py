"""The log contract of DESIGN.md, checked on real runs' logs (shared by the tests)."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

TERMINAL = {"completed", "failed", "killed"}
KNOWN = {"run_started", "proposed", "started", "partial", "completed", "failed", "killed",
         "lost", "requeued", "worker_joined", "worker_left", "run_finished"}
NEEDS_EVAL = TERMINAL | {"proposed", "started", "partial", "lost", "requeued"}


def write_log(path: Path, events: list[dict[str, Any]]) -> Path:
    """Write a simulated run's events as a journal file (fresh ``t``/``seq`` stamps)."""
    from tether.events import parse_event
    from tether.log.journal import JournalWriter

    w = JournalWriter(path)
    for e in events:
        w.append(parse_event(e))
    w.close()
    return path


def load(path: str | Path) -> list[dict[str, Any]]:
    lines = Path(path).read_text(encoding="utf-8").split("\n")
    return [json.loads(ln) for ln in lines if ln.strip()]


def check_log(path: str | Path, completed: int | None = None) -> Counter[str]:
    """Assert every rule of the contract on a log file; return the count of each kind."""
    return check_events(load(path), completed=completed)


def check_events(events: list[dict[str, Any]], *, completed: int | None = None,
                 dim: int | None = None, finished: bool | None = None) -> Counter[str]:
    """The log contract (docs/log-format.md), on decoded events: the one checker.

    ``finished``: True requires the run to have ended, False forbids it, None takes the
    log as it is. ``dim``: the length every point must have.
    """
    assert events, "empty log"
    assert events[0]["event"] == "run_started"
    proposed: set[int] = set()
    terminal: dict[int, str] = {}
    ended = None  # the last run_finished, until a resumed run_started reopens the run
    for i, e in enumerate(events):
        _check_line(i, e, dim)
        kind = e["event"]
        if kind == "run_started":
            ended = None
        elif kind == "run_finished":
            assert ended is None, f"line {i}: run_finished twice"
            ended = e
            done = sum(1 for k in terminal.values() if k == "completed")
            assert e["completed"] == done, (e, done)
        elif kind in NEEDS_EVAL:
            eid = e["eval_id"]
            assert ended is None, f"line {i}: {kind} after run_finished"
            if kind == "proposed":
                assert eid not in proposed, f"eval {eid} proposed twice"
                proposed.add(eid)
            else:
                assert eid in proposed, f"line {i}: {kind} of unknown eval {eid}"
                assert eid not in terminal, f"line {i}: {kind} of eval {eid} after it ended"
            if kind in TERMINAL:
                terminal[eid] = kind
    counts = Counter(e["event"] for e in events)
    if ended is not None:
        assert set(proposed) == set(terminal), "run finished with evaluations still open"
    if finished is not None:
        assert (ended is not None) == finished, "run_finished expected" if finished else ended
    if completed is not None:
        assert counts["completed"] == completed, counts
    return counts


def _check_line(i: int, e: dict[str, Any], dim: int | None) -> None:
    assert {"event", "t", "seq"} <= set(e), f"line {i} lacks event/t/seq: {e}"
    assert e["seq"] == i, f"seq not gap-free at line {i}: {e['seq']}"
    assert isinstance(e["t"], float | int) and math.isfinite(e["t"]), e
    kind = e["event"]
    assert kind in KNOWN, f"unknown event {kind}"
    if kind in NEEDS_EVAL:
        assert isinstance(e.get("eval_id"), int), e
    if kind == "proposed":
        x = e["x"]
        assert isinstance(x, list) and all(isinstance(v, float | int) and math.isfinite(v)
                                           for v in x), e
        assert dim is None or len(x) == dim, e
    if kind in ("started", "partial", "completed", "failed"):
        assert isinstance(e.get("worker"), str) and e["worker"], e
    if kind in ("partial", "completed"):
        assert isinstance(e["value"], float | int) and math.isfinite(e["value"]), e
    if kind == "failed":
        assert isinstance(e.get("error"), str) and e["error"], e


def main(argv: list[str] | None = None) -> int:
    """``python tests/contract.py LOG [--completed N]``: the checker as a command (the
    benchmarks check every log they measure with it)."""
    import argparse

    ap = argparse.ArgumentParser(description="check a tether log against the contract")
    ap.add_argument("log")
    ap.add_argument("--completed", type=int)
    a = ap.parse_args(argv)
    try:
        counts = check_log(a.log, a.completed)
    except AssertionError as exc:
        print(f"FAIL: {exc}")
        return 1
    print(json.dumps(dict(counts)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
