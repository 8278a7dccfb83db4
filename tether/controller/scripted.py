"""A controller driven by hand, for deterministic strategy tests (POAP's ScriptedController).

The test plays the controller and the workers: it asks the strategy for a proposal,
accepts or rejects it, and then completes, fails, kills or loses evaluations in any
order it likes. Everything goes through the real :class:`ControllerCore`, so what a
scripted test shows is what the daemon does::

    sc = ScriptedController(Space.unit(2), strategy, budget=5)
    rec = sc.accept_eval()          # the strategy must propose a point; it starts running
    sc.complete(rec, 1.5)
    sc.reject_eval("worker busy")   # the next proposal is refused; the strategy is told
"""

from __future__ import annotations

from typing import Any

from tether.controller.core import ControllerCore, Dispatch, SendKill
from tether.controller.settings import RunSettings
from tether.errors import StrategyError
from tether.log.journal import MemoryJournal
from tether.records import Evaluate, Kill, Proposal, Record, RunView, Terminate
from tether.space import Space
from tether.strategies.base import Strategy
from tether.strategies.compose import Wrapper


class _Gate(Wrapper):
    """Stands between the core and the strategy: the core only sees accepted proposals."""

    def __init__(self, inner: Strategy) -> None:
        super().__init__(inner)
        self.held: Proposal | None = None
        self.outcome: tuple[bool, Record | None, str] | None = None

    def propose(self, view: RunView) -> Proposal | None:
        out, self.held = self.held, None
        return out

    def on_accepted(self, proposal: Proposal, record: Record | None) -> None:
        self.outcome = (True, record, "")
        super().on_accepted(proposal, record)

    def on_rejected(self, proposal: Proposal, reason: str) -> None:
        self.outcome = (False, None, reason)
        super().on_rejected(proposal, reason)


RecordRef = Record | int


class ScriptedController:
    """Play controller and workers by hand. ``workers`` slots are joined at the start."""

    def __init__(self, space: Space, strategy: Strategy, *, budget: int = 100,
                 workers: int = 8, settings: RunSettings | None = None) -> None:
        self.now = 0.0
        self.strategy = strategy
        self.journal = MemoryJournal()
        self.settings = settings or RunSettings(budget=budget)
        self._gate = _Gate(strategy)
        self.core = ControllerCore(space, self._gate, self.settings, self.journal,
                                   lambda: self.now, {"strategy": {"name": strategy.name}})
        self.core.start()
        for i in range(workers):
            self.core.join(f"w{i}")
        self._settle()

    # ------------------------------------------------------------------ reading
    @property
    def view(self) -> RunView:
        return self.core.view

    @property
    def records(self) -> dict[int, Record]:
        return self.core.view.records

    @property
    def events(self) -> list[dict[str, Any]]:
        return self.journal.events

    @property
    def finished(self) -> str | None:
        return self.core.finished

    def record(self, ref: RecordRef) -> Record:
        return self.core.view.records[ref if isinstance(ref, int) else ref.eval_id]

    # ------------------------------------------------------------------ proposals
    def proposal(self) -> Proposal | None:
        """What the strategy proposes now (it is asked; nothing is carried out)."""
        self.core.view.now = self.now
        return self.strategy.propose(self.core.view)

    def accept(self, proposal: Proposal) -> Record | None:
        """Carry ``proposal`` out through the core; return the new or targeted record.

        Raises :class:`StrategyError` if the core refused it (the strategy was told).
        """
        if isinstance(proposal, Evaluate) and self.core.view.free_slots <= 0:
            raise StrategyError("scripted: no free worker slot to accept an evaluation")
        self._gate.held, self._gate.outcome = proposal, None
        if isinstance(proposal, Evaluate):
            self.core.pump()
        else:
            self.core.carry_out(proposal)  # kills and terminate need no slot
        self._gate.held = None
        self._settle()
        if self._gate.outcome is None:
            raise StrategyError("scripted: the core did not act on the proposal (budget spent?)")
        ok, rec, reason = self._gate.outcome
        if not ok:
            raise StrategyError(f"scripted: proposal rejected by the core: {reason}")
        return self.core.view.records[rec.eval_id] if rec is not None else None

    def reject(self, proposal: Proposal, reason: str = "rejected by script") -> None:
        self.strategy.on_rejected(proposal, reason)

    def accept_eval(self) -> Record:
        """Ask for a proposal, check it is an evaluation, accept it, return its record."""
        p = self.proposal()
        if not isinstance(p, Evaluate):
            raise StrategyError(f"scripted: expected an Evaluate proposal, got {p!r}")
        rec = self.accept(p)
        assert rec is not None
        return rec

    def reject_eval(self, reason: str = "rejected by script") -> Evaluate:
        p = self.proposal()
        if not isinstance(p, Evaluate):
            raise StrategyError(f"scripted: expected an Evaluate proposal, got {p!r}")
        self.reject(p, reason)
        return p

    def accept_kill(self) -> Record:
        p = self.proposal()
        if not isinstance(p, Kill):
            raise StrategyError(f"scripted: expected a Kill proposal, got {p!r}")
        rec = self.accept(p)
        assert rec is not None
        return rec

    def accept_terminate(self) -> None:
        p = self.proposal()
        if not isinstance(p, Terminate):
            raise StrategyError(f"scripted: expected a Terminate proposal, got {p!r}")
        self.accept(p)

    # ------------------------------------------------------------------ workers' side
    def partial(self, ref: RecordRef, value: float) -> Record:
        rec = self.record(ref)
        self.core.partial(rec.worker or "", rec.eval_id, rec.attempt, value)
        return self._after(rec)

    def complete(self, ref: RecordRef, value: float) -> Record:
        rec = self.record(ref)
        self.core.completed(rec.worker or "", rec.eval_id, rec.attempt, value)
        return self._after(rec)

    def fail(self, ref: RecordRef, error: str = "failed by script") -> Record:
        rec = self.record(ref)
        self.core.failed(rec.worker or "", rec.eval_id, rec.attempt, error)
        return self._after(rec)

    def kill(self, ref: RecordRef, reason: str = "killed by script") -> Record:
        """The worker reports the evaluation killed (e.g. an operator's kill)."""
        rec = self.record(ref)
        self.core.killed(rec.worker or "", rec.eval_id, rec.attempt, reason)
        return self._after(rec)

    def lose(self, ref: RecordRef) -> Record:
        """The record's worker goes silent: it is re-queued (or failed past max_retries).

        A fresh worker with the same name joins, so the slot count stays the same.
        """
        rec = self.record(ref)
        name = rec.worker or ""
        self.core.lost(name)
        self.core.join(name)
        return self._after(rec)

    def advance(self, dt: float) -> None:
        """Let simulated time pass (timeouts, ``max_time``)."""
        self.now += dt
        self.core.tick()
        self._settle()

    def _after(self, rec: Record) -> Record:
        self._settle()
        return self.core.view.records[rec.eval_id]

    def _settle(self) -> None:
        # workers obey kills at once; dispatches need no action (the record is RUNNING)
        while self.core.commands:
            for cmd in self.core.take_commands():
                if isinstance(cmd, SendKill):
                    self.core.killed(cmd.worker, cmd.eval_id, cmd.attempt, cmd.reason)
                elif isinstance(cmd, Dispatch):
                    pass

