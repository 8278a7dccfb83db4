"""Any ask/tell optimizer as a tether strategy (Optuna, Trieste, Nevergrad, your own).

The adapter needs three small functions, so that tether depends on none of those
libraries:

- ``ask()`` returns a *handle* for one new point (an Optuna trial, a Trieste query
  point, anything);
- ``point(handle)`` turns the handle into coordinates, in space order (a sequence of
  floats or a ``{name: value}`` mapping); by default the handle itself is the point;
- ``tell(handle, value)`` reports the outcome: a float, or ``None`` when the evaluation
  failed, was killed or was refused by the controller;
- optionally ``prior(x, value)`` receives warm-start data (e.g. Optuna's ``add_trial``).

For an object with ``ask()`` and ``tell(handle, value)`` methods,
:meth:`AskTellStrategy.wrap` builds the adapter in one line. Complete factories for
Optuna and Trieste: ``examples/asktell_optuna.py``, ``examples/asktell_trieste.py``
(how to choose: ``docs/strategies.md``).

Pending points are matched by evaluation id, never by comparing coordinates: each
handle is bound to the id of the evaluation it became, its result (or failure) is told
with that same handle, and :meth:`AskTellStrategy.in_flight` lists the handles still
pending (proposed, running, or re-queued after a lost worker) for optimizers that must
be told them before each ask (Trieste's asynchronous rules; see
``examples/asktell_trieste.py``). Two evaluations at the same point, a point the
controller clipped, or a re-queued evaluation cannot be confused.

``ask()`` may return ``None`` to wait (e.g. until an initial design is back); the
controller asks again after the next event.

Resuming: the optimizer's state lives in the optimizer, not in tether's log, so a
resumed run tells results of evaluations proposed before the restart with no handle;
give the adapter a fresh optimizer warm-started from the log if that matters.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from tether.errors import StrategyError
from tether.records import COMPLETED, FAILED, KILLED, Evaluate, Proposal, Record, RunView
from tether.space import Space
from tether.strategies.base import Strategy


class AskTellStrategy(Strategy):
    """Adapter from ask/tell to tether's propose/on_event; see the module docstring."""

    name = "ask-tell"

    def __init__(self, space: Space, ask: Callable[[], Any | None],
                 tell: Callable[[Any, float | None], None],
                 point: Callable[[Any], Any] | None = None, *, tag: str = "ask-tell",
                 prior: Callable[[tuple[float, ...], float], None] | None = None) -> None:
        self.space = space
        self._ask = ask
        self._tell = tell
        self._point = point or (lambda h: h)
        self._prior = prior
        self.tag = tag
        self._offered: tuple[Evaluate, Any] | None = None  # asked, not yet accepted
        self._handles: dict[int, Any] = {}  # eval id -> handle, until told

    @classmethod
    def wrap(cls, space: Space, optimizer: Any, point: Callable[[Any], Any] | None = None,
             ) -> AskTellStrategy:
        """Adapter for an object with ``ask()`` and ``tell(handle, value)``."""
        return cls(space, optimizer.ask, optimizer.tell, point)

    def _coords(self, handle: Any) -> tuple[float, ...]:
        raw = self._point(handle)
        if isinstance(raw, Mapping):
            try:
                raw = [raw[n] for n in self.space.names]
            except KeyError as exc:
                raise StrategyError(f"ask/tell point lacks variable {exc}") from None
        x = np.asarray(raw, dtype=float).ravel()
        if x.size != self.space.dim:
            raise StrategyError(f"ask/tell point has {x.size} coordinates, space has "
                                f"{self.space.dim}")
        return tuple(float(v) for v in x)

    def propose(self, view: RunView) -> Proposal | None:
        if self._offered is None:
            handle = self._ask()
            if handle is None:
                return None  # the optimizer waits for results
            self._offered = (Evaluate(self._coords(handle), self.tag), handle)
        return self._offered[0]  # asked once; offered again until accepted or refused

    def _is_offer(self, proposal: Proposal) -> bool:
        # one offer is outstanding at a time, so an accepted point with our tag is it,
        # even when a wrapper (Checked) passed on a clipped copy
        return self._offered is not None and (
            proposal is self._offered[0]
            or (isinstance(proposal, Evaluate) and proposal.tag == self.tag))

    def on_accepted(self, proposal: Proposal, record: Record | None) -> None:
        if record is not None and self._offered is not None and self._is_offer(proposal):
            self._handles[record.eval_id] = self._offered[1]  # by id, until its evaluation ends
            self._offered = None

    def on_rejected(self, proposal: Proposal, reason: str) -> None:
        if self._offered is not None and self._is_offer(proposal):
            handle = self._offered[1]
            self._offered = None
            self._tell(handle, None)

    def on_event(self, kind: str, record: Record, view: RunView) -> None:
        # lost and requeued keep the evaluation (and its handle) in flight under its id
        if kind in (COMPLETED, FAILED, KILLED) and record.eval_id in self._handles:
            handle = self._handles.pop(record.eval_id)
            self._tell(handle, record.value if kind == COMPLETED else None)

    def in_flight(self) -> list[Any]:
        """Handles of this adapter's evaluations not yet told, in the order asked."""
        return [self._handles[k] for k in sorted(self._handles)]

    def warm_start(self, records: Sequence[Record]) -> None:
        """Give prior results to ``prior(x, value)``, if the adapter was given one."""
        if self._prior is None:
            return
        for r in records:
            if r.value is not None:
                self._prior(r.x, float(r.value))
