"""The core resumed from a log, the simulated-time controller, asking ahead."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from tests.unit.core_helpers import (
    SPACE,
    Clock,
    Driver,
    Scripted,
    check_log,
    dispatches,
    full_run,
    make,
    objective,
    of,
    started,
)
from tether.controller.core import ControllerCore
from tether.controller.settings import RunSettings
from tether.log.journal import MemoryJournal
from tether.log.summary import tabulate
from tether.records import Status
from tether.space import Space
from tether.strategies.sampling import RandomSampling


# ---------------------------------------------------------------------- resume
def _fresh(prefix: list[dict[str, Any]], clock: Clock,
           budget: int = 40) -> tuple[ControllerCore, MemoryJournal]:
    j = MemoryJournal()
    j.events = [dict(e) for e in prefix]
    core, _, _ = make(budget, journal=j, clock=clock, eval_timeout=30.0, max_retries=1)
    return core, j


def _expected(prefix: list[dict[str, Any]]) -> dict[int, tuple[str, float | None, int]]:
    table = tabulate(prefix)
    return {eid: (row.status, row.value, row.attempts) for eid, row in table.rows.items()}


def cuts(events: list[dict[str, Any]]) -> list[int]:
    """Evenly spread cut points, plus every point inside a worker-loss sequence."""
    n = len(events)
    fault = [i + 1 for i, e in enumerate(events)
             if e["event"] in ("worker_left", "lost") and i + 1 < n]
    return sorted({1, 2, 5, 17, n - 3, n - 2, n - 1, *fault,
                   *(n * k // 13 for k in range(1, 13))})


def rich_log() -> list[dict[str, Any]]:
    events = full_run(seed=5).events
    seen = {e["event"] for e in events}
    assert {"lost", "requeued", "killed", "failed", "partial", "worker_left"} <= seen
    return events


def test_replay_rebuilds_records() -> None:
    full = rich_log()
    for cut in cuts(full):
        prefix = full[:cut]
        core, _ = _fresh(prefix, Clock(full[-1]["t"] + 100))
        core.replay([dict(e) for e in prefix])
        want = _expected(prefix)
        assert set(core.view.records) == set(want), cut
        for eid, (status, value, attempts) in want.items():
            rec = core.view.records[eid]
            assert rec.status.value == status, (cut, eid)
            assert rec.value == value, (cut, eid)
            if status == "running":
                assert rec.attempt + 1 == attempts, (cut, eid)
        assert core.state.next_id == (max(want) + 1 if want else 0)
        assert core.view.n_completed == sum(s == "completed" for s, _v, _a in want.values())
        assert core.t0 == full[0]["t"]


def test_resume_at_many_cuts_finishes_the_same_budget() -> None:
    full = rich_log()
    points = {e["eval_id"]: e["x"] for e in full if e["event"] == "proposed"}
    for cut in cuts(full):
        prefix = full[:cut]
        clock = Clock(full[cut - 1]["t"] + 5.0)
        core, j = _fresh(prefix, clock)
        core.resume([dict(e) for e in prefix], grace=10.0)
        assert [e["seq"] for e in j.events] == list(range(len(j.events)))
        # fresh workers; the evaluations running at the cut are re-queued after the grace
        for i in range(3):
            core.join(f"r{i}", slots=2)
        d = Driver(core, clock, seed=cut % 97)
        d.apply()
        clock.advance(10.0)
        core.tick()
        d.run()
        assert core.view.n_completed == 40, cut
        check_log(j.events)
        assert j.events[cut]["event"] == "run_started" and j.events[cut].get("resumed"), cut
        # random sampling is replay-deterministic: eval k has the same point as before
        for e in j.events:
            if e["event"] == "proposed" and e["eval_id"] in points:
                assert e["x"] == points[e["eval_id"]], (cut, e["eval_id"])


def test_resume_at_many_cuts_with_workers_reporting() -> None:
    full = rich_log()
    for cut in cuts(full):
        prefix = full[:cut]
        clock = Clock(full[cut - 1]["t"] + 1.0)
        core, j = _fresh(prefix, clock)
        core.resume([dict(e) for e in prefix], grace=10.0)
        d = Driver(core, clock, seed=cut)
        held: dict[str, list[tuple[int, int]]] = {}
        for rec in core.view.pending():
            if rec.status is Status.RUNNING:
                assert rec.worker
                held.setdefault(rec.worker, []).append((rec.eval_id, rec.attempt))
        for name, refs in sorted(held.items()):
            for eid, a in refs:
                d.running[(name, eid)] = a
            core.join(name, slots=max(2, len(refs)), running=refs)
        if not held:
            core.join("w0", slots=2)
        d.run()
        assert core.view.n_completed == 40, cut
        assert not [e for e in j.events[cut:] if e.get("reason") == "not reclaimed after restart"]
        check_log(j.events)


def test_resume_next_eval_id_continues() -> None:
    full = full_run(seed=2).events
    cut = 60
    prefix = full[:cut]
    clock = Clock(full[cut - 1]["t"] + 1.0)
    core, j = _fresh(prefix, clock)
    core.resume([dict(e) for e in prefix], grace=10.0)
    top = max(e["eval_id"] for e in prefix if e["event"] == "proposed")
    assert core.state.next_id == top + 1
    queued = sum(r.status is Status.PENDING for r in core.view.pending())
    core.join("fresh", slots=core.view.n_in_flight + 3)
    new = [e for e in j.events[cut:] if e["event"] == "proposed"]
    assert new
    assert [e["eval_id"] for e in new] == list(range(top + 1, top + 1 + len(new)))
    assert len(dispatches(core)) == len(new) + queued


def test_resume_workers_rejoin_with_their_evals() -> None:
    core, j, clock = started(6)
    core.join("w0")
    core.join("w1")
    d = {c.worker: c for c in dispatches(core)}
    core.completed("w0", d["w0"].eval_id, 0, 1.0)
    d["w0"] = dispatches(core)[0]
    prefix = list(j.events)
    # the controller dies; a new one resumes; the workers come back with their work
    clock.advance(3.0)
    j2 = MemoryJournal()
    j2.events = [dict(e) for e in prefix]
    core2, _, _ = make(6, journal=j2, clock=clock)
    core2.resume([dict(e) for e in prefix], grace=5.0)
    assert {r.eval_id for r in core2.view.pending()} == {d["w0"].eval_id, d["w1"].eval_id}
    assert core2.take_commands() == []
    core2.join("w0", running=[(d["w0"].eval_id, 0)])
    core2.join("w1", running=[(d["w1"].eval_id, 0)])
    assert core2.take_commands() == []  # both busy with adopted work
    clock.advance(60.0)
    core2.tick()
    assert core2.take_commands() == []  # adopted: no grace expiry re-queue
    assert core2.completed("w0", d["w0"].eval_id, 0, 2.0) is True
    assert core2.completed("w1", d["w1"].eval_id, 0, 3.0) is True
    Driver(core2, clock, seed=1).run()
    assert core2.view.n_completed == 6
    assert not of(j2, "requeued")
    check_log(j2.events)


def test_resume_unreclaimed_eval_requeued_after_grace() -> None:
    core, j, clock = started(3)
    core.join("w0")
    (d,) = dispatches(core)
    prefix = list(j.events)
    clock.advance(1.0)
    core2, j2 = _fresh(prefix, clock, budget=3)
    core2.resume([dict(e) for e in prefix], grace=5.0)
    core2.join("other")
    (nd,) = dispatches(core2)
    assert nd.eval_id == d.eval_id + 1  # the orphan waits for its worker
    clock.advance(4.9)
    core2.tick()
    assert core2.view.records[d.eval_id].status is Status.RUNNING
    clock.advance(0.2)
    core2.tick()
    assert core2.view.records[d.eval_id].status is Status.PENDING
    assert of(j2, "requeued", d.eval_id)[0]["reason"] == "not reclaimed after restart"
    core2.completed("other", nd.eval_id, 0, 1.0)
    (again,) = dispatches(core2)
    assert (again.eval_id, again.worker) == (d.eval_id, "other")


def test_resume_orphan_requeued_when_its_worker_rejoins_without_it() -> None:
    core, j, clock = started(3)
    core.join("w0")
    (d,) = dispatches(core)
    prefix = list(j.events)
    clock.advance(1.0)
    core2, j2 = _fresh(prefix, clock, budget=3)
    core2.resume([dict(e) for e in prefix], grace=5.0)
    core2.join("w0", running=[])  # e.g. the worker process was restarted
    # it does not have the evaluation: back to the queue at once, and out to a worker again
    (req,) = of(j2, "requeued", d.eval_id)
    assert req["reason"] == "worker rejoined without it"
    assert d.eval_id in [c.eval_id for c in dispatches(core2)]


def test_resume_of_a_log_cut_inside_the_end() -> None:
    j = full_run(seed=4)
    events = j.events
    last_completed = max(i for i, e in enumerate(events) if e["event"] == "completed")
    prefix = events[: last_completed + 1]  # the killed events and run_finished are lost
    clock = Clock(events[-1]["t"])
    core, j2 = _fresh(prefix, clock)
    core.resume([dict(e) for e in prefix], grace=5.0)
    assert core.finished == "budget"
    check_log(j2.events)


def test_replay_rejects_logs_without_run_started() -> None:
    from tether.errors import LogError

    full = full_run(seed=1, budget=5, faults=False).events
    core, _ = _fresh(full[1:], Clock())
    with pytest.raises(LogError):
        core.replay(full[1:])


def test_replay_tells_the_strategy_the_same_events() -> None:
    strat = Scripted()
    core, j, clock = started(8, strategy=strat)
    core.join("w0")
    Driver(core, clock, seed=3).run()
    strat2 = Scripted()
    core2, _, _ = make(8, strategy=strat2)
    core2.replay(j.events)
    assert strat2.events == strat.events


# ---------------------------------------------------------------------- simulated time
def _simulated(budget: int, workers: int, prefetch: int, long_above: float,
               short: float) -> Any:
    """A simulated run with timeout 100 s: x0 above ``long_above`` takes 1000 s."""
    from tether.controller.local import SimulatedController

    space = Space.unit(1)
    settings = RunSettings(budget=budget, eval_timeout=100.0, prefetch=prefetch)
    return SimulatedController(space, RandomSampling(space, seed=1), lambda x: float(x[0]),
                               workers=workers, settings=settings,
                               duration=lambda x: 1000.0 if x[0] > long_above else short).run()


def test_simulated_controller_enforces_eval_timeout() -> None:
    res = _simulated(budget=10, workers=1, prefetch=0, long_above=0.5, short=1.0)
    assert res.reason == "budget"
    too_long = [r.eval_id for r in res.completed if r.t_finished - r.t_started > 100.0]
    assert too_long == []


def test_simulated_workers_queue_prefetched_work_and_time_it_from_its_start() -> None:
    res = _simulated(budget=40, workers=2, prefetch=3, long_above=0.8, short=10.0)
    assert res.reason == "budget"
    started = [e for e in res.events if e["event"] == "started"]
    # each worker held its slot and three queued at the start
    assert {e["worker"] for e in started[:8]} == {"sim-0", "sim-1"}
    assert sum(e["t"] == 0.0 for e in started) == 8
    # one evaluation at a time per worker: the run takes the sum of its durations
    done = [r for r in res.completed]
    assert len(done) == 40
    killed = [e for e in res.events if e["event"] == "killed"]
    # the long ones were killed 100 s after they started, not after they were sent
    for k in killed:
        (st,) = [e for e in started if e["eval_id"] == k["eval_id"]]
        assert k["t"] - st["t"] > 100.0
    assert killed, "no evaluation ran past its timeout: the test proved nothing"
    # one at a time per worker: its outcomes are at least one duration (10 s) apart
    for w in ("sim-0", "sim-1"):
        ends = [e["t"] for e in res.events
                if e["event"] in ("completed", "killed") and e.get("worker") == w]
        assert all(b - a >= 10.0 - 1e-6 for a, b in itertools.pairwise(ends)), ends


# ---------------------------------------------------------------------- ask ahead
def test_prepare_does_nothing_unless_the_strategy_asks_ahead() -> None:
    strat = Scripted()
    core, _, _ = started(10, strategy=strat)
    core.join("w0")
    dispatches(core)
    calls = strat.calls
    assert core.prepare() is False
    assert strat.calls == calls and not core.queue


def test_prepare_queues_one_point_while_all_workers_are_busy() -> None:
    strat = Scripted()
    strat.ask_ahead = 1
    core, j, _ = started(10, strategy=strat)
    assert core.prepare() is False  # no workers: nothing to prepare for
    core.join("w0")
    core.join("w1")
    d = dispatches(core)
    assert len(d) == 2
    assert core.prepare() is True
    assert list(core.queue) == [2] and core.view.records[2].status is Status.PENDING
    assert core.prepare() is False  # one is enough
    assert 2 in {r.eval_id for r in core.view.pending()}  # the next ask penalizes it
    calls = strat.calls
    core.completed("w0", 0, 0, 1.0)
    # the freed worker gets the prepared point without a new ask
    assert [(c.worker, c.eval_id) for c in dispatches(core)] == [("w0", 2)]
    assert strat.calls == calls
    assert of(j, "started", 2)[0]["worker"] == "w0"


def test_prepare_respects_the_budget_and_a_finished_run() -> None:
    strat = Scripted()
    strat.ask_ahead = 3
    core, j, _ = started(3, strategy=strat)
    core.join("w0")
    core.join("w1")
    dispatches(core)
    assert core.prepare() is True
    assert core.prepare() is False  # 2 running + 1 queued cover the budget of 3
    for eval_id, w in ((0, "w0"), (1, "w1")):
        core.completed(w, eval_id, 0, 1.0)
    core.completed("w0", 2, 0, 1.0)
    assert core.finished == "budget"
    assert core.prepare() is False
    assert len(of(j, "proposed")) == 3
    check_log(j.events)


def test_simulated_controller_with_ask_ahead_keeps_the_contract() -> None:
    from tether.controller.local import SimulatedController

    strat = RandomSampling(SPACE, seed=3)
    strat.ask_ahead = 2
    res = SimulatedController(SPACE, strat, objective, workers=3,
                              settings=RunSettings(budget=40),
                              duration=lambda x: 1.0 + float(x[0])).run()
    assert res.reason == "budget" and len(res.completed) == 40
    starts = [e for e in res.events if e["event"] == "started"]
    props = {e["eval_id"]: e["t"] for e in res.events if e["event"] == "proposed"}
    # after the first wave every point was ready before its worker freed up
    assert sum(props[e["eval_id"]] < e["t"] for e in starts) >= 30
    check_log(res.events)
