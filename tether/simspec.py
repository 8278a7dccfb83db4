"""What ``tether simulate`` is given as text: duration specs and ``module:function`` targets."""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from tether.errors import ConfigError

#: simulated seconds an evaluation of the point takes
Duration = Callable[[np.ndarray], float]

DURATION_FORMS = "const[:SECONDS], uniform:A:B, lognormal:MU:SIGMA or module:function"


def load_function(target: str, option: str) -> Callable[..., Any]:
    """Import ``module:function`` (dots in the function part walk attributes)."""
    mod_name, sep, attr = target.partition(":")
    if not sep or not mod_name or not attr:
        raise ConfigError(f"{option} needs module:function, got {target!r}")
    try:
        obj: Any = importlib.import_module(mod_name)
    except Exception as exc:  # the user's module may fail to import in any way
        raise ConfigError(f"{option} {target}: cannot import {mod_name!r}: "
                          f"{type(exc).__name__}: {exc}") from None
    for part in attr.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise ConfigError(f"{option} {target}: {mod_name!r} has no {attr!r}")
    if not callable(obj):
        raise ConfigError(f"{option} {target}: not callable")
    return obj


def _numbers(spec: str, parts: list[str], want: int) -> list[float]:
    if len(parts) != want:
        raise ConfigError(f"--durations {spec!r}: expected {DURATION_FORMS}")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise ConfigError(f"--durations {spec!r}: not a number in {':'.join(parts)!r}") from None
    if not all(math.isfinite(v) for v in values):
        raise ConfigError(f"--durations {spec!r}: numbers must be finite")
    return values


def parse_durations(spec: str, seed: int) -> Duration:
    """The duration function of one run; random durations are drawn in dispatch order
    from a generator keyed by the run's ``seed`` (reproducible, whatever ``--jobs``)."""
    kind, _, rest = spec.partition(":")
    parts = rest.split(":") if rest else []
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 0xD0])
    if kind == "const":
        (seconds,) = _numbers(spec, parts, 1) if parts else [1.0]
        if seconds <= 0:
            raise ConfigError(f"--durations {spec!r}: SECONDS must be > 0")
        return lambda x: seconds
    if kind == "uniform":
        a, b = _numbers(spec, parts, 2)
        if not 0 <= a <= b or b <= 0:
            raise ConfigError(f"--durations {spec!r}: need 0 <= A <= B and B > 0")
        return lambda x: float(rng.uniform(a, b))
    if kind == "lognormal":
        mu, sigma = _numbers(spec, parts, 2)
        if sigma < 0:
            raise ConfigError(f"--durations {spec!r}: SIGMA must be >= 0")
        return lambda x: float(rng.lognormal(mu, sigma))
    if not rest:
        raise ConfigError(f"--durations {spec!r}: expected {DURATION_FORMS}")
    return _checked(spec, load_function(spec, "--durations"))


def _checked(spec: str, fn: Callable[..., Any]) -> Duration:
    def duration(x: np.ndarray) -> float:
        try:
            value = float(fn(x))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"--durations {spec} did not return a number: {exc}") from None
        if not (math.isfinite(value) and value >= 0):
            raise ConfigError(f"--durations {spec} returned {value!r} at x={list(x)}; "
                              "durations must be finite and >= 0")
        return value
    return duration


def make_objective(target: str) -> Callable[..., Any]:
    """The stand-in, called as a worker calls an objective (the simulated controller takes
    care of ``report`` and of refusing what a worker would refuse)."""
    return load_function(target, "--python")


