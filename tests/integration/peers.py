"""Objectives (run by workers) and strategy factories (run by the controller, possibly
in a peer's own environment, so: no pytest here) for tests/integration/test_asktell_peers.py.

After every terminal event the factories dump the peer's own state (Optuna's trials,
Trieste's dataset and pending points), so the tests can check what the optimizer was
told against the log, evaluation by evaluation.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from tether.problems import branin, sphere
from tether.records import COMPLETED, FAILED, KILLED, Record, RunView
from tether.space import Space
from tether.strategies.base import Strategy
from tether.strategies.compose import Wrapper

TERMINAL = (COMPLETED, FAILED, KILLED)


# ---------------------------------------------------------------- objectives (on workers)
def _hold() -> None:
    # the test holds every evaluation while the file `hold` exists (cwd: the run's folder)
    deadline = time.monotonic() + 60
    while os.path.exists("hold") and time.monotonic() < deadline:
        time.sleep(0.01)


def sphere_jitter(x: np.ndarray) -> float:
    """Sphere taking 10-90 ms, so evaluations finish out of order."""
    _hold()
    time.sleep(0.01 + 0.08 * float(x[-1]))
    return sphere(x)


_calls = 0


def branin_failing(x: np.ndarray) -> float:
    """Branin taking 20-220 ms; every worker process's 3rd evaluation fails."""
    global _calls
    _calls += 1
    _hold()
    time.sleep(0.02 + 0.2 * float(x[0]))
    if _calls == 3:
        raise RuntimeError("third evaluation of this worker fails (by design of the test)")
    return branin(x)


# ---------------------------------------------------------------- factories (in the controller)
class Dump(Wrapper):
    """Writes ``state()`` (the peer's own view) to ``path`` after every terminal event."""

    def __init__(self, inner: Strategy, state: Callable[[], Any], path: str) -> None:
        super().__init__(inner)
        self.state, self.path = state, path

    def on_event(self, kind: str, record: Record, view: RunView) -> None:
        super().on_event(kind, record, view)
        if kind in TERMINAL:
            tmp = Path(self.path + ".tmp")
            tmp.write_text(json.dumps(self.state()))
            tmp.replace(self.path)


def optuna_dumped(space: Space, budget: int, options: Mapping[str, Any]) -> Strategy:
    from examples.asktell_optuna import study_and_strategy

    opts = dict(options)
    path = opts.pop("dump")
    study, strategy = study_and_strategy(space, opts)

    def trials() -> list[dict[str, Any]]:
        return [{"number": t.number, "state": t.state.name, "value": t.value, "params": t.params}
                for t in study.trials]

    return Dump(strategy, trials, path)


def trieste_dumped(space: Space, budget: int, options: Mapping[str, Any]) -> Strategy:
    from examples.asktell_trieste import TriesteAsyncLP

    opts = dict(options)
    path = opts.pop("dump")
    peer = TriesteAsyncLP(space, **opts)
    most_pending = [0]
    ask = peer.strategy._ask

    def counting_ask() -> Any:  # how many pending points Trieste's rule is given
        q = ask()
        if peer.opt is not None and peer.opt.acquisition_state is not None:
            pending = peer.opt.acquisition_state.pending_points
            most_pending[0] = max(most_pending[0], int(pending.shape[0]) - 1)  # minus q itself
        return q

    peer.strategy._ask = counting_ask

    def state() -> dict[str, Any]:
        data = peer.opt.dataset if peer.opt is not None else None
        return {"x": data.query_points.numpy().tolist() if data is not None else [],
                "y": data.observations.numpy().ravel().tolist() if data is not None else [],
                "in_flight": len(peer.strategy.in_flight()), "most_pending": most_pending[0]}

    return Dump(peer.strategy, state, path)
