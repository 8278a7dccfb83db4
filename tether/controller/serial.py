"""Evaluate proposals one at a time in this process, in real time."""

from __future__ import annotations

import time
import traceback
from typing import Any

import numpy as np

from tether.controller.core import Command, Dispatch, SendKill
from tether.controller.inprocess import InProcessController, Objective, accepts_report, evaluate
from tether.controller.settings import RunSettings
from tether.space import Space
from tether.strategies.base import Strategy


class SerialController(InProcessController):
    """One evaluation at a time, in this thread. ``objective`` may accept ``report``."""

    prefix = "serial"

    def __init__(self, space: Space, strategy: Strategy, objective: Objective,
                 settings: RunSettings | None = None) -> None:
        super().__init__(space, strategy, settings, time.time, workers=1)
        self.objective = objective
        self._reports = accepts_report(objective)

    def _obey(self, commands: list[Command]) -> None:
        for cmd in commands:
            if isinstance(cmd, Dispatch):
                self._evaluate(cmd)
            elif isinstance(cmd, SendKill):
                self.core.killed(cmd.worker, cmd.eval_id, cmd.attempt, cmd.reason)

    def _busy(self) -> bool:
        return False  # every evaluation ends inside _obey

    def _wait_and_deliver(self) -> None:  # pragma: no cover - never busy
        raise AssertionError("a serial controller never waits")

    def _evaluate(self, cmd: Dispatch) -> None:
        core = self.core

        def report(value: float, **info: Any) -> None:
            core.partial(cmd.worker, cmd.eval_id, cmd.attempt, float(value), info)

        try:
            value = evaluate(self.objective, np.asarray(cmd.x, dtype=float),
                             report if self._reports else None)
        except Exception:
            core.failed(cmd.worker, cmd.eval_id, cmd.attempt, traceback.format_exc(limit=5))
            return
        core.completed(cmd.worker, cmd.eval_id, cmd.attempt, value)
