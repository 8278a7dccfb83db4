"""The pure controller core, driven in memory with a manual clock.

Every journal a test produces is checked against the log contract of DESIGN.md.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from typing import Any

import numpy as np
import pytest

from tether.controller.core import ControllerCore, Dispatch, Finish, SendKill
from tether.controller.settings import RunSettings
from tether.log.journal import MemoryJournal
from tether.log.summary import tabulate
from tether.records import Evaluate, Kill, Proposal, Record, RunView, Status, Terminate
from tether.space import Space
from tether.strategies.base import Strategy
from tether.strategies.sampling import FixedPoints, RandomSampling

SPACE = Space(("a", "b"), (0.0, -1.0), (1.0, 1.0))
TERMINAL = {"completed", "failed", "killed"}
EVAL_EVENTS = {"proposed", "started", "partial", "completed", "failed", "killed", "lost",
               "requeued"}


# ---------------------------------------------------------------------- helpers
class Clock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, dt: float) -> None:
        self.t += dt


class Scripted(Strategy):
    """Proposes its script in order, then (if ``fallback``) deterministic valid points."""

    name = "scripted"

    def __init__(self, script: list[Proposal | None] | None = None, fallback: bool = True,
                 space: Space = SPACE) -> None:
        self.script = list(script or [])
        self.fallback = fallback
        self.space = space
        self.calls = 0
        self.accepted: list[tuple[Proposal, Record | None]] = []
        self.rejected: list[tuple[Proposal, str]] = []
        self.events: list[tuple[str, int, Status]] = []

    def propose(self, view: RunView) -> Proposal | None:
        self.calls += 1
        if self.script:
            return self.script.pop(0)
        if not self.fallback:
            return None
        k = len(view.records)
        u = np.array([(k * 0.618034) % 1.0, (k * 0.414214) % 1.0])
        return Evaluate.at(self.space.from_unit(u))

    def on_accepted(self, proposal: Proposal, record: Record | None) -> None:
        self.accepted.append((proposal, record))

    def on_rejected(self, proposal: Proposal, reason: str) -> None:
        self.rejected.append((proposal, reason))

    def on_event(self, kind: str, record: Record, view: RunView) -> None:
        self.events.append((kind, record.eval_id, record.status))


def objective(x: tuple[float, ...]) -> float:
    return float(sum((v - 0.3) ** 2 for v in x))


Made = tuple[ControllerCore, MemoryJournal, Clock]


def make(budget: int = 5, strategy: Strategy | None = None, journal: MemoryJournal | None = None,
         clock: Clock | None = None, **settings: Any) -> Made:
    s = RunSettings(budget=budget, **settings)
    j = journal if journal is not None else MemoryJournal()
    c = clock or Clock()
    strat = strategy or RandomSampling(SPACE, seed=7)
    info = {"space": SPACE.to_json(), "strategy": {"name": strat.name}, "run": s.to_json()}
    return ControllerCore(SPACE, strat, s, j, c, info), j, c


def started(budget: int = 5, **kw: Any) -> Made:
    core, j, c = make(budget, **kw)
    core.start()
    return core, j, c


def dispatches(core: ControllerCore) -> list[Dispatch]:
    cmds = core.take_commands()
    return [cmd for cmd in cmds if isinstance(cmd, Dispatch)]


def kinds(cmds: list[Any], kind: type) -> list[Any]:
    return [c for c in cmds if isinstance(c, kind)]


def of(j: MemoryJournal, event: str, eval_id: int | None = None) -> list[dict[str, Any]]:
    return [e for e in j.events if e["event"] == event
            and (eval_id is None or e.get("eval_id") == eval_id)]


def check_log(events: list[dict[str, Any]], dim: int = 2, finished: bool = True) -> None:
    """The log contract of DESIGN.md."""
    assert [e["seq"] for e in events] == list(range(len(events))), "seq must be gap-free"
    assert events and events[0]["event"] == "run_started"
    proposed: set[int] = set()
    terminal: Counter[int] = Counter()
    for e in events:
        assert isinstance(e["event"], str)
        assert isinstance(e["t"], float) and math.isfinite(e["t"]), e
        kind = e["event"]
        if kind in EVAL_EVENTS:
            eid = e["eval_id"]
            assert isinstance(eid, int)
            if kind == "proposed":
                assert eid not in proposed, f"eval {eid} proposed twice"
                proposed.add(eid)
                assert isinstance(e["x"], list) and len(e["x"]) == dim
                assert all(isinstance(v, float) and math.isfinite(v) for v in e["x"])
            else:
                assert eid in proposed, f"{kind} of unknown eval {eid}"
                assert terminal[eid] == 0, f"{kind} of eval {eid} after its terminal event"
            if kind in ("started", "partial", "completed", "failed"):
                assert isinstance(e["worker"], str) and e["worker"], e
            if kind in ("partial", "completed"):
                assert isinstance(e["value"], float) and math.isfinite(e["value"]), e
            if kind == "failed":
                assert isinstance(e["error"], str) and e["error"], e
            if kind in TERMINAL:
                terminal[eid] += 1
    assert all(n == 1 for n in terminal.values())
    if finished:
        assert set(terminal) == proposed, "every evaluation needs exactly one terminal event"
        ends = [i for i, e in enumerate(events) if e["event"] == "run_finished"]
        assert len(ends) == 1, "exactly one run_finished"
        assert not [e for e in events[ends[0]:] if e["event"] in EVAL_EVENTS]
        done = sum(e["event"] == "completed" for e in events)
        assert events[ends[0]]["completed"] == done


class Driver:
    """Simulated workers that obey the core's commands, with seeded faults."""

    def __init__(self, core: ControllerCore, clock: Clock, seed: int = 0,
                 faults: bool = False) -> None:
        self.core, self.clock = core, clock
        self.rng = random.Random(seed)
        self.faults = faults
        self.running: dict[tuple[str, int], int] = {}  # (worker, eval_id) -> attempt
        self.steps = 0

    def apply(self) -> None:
        while self.core.commands:
            for cmd in self.core.take_commands():
                if isinstance(cmd, Dispatch):
                    key = (cmd.worker, cmd.eval_id)
                    assert key not in self.running, f"{key} dispatched twice"
                    assert cmd.worker in self.core.workers
                    self.running[key] = cmd.attempt
                elif isinstance(cmd, SendKill) and self.running.pop(
                        (cmd.worker, cmd.eval_id), None) is not None:
                    self.core.killed(cmd.worker, cmd.eval_id, cmd.attempt, cmd.reason)

    def step(self) -> None:
        core, rng = self.core, self.rng
        self.apply()
        if core.finished is not None:
            return
        self.steps += 1
        assert self.steps < 20000, "run does not end"
        self.clock.advance(rng.random())
        r = rng.random()
        if self.faults and r < 0.05 and core.workers:
            name = rng.choice(sorted(core.workers))
            held = [(eid, a) for (w, eid), a in self.running.items() if w == name]
            for eid, _a in held:
                del self.running[(name, eid)]
            if rng.random() < 0.5:
                core.lost(name)
            else:
                core.leave(name, "goodbye")
            self.apply()
            # a lost worker may come back still holding its evaluations
            report = held if rng.random() < 0.5 else []
            for eid, a in report:
                self.running[(name, eid)] = a
            core.join(name, slots=1 + int(name[1:]) % 2, running=report)
            return
        if self.faults and r < 0.07:
            self.clock.advance(core.settings.eval_timeout + 1.0)
            core.tick()
            return
        assert self.running, "stalled: nothing running"
        key = rng.choice(sorted(self.running))
        attempt = self.running.pop(key)
        w, eid = key
        x = core.view.records[eid].x
        if self.faults and r < 0.17:
            core.partial(w, eid, attempt, objective(x) + 1.0)
            self.running[key] = attempt
        elif self.faults and r < 0.24:
            core.failed(w, eid, attempt, "RuntimeError: boom")
        else:
            core.completed(w, eid, attempt, objective(x))
        core.tick()

    def run(self) -> None:
        while self.core.finished is None:
            self.step()
        self.apply()


def full_run(seed: int = 3, budget: int = 40, faults: bool = True) -> MemoryJournal:
    core, j, clock = started(budget, eval_timeout=30.0, max_retries=1)
    for i in range(3):
        core.join(f"w{i}", slots=1 + i % 2)
    d = Driver(core, clock, seed=seed, faults=faults)
    d.run()
    assert core.view.n_completed == budget
    check_log(j.events)
    return j


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


# ---------------------------------------------------------------------- proposals
def test_strategy_kill_of_running_eval() -> None:
    strat = Scripted([Evaluate((0.5, 0.5)), Kill(0, "not promising")])
    core, j, _ = started(5, strategy=strat)
    core.join("w0", slots=2)
    cmds = core.take_commands()
    assert SendKill("w0", 0, 0, "not promising") in cmds
    assert core.view.records[0].status is Status.KILLED
    k = of(j, "killed", 0)
    assert len(k) == 1 and k[0]["error"] == "not promising"
    kill_acc = [(p, r) for p, r in strat.accepted if isinstance(p, Kill)]
    assert kill_acc and kill_acc[0][1] is not None and kill_acc[0][1].status is Status.KILLED
    # the second slot got new work; the first stays busy until w0 confirms
    ds = kinds(cmds, Dispatch)
    assert [c.eval_id for c in ds] == [0, 1]
    assert core.killed("w0", 0, 0) is False
    assert [c.eval_id for c in dispatches(core)] == [2]
    check_log(j.events, finished=False)


def test_strategy_kill_of_pending_eval() -> None:
    # a PENDING evaluation (re-queued, no free worker) is killed without any SendKill;
    # through propose() the core dispatches queued work first, so apply the proposal here
    strat = Scripted()
    core, j, _ = started(5, strategy=strat)
    core.join("w0")
    core.join("w1")
    d = {c.worker: c for c in dispatches(core)}
    eid = d["w0"].eval_id
    core.lost("w0")
    assert core.view.records[eid].status is Status.PENDING
    core.carry_out(Kill(eid, "stale"))
    assert core.take_commands() == []
    assert core.view.records[eid].status is Status.KILLED
    assert eid not in core.queue
    core.completed("w1", d["w1"].eval_id, 0, 1.0)
    (nd,) = dispatches(core)
    assert nd.eval_id != eid  # the killed point is not dispatched
    assert len(of(j, "killed", eid)) == 1
    check_log(j.events, finished=False)


def test_strategy_kill_of_unknown_or_finished_is_rejected() -> None:
    strat = Scripted([Evaluate((0.5, 0.5)), Kill(42)])
    core, j, _ = started(5, strategy=strat)
    core.join("w0", slots=2)
    assert [p for p, _r in strat.rejected] == [Kill(42)]
    assert "no such evaluation" in strat.rejected[0][1]
    assert not of(j, "killed")


def test_strategy_terminate() -> None:
    strat = Scripted([Evaluate((0.5, 0.5)), Terminate("enough")])
    core, j, _ = started(5, strategy=strat)
    core.join("w0", slots=2)
    cmds = core.take_commands()
    assert core.finished == "enough"
    assert SendKill("w0", 0, 0, "run finished (enough)") in cmds
    assert cmds[-1] == Finish("enough")
    assert (Terminate("enough"), None) in strat.accepted
    fin = of(j, "run_finished")
    assert len(fin) == 1 and fin[0]["reason"] == "enough" and fin[0]["completed"] == 0
    assert fin[0]["best_value"] is None and fin[0]["best_x"] is None
    check_log(j.events)


def test_invalid_proposals_are_rejected() -> None:
    bad: list[Proposal | None] = [
        Evaluate((0.5,)),  # wrong dimension
        Evaluate((0.5, 0.5, 0.5)),
        Evaluate((math.nan, 0.5)),
        Evaluate((0.5, math.inf)),
        Evaluate((1.5, 0.0)),  # out of bounds
        Evaluate((0.5, -1.0000001)),
    ]
    strat = Scripted([*bad, Evaluate((0.0, 1.0))], fallback=False)  # bounds are inclusive
    core, j, _ = started(5, strategy=strat)
    core.join("w0")
    for _ in bad:  # each rejection ends a pump turn; the next tick asks again
        core.tick()
    assert [p for p, _r in strat.rejected] == bad
    reasons = [r for _p, r in strat.rejected]
    assert "coordinates" in reasons[0] and "coordinates" in reasons[1]
    assert "non-finite" in reasons[2] and "non-finite" in reasons[3]
    assert "bounds" in reasons[4] and "bounds" in reasons[5]
    assert list(core.view.records) == [0]
    assert core.view.records[0].x == (0.0, 1.0)
    assert [e["eval_id"] for e in of(j, "proposed")] == [0]
    assert [c.x for c in dispatches(core)] == [(0.0, 1.0)]
    check_log(j.events, finished=False)


class AlwaysBad(FixedPoints):
    """A fixed design whose point is outside the space; bails out instead of spinning."""

    def __init__(self) -> None:
        super().__init__(SPACE, np.array([[0.5, 0.0]]))
        self.points = np.array([[5.0, 0.0]])  # the constructor refuses it: slip it in after
        self.calls = 0

    def propose(self, view: RunView) -> Proposal | None:
        self.calls += 1
        if self.calls > 200:
            raise RuntimeError("pump keeps asking after a rejection")
        return super().propose(view)


def test_rejected_proposal_does_not_spin_the_pump() -> None:
    strat = AlwaysBad()
    core, _, _ = started(5, strategy=strat)
    core.join("w0")  # with the bug this raises RuntimeError from the guard above
    assert strat.calls <= 2


# ---------------------------------------------------------------------- stops
def test_stop_on_target() -> None:
    core, j, _ = started(50, target=0.1)
    core.join("w0")
    core.join("w1")
    d = {c.worker: c for c in dispatches(core)}
    core.completed("w0", d["w0"].eval_id, 0, 0.5)
    assert core.finished is None
    (d2,) = dispatches(core)
    core.completed("w0", d2.eval_id, 0, 0.1)
    assert core.finished == "target"
    cmds = core.take_commands()
    assert SendKill("w1", d["w1"].eval_id, 0, "run finished (target)") in cmds
    assert cmds[-1] == Finish("target")
    fin = of(j, "run_finished")[0]
    assert fin["best_value"] == 0.1 and fin["completed"] == 2
    check_log(j.events)


def test_stop_on_patience() -> None:
    core, j, _ = started(50, patience=3)
    core.join("w0")
    values = [1.0, 0.5, 0.7, 0.6, 0.9]  # improvement at 2nd; 3 without it after
    for k, v in enumerate(values):
        (d,) = dispatches(core)
        core.completed("w0", d.eval_id, 0, v)
        assert (core.finished is None) == (k < 4), k
    assert core.finished == "patience"
    check_log(j.events)


def test_stop_on_max_time() -> None:
    core, j, clock = started(50, max_time=100.0)
    core.join("w0")
    (d,) = dispatches(core)
    clock.advance(99.0)
    core.tick()
    assert core.finished is None
    clock.advance(1.0)
    core.tick()
    assert core.finished == "max_time"
    cmds = core.take_commands()
    assert SendKill("w0", d.eval_id, 0, "run finished (max_time)") in cmds
    assert core.view.records[d.eval_id].status is Status.KILLED
    check_log(j.events)


# ---------------------------------------------------------------------- join
def test_rejoin_adopts_running_eval() -> None:
    core, j, _ = started(5)
    core.join("w0")
    (d,) = dispatches(core)
    core.join("w0", running=[(d.eval_id, 0)])  # a new connection, same worker
    cmds = core.take_commands()
    assert not kinds(cmds, Dispatch) and not kinds(cmds, SendKill)
    rec = core.view.records[d.eval_id]
    assert rec.status is Status.RUNNING and rec.worker == "w0"
    assert len(of(j, "started", d.eval_id)) == 1  # nothing changed hands: nothing to log
    assert core.completed("w0", d.eval_id, 0, 1.0) is True
    assert core.view.n_completed == 1
    check_log(j.events, finished=False)


def test_join_adopts_eval_of_a_lost_worker() -> None:
    core, j, _ = started(5)
    core.join("w0")
    (d,) = dispatches(core)
    core.lost("w0")
    assert core.view.records[d.eval_id].status is Status.PENDING
    core.join("w0", running=[(d.eval_id, 0)])
    assert core.take_commands() == []  # adopted: not dispatched again
    rec = core.view.records[d.eval_id]
    assert rec.status is Status.RUNNING and rec.worker == "w0"
    assert d.eval_id not in core.queue
    assert core.completed("w0", d.eval_id, 0, 1.0) is True
    check_log(j.events, finished=False)


def test_join_tells_worker_to_drop_ended_evals() -> None:
    core, j, _ = started(5)
    core.join("w0", slots=2)
    d = dispatches(core)
    core.completed("w0", d[0].eval_id, 0, 1.0)
    dispatches(core)
    core.join("w0", slots=2, running=[(d[0].eval_id, 0), (999, 0)])
    cmds = core.take_commands()
    kills = {(c.eval_id, c.attempt) for c in kinds(cmds, SendKill)}
    assert kills == {(d[0].eval_id, 0), (999, 0)}
    assert all(c.reason == "evaluation already ended" for c in kinds(cmds, SendKill))
    assert not kinds(cmds, Dispatch)  # both slots held until the worker answers
    assert core.killed("w0", 999, 0, "not running") is False
    assert core.killed("w0", d[0].eval_id, 0, "not running") is False
    assert len(dispatches(core)) == 2
    assert len(of(j, "completed", d[0].eval_id)) == 1
    assert not of(j, "killed", d[0].eval_id)
    check_log(j.events, finished=False)


def test_rejoin_does_not_dispatch_its_running_eval_elsewhere() -> None:
    core, _, _ = started(2)
    core.join("w0")
    core.join("w1")
    d = {c.worker: c for c in dispatches(core)}
    core.join("w2")  # idle: the budget needs no more work
    assert dispatches(core) == []
    core.join("w0", running=[(d["w0"].eval_id, 0)])  # a new connection, same worker
    assert core.take_commands() == []
    assert core.view.records[d["w0"].eval_id].worker == "w0"


def test_kill_of_adopted_eval_targets_the_attempt_the_worker_runs() -> None:
    core, _, clock = started(5, eval_timeout=10.0)
    core.join("w0")
    (d,) = dispatches(core)
    core.lost("w0")
    core.join("w0", running=[(d.eval_id, 0)])  # adopts attempt 0; the record says attempt 1
    assert core.workers["w0"].busy == {d.eval_id: 0}
    clock.advance(11.0)
    core.tick()
    kills = kinds(core.take_commands(), SendKill)
    assert [(k.worker, k.eval_id, k.attempt) for k in kills] == [("w0", d.eval_id, 0)]


def test_over_reporting_worker_does_not_block_others() -> None:
    core, _, _ = started(10)
    core.join("w0")
    (d0,) = dispatches(core)
    core.join("w1")
    (d1,) = dispatches(core)
    core.completed("w0", d0.eval_id, 0, 1.0)
    (d2,) = dispatches(core)
    # w0 reconnects, running d2 and still holding d0's unacknowledged result
    core.join("w0", running=[(d0.eval_id, 0), (d2.eval_id, 0)])
    core.take_commands()
    core.completed("w1", d1.eval_id, 0, 1.0)
    assert [c.worker for c in dispatches(core)] == ["w1"]


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
def test_simulated_controller_enforces_eval_timeout() -> None:
    from tether.controller.local import SimulatedController

    space = Space.unit(1)
    res = SimulatedController(space, RandomSampling(space, seed=1), lambda x: float(x[0]),
                              workers=1, settings=RunSettings(budget=10, eval_timeout=100.0),
                              duration=lambda x: 1000.0 if x[0] > 0.5 else 1.0).run()
    assert res.reason == "budget"
    too_long = [r.eval_id for r in res.completed if r.t_finished - r.t_started > 100.0]
    assert too_long == []


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
