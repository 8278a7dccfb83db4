"""``tether log ...`` on logs written by real runs: a controller and workers over 127.0.0.1.

One run (module fixture) has everything a log can hold: failures, kills by
``eval_timeout``, partial results with extra info, a worker SIGKILLed mid-evaluation (lost,
re-queued, finished by another worker). Copies of its log add a torn last line and cut it
in the middle (a log still being written). Expected numbers come from the raw lines, read
with the standard library only, never from the code under test.
"""

from __future__ import annotations

import csv
import json
import queue
import shutil
import signal
import struct
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.integration.harness import TETHER, Cluster, env, events_of, wait_for

pytestmark = pytest.mark.timeout(180)
BUDGET = 24
KILL_AFTER = 1.5  # [run] eval_timeout, seconds


# ------------------------------------------------------ objectives (imported by workers)
def mixed(x: np.ndarray, report: Any) -> float:
    """Fails on the left, hangs (until killed by eval_timeout) on the right, else streams."""
    if x[0] < 0.2:
        raise ValueError("too far left")
    while x[0] > 0.85:
        time.sleep(0.05)
    value = float((x[0] - 0.5) ** 2 + (x[1] - 0.5) ** 2)
    for step in range(3):
        time.sleep(0.02 + 0.05 * float(x[1]))
        report(value + 1.0 / (step + 1), epoch=step + 1)
    return value


def hang(x: np.ndarray) -> float:
    while True:
        time.sleep(0.05)


# ------------------------------------------------------ helpers
def tether(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*TETHER, "log", *args], capture_output=True, text=True, env=env(),
                          timeout=timeout)


def raw(log: Path) -> list[dict[str, Any]]:
    """The log's events, decoded with the standard library; an undecodable line is skipped."""
    return events_of(log)


@pytest.fixture(scope="module")
def run_log(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    tmp = tmp_path_factory.mktemp("logrun")
    c = Cluster(tmp)
    try:
        cfg = c.config(budget=BUDGET, strategy_opts="seed = 0",
                       run=f"heartbeat = 0.2\nliveness = 3\neval_timeout = {KILL_AFTER}\n"
                           "max_failures = 40\n")
        c.start_controller(config=cfg)
        c.start_worker(python="tests.integration.test_log_cli:hang", name="doomed")
        wait_for(lambda: [e for e in events_of(c.log, "started") if e["worker"] == "doomed"],
                 60, "the doomed worker to start an evaluation")
        c.kill(c.workers[0])  # SIGKILL mid-evaluation: lost, then re-queued
        for name in ("w-a", "w-b", "w-c"):
            c.start_worker(python="tests.integration.test_log_cli:mixed", name=name)
        assert c.wait_controller(timeout=120) == 0, c.output("controller")
        yield c.log
    finally:
        c.close()


@pytest.fixture(scope="module")
def torn_log(run_log: Path) -> Path:
    p = run_log.with_name("torn.jsonl")
    shutil.copy(run_log, p)
    with open(p, "a", encoding="utf-8") as fh:
        fh.write('{"event":"completed","t":1.0,"seq":99999,"eval_id":0,"wor')  # crash mid-write
    return p


@pytest.fixture(scope="module")
def growing_log(run_log: Path) -> Path:
    """The first half of the run's log and half of the next line: a run still going."""
    lines = run_log.read_text(encoding="utf-8").split("\n")
    half = len(lines) // 2
    p = run_log.with_name("growing.jsonl")
    p.write_text("\n".join(lines[:half]) + "\n" + lines[half][: len(lines[half]) // 2],
                 encoding="utf-8")
    return p


def summary_json(log: Path) -> dict[str, Any]:
    r = tether("summary", str(log), "--json")
    assert r.returncode == 0, r.stderr
    out: dict[str, Any] = json.loads(r.stdout)
    return out


def expected(events: list[dict[str, Any]]) -> dict[str, Any]:
    """What the summary must say, recomputed from the decoded lines."""
    kinds = Counter(e["event"] for e in events)
    final: dict[int, dict[str, Any]] = {}
    for e in events:
        if e["event"] in ("completed", "failed", "killed"):
            final[e["eval_id"]] = e
    done = [e for e in final.values() if e["event"] == "completed"]
    best = min(done, key=lambda e: e["value"]) if done else None
    xs = {e["eval_id"]: e["x"] for e in events if e["event"] == "proposed"}
    return {"kinds": kinds, "done": done, "best": best, "xs": xs,
            "failed": [e for e in final.values() if e["event"] == "failed"],
            "killed": [e for e in final.values() if e["event"] == "killed"]}


# ------------------------------------------------------ summary
def test_the_run_did_what_the_test_needs(run_log: Path) -> None:
    kinds = Counter(e["event"] for e in raw(run_log))
    for k in ("failed", "killed", "partial", "lost", "requeued", "run_finished"):
        assert kinds[k] >= 1, f"the run has no {k} event: {kinds}"


def test_summary_numbers_match_the_run(run_log: Path) -> None:
    events = raw(run_log)
    ex = expected(events)
    s = summary_json(run_log)
    assert s["completed"] == BUDGET == len(ex["done"])
    assert s["failed"] == len(ex["failed"]) and s["killed"] == len(ex["killed"])
    assert s["evaluations"] == len(ex["xs"])
    assert s["in_flight"] == 0 and s["finished"] == "budget"
    assert s["lost"] == ex["kinds"]["lost"] and s["requeued"] == ex["kinds"]["requeued"]
    assert s["partials"] == ex["kinds"]["partial"] >= 3 * BUDGET  # lost attempts report too
    assert s["events"] == len(events)
    assert s["best_value"] == ex["best"]["value"]
    assert s["best_eval_id"] == ex["best"]["eval_id"]
    assert s["best_x"] == dict(zip(["x0", "x1"], ex["xs"][ex["best"]["eval_id"]]))
    assert s["strategy"] == "random"
    wall = events[-1]["t"] - events[0]["t"]
    assert s["wall_time"] == pytest.approx(wall)
    assert s["evals_per_hour"] == pytest.approx(BUDGET * 3600 / wall, rel=1e-3)
    # failures grouped by their first line; every kill was the timeout
    assert s["failures"] == [{"error": "ValueError: too far left", "count": len(ex["failed"]),
                              "eval_ids": sorted(e["eval_id"] for e in ex["failed"])[:3]}]
    timeout = f"eval_timeout ({KILL_AFTER:g} s) exceeded"
    assert timeout in [g["error"] for g in s["kills"]]
    assert {g["error"] for g in s["kills"]} <= {timeout, "run finished (budget)"}
    assert sum(g["count"] for g in s["kills"]) == len(ex["killed"])
    assert s["run_finished"]["failed"] == len(ex["failed"])
    # every worker that joined is listed, each busy part of the time it was connected
    joined = {e["worker"] for e in events if e["event"] == "worker_joined"}
    assert set(s["busy"]) == joined == {"doomed", "w-a", "w-b", "w-c"}
    for name, w in s["busy"].items():
        assert 0 < w["busy_share"] <= 1, (name, w)
        assert w["attempts"] == sum(e["event"] == "started" and e["worker"] == name
                                    for e in events)
    assert 0 < s["utilization"] <= 1


def test_summary_text(run_log: Path) -> None:
    r = tether("summary", str(run_log))
    assert r.returncode == 0, r.stderr
    for text in (f"{BUDGET} completed", "finished: budget", "failures by message",
                 "ValueError: too far left", "kills by message", "doomed", "busy"):
        assert text in r.stdout, text


def test_torn_last_line_is_ignored(run_log: Path, torn_log: Path) -> None:
    a, b = summary_json(run_log), summary_json(torn_log)
    a.pop("log"), b.pop("log")
    assert a == b


def test_summary_of_a_log_still_being_written(growing_log: Path) -> None:
    events = raw(growing_log)  # the half line does not decode: skipped
    ex = expected(events)
    s = summary_json(growing_log)
    assert s["finished"] is None
    assert s["completed"] == len(ex["done"])
    assert s["evaluations"] == len(ex["xs"])
    assert s["in_flight"] == len(ex["xs"]) - len(ex["done"]) - len(ex["failed"]) - len(ex["killed"])
    assert "not finished" in tether("summary", str(growing_log)).stdout


@pytest.mark.parametrize("body", ["hello\nworld\n", '{"a": 1}\n{"b": 2}\n', "",
                                  '{"event":"completed","t":1,"seq":0,"eval_id":0,"worker":"w",'
                                  '"value":1}\n', "\x00\x01binary\n\x02\n"])
def test_not_a_tether_log_exits_2_with_one_line(tmp_path: Path, body: str) -> None:
    p = tmp_path / "notes.txt"
    p.write_text(body)
    for cmd in (["summary", str(p)], ["export", str(p)], ["best", str(p)]):
        r = tether(*cmd)
        assert r.returncode == 2, (cmd, r)
        assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr
        assert r.stdout == ""
    r = tether("summary", str(tmp_path / "missing.jsonl"))
    assert r.returncode == 2 and "no such log" in r.stderr


# ------------------------------------------------------ best, show
def test_best(run_log: Path) -> None:
    ex = expected(raw(run_log))
    r = tether("best", str(run_log), "--json")
    b = json.loads(r.stdout)
    assert b["value"] == ex["best"]["value"] and b["eval_id"] == ex["best"]["eval_id"]
    assert list(b["x"].values()) == ex["xs"][b["eval_id"]]
    text = tether("best", str(run_log)).stdout
    assert repr(ex["best"]["value"]) in text and f"eval {b['eval_id']}" in text


def test_show_whole_history(run_log: Path) -> None:
    events = raw(run_log)
    lost = next(e["eval_id"] for e in events if e["event"] == "lost")
    mine = [e for e in events if e.get("eval_id") == lost]
    r = tether("show", str(run_log), str(lost), "--json")
    assert [json.loads(ln) for ln in r.stdout.splitlines()] == mine
    text = tether("show", str(run_log), str(lost)).stdout
    kinds = [e["event"] for e in mine]
    assert kinds[:4] == ["proposed", "started", "lost", "requeued"]
    assert "lost with doomed" in text and "requeued" in text
    if any("epoch" in e for e in mine):  # report(value, epoch=...) info, when it travels
        assert "epoch=" in text
    failed = next(e for e in events if e["event"] == "failed")
    text = tether("show", str(run_log), str(failed["eval_id"])).stdout
    assert "ValueError: too far left" in text and "| Traceback" in text  # the whole error
    r = tether("show", str(run_log), "99999")
    assert r.returncode == 2 and "no evaluation 99999" in r.stderr


# ------------------------------------------------------ export
def _check_rows(rows: list[dict[str, Any]], events: list[dict[str, Any]]) -> None:
    ex = expected(events)
    assert [r["eval_id"] for r in rows] == sorted(ex["xs"])
    final = {e["eval_id"]: e for e in ex["done"] + ex["failed"] + ex["killed"]}
    starts = {e["eval_id"]: e for e in events if e["event"] == "started"}  # the last attempt
    last = {e["eval_id"]: e["event"] for e in events if e["event"] in ("started", "requeued")}
    for r in rows:
        eid = r["eval_id"]
        assert [r["x0"], r["x1"]] == ex["xs"][eid]
        f = final.get(eid)
        assert r["status"] == (f["event"] if f else "running" if last.get(eid) == "started"
                               else "pending")
        if f is None:
            continue
        assert r["worker"] == f["worker"] and r["end"] == f["t"]
        assert r["start"] == starts[eid]["t"]
        assert r["attempts"] == starts[eid].get("attempt", 0) + 1
        assert r["duration"] == pytest.approx(f["t"] - starts[eid]["t"])
        assert r["value"] == f.get("value")


def _typed(row: dict[str, str]) -> dict[str, Any]:
    """A CSV row with the types pandas would infer (empty cell -> None)."""
    out: dict[str, Any] = {}
    for k, v in row.items():
        if v == "":
            out[k] = None
        elif k in ("eval_id", "attempts", "partials"):
            out[k] = int(v)
        elif k in ("x0", "x1", "value", "start", "end", "duration"):
            out[k] = float(v)
        else:
            out[k] = v
    return out


@pytest.mark.parametrize("which", ["run", "torn", "growing"])
def test_export_round_trips(run_log: Path, torn_log: Path, growing_log: Path, tmp_path: Path,
                            which: str) -> None:
    log = {"run": run_log, "torn": torn_log, "growing": growing_log}[which]
    events = raw(log)
    r = tether("export", str(log))  # csv on stdout
    assert r.returncode == 0, r.stderr
    rows = [_typed(row) for row in csv.DictReader(r.stdout.splitlines())]
    header = r.stdout.split("\n", 1)[0].split(",")
    assert header == ["eval_id", "x0", "x1", "status", "value", "worker", "start", "end",
                      "duration", "attempts", "partials", "error", "tag"]
    _check_rows(rows, events)
    out = tmp_path / "rows.json"
    r = tether("export", str(log), "--format", "json", "--out", str(out))
    assert r.returncode == 0 and r.stdout == ""
    as_json = json.loads(out.read_text())
    _check_rows(as_json, events)
    assert as_json == rows  # both formats say the same, to the last bit of every float


# ------------------------------------------------------ plot
def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert data[12:16] == b"IHDR"
    w, h = struct.unpack(">II", data[16:24])
    return w, h


@pytest.mark.parametrize("panels", ["convergence", "timeline", "partials",
                                    "convergence,timeline,partials", None])
def test_plot_writes_png(run_log: Path, tmp_path: Path, panels: str | None) -> None:
    out = tmp_path / "run.png"
    args = ["plot", str(run_log), "--out", str(out)] + (["--panels", panels] if panels else [])
    r = tether(*args, timeout=120)
    assert r.returncode == 0, r.stderr
    w, h = png_size(out)
    assert w >= 1000 and h >= 300
    assert out.stat().st_size > 20_000  # drawn, not blank


def test_plot_of_a_growing_log_and_bad_panel(growing_log: Path, tmp_path: Path) -> None:
    out = tmp_path / "g.png"
    r = tether("plot", str(growing_log), "--out", str(out), timeout=120)
    assert r.returncode == 0, r.stderr
    png_size(out)
    r = tether("plot", str(growing_log), "--out", str(out), "--panels", "pie")
    assert r.returncode == 2 and "unknown panel pie" in r.stderr


# ------------------------------------------------------ tail
def _reader(stream: Any) -> queue.Queue[str]:
    q: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in stream:
            q.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return q


def _next(q: queue.Queue[str], timeout: float = 30) -> str:
    try:
        return q.get(timeout=timeout)
    except queue.Empty:
        raise AssertionError(f"no line from tail -f within {timeout} s") from None


def test_tail(run_log: Path) -> None:
    lines = run_log.read_text().splitlines()
    r = tether("tail", "-n", "5", "--raw", str(run_log))
    assert r.stdout.splitlines() == lines[-5:]
    r = tether("tail", str(run_log))
    out = r.stdout.splitlines()
    assert len(out) == 10 and "run finished (budget)" in out[-1]
    assert str(len(lines) - 1) in out[-1]  # the seq


def _ctrl_c_default() -> None:
    # These tests stop `tail -f` with Ctrl-C (SIGINT). A shell that starts a job in the
    # background without job control (a CI runner, `cmd &` in a script) makes it ignore
    # SIGINT, every child inherits that, and Python then leaves Ctrl-C ignored: give the
    # follower the disposition a terminal user's process has.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_tail_follow_sees_appended_lines(run_log: Path, tmp_path: Path) -> None:
    lines = run_log.read_text().splitlines()
    log = tmp_path / "live.jsonl"
    log.write_text("\n".join(lines[:10]) + "\n")
    p = subprocess.Popen([*TETHER, "log", "tail", "-f", "-n", "2", str(log)], env=env(),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=_ctrl_c_default)
    try:
        q = _reader(p.stdout)
        first = [_next(q), _next(q)]
        assert f"  {9}  " in first[1]  # the last two events, then it waits
        with open(log, "a") as fh:
            fh.write(lines[10] + "\n" + lines[11] + "\n")
            fh.flush()
            assert "  10  " in _next(q) and "  11  " in _next(q)
            fh.write(lines[12][:20])  # a line written in two parts is read once, whole
            fh.flush()
            fh.write(lines[12][20:] + "\n" + lines[13] + "\n")
            fh.flush()
        got = [_next(q), _next(q)]
        assert "  12  " in got[0] and "  13  " in got[1]
    finally:
        p.send_signal(signal.SIGINT)
        rc = p.wait(timeout=20)
        err = p.stderr.read() if p.stderr else ""
    assert rc == 0 and "Traceback" not in err, err


def test_tail_follow_waits_for_a_log_not_written_yet(run_log: Path, tmp_path: Path) -> None:
    lines = run_log.read_text().splitlines()
    log = tmp_path / "later.jsonl"
    p = subprocess.Popen([*TETHER, "log", "tail", "-f", str(log)], env=env(),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=_ctrl_c_default)
    try:
        assert p.stderr is not None
        assert "waiting for" in p.stderr.readline()  # said before the file exists
        q = _reader(p.stdout)
        log.write_text(lines[0] + "\n" + lines[1] + "\n")
        assert "run started" in _next(q) and "  1  " in _next(q)
    finally:
        p.send_signal(signal.SIGINT)
        rc = p.wait(timeout=20)
    assert rc == 0


# ------------------------------------------------------ pipes
@pytest.mark.parametrize("cmd", [["export"], ["export", "--format", "json"], ["tail", "-n", "500"],
                                 ["show", "0", "--json"]])
def test_closed_pipe_is_not_an_error(tmp_path: Path, cmd: list[str]) -> None:
    from benchmarks.log_tools import generate

    log = tmp_path / "big.jsonl"
    generate(log, 20_000)
    cmd = [cmd[0], str(log), *cmd[1:]]
    p = subprocess.Popen([*TETHER, "log", *cmd], env=env(), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    assert p.stdout is not None and p.stderr is not None
    p.stdout.readline()  # what `| head -1` does: read a little, then close
    p.stdout.close()
    err = p.stderr.read().decode()
    assert p.wait(timeout=60) == 0, err
    assert "Traceback" not in err and "BrokenPipe" not in err, err
