"""The core's side of the strategy interface: every call to user code goes through here.

A strategy is user code (``module:factory``); when it raises, the run must end with a
reason that names the strategy and the evaluation it was handling, the traceback must
reach the log, and nothing may hang. The guard catches the exception once, reports it
through ``on_error`` and turns every later call into a no-op, so the core can finish
the run (kill what is in flight, write ``run_finished``) without re-entering a broken
strategy.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import Any, TypeVar

from tether.records import Kill, Proposal, Record, RunView, Terminate
from tether.strategies.base import Strategy

T = TypeVar("T")


class StrategyGuard:
    def __init__(self, inner: Strategy, view: RunView, clock: Callable[[], float],
                 on_error: Callable[[str, str], None]) -> None:
        self.inner = inner
        self.view = view
        self.clock = clock
        self.on_error = on_error
        self.broken: str | None = None
        # The base class's hooks do nothing: skipping them saves calls on the dispatch
        # path of strategies that keep no per-event state (the core reads these flags
        # before calling, so a skipped hook costs no call at all)
        self.hears_events = _overrides(inner, "on_event")
        self.hears_accepts = _overrides(inner, "on_accepted")
        self.interrupts = _overrides(inner, "interrupt")

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def ask_ahead(self) -> int:
        return 0 if self.broken else self.inner.ask_ahead

    def propose(self) -> Proposal | None:
        self.view.now = self.clock()
        return self._call(None, None, self.inner.propose, self.view)

    def interrupt(self) -> Kill | Terminate | None:
        if not self.interrupts:
            return None
        self.view.now = self.clock()
        return self._call(None, None, self.inner.interrupt, self.view)

    def on_accepted(self, proposal: Proposal, record: Record | None) -> None:
        if not self.hears_accepts:
            return
        eval_id = record.eval_id if record is not None else None
        self._call(None, eval_id, self.inner.on_accepted, proposal, record)

    def on_rejected(self, proposal: Proposal, reason: str) -> None:
        self._call(None, None, self.inner.on_rejected, proposal, reason)

    def on_event(self, kind: str, record: Record, eval_id: int | None) -> None:
        if not self.hears_events:
            return
        self._call(None, eval_id, self.inner.on_event, kind, record, self.view)

    def _call(self, default: T, eval_id: int | None, fn: Callable[..., T], *args: Any) -> T:
        if self.broken is not None:
            return default
        try:
            return fn(*args)
        except Exception as exc:
            where = f" (handling evaluation {eval_id})" if eval_id is not None else ""
            self.broken = (f"strategy error: {self.inner.name} raised "
                           f"{type(exc).__name__}: {exc}{where}")
            self.on_error(self.broken, traceback.format_exc(limit=20))
            return default


def _overrides(strategy: object, hook: str) -> bool:
    """Whether ``strategy``'s class replaces the base class's no-op ``hook``."""
    return getattr(type(strategy), hook, None) is not getattr(Strategy, hook)
