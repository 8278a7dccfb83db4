import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from tether.controller.local import PoolController
from tether.controller.settings import RunSettings
from tether.errors import EvaluationError
from tether.records import Status
from tether.space import Space

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def test_early_stopping_example_kills_subprocesses_that_trail() -> None:
    es = _load("early_stopping")
    es.EPOCH_DELAY = 0.0
    space = Space.unit(2)
    res = PoolController(space, es.make_strategy(space, 10, {"seed": 1, "min_others": 2}),
                         es.run_program, workers=3, settings=RunSettings(budget=10)).run()
    assert res.reason == "budget"
    killed = [r for r in res.records.values() if r.status is Status.KILLED]
    assert killed and all(len(r.partials) < 8 for r in killed)
    assert all(len(r.partials) == 8 for r in res.completed)


def test_early_stopping_program_fails_cleanly_without_a_value() -> None:
    es = _load("early_stopping")
    with pytest.raises(EvaluationError, match="without a value"):
        es.run_program(np.array([0.5]), lambda v: None)  # one coordinate: usage error
