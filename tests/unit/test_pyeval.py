"""Work sent ahead to a Python objective's children, over real spawned children: order,
drops, kills and a dead child, for a single-slot agent's one child (pyeval) and for the
feed a multi-slot agent's children share (pyfeed; its own cases in test_pyfeed.py)."""

from __future__ import annotations

import os
import select
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tether.worker.evaluators import Done, Output, Running
from tether.worker.pyeval import PythonEvaluator
from tether.worker.pyfeed import FeedEvaluator

pytestmark = pytest.mark.timeout(120)

NAMES = ["x0", "x1"]


@pytest.fixture
def tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "trace").touch()
    monkeypatch.setenv("TETHER_TEST_TRACE", str(tmp_path / "trace"))
    monkeypatch.setenv("TETHER_TEST_GATE", str(tmp_path / "gate"))
    return tmp_path


def started(tmp: Path, n: int, deadline: float = 60.0) -> list[tuple[str, int]]:
    """The first n evaluations the objective started, as (x0, pid), once there are n."""
    end = time.monotonic() + deadline
    while True:
        lines = (tmp / "trace").read_text().splitlines()
        if len(lines) >= n:
            return [(a, int(b)) for a, b in (line.split() for line in lines)]
        assert time.monotonic() < end, f"only {lines} started"
        time.sleep(0.01)


def outcome(run: Running, deadline: float = 60.0) -> Done:
    end = time.monotonic() + deadline
    while True:
        for out in run.poll(time.monotonic()):
            if isinstance(out, Done):
                return out
        assert time.monotonic() < end, "no outcome from the child"
        if not run.due():
            select.select(run.fds(), [], [], 1.0)


def done(value: float) -> Output:
    return Done(True, value)


@pytest.fixture(params=[PythonEvaluator, FeedEvaluator], ids=["one child", "feed"])
def Evaluator(request: pytest.FixtureRequest) -> Any:
    return request.param


def live(ev: PythonEvaluator | FeedEvaluator) -> list[int]:
    """The pids of the evaluator's children still alive."""
    children = ev._children.values() if isinstance(ev._children, dict) else ev._children
    return [c.proc.pid for c in children if not c.dead]


def test_work_sent_ahead_runs_in_order_in_one_child_and_a_dropped_job_never_starts(
        tmp: Path, Evaluator: type) -> None:
    ev = Evaluator("tests.integration.objectives:traced")
    try:
        first = ev.start(1, [0.1, 1.0], NAMES)
        started(tmp, 1)  # running, held at its gate
        for i in (2, 3, 4):
            assert ev.presend((i, 1), [i / 10, 0.0])
        ev.flush()  # the three in one write
        ev.forget((3, 1))  # a prefetched evaluation the controller took back
        (tmp / "gate.1").touch()
        assert outcome(first) == done(0.1)
        second = ev.take((2, 1))
        assert second is not None and outcome(second) == done(0.2)
        assert ev.take((3, 1)) is None
        fourth = ev.take((4, 1))
        assert fourth is not None and outcome(fourth) == done(0.4)
        trace = started(tmp, 3)
        assert [x for x, _ in trace] == ["0.1", "0.2", "0.4"]  # 0.3 never started
        (pid,) = {p for _, p in trace}
        assert live(ev) == [pid]  # the same child, still alive
        assert os.waitpid(pid, os.WNOHANG) == (0, 0)
    finally:
        ev.close()


def test_a_job_started_before_its_drop_arrived_dies_with_its_child_and_the_next_moves(
        tmp: Path, Evaluator: type) -> None:
    ev = Evaluator("tests.integration.objectives:traced")
    try:
        first = ev.start(1, [0.1, 1.0], NAMES)
        started(tmp, 1)
        assert ev.presend((2, 1), [0.2, 1.0]) and ev.presend((3, 1), [0.3, 0.0])
        ev.flush()
        (tmp / "gate.1").touch()
        assert outcome(first) == done(0.1)
        started(tmp, 2)  # the child went straight on to the second job
        ev.forget((2, 1))  # too late to drop: the child runs it, so it is killed
        third = ev.take((3, 1))
        assert third is not None and outcome(third) == done(0.3)
        (a, pid_a), (b, pid_b), (c, pid_c) = started(tmp, 3)
        assert (a, b, c) == ("0.1", "0.2", "0.3")
        assert pid_a == pid_b != pid_c
        assert pid_a not in live(ev)
    finally:
        ev.close()


def test_killing_the_running_job_moves_the_work_behind_it_to_a_new_child(
        tmp: Path, Evaluator: type) -> None:
    ev = Evaluator("tests.integration.objectives:traced")
    try:
        first = ev.start(1, [0.1, 1.0], NAMES)
        started(tmp, 1)
        assert ev.presend((2, 1), [0.2, 0.0])
        ev.flush()
        first.kill(time.monotonic())
        assert first.reaped() and first.poll(time.monotonic()) == []
        second = ev.take((2, 1))
        assert second is not None and outcome(second) == done(0.2)
        (a, pid_a), (b, pid_b) = started(tmp, 2)
        assert (a, b) == ("0.1", "0.2") and pid_a != pid_b
    finally:
        ev.close()


def test_a_dead_child_fails_its_job_and_the_work_behind_it_moves(
        tmp: Path, Evaluator: type) -> None:
    ev = Evaluator("tests.integration.objectives:traced")
    try:
        first = ev.start(1, [0.1, 1.0], NAMES)
        ((_, pid_a),) = started(tmp, 1)
        assert ev.presend((2, 1), [0.2, 0.0])
        ev.flush()
        os.kill(pid_a, signal.SIGKILL)  # the OOM killer, say
        failed = outcome(first)
        assert not failed.ok and "died" in failed.error
        second = ev.take((2, 1))
        assert second is not None and outcome(second) == done(0.2)
        (_, pid_b) = started(tmp, 2)[1]
        assert pid_b != pid_a
    finally:
        ev.close()


def test_a_job_forgotten_before_it_was_written_is_taken_back(
        tmp: Path, Evaluator: type) -> None:
    ev = Evaluator("tests.integration.objectives:traced")
    try:
        first = ev.start(1, [0.1, 1.0], NAMES)
        started(tmp, 1)
        assert ev.presend((2, 1), [0.2, 0.0])  # queued for the next write
        ev.forget((2, 1))
        assert ev.presend((3, 1), [0.3, 0.0])
        ev.flush()
        (tmp / "gate.1").touch()
        assert outcome(first) == done(0.1)
        third = ev.take((3, 1))
        assert third is not None and outcome(third) == done(0.3)
        assert [x for x, _ in started(tmp, 2)] == ["0.1", "0.3"]
        assert len({p for _, p in started(tmp, 2)}) == 1
    finally:
        ev.close()
