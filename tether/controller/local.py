"""In-process controllers on the shared core: serial, thread/process pool, simulated time.

The simulated-time controller is POAP's SimTeamController idea: each evaluation takes a
duration given by a user function, time jumps from one completion to the next, so N
workers finishing out of order are reproduced deterministically in milliseconds.
"""

from __future__ import annotations

import heapq
import inspect
import queue
import time
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import (
    FIRST_COMPLETED,
    Executor,
    Future,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
    wait,
)
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tether.controller.core import ControllerCore, Dispatch, Finish, SendKill
from tether.controller.settings import RunSettings
from tether.errors import TetherError
from tether.log.journal import MemoryJournal
from tether.records import Record, Status
from tether.space import Space
from tether.strategies.base import Strategy

#: An objective for in-process controllers: f(x) -> value, or (value, partials) where the
#: partials are reported evenly spaced over the evaluation's (simulated) duration.
Objective = Callable[..., Any]


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


def _split(result: Any) -> tuple[float, Sequence[float]]:
    if isinstance(result, tuple):
        value, partials = result
        return float(value), [float(p) for p in partials]
    return float(result), ()


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


class SimulatedController:
    """Runs a strategy against ``workers`` simulated workers in simulated time.

    ``duration(x)`` gives each evaluation's length in simulated seconds (default 1).
    An objective that raises produces a failed record, as on real workers.
    """

    def __init__(
        self,
        space: Space,
        strategy: Strategy,
        objective: Objective,
        *,
        workers: int = 4,
        settings: RunSettings | None = None,
        duration: Callable[[np.ndarray], float] | None = None,
    ) -> None:
        self.now = 0.0
        self.journal = MemoryJournal()
        self.settings = settings or RunSettings()
        self.core = ControllerCore(space, strategy, self.settings, self.journal, lambda: self.now,
                                   {"strategy": {"name": strategy.name}, "space": space.to_json()})
        self.objective = objective
        self.duration = duration or (lambda x: 1.0)
        self.n_workers = workers
        self._heap: list[_Pending] = []
        self._seq = 0

    def run(self) -> RunResult:
        core = self.core
        core.start()
        for i in range(self.n_workers):
            core.join(f"sim-{i}")
        while core.finished is None:
            self._apply_commands()
            if core.finished is not None:
                break
            if core.prepare():  # as the daemon does when idle: the ask overlaps evaluations
                continue
            if not self._heap:
                core.tick()
                if not self._heap and not core.commands and core.finished is None:
                    core.end("stalled: nothing running and the strategy proposes nothing")
                continue
            ev = heapq.heappop(self._heap)
            self.now = max(self.now, ev.t)
            self._deliver(ev)
            core.tick()
        self._apply_commands()
        return RunResult(dict(core.view.records), self.journal.events, self.now, core.finished)

    def _deliver(self, ev: _Pending) -> None:
        if ev.kind == "timeout":
            return  # the tick that follows kills it if it still runs
        if ev.kind == "partial":
            self.core.partial(ev.worker, ev.eval_id, ev.attempt, ev.value)
        elif ev.error:
            self.core.failed(ev.worker, ev.eval_id, ev.attempt, ev.error)
        else:
            self.core.completed(ev.worker, ev.eval_id, ev.attempt, ev.value)

    def _apply_commands(self) -> None:
        for cmd in self.core.take_commands():
            if isinstance(cmd, Dispatch):
                self._start(cmd)
            elif isinstance(cmd, SendKill):
                self._heap = [e for e in self._heap
                              if not (e.eval_id == cmd.eval_id and e.worker == cmd.worker)]
                heapq.heapify(self._heap)
                self.core.killed(cmd.worker, cmd.eval_id, cmd.attempt, cmd.reason)
            elif isinstance(cmd, Finish):
                self._heap.clear()

    def _start(self, cmd: Dispatch) -> None:
        x = np.asarray(cmd.x, dtype=float)
        length = float(self.duration(x))
        try:
            value, partials = _split(self.objective(x))
            error = ""
        except Exception as exc:  # the objective's failure becomes a failed record
            value, partials, error = float("nan"), (), f"{type(exc).__name__}: {exc}"
        for k, p in enumerate(partials):
            self._push(self.now + length * (k + 1) / (len(partials) + 1), "partial", cmd, p)
        self._push(self.now + length, "done", cmd, value, error)
        if length > cmd.timeout:  # wake up when it is due to be killed (past the log's microsecond rounding)
            self._push(self.now + cmd.timeout * (1 + 1e-9) + 1e-5, "timeout", cmd, 0.0)

    def _push(self, t: float, kind: str, cmd: Dispatch, value: float, error: str = "") -> None:
        self._seq += 1
        heapq.heappush(self._heap, _Pending(t, self._seq, kind, cmd.worker, cmd.eval_id,
                                            cmd.attempt, value, error))


class SerialController:
    """Evaluates proposals one at a time in this process, in real time.

    ``objective(x)`` may accept a ``report`` keyword to stream partial results, as on
    workers.
    """

    def __init__(self, space: Space, strategy: Strategy, objective: Objective,
                 settings: RunSettings | None = None) -> None:
        self.journal = MemoryJournal()
        self.settings = settings or RunSettings()
        self.core = ControllerCore(space, strategy, self.settings, self.journal, time.time,
                                   {"strategy": {"name": strategy.name}, "space": space.to_json()})
        self.objective: Callable[..., Any] = objective
        self._reports = "report" in inspect.signature(objective).parameters

    def run(self) -> RunResult:
        t0 = time.perf_counter()
        core = self.core
        core.start()
        core.join("serial")
        while core.finished is None:
            cmds = core.take_commands()
            if not cmds:
                core.tick()
                if not core.commands:
                    core.end("stalled: the strategy proposes nothing")
                continue
            for cmd in cmds:
                if isinstance(cmd, Dispatch):
                    self._evaluate(cmd)
                elif isinstance(cmd, SendKill):
                    core.killed(cmd.worker, cmd.eval_id, cmd.attempt, cmd.reason)
        return RunResult(dict(core.view.records), self.journal.events,
                         time.perf_counter() - t0, core.finished or "")

    def _evaluate(self, cmd: Dispatch) -> None:
        core, x = self.core, np.asarray(cmd.x, dtype=float)

        def report(value: float, **info: Any) -> None:
            core.partial(cmd.worker, cmd.eval_id, cmd.attempt, float(value))

        try:
            raw = self.objective(x, report=report) if self._reports else self.objective(x)
            value, partials = _split(raw)
        except Exception:
            core.failed(cmd.worker, cmd.eval_id, cmd.attempt, traceback.format_exc(limit=5))
            return
        for p in partials:
            report(p)
        core.completed(cmd.worker, cmd.eval_id, cmd.attempt, value)


class EvaluationKilled(TetherError):
    """Raised inside ``report()`` once the evaluation was killed, so that a pool thread
    (which Python cannot stop) can end its work early, e.g. terminate a subprocess."""


def _call(objective: Objective, x: np.ndarray, report: Callable[..., None] | None) -> Any:
    if report is not None:
        return objective(x, report=report)
    return objective(x)


class PoolController:
    """Evaluates proposals on a pool of ``workers`` threads (or processes), in real time.

    ``processes=True`` uses a process pool, for objectives that hold the GIL; the
    objective must then be picklable (a module-level function) and cannot stream
    partial results. Python cannot stop a running thread, so a killed evaluation's
    thread runs on until it calls ``report()``, which then raises
    :class:`EvaluationKilled`; its result is dropped and its slot is reused at once.
    """

    def __init__(self, space: Space, strategy: Strategy, objective: Objective, *,
                 workers: int = 4, processes: bool = False,
                 settings: RunSettings | None = None) -> None:
        self.journal = MemoryJournal()
        self.settings = settings or RunSettings()
        self.core = ControllerCore(space, strategy, self.settings, self.journal, time.time,
                                   {"strategy": {"name": strategy.name}, "space": space.to_json()})
        self.objective = objective
        self.n_workers = workers
        self.processes = processes
        self._reports = not processes and "report" in inspect.signature(objective).parameters
        self._partials: queue.SimpleQueue[tuple[Dispatch, float]] = queue.SimpleQueue()
        self._running: dict[Future[Any], Dispatch] = {}
        self._killed: set[int] = set()  # eval ids; read by pool threads in report()

    def run(self) -> RunResult:
        t0 = time.perf_counter()
        pool_cls = ProcessPoolExecutor if self.processes else ThreadPoolExecutor
        with pool_cls(max_workers=self.n_workers) as pool:
            core = self.core
            core.start()
            for i in range(self.n_workers):
                core.join(f"pool-{i}")
            while core.finished is None:
                self._apply_commands(pool)
                if core.finished is not None:
                    break
                if not self._running:
                    core.tick()
                    if not core.commands and core.finished is None:
                        core.end("stalled: nothing running and the strategy proposes nothing")
                    continue
                done, _ = wait(list(self._running), timeout=self._wait_time(),
                               return_when=FIRST_COMPLETED)
                self._drain_partials()
                for fut in done:
                    self._deliver(self._running.pop(fut), fut)
                core.tick()
            for fut in self._running:
                fut.cancel()
        return RunResult(dict(core.view.records), self.journal.events,
                         time.perf_counter() - t0, core.finished or "")

    def _wait_time(self) -> float:
        # wake up for timeouts and max_time; partial results are picked up then too
        return 0.05 if self._reports else min(1.0, self.settings.eval_timeout)

    def _apply_commands(self, pool: Executor) -> None:
        for cmd in self.core.take_commands():
            if isinstance(cmd, Dispatch):
                x = np.asarray(cmd.x, dtype=float)
                report = self._reporter(cmd) if self._reports else None
                self._running[pool.submit(_call, self.objective, x, report)] = cmd
            elif isinstance(cmd, SendKill):
                for fut, d in list(self._running.items()):
                    if d.eval_id == cmd.eval_id and d.worker == cmd.worker:
                        fut.cancel()
                        del self._running[fut]
                        self._killed.add(cmd.eval_id)
                self.core.killed(cmd.worker, cmd.eval_id, cmd.attempt, cmd.reason)

    def _reporter(self, cmd: Dispatch) -> Callable[..., None]:
        def report(value: float, **info: Any) -> None:
            if cmd.eval_id in self._killed:
                raise EvaluationKilled(f"evaluation {cmd.eval_id} was killed")
            self._partials.put((cmd, float(value)))
        return report

    def _drain_partials(self) -> None:
        while not self._partials.empty():
            cmd, value = self._partials.get()
            self.core.partial(cmd.worker, cmd.eval_id, cmd.attempt, value)

    def _deliver(self, cmd: Dispatch, fut: Future[Any]) -> None:
        exc = fut.exception()
        if exc is not None:
            text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__, limit=5))
            self.core.failed(cmd.worker, cmd.eval_id, cmd.attempt, text)
            return
        try:
            value, partials = _split(fut.result())
        except (TypeError, ValueError) as err:
            self.core.failed(cmd.worker, cmd.eval_id, cmd.attempt, f"bad objective result: {err}")
            return
        for p in partials:
            self.core.partial(cmd.worker, cmd.eval_id, cmd.attempt, p)
        self.core.completed(cmd.worker, cmd.eval_id, cmd.attempt, value)
