"""Strategies by config name, plus ``module:factory`` for user strategies.

Factories are imported lazily so that, e.g., TensorFlow loads only for ``async-bo``.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from tether.errors import ConfigError
from tether.records import Evaluate, Kill, Proposal, Terminate
from tether.space import Space
from tether.strategies.base import Options, Strategy, StrategyFactory, rng_for

# name -> "module:attribute" of a StrategyFactory
BUILTIN: dict[str, str] = {
    "random": "tether.strategies.sampling:make_random",
    "lhs": "tether.strategies.sampling:make_lhs",
    "fixed": "tether.strategies.sampling:make_fixed",
    "dycors": "tether.strategies.dycors:make_dycors",
    "local": "tether.strategies.localsearch:make_local",
    "async-bo": "tether.strategies.bo:make_async_bo",
    "batch-bo": "tether.strategies.bo:make_batch_bo",
}

__all__ = [
    "BUILTIN", "Evaluate", "Kill", "Options", "Proposal", "Strategy", "StrategyFactory",
    "Terminate", "create", "resolve", "rng_for",
]


def resolve(name: str) -> StrategyFactory:
    """Find the factory for a config name or a ``module:factory`` reference."""
    target = BUILTIN.get(name, name)
    if ":" not in target:
        known = ", ".join(sorted(BUILTIN))
        raise ConfigError(f"unknown strategy {name!r} (known: {known}, or module:factory)")
    mod_name, _, attr = target.partition(":")
    if not mod_name:
        raise ConfigError(f"strategy {name!r} is not of the form module:factory")
    try:
        module = importlib.import_module(mod_name)
    except (ImportError, ValueError, TypeError) as exc:
        raise ConfigError(f"strategy {name!r}: cannot import {mod_name!r}: {exc}") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ConfigError(f"strategy {name!r}: {mod_name!r} has no callable {attr!r}")
    return factory  # type: ignore[no-any-return,unused-ignore]


def create(name: str, space: Space, budget: int, options: Mapping[str, Any]) -> Strategy:
    strategy = resolve(name)(space, budget, options)
    if not isinstance(strategy, Strategy):
        raise ConfigError(f"strategy {name!r}: factory did not return a tether Strategy")
    return strategy
