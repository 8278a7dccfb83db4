import pytest

from tether.controller.scripted import ScriptedController
from tether.controller.settings import RunSettings
from tether.errors import StrategyError
from tether.records import Evaluate, Kill, Proposal, Record, RunView, Status, Terminate
from tether.space import Space
from tether.strategies.base import Strategy


class Recorder(Strategy):
    """Proposes a queue of actions and writes down what it is told."""

    name = "recorder"

    def __init__(self, actions: list[Proposal]) -> None:
        self.actions = actions
        self.told: list[tuple[str, int]] = []
        self.accepted: list[Proposal] = []
        self.rejected: list[tuple[Proposal, str]] = []

    def propose(self, view: RunView) -> Proposal | None:
        return self.actions[0] if self.actions else None

    def on_accepted(self, proposal: Proposal, record: Record | None) -> None:
        self.accepted.append(self.actions.pop(0))

    def on_rejected(self, proposal: Proposal, reason: str) -> None:
        self.rejected.append((self.actions.pop(0), reason))

    def on_event(self, kind: str, record: Record, view: RunView) -> None:
        self.told.append((kind, record.eval_id))


def test_accept_complete_fail_kill_in_any_order() -> None:
    s = Recorder([Evaluate((0.1,)), Evaluate((0.2,)), Evaluate((0.3,))])
    sc = ScriptedController(Space.unit(1), s, budget=3, workers=3)
    a, b, c = sc.accept_eval(), sc.accept_eval(), sc.accept_eval()
    assert [r.status for r in (a, b, c)] == [Status.RUNNING] * 3
    sc.complete(b, 2.0)
    sc.fail(a, "boom")
    assert sc.kill(c).status is Status.KILLED
    assert ("completed", b.eval_id) in s.told and ("failed", a.eval_id) in s.told
    assert sc.record(a).error == "boom" and sc.view.best is not None
    assert sc.view.best.eval_id == b.eval_id


def test_reject_by_script_and_by_core() -> None:
    s = Recorder([Evaluate((0.5,)), Evaluate((7.0,))])
    sc = ScriptedController(Space.unit(1), s)
    sc.reject_eval("no thanks")
    assert s.rejected[0][1] == "no thanks" and sc.records == {}
    with pytest.raises(StrategyError, match="outside the bounds"):
        sc.accept_eval()
    assert "outside" in s.rejected[1][1]


def test_kill_and_terminate_proposals() -> None:
    s = Recorder([Evaluate((0.5,)), Kill(0), Terminate("enough")])
    sc = ScriptedController(Space.unit(1), s)
    sc.accept_eval()
    assert sc.accept_kill().status is Status.KILLED
    sc.accept_terminate()
    assert sc.finished == "enough"


def test_lost_worker_requeues_and_partials_are_recorded() -> None:
    s = Recorder([Evaluate((0.5,))])
    sc = ScriptedController(Space.unit(1), s, settings=RunSettings(budget=5, max_retries=1))
    r = sc.accept_eval()
    sc.partial(r, 3.0)
    assert sc.record(r).partials == (3.0,)
    again = sc.lose(r)
    assert again.status is Status.RUNNING and again.attempt == 1  # re-dispatched at once
    assert sc.lose(r).status is Status.FAILED  # past max_retries


def test_accept_without_slot_or_proposal_is_an_error() -> None:
    sc = ScriptedController(Space.unit(1), Recorder([Evaluate((0.1,))]), workers=1)
    sc.accept_eval()
    with pytest.raises(StrategyError):
        sc.accept(Evaluate((0.2,)))
    with pytest.raises(StrategyError):
        sc.accept_eval()  # the strategy has nothing left
