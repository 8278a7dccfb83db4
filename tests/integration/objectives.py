"""Objectives the integration tests hand to real workers (importable by worker processes)."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from tether.records import Proposal, RunView
from tether.space import Space
from tether.strategies.base import Strategy
from tether.strategies.sampling import RandomSampling


def quadratic(x: np.ndarray) -> float:
    return float(np.sum((x - 0.3) ** 2))


def streaming(x: np.ndarray, report: Any) -> float:
    value = float(np.sum(x))
    for step in range(3):
        report(value + 3 - step, step=step)
    return value


def raises_left(x: np.ndarray) -> float:
    if x[0] < 0.5:
        raise RuntimeError(f"left half is forbidden: x0={x[0]:.4f}")
    return float(x[0])


def slow(x: np.ndarray) -> float:
    """Runs until killed unless TETHER_TEST_SLOW_DONE exists (used by kill/timeout tests)."""
    flag = os.environ.get("TETHER_TEST_FLAG", "")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if flag and os.path.exists(flag):
            return float(x[0])
        time.sleep(0.01)
    return float(x[0])


def sleepy(x: np.ndarray) -> float:
    """Takes 50-250 ms: long enough to be caught mid-evaluation by a fault."""
    time.sleep(0.05 + 0.2 * float(x[0]))
    return float(np.sum((x - 0.3) ** 2))


def brief(x: np.ndarray) -> float:
    """Takes 2 ms: auto prefetch queues about 25 of these at a worker (50 ms of work)."""
    time.sleep(0.002)
    return float(np.sum((x - 0.3) ** 2))


def hangs_left(x: np.ndarray) -> float:
    """Never returns (until killed) when x0 < 0.3; quick otherwise."""
    while x[0] < 0.3:
        time.sleep(0.05)
    return float(x[0])


def slow_asks(space: Space, budget: int, options: Mapping[str, Any]) -> Strategy:
    """Random sampling whose every ask after the first two blocks the controller's loop
    for ``ask_seconds`` (a stand-in for a model fit on many observations)."""
    seconds = float(options.get("ask_seconds", 1.5))

    class SlowAsks(RandomSampling):
        name = "slow-asks"
        prefetch = 0  # it stands for a model-based strategy

        def propose(self, view: RunView) -> Proposal | None:
            if len(view.records) >= 2:
                time.sleep(seconds)
            return super().propose(view)

    return SlowAsks(space, seed=0)


def breaks_after(space: Space, budget: int, options: Mapping[str, Any]) -> Strategy:
    """Random sampling that raises on its ``after``-th ask, unless TETHER_TEST_FIXED is
    set (the user fixed the strategy before resuming)."""
    after = int(options.get("after", 5))

    class Breaks(RandomSampling):
        name = "breaks"

        def propose(self, view: RunView) -> Proposal | None:
            if len(view.records) >= after and not os.environ.get("TETHER_TEST_FIXED"):
                raise ZeroDivisionError("the model blew up")
            return super().propose(view)

    return Breaks(space, seed=0)


def stalls_left_until_timed_out(x: np.ndarray) -> float:
    """For x0 < 0.3, returns only once the run's log (TETHER_TEST_LOG) records an
    evaluation killed for its timeout (capped at 60 s): an in-process evaluation that is
    certain to outlive its eval_timeout without the test sleeping on a guess."""
    log = os.environ.get("TETHER_TEST_LOG", "")
    deadline = time.monotonic() + 60
    while x[0] < 0.3 and time.monotonic() < deadline:
        with contextlib.suppress(OSError), open(log) as fh:
            if "eval_timeout (" in fh.read():  # the kill, not the settings
                break
        time.sleep(0.02)
    return float(x[0])


def traced(x: np.ndarray) -> float:
    """Appends "x0 pid" to $TETHER_TEST_TRACE as it starts; when x1 > 0.5 it then waits
    (at most 60 s) for the file $TETHER_TEST_GATE.<round(10 x0)> before returning x0."""
    with open(os.environ["TETHER_TEST_TRACE"], "a") as fh:
        fh.write(f"{x[0]:.1f} {os.getpid()}\n")
    gate = f"{os.environ.get('TETHER_TEST_GATE', '')}.{round(10 * x[0])}"
    deadline = time.monotonic() + 60
    while x[1] > 0.5 and not os.path.exists(gate) and time.monotonic() < deadline:
        time.sleep(0.005)
    return float(x[0])
