"""The child process that runs a Python objective (kept importable and tiny: it is spawned)."""

from __future__ import annotations

import importlib
import inspect
import math
import os
import signal
import sys
import traceback
from multiprocessing.connection import Connection
from typing import Any


def load(target: str) -> Any:
    # as ``python -m`` does: a module next to where the worker was started is found
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    mod_name, _, attr = target.partition(":")
    module = importlib.import_module(mod_name)
    fn = module
    for part in attr.split("."):
        fn = getattr(fn, part)
    if not callable(fn):
        raise TypeError(f"{target} is not callable")
    return fn


def main(conn: Connection, target: str) -> None:
    # The agent owns signals: Ctrl-C in a terminal, or the SIGTERM a batch system sends to
    # every process of a job, must reach the agent and not fail the evaluation under it.
    # The agent ends this child with SIGKILL when it abandons the evaluation.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        fn = load(target)
        takes_report = accepts_report(fn)
    except Exception as exc:
        conn.send(("error", f"cannot load {target}: {type(exc).__name__}: {exc}"))
        return
    import numpy as np

    conn.send(("ready", ""))
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        if job is None:
            return
        _run(conn, fn, takes_report, np.asarray(job[1], dtype=float))


def objective_value(raw: Any) -> float:
    """The one rule for what an objective may return: a finite float (or a number)."""
    if isinstance(raw, (tuple, list)):
        raise TypeError("the objective returned a sequence: return a float, and stream "
                        "partial results with report(value)")
    value = float(raw)
    if not math.isfinite(value):
        raise ValueError(f"objective returned a non-finite value: {value}")
    return value


def accepts_report(fn: Any) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return "report" in params


def _run(conn: Connection, fn: Any, takes_report: bool, x: Any) -> None:
    def report(value: float, **info: Any) -> None:
        conn.send(("partial", (float(value), plain_info(info))))

    try:
        raw = fn(x, report=report) if takes_report else fn(x)
        value = objective_value(raw)
    except Exception as exc:
        tb = traceback.format_exc(limit=8)
        conn.send(("error", f"{type(exc).__name__}: {exc}\n{tb}"))
        return
    conn.send(("value", value))


def plain_info(info: dict[str, Any]) -> dict[str, Any]:
    # info travels in msgpack: keep only scalars a log line can hold
    return {str(k): v for k, v in info.items() if isinstance(v, (int, float, str, bool))}
