"""Early stopping on learning curves: kill evaluations that trail the median.

In process (a thread pool runs the subprocess objective below)::

    python examples/early_stopping.py

On a cluster the same strategy runs in the controller as a user strategy, and the
workers run the program directly (a kill terminates its process group)::

    tether controller run.toml --strategy examples.early_stopping:make_strategy
    tether worker --connect tcp://HOST:5555 \\
        --command "python examples/learning_curve.py {x0} {x1}"
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from tether.controller.local import PoolController
from tether.controller.settings import RunSettings
from tether.errors import EvaluationError
from tether.records import Status
from tether.space import Space
from tether.strategies.base import Options, Strategy
from tether.strategies.earlystop import MedianStopping
from tether.strategies.sampling import RandomSampling

SCRIPT = Path(__file__).with_name("learning_curve.py")
EPOCH_DELAY = 0.02  # seconds per simulated epoch


def make_strategy(space: Space, budget: int, options: Mapping[str, Any]) -> Strategy:
    """A ``module:factory`` for the config: random search with median stopping."""
    o = Options("examples.early_stopping", options)
    inner = RandomSampling(space, seed=o.get("seed", 0, int))
    s = MedianStopping(inner, min_steps=o.get("min_steps", 2, int),
                       min_others=o.get("min_others", 3, int))
    o.done()
    return s


def run_program(x: np.ndarray, report: Callable[..., None]) -> float:
    """Run learning_curve.py, stream its partial lines, stop it if the run kills us."""
    cmd = [sys.executable, str(SCRIPT), *(repr(float(v)) for v in x),
           "--delay", repr(EPOCH_DELAY)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    value: float | None = None
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            kind, _, text = line.strip().partition(" ")
            if kind == "tether:partial":
                report(float(text))  # raises EvaluationKilled once we were killed
            elif kind == "tether:value":
                value = float(text)
    finally:
        if proc.poll() is None:
            proc.terminate()
        proc.wait()
    if value is None:
        raise EvaluationError(f"{SCRIPT.name} exited {proc.returncode} without a value")
    return value


def main() -> None:
    space = Space.unit(2)
    strategy = make_strategy(space, 24, {"seed": 1})
    res = PoolController(space, strategy, run_program, workers=4,
                         settings=RunSettings(budget=24)).run()
    killed = [r for r in res.records.values() if r.status is Status.KILLED]
    print(f"{len(res.completed)} completed, {len(killed)} stopped early "
          f"(after {np.mean([len(r.partials) for r in killed]) if killed else 0:.1f} of 8 "
          f"epochs on average), best {res.best.value if res.best else None}")


if __name__ == "__main__":
    main()
