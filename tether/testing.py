"""Helpers for strategy authors: drive a strategy by hand, and prove it resumes correctly.

``ScriptedController`` (POAP's idea) plays controller and workers in a test::

    sc = ScriptedController(Space.unit(2), MyStrategy(...), budget=5)
    rec = sc.accept_eval()
    sc.complete(rec, 1.5)

``check_replayable(factory)`` runs a strategy in simulated time, then, before each point
it proposed, gives a fresh strategy from ``factory`` the log's events up to there (as
``tether controller --resume`` does) and checks it proposes the same point. A strategy
that keeps state outside the event stream it is told fails here instead of after a
controller restart on a cluster.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from tether.controller.core import ControllerCore
from tether.controller.scripted import ScriptedController
from tether.controller.settings import RunSettings
from tether.controller.simulated import SimulatedController
from tether.errors import TetherError
from tether.log.journal import MemoryJournal
from tether.records import Evaluate
from tether.space import Space
from tether.strategies.base import Strategy

__all__ = ["NotReplayable", "ReplayCheck", "ScriptedController", "check_replayable"]


class NotReplayable(TetherError):
    """A strategy rebuilt from the log proposed something other than the original."""


@dataclass(frozen=True)
class ReplayCheck:
    cuts: int  # proposals checked
    events: int  # events in the run's log


def _default_objective(x: np.ndarray) -> float:
    return float(np.sum((np.asarray(x) - 0.3) ** 2))


def check_replayable(factory: Callable[[], Strategy], space: Space | None = None, *,
                     objective: Callable[..., float] = _default_objective, budget: int = 20,
                     workers: int = 3, seed: int = 0, max_cuts: int = 10,
                     atol: float = 1e-9) -> ReplayCheck:
    """Raise :class:`NotReplayable` unless replayed strategies propose what the live one did."""
    space = space or Space.unit(2)
    rng = np.random.default_rng(seed)
    durations = rng.uniform(0.5, 2.0, size=10 * budget + 10)
    counter = iter(range(len(durations)))
    run = SimulatedController(space, factory(), objective, workers=workers,
                              settings=RunSettings(budget=budget),
                              duration=lambda x: float(durations[next(counter)])).run()
    events = run.events
    cuts = [i for i, e in enumerate(events) if e["event"] == "proposed"]
    step = max(1, len(cuts) // max_cuts)
    checked = 0
    for i in cuts[::step]:
        core = ControllerCore(space, factory(), RunSettings(budget=budget), MemoryJournal(),
                              lambda: 0.0)
        core.replay(events[:i])
        view = core.view
        view.n_workers, view.free_slots = workers, 1
        view.now = float(events[i]["t"])
        proposal = core.strategy.inner.propose(view)
        want = np.asarray(events[i]["x"], dtype=float)
        if not isinstance(proposal, Evaluate) or not np.allclose(proposal.x, want, atol=atol,
                                                                 rtol=0):
            raise NotReplayable(f"before event {i} (eval {events[i]['eval_id']}) the live "
                                f"strategy proposed {want.tolist()}, the replayed one "
                                f"{proposal!r}")
        checked += 1
    return ReplayCheck(checked, len(events))
