"""The pieces of ``tether log``, in memory and on small files: fold, reader, tail, export, help."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.contract import write_log
from tether.cli import main
from tether.controller.local import SimulatedController
from tether.controller.settings import RunSettings
from tether.errors import LogError
from tether.events import parse_event
from tether.log.export import write_csv, write_json
from tether.log.journal import iter_events
from tether.log.read import follow_lines, last_lines, stream_events
from tether.log.summary import format_summary, summary
from tether.log.table import Tabulator, tabulate
from tether.log.tail import describe, format_line
from tether.space import Space
from tether.strategies.sampling import RandomSampling

SPACE = [{"name": "a", "low": 0.0, "high": 1.0}, {"name": "b", "low": 0.0, "high": 1.0}]


def ev(kind: str, t: float, **f: Any) -> dict[str, Any]:
    return {"event": kind, "t": t, **f}


# a hand-written run: two workers, one with 2 slots, a loss, a failure, a kill, a restart
STORY = [
    ev("run_started", 0.0, space=SPACE, strategy={"name": "random"}, run={"budget": 2}),
    ev("worker_joined", 0.0, worker="w1", slots=1),
    ev("worker_joined", 0.0, worker="w2", slots=2),
    ev("proposed", 0.0, eval_id=0, x=[0.1, 0.2]),
    ev("proposed", 0.0, eval_id=1, x=[0.3, 0.4]),
    ev("proposed", 0.0, eval_id=2, x=[0.5, 0.6], tag="lhs"),
    ev("started", 1.0, eval_id=0, worker="w1", attempt=0),
    ev("started", 1.0, eval_id=1, worker="w2", attempt=0),
    ev("started", 2.0, eval_id=2, worker="w2", attempt=0),
    ev("partial", 2.0, eval_id=1, worker="w2", value=5.0, step=0, epoch=1),
    ev("lost", 3.0, eval_id=0, worker="w1", attempt=0, reason="worker lost"),
    ev("requeued", 3.0, eval_id=0, attempt=1, reason="worker lost"),
    ev("worker_left", 3.0, worker="w1", reason="lost"),
    ev("failed", 4.0, eval_id=2, worker="w2", error="ValueError: no\nTraceback (most recent)"),
    ev("started", 4.0, eval_id=0, worker="w2", attempt=1),
    ev("completed", 5.0, eval_id=1, worker="w2", value=2.5),
    ev("proposed", 5.0, eval_id=3, x=[0.7, 0.8]),
    ev("completed", 6.0, eval_id=0, worker="w2", value=1.5),
    ev("killed", 6.0, eval_id=3, worker=None, error="run finished (budget)"),
    ev("run_finished", 10.0, reason="budget", completed=2, best_value=1.5, best_x=[0.1, 0.2],
       failed=1, killed=1, refused=3, traceback="Traceback\n  x\nStrategyError: boom"),
]


def story_table(**kw: Any) -> Any:
    return Tabulator(**kw).add_all(parse_event(e, "story") for e in STORY)


def test_fold_rows() -> None:
    tb = story_table(keep_partials=True, keep_segments=True)
    assert tb.names == ["a", "b"] and tb.strategy == "random"
    r = tb.rows
    assert [r[i].status for i in range(4)] == ["completed", "completed", "failed", "killed"]
    assert (r[0].worker, r[0].attempts, r[0].t_started, r[0].duration) == ("w2", 2, 4.0, 2.0)
    assert r[1].partials == [5.0] and r[1].n_partials == 1 and tb.partial_steps[1] == [(0, 5.0)]
    assert r[2].error is not None and r[2].error.startswith("ValueError: no")
    assert r[3].worker is None and r[3].attempts == 0  # killed while still pending
    best = tb.best()
    assert best is not None and best.eval_id == 0
    outcomes = sorted((s.eval_id, s.worker, s.outcome, s.t0, s.t1) for s in tb.segments)
    assert outcomes == [(0, "w1", "lost", 1.0, 3.0), (0, "w2", "completed", 4.0, 6.0),
                        (1, "w2", "completed", 1.0, 5.0), (2, "w2", "failed", 2.0, 4.0)]


def test_busy_share_counts_slots_and_connection_time() -> None:
    s = summary(story_table())
    # w1: busy 2 s of 3 s connected; w2: busy 4+2+2 = 8 s of 10 s x 2 slots
    assert s["busy"]["w1"] == {"attempts": 1, "slots": 1, "busy_s": 2.0, "connected_s": 3.0,
                               "busy_share": round(2 / 3, 4)}
    assert s["busy"]["w2"]["busy_share"] == 0.4 and s["busy"]["w2"]["attempts"] == 3
    assert s["utilization"] == round(10 / 23, 4)
    assert s["evals_per_hour"] == 2 * 3600 / 10
    assert (s["completed"], s["failed"], s["killed"], s["lost"], s["requeued"]) == (2, 1, 1, 1, 1)
    assert s["failures"] == [{"error": "ValueError: no", "count": 1, "eval_ids": [2]}]
    assert s["kills"][0]["error"] == "run finished (budget)"
    text = format_summary(s, "story.jsonl")
    assert "run_finished refused: 3" in text and "strategy error: StrategyError: boom" in text
    assert "w2" in text and "x2 slots" in text


def test_resume_closes_the_old_controllers_connections() -> None:
    events = STORY[:9] + [ev("run_started", 20.0, resumed=True, replayed=9),
                          ev("worker_joined", 21.0, worker="w1", slots=1)]
    tb = tabulate(events)  # decoded lines go through parse_event too
    assert tb.resumes == 1
    # connected until the old controller's last event (2.0), then again from 21.0 to the end
    assert tb.workers["w1"].connected == 2.0 and tb.workers["w2"].connected == 2.0
    tb = tabulate([*events, ev("worker_left", 25.0, worker="w1", reason="goodbye")])
    assert tb.workers["w1"].connected == 2.0 + 4.0


def test_running_work_is_counted_until_the_end_of_a_growing_log() -> None:
    tb = tabulate(STORY[:10], keep_segments=True)
    assert {r.status for r in tb.rows.values()} == {"running"}
    assert sorted(s.outcome for s in tb.segments) == ["running"] * 3
    assert tb.workers["w2"].busy == pytest.approx((2.0 - 1.0) + (2.0 - 2.0))


# ------------------------------------------------------------------ reader
def sim_log(tmp_path: Path) -> Path:
    space = Space(("a", "b"), (0.0, 0.0), (1.0, 1.0))

    def f(x: np.ndarray) -> Any:
        if x[0] > 0.8:
            raise ValueError("right")
        v = float(x.sum())
        return v, [v + 1.0]

    res = SimulatedController(space, RandomSampling(space, seed=1), f, workers=3,
                              settings=RunSettings(budget=15),
                              duration=lambda x: 1.0 + float(x[1])).run()
    return write_log(tmp_path / "sim.jsonl", res.events)


def test_stream_events_equals_the_journal_reader(tmp_path: Path) -> None:
    p = sim_log(tmp_path)
    assert list(stream_events(p)) == list(iter_events(p))
    with open(p, "a", encoding="utf-8") as fh:
        fh.write('{"event":"completed","t":9e9,"eval_id":0,"wor')
    assert list(stream_events(p)) == list(iter_events(p))


@pytest.mark.parametrize("bad", ["nope", '{"event":"proposed","t":1', '{"event":"dance","t":1}'])
def test_stream_events_rejects_a_bad_middle_line(tmp_path: Path, bad: str) -> None:
    p = tmp_path / "x.jsonl"
    good = json.dumps(ev("run_started", 0.0))
    p.write_text(f"{good}\n\n{bad}\n{good}\n")
    with pytest.raises(LogError, match=":3:"):
        list(stream_events(p))


def test_stream_events_torn_utf8_and_blank_lines(tmp_path: Path) -> None:
    p = tmp_path / "x.jsonl"
    good = json.dumps(ev("worker_left", 0.0, worker="é", reason="r")).encode()
    p.write_bytes(b"\n" + good + b"\n\n" + good + b"\n" + '{"event":"failed","error":"é'.encode()[:-1])
    assert [e.kind for e in stream_events(p)] == ["worker_left", "worker_left"]


@pytest.mark.parametrize("block", [3, 7, 64, 1 << 16])
@pytest.mark.parametrize("n", [0, 1, 4, 50])
def test_last_lines(tmp_path: Path, block: int, n: int) -> None:
    body = "".join(f'{{"k":{i}}}\n' + ("\n" if i % 3 == 0 else "") for i in range(20))
    p = tmp_path / "x.jsonl"
    p.write_text(body + '{"k":"torn')
    lines, offset = last_lines(p, n, block=block)
    want = [ln.encode() for ln in body.split("\n") if ln][-n:] if n else []
    assert lines == want
    assert offset == len(body.encode())


def test_follow_lines_reads_whole_lines_only(tmp_path: Path) -> None:
    p = tmp_path / "x.jsonl"
    p.write_bytes(b"a\nb")  # "b" is still being written
    got: list[bytes] = []
    with open(p, "ab") as fh:
        fh.write(b"c\n\nd\n")
    for ln in follow_lines(p, 2, poll=0.01, stop=lambda: len(got) >= 2):
        got.append(ln)
    assert got == [b"bc", b"d"]


def test_every_event_reads_as_a_line() -> None:
    for e in STORY:
        text = describe(parse_event(e))
        assert text and "\n" not in text
        if "eval_id" in e:
            assert f"eval {e['eval_id']}" in text
    assert "epoch=1" in describe(parse_event(STORY[9]))
    assert "  42  " in format_line(parse_event(STORY[0]), 42)


# ------------------------------------------------------------------ export
def test_export_names_columns_and_writes_null_for_nan() -> None:
    events = [ev("run_started", 0.0, space=[{"name": "status", "low": 0, "high": 1},
                                             {"name": "y", "low": 0, "high": 1}]),
              ev("proposed", 1.0, eval_id=0, x=[None, 0.5]),
              ev("started", 1.0, eval_id=0, worker="w", attempt=0),
              ev("completed", 2.0, eval_id=0, worker="w", value=3.0)]
    tb = tabulate(events)
    out = io.StringIO()
    write_json(tb, out)
    (row,) = json.loads(out.getvalue())
    assert row["x_status"] is None and row["y"] == 0.5 and row["status"] == "completed"
    out = io.StringIO()
    write_csv(tb, out)
    (crow,) = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert crow["x_status"] == "" and crow["duration"] == "1.0" and crow["tag"] == ""


# ------------------------------------------------------------------ help
@pytest.mark.parametrize("cmd", ["summary", "best", "show", "tail", "export", "plot"])
def test_help_shows_examples(cmd: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["log", cmd, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out and f"tether log {cmd} run.jsonl" in out


def test_log_help_lists_examples(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["log", "--help"])
    out = capsys.readouterr().out
    assert "examples:" in out and "tether log plot" in out


# ------------------------------------------------------------------ plot
def test_timeline_lanes_split_overlapping_attempts() -> None:
    from tether.log.plot import Figure

    fig = Figure(story_table(keep_partials=True, keep_segments=True), "story", ["timeline"])
    lanes = {label: [(s.eval_id, s.outcome) for s in segs] for label, segs in fig._lanes()}
    # w2 has 2 slots: eval 1 runs while eval 2 then eval 0 run beside it
    assert lanes == {"w1": [(0, "lost")], "w2": [(1, "completed")],
                     "w2 #2": [(2, "failed"), (0, "completed")]}


def test_plot_renders_every_panel(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from tether.log.plot import plot

    out = tmp_path / "story.png"
    plot(story_table(keep_partials=True, keep_segments=True), "story.jsonl",
         ["convergence", "timeline", "partials"], str(out))
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
