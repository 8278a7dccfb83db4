"""Warm start: feed a previous run's completed evaluations to a new strategy as prior data."""

from __future__ import annotations

from tether.errors import ConfigError, LogError
from tether.log.journal import read_events
from tether.log.summary import tabulate
from tether.space import Space
from tether.strategies.base import Strategy


def prior_data(path: str, space: Space) -> list[tuple[tuple[float, ...], float]]:
    """(x, value) of every completed evaluation in the log that lies inside ``space``."""
    try:
        table = tabulate(read_events(path))
    except LogError as exc:
        raise ConfigError(f"--warm-start: {exc}") from None
    out = []
    for row in table.rows.values():
        if row.status == "completed" and row.value is not None and space.contains(row.x):
            out.append((tuple(float(v) for v in row.x), float(row.value)))
    return out


def warm_start(strategy: Strategy, path: str, space: Space) -> int:
    data = prior_data(path, space)
    hook = getattr(strategy, "warm_start", None)
    if hook is None:
        raise ConfigError(f"--warm-start: strategy {strategy.name!r} takes no prior data")
    hook(data)
    return len(data)
