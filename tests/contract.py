"""The log contract of DESIGN.md, checked on real runs' logs (shared by the tests)."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
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
    """Assert every rule of the contract; return the count of each event kind."""
    events = load(path)
    assert events, "empty log"
    assert events[0]["event"] == "run_started"
    for i, e in enumerate(events):
        assert {"event", "t", "seq"} <= set(e), f"line {i} lacks event/t/seq: {e}"
        assert e["seq"] == i, f"seq not gap-free at line {i}: {e['seq']}"
        kind = e["event"]
        assert kind in KNOWN, f"unknown event {kind}"
        if kind in NEEDS_EVAL:
            assert "eval_id" in e, e
        if kind == "proposed":
            assert isinstance(e["x"], list) and all(isinstance(v, float | int) for v in e["x"])
        if kind in ("started", "partial", "completed", "failed"):
            assert e.get("worker"), e
        if kind in ("partial", "completed"):
            assert isinstance(e["value"], float | int), e
        if kind == "failed":
            assert e.get("error"), e
    proposed = [e["eval_id"] for e in events if e["event"] == "proposed"]
    assert len(proposed) == len(set(proposed)), "an eval_id was proposed twice"
    terms: dict[int, list[str]] = defaultdict(list)
    for e in events:
        if e["event"] in TERMINAL:
            terms[e["eval_id"]].append(e["event"])
    doubled = {k: v for k, v in terms.items() if len(v) > 1}
    assert not doubled, f"evaluations with several terminal events: {doubled}"
    assert set(terms) <= set(proposed)
    counts = Counter(e["event"] for e in events)
    if counts["run_finished"]:
        assert set(proposed) == set(terms), "run finished with evaluations still open"
    if completed is not None:
        assert counts["completed"] == completed, counts
    return counts
