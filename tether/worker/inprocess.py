"""``tether worker --python MOD:FN --in-process``: the objective runs in the agent itself.

For cheap, trusted objectives (microseconds to milliseconds), the child process of
:class:`~tether.worker.pyeval.PythonEvaluator` costs more than the objective: a pipe
round trip and two context switches per evaluation, and one more process per slot on a
machine that may have two cores. Here the function is called from the agent's loop, as
POAP's socket workers do. What that gives up (see docs/cli.md, "In-process evaluation"):

- one evaluation at a time (``--slots 1``); prefetched evaluations still queue behind it;
- nothing can interrupt a running call: the agent reads its socket only between
  evaluations, so a kill or timeout that arrives meanwhile is obeyed when the call returns
  (the controller has already recorded the evaluation as killed and drops the result);
- no heartbeat while the call runs: one longer than the controller's liveness window
  (heartbeat x liveness, 3 s by default) gets the worker declared lost and its work
  re-queued, so a warning is logged once for any call longer than ``warn_after``;
- ``report()`` partials are delivered with the result, not while the call runs;
- a crash of the objective (segfault, ``os._exit``) ends the agent: the controller sees a
  lost worker and re-queues what it held, as for any dead worker.
"""

from __future__ import annotations

import logging
import math
import time
import traceback
from collections.abc import Sequence
from typing import Any

import numpy as np

from tether.errors import ConfigError
from tether.worker import pychild
from tether.worker.evaluators import Done, Output, PartialOut

log = logging.getLogger("tether.worker")


class InProcessEvaluator:
    """Calls ``module:function`` in this process, one evaluation at a time."""

    def __init__(self, target: str, warn_after: float = 1.0) -> None:
        if ":" not in target:
            raise ConfigError(f"--python needs module:function, got {target!r}")
        try:  # loaded now: a bad target is reported before the worker connects
            self.fn = pychild.load(target)
        except Exception as exc:
            raise ConfigError(f"--python {target}: cannot load: "
                              f"{type(exc).__name__}: {exc}") from None
        self.takes_report = pychild.accepts_report(self.fn)
        self.warn_after = warn_after
        self._warned = False

    def start(self, eval_id: int, x: Sequence[float], names: Sequence[str]) -> InProcessRun:
        return InProcessRun(self, x)

    def call(self, x: Sequence[float]) -> list[Output]:
        """Run the objective once; its partials, then its outcome."""
        out: list[Output] = []

        def report(value: float, **info: Any) -> None:
            v = float(value)
            if math.isfinite(v):
                out.append(PartialOut(v, pychild.plain_info(info)))

        t0 = time.monotonic()
        try:
            arr = np.asarray(x, dtype=float)
            raw = self.fn(arr, report=report) if self.takes_report else self.fn(arr)
            done = Done(True, pychild.objective_value(raw))
        except (Exception, SystemExit) as exc:  # the objective's failure, not the agent's
            tb = traceback.format_exc(limit=8)
            done = Done(False, error=f"{type(exc).__name__}: {exc}\n{tb}")
        took = time.monotonic() - t0
        if took > self.warn_after and not self._warned:
            self._warned = True
            log.warning("an in-process evaluation took %.1f s: the agent cannot heartbeat "
                        "while it runs, and the controller declares a worker lost after its "
                        "liveness window; run such objectives without --in-process", took)
        out.append(done)
        return out

    def close(self) -> None:
        pass


class InProcessRun:
    """One evaluation; it runs at its first :meth:`poll`, which the agent makes without
    waiting on any descriptor (:meth:`due`), after reading everything already received."""

    def __init__(self, ev: InProcessEvaluator, x: Sequence[float]) -> None:
        self.ev = ev
        self.x = x
        self.done = False

    def fds(self) -> list[int]:
        return []

    def due(self) -> bool:
        return not self.done

    def poll(self, now: float) -> list[Output]:
        if self.done:
            return []
        self.done = True
        return self.ev.call(self.x)

    def kill(self, now: float, hard: bool = False) -> None:
        # not started yet (a kill read in the same turn as its evaluate): never runs
        self.done = True

    def reaped(self) -> bool:
        return self.done
