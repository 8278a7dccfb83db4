"""One base for the controllers that evaluate in this process: serial, pool, simulated.

They share the core's construction (a memory journal), the command loop, the "stalled"
ending and the result; each says only how it starts, kills and waits for evaluations.
The objective contract is the worker's (tether.worker.pychild): a Python objective
returns a float, and streams partial results through ``report(value, **info)`` when it
accepts a ``report`` keyword. What a worker would reject fails the evaluation here too,
so an objective that works in simulation works on the cluster.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from tether.controller.core import Command, ControllerCore
from tether.controller.settings import RunSettings
from tether.log.journal import MemoryJournal
from tether.records import Record, Status
from tether.space import Space
from tether.strategies.base import Strategy
from tether.worker.pychild import accepts_report, objective_value

#: f(x) -> float, optionally f(x, report=...) to stream partial results
Objective = Callable[..., Any]

__all__ = ["InProcessController", "Objective", "RunResult", "accepts_report", "evaluate"]


@dataclass
class RunResult:
    """What an in-process run leaves behind."""

    records: dict[int, Record]
    events: list[dict[str, Any]]
    elapsed: float  # simulated seconds for the simulated controller, wall seconds otherwise
    reason: str

    @property
    def completed(self) -> list[Record]:
        return [r for r in self.records.values() if r.status is Status.COMPLETED]

    @property
    def best(self) -> Record | None:
        done = self.completed
        return min(done, key=lambda r: r.value if r.value is not None else np.inf) if done else None

    def best_trace(self) -> np.ndarray:
        """Best value so far after each completion, in completion order."""
        vals = [e["value"] for e in self.events if e["event"] == "completed"]
        return np.minimum.accumulate(np.asarray(vals, dtype=float)) if vals else np.zeros(0)


def evaluate(objective: Objective, x: np.ndarray,
             report: Callable[..., None] | None) -> float:
    """Call ``objective`` as a worker would and return its value (raises on a bad one)."""
    raw = objective(x, report=report) if report is not None else objective(x)
    return objective_value(raw)


class InProcessController(ABC):
    """The command loop shared by the in-process controllers."""

    prefix = "local"
    #: whether its workers queue evaluations beyond their slot ([run] prefetch); those
    #: that cannot would run prefetched ones side by side, so they get prefetch 0
    queues = False

    def __init__(self, space: Space, strategy: Strategy, settings: RunSettings | None,
                 clock: Callable[[], float], workers: int) -> None:
        self.journal = MemoryJournal()
        self.settings = settings or RunSettings()
        # in process there is no round trip to hide: only a prefetch asked for in so many
        # words (an integer, to see what it costs a strategy) is honoured, where it can be
        if not self.queues or not isinstance(self.settings.prefetch, int):
            self.settings = replace(self.settings, prefetch=0)
        self.n_workers = workers
        self.core = ControllerCore(space, strategy, self.settings, self.journal, clock,
                                   {"strategy": {"name": strategy.name},
                                    "space": space.to_json()})

    def run(self) -> RunResult:
        t0 = time.perf_counter()
        core = self.core
        core.start()
        for i in range(self.n_workers):
            core.join(f"{self.prefix}-{i}")
        try:
            while core.finished is None:
                self._obey(core.take_commands())
                if core.finished is not None:
                    break
                if self._ask_ahead():
                    continue
                if not self._busy():
                    core.tick()
                    if not self._busy() and not core.commands and core.finished is None:
                        core.end("stalled: nothing running and the strategy proposes nothing")
                    continue
                self._wait_and_deliver()
                core.tick()
            self._obey(core.take_commands())
        finally:
            self._cleanup()
        return RunResult(dict(core.view.records), self.journal.events,
                         self._elapsed(time.perf_counter() - t0), core.finished or "")

    # ------------------------------------------------------------ what each one does
    @abstractmethod
    def _obey(self, commands: list[Command]) -> None:
        """Start dispatched evaluations and carry out kills."""

    @abstractmethod
    def _busy(self) -> bool:
        """Whether evaluations are running that will report later."""

    @abstractmethod
    def _wait_and_deliver(self) -> None:
        """Wait for the next outcome(s) and hand them to the core."""

    def _ask_ahead(self) -> bool:
        return False

    def _cleanup(self) -> None:
        pass

    def _elapsed(self, wall: float) -> float:
        return wall
