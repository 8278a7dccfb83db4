"""Evaluate proposals on a pool of threads (or processes), in real time."""

from __future__ import annotations

import queue
import time
import traceback
from collections.abc import Callable
from concurrent.futures import (
    FIRST_COMPLETED,
    Executor,
    Future,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
    wait,
)
from typing import Any

import numpy as np

from tether.controller.core import Command, Dispatch, SendKill
from tether.controller.inprocess import InProcessController, Objective, accepts_report, evaluate
from tether.controller.settings import RunSettings
from tether.errors import TetherError
from tether.space import Space
from tether.strategies.base import Strategy


class EvaluationKilled(TetherError):
    """Raised inside ``report()`` once the evaluation was killed, so that a pool thread
    (which Python cannot stop) can end its work early, e.g. terminate a subprocess."""


class PoolController(InProcessController):
    """Evaluates proposals on ``workers`` threads (or processes), in real time.

    ``processes=True`` uses a process pool, for objectives that hold the GIL; the
    objective must then be picklable (a module-level function) and cannot stream
    partial results. Python cannot stop a running thread, so a killed evaluation's
    thread runs on until it calls ``report()``, which then raises
    :class:`EvaluationKilled`; its result is dropped and its slot is reused at once.
    """

    prefix = "pool"

    def __init__(self, space: Space, strategy: Strategy, objective: Objective, *,
                 workers: int = 4, processes: bool = False,
                 settings: RunSettings | None = None) -> None:
        super().__init__(space, strategy, settings, time.time, workers)
        self.objective = objective
        self._reports = not processes and accepts_report(objective)
        self._partials: queue.SimpleQueue[tuple[Dispatch, float, dict[str, Any]]] = \
            queue.SimpleQueue()
        self._running: dict[Future[Any], Dispatch] = {}
        self._killed: set[int] = set()  # eval ids; read by pool threads in report()
        pool_cls = ProcessPoolExecutor if processes else ThreadPoolExecutor
        self._pool: Executor = pool_cls(max_workers=workers)

    def _obey(self, commands: list[Command]) -> None:
        for cmd in commands:
            if isinstance(cmd, Dispatch):
                x = np.asarray(cmd.x, dtype=float)
                report = self._reporter(cmd) if self._reports else None
                self._running[self._pool.submit(evaluate, self.objective, x, report)] = cmd
            elif isinstance(cmd, SendKill):
                for fut, d in list(self._running.items()):
                    if d.eval_id == cmd.eval_id and d.worker == cmd.worker:
                        fut.cancel()
                        del self._running[fut]
                        self._killed.add(cmd.eval_id)
                self.core.killed(cmd.worker, cmd.eval_id, cmd.attempt, cmd.reason)

    def _busy(self) -> bool:
        return bool(self._running)

    def _wait_and_deliver(self) -> None:
        # wake up for timeouts and max_time; partial results are picked up then too
        timeout = 0.05 if self._reports else min(1.0, self.settings.eval_timeout)
        done, _ = wait(list(self._running), timeout=timeout, return_when=FIRST_COMPLETED)
        while not self._partials.empty():
            cmd, value, info = self._partials.get()
            self.core.partial(cmd.worker, cmd.eval_id, cmd.attempt, value, info)
        for fut in done:
            self._deliver(self._running.pop(fut), fut)

    def _cleanup(self) -> None:
        for fut in self._running:
            fut.cancel()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _reporter(self, cmd: Dispatch) -> Callable[..., None]:
        def report(value: float, **info: Any) -> None:
            if cmd.eval_id in self._killed:
                raise EvaluationKilled(f"evaluation {cmd.eval_id} was killed")
            self._partials.put((cmd, float(value), info))
        return report

    def _deliver(self, cmd: Dispatch, fut: Future[Any]) -> None:
        exc = fut.exception()
        if exc is not None:
            text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__, limit=5))
            self.core.failed(cmd.worker, cmd.eval_id, cmd.attempt, text)
            return
        self.core.completed(cmd.worker, cmd.eval_id, cmd.attempt, fut.result())
