"""The simulated-time controller: many workers, out-of-order completions, in milliseconds.

POAP's SimTeamController idea: each evaluation takes a duration given by a user function,
time jumps from one completion to the next, so N workers finishing out of order are
reproduced deterministically. Partial results the objective reports are spread evenly
over its simulated duration. Each simulated worker has one slot and, with ``[run]
prefetch``, a queue: evaluations sent beyond its slot start one after another as it
frees, as on a real worker (there is no round trip to hide here, so this shows only
what prefetch costs a model-based strategy: points chosen with fewer results known).
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tether.controller.core import Command, Dispatch, Finish, SendKill
from tether.controller.inprocess import InProcessController, Objective, accepts_report, evaluate
from tether.controller.settings import RunSettings
from tether.space import Space
from tether.strategies.base import Strategy


@dataclass(order=True)
class _Pending:
    t: float
    seq: int
    kind: str = field(compare=False)  # "partial" | "done" | "timeout"
    worker: str = field(compare=False)
    eval_id: int = field(compare=False)
    attempt: int = field(compare=False)
    value: float = field(compare=False, default=0.0)
    error: str = field(compare=False, default="")
    seconds: float = field(compare=False, default=0.0)  # its simulated duration ("done")


class SimulatedController(InProcessController):
    """Runs a strategy against ``workers`` simulated workers in simulated time.

    ``duration(x)`` gives each evaluation's length in simulated seconds (default 1).
    An objective that raises (or returns what a worker would refuse) produces a failed
    record, as on real workers.
    """

    prefix = "sim"
    queues = True

    def __init__(self, space: Space, strategy: Strategy, objective: Objective, *,
                 workers: int = 4, settings: RunSettings | None = None,
                 duration: Callable[[np.ndarray], float] | None = None) -> None:
        self.now = 0.0
        super().__init__(space, strategy, settings, lambda: self.now, workers)
        self.objective = objective
        self._reports = accepts_report(objective)
        self.duration = duration or (lambda x: 1.0)
        self._heap: list[_Pending] = []
        self._seq = 0
        self._running: dict[str, tuple[int, float]] = {}  # worker -> (eval_id, its start)
        #: simulated seconds workers spent running evaluations (a queued one's wait is
        #: not in it, nor in the log's started..completed span it would be counted from)
        self.busy_seconds = 0.0
        self._queued: dict[str, deque[Dispatch]] = {}  # worker -> prefetched, in order

    def _obey(self, commands: list[Command]) -> None:
        for cmd in commands:
            if isinstance(cmd, Dispatch):
                if cmd.worker in self._running:
                    self._queued.setdefault(cmd.worker, deque()).append(cmd)
                else:
                    self._start(cmd)
            elif isinstance(cmd, SendKill):
                self._kill(cmd)
            elif isinstance(cmd, Finish):
                self._heap.clear()
                self._queued.clear()
                self._running.clear()

    def _kill(self, cmd: SendKill) -> None:
        queue = self._queued.get(cmd.worker, deque())
        waiting = [d for d in queue if d.eval_id == cmd.eval_id]
        if waiting:  # not started yet: it ends unrun
            queue.remove(waiting[0])
        else:
            self._heap = [e for e in self._heap
                          if not (e.eval_id == cmd.eval_id and e.worker == cmd.worker)]
            heapq.heapify(self._heap)
        self.core.killed(cmd.worker, cmd.eval_id, cmd.attempt, cmd.reason)
        if not waiting and self._runs(cmd.worker, cmd.eval_id):
            self._next(cmd.worker)

    def _runs(self, worker: str, eval_id: int) -> bool:
        running = self._running.get(worker)
        return running is not None and running[0] == eval_id

    def _next(self, worker: str) -> None:
        """``worker``'s slot is free: start what it has queued, if anything."""
        _, began = self._running.pop(worker)
        self.busy_seconds += self.now - began
        queue = self._queued.get(worker)
        if queue:
            cmd = queue.popleft()
            self.core.running(cmd.worker, cmd.eval_id, cmd.attempt)  # its timeout starts
            self._start(cmd)

    def _ask_ahead(self) -> bool:
        return self.core.prepare()  # as the daemon does when idle

    def _busy(self) -> bool:
        return bool(self._heap)

    def _wait_and_deliver(self) -> None:
        ev = heapq.heappop(self._heap)
        self.now = max(self.now, ev.t)
        if ev.kind == "timeout":
            return  # the tick that follows kills it if it still runs
        if ev.kind == "partial":
            self.core.partial(ev.worker, ev.eval_id, ev.attempt, ev.value)
            return
        if ev.error:
            self.core.failed(ev.worker, ev.eval_id, ev.attempt, ev.error, ev.seconds)
        else:
            self.core.completed(ev.worker, ev.eval_id, ev.attempt, ev.value, ev.seconds)
        if self._runs(ev.worker, ev.eval_id):
            self._next(ev.worker)

    def _elapsed(self, wall: float) -> float:
        return self.now

    def _start(self, cmd: Dispatch) -> None:
        x = np.asarray(cmd.x, dtype=float)
        length = float(self.duration(x))
        partials: list[float] = []

        def report(value: float, **info: Any) -> None:
            partials.append(float(value))

        try:
            value, error = evaluate(self.objective, x, report if self._reports else None), ""
        except Exception as exc:  # the objective's failure becomes a failed record
            value, error = float("nan"), f"{type(exc).__name__}: {exc}"
        self._running[cmd.worker] = (cmd.eval_id, self.now)
        for k, p in enumerate(partials):
            self._push(self.now + length * (k + 1) / (len(partials) + 1), "partial", cmd, p)
        self._push(self.now + length, "done", cmd, value, error, length)
        if length > cmd.timeout:  # wake up when it is due (past the log's microseconds)
            self._push(self.now + cmd.timeout * (1 + 1e-9) + 1e-5, "timeout", cmd, 0.0)

    def _push(self, t: float, kind: str, cmd: Dispatch, value: float, error: str = "",
              seconds: float = 0.0) -> None:
        self._seq += 1
        heapq.heappush(self._heap, _Pending(t, self._seq, kind, cmd.worker, cmd.eval_id,
                                            cmd.attempt, value, error, seconds))
