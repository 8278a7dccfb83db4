"""The pure controller core: dispatch, outcomes and workers, in memory with a manual clock."""

from __future__ import annotations

import dataclasses
import math
from collections import Counter

import pytest

from tests.unit.core_helpers import (
    SPACE,
    Driver,
    Scripted,
    check_log,
    dispatches,
    full_run,
    kinds,
    of,
    started,
)
from tether.controller.core import ControllerCore, Dispatch, Finish, SendKill
from tether.log.journal import MemoryJournal
from tether.records import Evaluate, Record, Status, build_record


# ---------------------------------------------------------------------- dispatch
def test_start_logs_run_started_and_proposes_nothing_without_workers() -> None:
    strat = Scripted()
    core, j, _ = started(5, strategy=strat)
    assert [e["event"] for e in j.events] == ["run_started"]
    assert j.events[0]["space"] == SPACE.to_json()
    assert j.events[0]["run"]["budget"] == 5
    assert strat.calls == 0
    assert core.take_commands() == []


def test_dispatch_to_free_workers_only() -> None:
    core, j, _ = started(10)
    core.join("w0")
    d = dispatches(core)
    assert [(c.worker, c.eval_id, c.attempt) for c in d] == [("w0", 0, 0)]
    assert d[0].timeout == core.settings.eval_timeout
    core.join("w1", slots=2)
    d = dispatches(core)
    assert sorted(c.worker for c in d) == ["w1", "w1"]
    assert core.view.free_slots == 0
    core.pump()
    assert dispatches(core) == []
    core.completed("w0", 0, 0, 1.0)
    d = dispatches(core)
    assert [(c.worker, c.eval_id) for c in d] == [("w0", 3)]
    assert of(j, "started", 3)[0]["worker"] == "w0"
    assert core.view.records[3].status is Status.RUNNING


def test_dispatch_carries_the_proposed_point() -> None:
    strat = Scripted([Evaluate((0.25, -0.5), tag="init")])
    core, j, _ = started(5, strategy=strat)
    core.join("w0")
    d = dispatches(core)
    assert d[0].x == (0.25, -0.5)
    assert of(j, "proposed", 0)[0]["x"] == [0.25, -0.5]
    assert of(j, "proposed", 0)[0]["tag"] == "init"
    assert strat.accepted[0][1] is not None and strat.accepted[0][1].eval_id == 0


def test_never_more_in_flight_than_budget_needs() -> None:
    core, j, _ = started(3)
    for i in range(5):
        core.join(f"w{i}")
    d = dispatches(core)
    assert len(d) == 3
    assert core.view.n_in_flight == 3
    core.completed(d[0].worker, d[0].eval_id, 0, 1.0)
    assert dispatches(core) == []  # 1 completed + 2 running cover the budget
    core.failed(d[1].worker, d[1].eval_id, 0, "boom")
    again = dispatches(core)
    assert len(again) == 1  # a failure does not count: one more is needed
    core.completed(d[2].worker, d[2].eval_id, 0, 2.0)
    core.completed(again[0].worker, again[0].eval_id, 0, 3.0)
    assert core.finished == "budget"
    assert len(of(j, "proposed")) == 4
    check_log(j.events)


def test_run_completes_exactly_budget() -> None:
    core, j, clock = started(25)
    for i in range(4):
        core.join(f"w{i}", slots=2)
    Driver(core, clock, seed=11).run()
    assert core.finished == "budget"
    assert core.view.n_completed == 25
    assert len(of(j, "completed")) == 25
    fin = of(j, "run_finished")
    assert len(fin) == 1 and fin[0]["reason"] == "budget" and fin[0]["completed"] == 25
    best = min(e["value"] for e in of(j, "completed"))
    assert fin[0]["best_value"] == best
    check_log(j.events)


def test_finish_command_and_run_over_kills_in_flight() -> None:
    core, j, _ = started(2)
    core.join("w0", slots=3)
    d = dispatches(core)
    assert len(d) == 2
    core.completed("w0", d[0].eval_id, 0, 1.0)
    core.completed("w0", d[1].eval_id, 0, 1.0)
    cmds = core.take_commands()
    assert cmds == [Finish("budget")]
    # nothing more after the end
    core.join("w9")
    assert dispatches(core) == []
    check_log(j.events)


def test_fault_heavy_runs_keep_the_contract() -> None:
    for seed in range(6):
        j = full_run(seed=seed)
        ev = Counter(e["event"] for e in j.events)
        assert ev["completed"] == 40


# ---------------------------------------------------------------------- outcomes
def test_duplicate_result_same_attempt_counted_once() -> None:
    core, j, _ = started(5)
    core.join("w0")
    (d,) = dispatches(core)
    assert core.completed("w0", d.eval_id, 0, 1.5) is True
    assert core.completed("w0", d.eval_id, 0, 1.5) is False
    assert core.failed("w0", d.eval_id, 0, "late") is False
    assert core.killed("w0", d.eval_id, 0) is False
    assert core.view.n_completed == 1
    assert len(of(j, "completed", d.eval_id)) == 1
    assert not of(j, "failed", d.eval_id) and not of(j, "killed", d.eval_id)


def _redispatched() -> tuple[ControllerCore, MemoryJournal, int]:
    """w0 is lost holding eval ``eid``; attempt 1 of it is dispatched to w1."""
    core, j, _ = started(5)
    core.join("w0")
    core.join("w1")
    d0 = {c.worker: c for c in dispatches(core)}
    eid = d0["w0"].eval_id
    core.lost("w0")
    core.completed("w1", d0["w1"].eval_id, 0, 3.0)
    (redo,) = dispatches(core)
    assert (redo.worker, redo.eval_id, redo.attempt) == ("w1", eid, 1)
    return core, j, eid


def test_duplicate_result_other_attempt_dropped() -> None:
    core, j, eid = _redispatched()
    # the lost worker's late result wins; the holder of attempt 1 is told to stop
    assert core.completed("w0", eid, 0, 2.0) is True
    assert SendKill("w1", eid, 1, "result arrived") in core.take_commands()
    assert core.completed("w1", eid, 1, 2.5) is False
    assert core.view.records[eid].value == 2.0
    assert len(of(j, "completed", eid)) == 1
    assert core.view.n_completed == 2


def _two_attempts_running() -> tuple[ControllerCore, MemoryJournal, int]:
    """eval ``eid`` runs twice: attempt 1 on w1 (re-dispatch), attempt 0 on w0 (adopted)."""
    core, j, eid = _redispatched()
    # w0 comes back still running attempt 0: both attempts now run
    core.join("w0", running=[(eid, 0)])
    assert core.take_commands() == []
    assert core.workers["w0"].busy == {eid: 0}
    assert core.workers["w1"].busy == {eid: 1}
    assert core.view.records[eid].worker == "w1"
    return core, j, eid


def test_first_result_wins_older_attempt_first() -> None:
    core, j, eid = _two_attempts_running()
    assert core.completed("w0", eid, 0, 1.0) is True
    cmds = core.take_commands()
    assert SendKill("w1", eid, 1, "result arrived") in cmds
    assert core.killed("w1", eid, 1, "killed") is False
    assert core.completed("w1", eid, 1, 9.0) is False
    assert core.view.records[eid].value == 1.0
    assert len(of(j, "completed", eid)) == 1 and not of(j, "killed", eid)
    check_log(j.events, finished=False)


def test_first_result_wins_newer_attempt_first() -> None:
    core, j, eid = _two_attempts_running()
    assert core.completed("w1", eid, 1, 2.0) is True
    assert core.completed("w0", eid, 0, 1.0) is False  # the loser's result is dropped
    assert core.view.records[eid].value == 2.0
    assert eid not in core.workers["w0"].busy
    assert [c.worker for c in dispatches(core)].count("w0") == 1  # its slot is free again
    assert len(of(j, "completed", eid)) == 1
    check_log(j.events, finished=False)


def test_first_result_wins_loser_holding_older_attempt_is_killed() -> None:
    core, _, eid = _two_attempts_running()
    assert core.completed("w1", eid, 1, 2.0) is True
    cmds = core.take_commands()
    assert [(c.worker, c.eval_id) for c in kinds(cmds, SendKill)] == [("w0", eid)]


def test_nonfinite_value_is_a_failure() -> None:
    core, j, _ = started(5)
    core.join("w0")
    (d,) = dispatches(core)
    assert core.completed("w0", d.eval_id, 0, math.nan) is True
    rec = core.view.records[d.eval_id]
    assert rec.status is Status.FAILED and "nan" in (rec.error or "")
    assert core.view.n_completed == 0
    (d2,) = dispatches(core)
    core.completed("w0", d2.eval_id, 0, math.inf)
    assert core.view.records[d2.eval_id].status is Status.FAILED
    check_log(j.events, finished=False)


def test_partials() -> None:
    strat = Scripted()
    core, j, _ = started(5, strategy=strat)
    core.join("w0")
    (d,) = dispatches(core)
    core.partial("w0", d.eval_id, 0, 3.0)
    core.partial("w0", d.eval_id, 0, math.nan)  # ignored
    core.partial("w0", d.eval_id, 0, 2.0)
    assert core.view.records[d.eval_id].partials == (3.0, 2.0)
    ps = of(j, "partial", d.eval_id)
    assert [(p["value"], p["worker"], p["step"]) for p in ps] == [(3.0, "w0", 0), (2.0, "w0", 1)]
    assert ("partial", d.eval_id, Status.RUNNING) in strat.events
    core.completed("w0", d.eval_id, 0, 1.0)
    core.partial("w0", d.eval_id, 0, 0.5)  # after the end: ignored
    core.partial("w0", 999, 0, 0.5)  # unknown: ignored
    assert len(of(j, "partial")) == 2
    check_log(j.events, finished=False)


def test_strategy_is_told_every_event() -> None:
    strat = Scripted()
    core, _, _ = started(2, strategy=strat)
    core.join("w0")
    (d,) = dispatches(core)
    core.completed("w0", d.eval_id, 0, 1.0)
    mine = [(k, s) for k, e, s in strat.events if e == d.eval_id]
    assert mine == [("proposed", Status.PENDING), ("started", Status.RUNNING),
                    ("completed", Status.COMPLETED)]


# ---------------------------------------------------------------------- workers
def test_lost_worker_requeues_to_next_free_worker() -> None:
    core, j, _ = started(5)
    core.join("w0")
    core.join("w1")
    d0 = {c.worker: c for c in dispatches(core)}
    eid = d0["w0"].eval_id
    core.lost("w0")
    assert core.view.records[eid].status is Status.PENDING
    assert core.view.records[eid].attempt == 1
    tail = [e["event"] for e in j.events[-3:]]
    assert tail == ["worker_left", "lost", "requeued"]
    assert of(j, "worker_left")[-1]["reason"] == "lost"
    assert of(j, "lost", eid)[0]["worker"] == "w0"
    assert of(j, "requeued", eid)[0]["attempt"] == 1
    assert dispatches(core) == []  # nobody free
    core.completed("w1", d0["w1"].eval_id, 0, 1.0)
    (d,) = dispatches(core)
    assert (d.worker, d.eval_id, d.attempt) == ("w1", eid, 1)  # before any new proposal
    assert of(j, "started", eid)[-1]["attempt"] == 1
    core.lost("nobody")  # unknown: no effect
    check_log(j.events, finished=False)


def test_lost_worker_requeue_goes_to_a_new_worker() -> None:
    core, _, _ = started(5)
    core.join("w0")
    (d,) = dispatches(core)
    core.lost("w0")
    core.join("w1")
    (d2,) = dispatches(core)
    assert (d2.worker, d2.eval_id, d2.attempt) == ("w1", d.eval_id, 1)


@pytest.mark.parametrize("max_retries", [0, 1, 2])
def test_max_retries_exceeded_fails(max_retries: int) -> None:
    core, j, _ = started(5, max_retries=max_retries)
    core.join("w0")
    (d,) = dispatches(core)
    eid = d.eval_id
    for attempt in range(max_retries):
        core.lost("w0")
        core.join("w0")
        (d,) = dispatches(core)
        assert (d.eval_id, d.attempt) == (eid, attempt + 1)
    core.lost("w0")
    rec = core.view.records[eid]
    assert rec.status is Status.FAILED
    assert "max_retries" in (rec.error or "") and "lost" in (rec.error or "")
    f = of(j, "failed", eid)
    assert len(f) == 1 and f[0]["worker"] == "w0" and "max_retries" in f[0]["error"]
    assert len(of(j, "lost", eid)) == max_retries + 1
    assert len(of(j, "requeued", eid)) == max_retries
    core.join("w0")
    (d,) = dispatches(core)
    assert d.eval_id != eid  # the budget still gets a new point
    check_log(j.events, finished=False)


def test_goodbye_requeues_without_using_retries() -> None:
    core, j, _ = started(5, max_retries=0)
    core.join("w0")
    (d,) = dispatches(core)
    eid = d.eval_id
    for _ in range(4):
        core.leave("w0", "walltime")
        rec = core.view.records[eid]
        assert rec.status is Status.PENDING and rec.attempt == 0
        core.join("w0")
        (d,) = dispatches(core)
        assert (d.eval_id, d.attempt) == (eid, 0)
    assert not of(j, "lost")
    assert of(j, "worker_left")[0]["reason"] == "walltime"
    assert len(of(j, "requeued", eid)) == 4
    assert core.completed("w0", eid, 0, 1.0) is True
    core.leave("nobody", "x")  # unknown: no effect
    check_log(j.events, finished=False)


def test_drain_gives_no_new_work() -> None:
    core, _, _ = started(10)
    core.join("w0")
    core.join("w1")
    d = {c.worker: c for c in dispatches(core)}
    core.drain("w0")
    core.drain("w0")  # idempotent
    core.drain("nobody")
    assert core.view.free_slots == 0
    assert core.completed("w0", d["w0"].eval_id, 0, 1.0) is True  # still counts
    assert dispatches(core) == []
    core.completed("w1", d["w1"].eval_id, 0, 1.0)
    assert [c.worker for c in dispatches(core)] == ["w1"]
    core.join("w2", slots=2)
    assert [c.worker for c in dispatches(core)] == ["w2", "w2"]
    assert core.view.free_slots == 0


def test_eval_timeout_kills_via_tick() -> None:
    core, j, clock = started(5, eval_timeout=10.0)
    core.join("w0")
    (d,) = dispatches(core)
    clock.advance(10.0)
    core.tick()
    assert core.take_commands() == []
    clock.advance(0.5)
    core.tick()
    cmds = core.take_commands()
    kills = kinds(cmds, SendKill)
    assert len(kills) == 1
    assert (kills[0].worker, kills[0].eval_id, kills[0].attempt) == ("w0", d.eval_id, 0)
    assert "eval_timeout" in kills[0].reason
    assert not kinds(cmds, Dispatch)  # the slot is busy until the worker confirms
    rec = core.view.records[d.eval_id]
    assert rec.status is Status.KILLED
    k = of(j, "killed", d.eval_id)
    assert len(k) == 1 and "eval_timeout" in k[0]["error"]
    assert core.killed("w0", d.eval_id, 0, "killed") is False
    (d2,) = dispatches(core)
    assert d2.worker == "w0" and d2.eval_id != d.eval_id
    check_log(j.events, finished=False)


def test_timeout_bookkeeping_stays_the_size_of_what_is_in_flight() -> None:
    # every dispatch pushes a deadline (600 s by default); those of evaluations that
    # ended must not pile up until their deadlines pass (millions at high rates)
    core, _, clock = started(50_000, eval_timeout=600.0)
    core.join("w0", slots=4)
    for _ in range(5_000):
        for d in dispatches(core):
            clock.advance(0.001)
            core.completed(d.worker, d.eval_id, d.attempt, 1.0)
    assert len(core._deadline) <= 4
    assert len(core._timeouts) <= 2 * 4 + 1024
    # and timeouts still fire for what runs now
    running = [r.eval_id for r in core.view.pending() if r.worker == "w0"]
    assert len(running) == 4
    clock.advance(601.0)
    core.tick()
    killed = {c.eval_id for c in kinds(core.take_commands(), SendKill)}
    assert killed == set(running)


def test_records_built_on_the_hot_path_are_ordinary_frozen_records() -> None:
    args = (7, (0.25, 0.5), Status.RUNNING, 1, 0, "w1", None, None, (0.3,), "tag",
            1.5, 2.5, float("nan"))
    built = build_record(*args)
    assert type(built) is Record
    assert dataclasses.astuple(built)[:12] == dataclasses.astuple(Record(*args))[:12]
    assert built.in_flight and built.worker == "w1"
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.status = Status.COMPLETED  # type: ignore[misc]
    assert dataclasses.replace(built, status=Status.COMPLETED).status is Status.COMPLETED
