"""The core and its strategy: kills, terminations, rejected proposals, stops, rejoining."""

from __future__ import annotations

import math

import numpy as np

from tests.unit.core_helpers import (
    SPACE,
    Scripted,
    check_log,
    dispatches,
    kinds,
    of,
    started,
)
from tether.controller.core import Dispatch, Finish, SendKill
from tether.records import Evaluate, Kill, Proposal, RunView, Status, Terminate
from tether.strategies.sampling import FixedPoints


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
