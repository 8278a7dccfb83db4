"""The evaluation log: writer, reader, repair, and the per-evaluation table and summary."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.contract import write_log
from tether.controller.local import SimulatedController
from tether.controller.settings import RunSettings
from tether.errors import LogError
from tether.events import parse_event
from tether.log.journal import JournalWriter, MemoryJournal, read_events, repair
from tether.log.summary import format_summary, summary, tabulate
from tether.space import Space
from tether.strategies.sampling import RandomSampling


def put(journal: JournalWriter | MemoryJournal, kind: str, t: float, **fields: Any) -> None:
    journal.append(parse_event({"event": kind, "t": t, **fields}))


def strict_loads(line: str) -> Any:
    def bad(name: str) -> Any:
        raise ValueError(f"non-standard JSON constant {name}")

    return json.loads(line, parse_constant=bad)


def lines(p: Path) -> list[str]:
    return p.read_text(encoding="utf-8").splitlines()


# ---------------------------------------------------------------------- writer
def test_writer_buffers_until_flush(tmp_path: Path) -> None:
    p = tmp_path / "sub" / "run.jsonl"
    w = JournalWriter(p)
    assert p.exists() and p.read_text() == ""  # parent directory created
    put(w, "run_started", 1.5, space=[{"name": "x", "low": 0.0, "high": 1.0}])
    put(w, "proposed", 2.0, eval_id=0, x=[0.25])
    assert p.read_text() == ""
    w.flush()
    got = [strict_loads(ln) for ln in lines(p)]
    assert [(e["event"], e["seq"]) for e in got] == [("run_started", 0), ("proposed", 1)]
    assert got[1] == {"event": "proposed", "t": 2.0, "seq": 1, "eval_id": 0, "x": [0.25]}
    w.flush()  # nothing new: nothing written
    assert len(lines(p)) == 2
    put(w, "completed", 3.0, eval_id=0, worker="w", value=0.5)
    w.close()
    assert [strict_loads(ln)["seq"] for ln in lines(p)] == [0, 1, 2]
    assert w.seq == 3


def test_writer_line_format(tmp_path: Path) -> None:
    p = tmp_path / "run.jsonl"
    w = JournalWriter(p, fsync=True)
    put(w, "partial", 1700000000.123457, eval_id=3, worker="node1-77", value=0.1 + 0.2)
    w.close()
    (line,) = lines(p)
    assert line.startswith('{"event":"partial","t":')
    e = strict_loads(line)
    assert list(e)[:3] == ["event", "t", "seq"]
    assert e["t"] == 1700000000.123457
    assert e["value"] == 0.1 + 0.2  # full float precision


def test_the_core_stamps_events_with_microseconds() -> None:
    # the clock is rounded where events are made (once), so the log's `t` has microsecond
    # resolution and a replay of it rebuilds exactly the live state
    from tether.controller.core import ControllerCore
    from tether.controller.settings import RunSettings
    from tether.log.journal import MemoryJournal
    from tether.space import Space
    from tether.strategies.sampling import RandomSampling

    space = Space.unit(2)
    j = MemoryJournal()
    core = ControllerCore(space, RandomSampling(space), RunSettings(budget=3), j,
                          lambda: 1700000000.123456789)
    core.start()
    core.join("w")
    assert j.events and all(e["t"] == round(1700000000.123456789, 6) for e in j.events)
    # any clock reading: a whole number of microseconds, at most one away, never back
    rng = random.Random(3)
    times = sorted(1.7e9 + rng.random() * 1e8 for _ in range(20_000))
    stamps = []
    for x in times:
        core.clock = lambda x=x: x
        stamps.append(core._now())
    assert all(len(repr(t).split(".")[1]) <= 6 and abs(t - x) <= 1e-6
               for t, x in zip(stamps, times))
    assert stamps == sorted(stamps)


def test_writer_continues_from_start_seq(tmp_path: Path) -> None:
    p = tmp_path / "run.jsonl"
    w = JournalWriter(p)
    for k in range(4):
        put(w, "worker_left", float(k), worker=f"w{k}", reason="x")
    w.close()
    w2 = JournalWriter(p, start_seq=len(read_events(p)))
    put(w2, "run_started", 10.0, resumed=True)
    put(w2, "worker_left", 11.0, worker="w", reason="x")
    w2.close()
    ev = read_events(p)
    assert [e["seq"] for e in ev] == list(range(6))
    assert ev[4]["event"] == "run_started"


def test_nan_and_inf_written_as_null(tmp_path: Path) -> None:
    p = tmp_path / "run.jsonl"
    w = JournalWriter(p)
    put(w, "completed", 1.0, eval_id=0, worker="w", value=math.nan)
    put(w, "partial", 2.0, eval_id=0, worker="w", value=math.inf)
    put(w, "partial", 3.0, eval_id=0, worker="w", value=-math.inf)
    w.close()
    got = [strict_loads(ln) for ln in lines(p)]  # valid, standard JSON
    assert [e["value"] for e in got] == [None, None, None]
    assert "NaN" not in p.read_text() and "Infinity" not in p.read_text()


def test_nested_nan_written_as_null(tmp_path: Path) -> None:
    p = tmp_path / "run.jsonl"
    w = JournalWriter(p)
    put(w, "run_started", 0.0, run={"target": math.nan, "max_time": math.inf},
             best_x=[math.nan, 1.0])
    w.close()
    e = strict_loads(lines(p)[0])
    assert e["run"] == {"target": None, "max_time": None}
    assert e["best_x"] == [None, 1.0]


def test_memory_journal() -> None:
    j = MemoryJournal()
    put(j, "run_started", 0.0)
    put(j, "proposed", 1.0, eval_id=0, x=[0.5])
    put(j, "proposed", 2.0, eval_id=1, x=[0.7])
    j.flush()
    assert [e["seq"] for e in j.events] == [0, 1, 2]
    assert [e["eval_id"] for e in j.of("proposed")] == [0, 1]


# ---------------------------------------------------------------------- reader
GOOD = [
    '{"event":"run_started","t":0.0,"seq":0}',
    '{"event":"proposed","t":1.0,"seq":1,"eval_id":0,"x":[0.5]}',
    '{"event":"started","t":1.5,"seq":2,"eval_id":0,"worker":"w"}',
]


def make_log(tmp_path: Path, body: str, name: str = "run.jsonl") -> Path:
    p = tmp_path / name
    p.write_text(body, encoding="utf-8")
    return p


def test_read_events_good(tmp_path: Path) -> None:
    p = make_log(tmp_path, "\n".join(GOOD) + "\n")
    ev = read_events(p)
    assert [e["seq"] for e in ev] == [0, 1, 2]
    assert ev[1]["x"] == [0.5]


def test_read_events_skips_blank_lines(tmp_path: Path) -> None:
    p = make_log(tmp_path, "\n" + GOOD[0] + "\n\n  \n" + GOOD[1] + "\n\n")
    assert len(read_events(p)) == 2


@pytest.mark.parametrize("torn", ['{"event":"completed","t":2.0,"se', "{", '{"event":"x"',
                                  '{"event":"completed","t":2.0,"seq":3,"value":1.5'])
def test_read_events_tolerates_torn_last_line(tmp_path: Path, torn: str) -> None:
    p = make_log(tmp_path, "\n".join(GOOD) + "\n" + torn)
    assert [e["seq"] for e in read_events(p)] == [0, 1, 2]
    p = make_log(tmp_path, "\n".join(GOOD) + "\n" + torn + "\n", "b.jsonl")
    assert [e["seq"] for e in read_events(p)] == [0, 1, 2]


def test_read_events_torn_utf8_last_line(tmp_path: Path) -> None:
    p = tmp_path / "run.jsonl"
    p.write_bytes(("\n".join(GOOD) + "\n").encode() + '{"event":"failed","error":"é'.encode()[:-1])
    assert len(read_events(p)) == 3


@pytest.mark.parametrize("bad", ['{"event":"completed","t":2.0,"se', "not json", "[1, 2]",
                                 '{"t": 1.0, "seq": 1}', "42"])
def test_read_events_rejects_broken_middle_line(tmp_path: Path, bad: str) -> None:
    p = make_log(tmp_path, "\n".join([GOOD[0], bad, *GOOD[1:]]) + "\n")
    with pytest.raises(LogError, match=":2:"):
        read_events(p)


def test_read_events_rejects_non_event_last_line(tmp_path: Path) -> None:
    # valid JSON that is not an event is not a torn write
    p = make_log(tmp_path, "\n".join(GOOD) + '\n{"no_event": 1}\n')
    with pytest.raises(LogError):
        read_events(p)


def test_read_events_missing_and_empty(tmp_path: Path) -> None:
    with pytest.raises(LogError, match="no such log"):
        read_events(tmp_path / "none.jsonl")
    assert read_events(make_log(tmp_path, "")) == []
    assert read_events(make_log(tmp_path, "{", "torn-only.jsonl")) == []


# ---------------------------------------------------------------------- repair
def test_repair_cuts_torn_last_line(tmp_path: Path) -> None:
    body = "\n".join(GOOD) + "\n"
    torn = '{"event":"completed","t":2.0,"seq":3,"eval_'
    p = make_log(tmp_path, body + torn)
    assert repair(p) == len(torn)
    assert p.read_text() == body
    assert repair(p) == 0  # idempotent


def test_repair_cuts_complete_but_garbled_last_line(tmp_path: Path) -> None:
    body = "\n".join(GOOD) + "\n"
    p = make_log(tmp_path, body + '{"event":"completed","t":2.0,"se\n')
    assert repair(p) > 0
    assert p.read_text() == body


@pytest.mark.parametrize("body", ["", "\n".join(GOOD) + "\n", GOOD[0] + "\n"])
def test_repair_leaves_good_files_alone(tmp_path: Path, body: str) -> None:
    p = make_log(tmp_path, body)
    before = p.read_bytes()
    assert repair(p) == 0
    assert p.read_bytes() == before


def test_repair_of_only_a_torn_line(tmp_path: Path) -> None:
    p = make_log(tmp_path, '{"event":"run_sta')
    assert repair(p) == len('{"event":"run_sta')
    assert p.read_bytes() == b""


def test_repair_then_append_keeps_seq_gap_free(tmp_path: Path) -> None:
    p = tmp_path / "run.jsonl"
    w = JournalWriter(p)
    for k in range(5):
        put(w, "worker_left", float(k), worker="w", reason="x")
    w.close()
    with open(p, "a", encoding="utf-8") as fh:  # a crash mid-write
        fh.write('{"event":"e","t":5.0,"seq":5,"x":[0.1,')
    assert len(read_events(p)) == 5
    repair(p)
    w2 = JournalWriter(p, start_seq=len(read_events(p)))
    put(w2, "run_started", 6.0, resumed=True)
    w2.close()
    ev = read_events(p)
    assert [e["seq"] for e in ev] == list(range(6))
    for ln in lines(p):
        strict_loads(ln)


# ---------------------------------------------------------------------- summaries
SPACE = Space(("a", "b"), (-1.0, 0.0), (1.0, 2.0))


def objective(x: np.ndarray, report: Any) -> float:
    if x[0] > 0.8:
        raise ValueError("too far right")
    v = float((x[0] - 0.1) ** 2 + (x[1] - 0.5) ** 2)
    report(v + 2.0)
    report(v + 1.0)
    return v


def sim_log(tmp_path: Path, budget: int = 20) -> tuple[Path, Any]:
    sim = SimulatedController(SPACE, RandomSampling(SPACE, seed=4), objective, workers=3,
                              settings=RunSettings(budget=budget),
                              duration=lambda x: 1.0 + float(x[1]))
    res = sim.run()
    return write_log(tmp_path / "sim.jsonl", res.events), res


def test_tabulate_and_summary_on_a_simulated_run(tmp_path: Path) -> None:
    p, res = sim_log(tmp_path)
    events = read_events(p)
    assert [e["seq"] for e in events] == list(range(len(events)))
    from tests.contract import check_log  # the shared log-contract checker

    check_log(p, completed=20)
    table = tabulate(events)
    assert table.names == ["a", "b"]
    assert set(table.rows) == set(res.records)
    for eid, rec in res.records.items():
        row = table.rows[eid]
        assert row.status == rec.status.value
        assert row.x == list(rec.x)
        if rec.value is not None:
            assert row.value == rec.value
        assert row.worker == rec.worker
        if row.status == "completed":
            assert len(row.partials) == 2
            assert row.partials[1] == pytest.approx(rec.value + 1.0)
            assert row.t_started is not None and row.t_finished is not None
            assert row.t_finished - row.t_started == pytest.approx(1.0 + rec.x[1])
    s = summary(table)
    completed = [r for r in res.records.values() if r.status.value == "completed"]
    failed = [r for r in res.records.values() if r.status.value == "failed"]
    assert s["completed"] == 20 == len(completed)
    assert s["failed"] == len(failed) > 0
    assert s["evaluations"] == len(res.records)
    assert s["in_flight"] == 0
    assert s["workers"] == 3
    assert s["finished"] == "budget"
    best = min(completed, key=lambda r: r.value or 0.0)
    assert s["best_value"] == best.value
    assert s["best_eval_id"] == best.eval_id
    assert s["best_x"] == {"a": best.x[0], "b": best.x[1]}
    assert s["partials"] == 2 * len(completed)
    assert s["wall_time"] == pytest.approx(res.elapsed)
    text = format_summary(s, str(p))
    assert "20 completed" in text and "best" in text and "finished: budget" in text
    row = table.rows[best.eval_id].as_dict(table.names)
    assert row["a"] == best.x[0] and row["status"] == "completed" and row["attempts"] == 1
    for f in failed:
        assert "too far right" in (table.rows[f.eval_id].error or "")


def test_summary_of_an_unfinished_log(tmp_path: Path) -> None:
    p, _ = sim_log(tmp_path, budget=6)
    events = read_events(p)
    cut = next(i for i, e in enumerate(events) if e["event"] == "completed") + 1
    s = summary(tabulate(events[:cut]))
    assert s["completed"] == 1
    assert s["finished"] is None
    assert s["in_flight"] >= 1
    assert "not finished" in format_summary(s, "x")
    empty = summary(tabulate(events[:1]))
    assert empty["evaluations"] == 0 and empty["best_value"] is None
    assert "none completed" in format_summary(empty, "x")


@pytest.mark.parametrize("line", [
    {"event": "completed", "t": 1.5, "seq": 0, "value": 0.1 + 0.2, "x": [1e-05, 1e300]},
    {"event": "partial", "t": 2.0, "seq": 1, "value": np.float64(2.5), "info": {"é": "ü ✓"}},
    {"event": "run_started", "t": 0.0, "seq": 2, "run": {"target": math.nan, "n": 2**70},
     "best_x": [math.inf, -math.inf, 1.0]},
])
def test_fast_and_stdlib_encodings_decode_the_same(line: dict[str, Any],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from tether.log import journal

    fast = journal.encode_line(line)
    monkeypatch.setattr(journal, "orjson", None)  # the path taken without the `fast` extra
    slow = journal.encode_line(line)
    assert strict_loads(fast.decode()) == strict_loads(slow.decode())
    assert b"\n" not in fast and b"NaN" not in fast and b"Infinity" not in fast
