"""The strategy interface shared by every controller (distributed, serial, pool, simulated).

A strategy is pulled, as in POAP: whenever the controller can act (a worker slot is free
and the budget still needs evaluations) it calls :meth:`Strategy.propose`, which returns
one :class:`~tether.records.Evaluate`, :class:`~tether.records.Kill` or
:class:`~tether.records.Terminate`, or ``None`` to wait. The controller then calls
:meth:`Strategy.on_accepted` or :meth:`Strategy.on_rejected`, and tells the strategy of
every event on every record through :meth:`Strategy.on_event`.

Rule for resumable strategies: the state a strategy keeps must be a function of the
event stream it was told (``on_event``), because ``tether controller --resume`` rebuilds
it by replaying the log's events and never calls ``propose`` for what was already done.
Randomness therefore draws from generators keyed by the number of proposals seen
(:func:`rng_for`), not from one long-lived generator.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, TypeVar, cast

import numpy as np

from tether.errors import ConfigError
from tether.records import Kill, Proposal, Record, RunView, Terminate
from tether.space import Space


class Strategy(ABC):
    """Base class: override :meth:`propose`; the hooks default to doing nothing."""

    #: config name, written into the log's ``run_started`` event
    name: str = "strategy"
    #: proposals the controller may ask for and hold while every worker is busy, so a
    #: worker that frees up is handed its next point at once instead of waiting for the
    #: ask (which then overlaps the running evaluations). 0: ask only for a free worker.
    ask_ahead: int = 0
    #: default ``[run] prefetch``: evaluations a worker may hold queued beyond its slots,
    #: so it never waits a round trip between two. A point handed out early was chosen
    #: with fewer results known, so model-based strategies keep 0; samplers whose points do
    #: not depend on results say ``"auto"`` (each worker's queue sized from its durations).
    prefetch: int | str = 0

    @abstractmethod
    def propose(self, view: RunView) -> Proposal | None:
        """Return the next action, or ``None`` when there is nothing to do yet."""

    def interrupt(self, view: RunView) -> Kill | Terminate | None:
        """An action that cannot wait for a free worker (e.g. an early-stopping kill).

        Called whenever the controller acts (after every event), whether or not a worker
        is free; return ``None`` when there is nothing urgent (the default).
        """
        return None

    def on_accepted(self, proposal: Proposal, record: Record | None) -> None:
        """The controller carried out ``proposal`` (``record`` is the new or target record)."""

    def on_rejected(self, proposal: Proposal, reason: str) -> None:
        """The controller refused ``proposal`` (bad point, unknown evaluation, no slot)."""

    def on_event(self, kind: str, record: Record, view: RunView) -> None:
        """``record`` (the snapshot after the event) had event ``kind`` (see records.EVENT_KINDS)."""

    def warm_start(self, records: Sequence[Record]) -> None:
        """Prior data: completed evaluations of another run, told once before the run.

        The records are not part of this run (they do not count towards the budget and
        are not in ``view.records``); a strategy may use them as a surrogate's training
        data or as starting points. The caller must tell the same records again before
        replaying a log on resume. The default ignores them.
        """


class StrategyFactory(Protocol):
    """What ``module:factory`` in the config must name."""

    def __call__(self, space: Space, budget: int, options: Mapping[str, Any]) -> Strategy: ...


def rng_for(seed: int | None, counter: int) -> np.random.Generator:
    """A generator that depends only on (seed, counter), so replays draw the same numbers."""
    if seed is None:
        return np.random.default_rng()
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, int(counter)])


T = TypeVar("T")


class Options:
    """Typed access to a ``[strategy]`` table that reports unknown keys as config errors."""

    def __init__(self, strategy: str, options: Mapping[str, Any]) -> None:
        self._name = strategy
        self._left = dict(options)

    def get(self, key: str, default: T, kind: type | tuple[type, ...]) -> T:
        """The option's value, checked against ``kind`` (ints are accepted as floats)."""
        if key not in self._left:
            return default
        value = self._left.pop(key)
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if isinstance(value, bool) and kind is not bool and bool not in _as_tuple(kind):
            raise ConfigError(f"[strategy] {key} must be {_kind_name(kind)}, got {value!r}")
        if not isinstance(value, kind):
            raise ConfigError(f"[strategy] {key} must be {_kind_name(kind)}, got {value!r}")
        return cast(T, value)  # checked against kind above; T is what the caller declared

    def done(self) -> None:
        """Raise if the table had keys this strategy does not know."""
        if self._left:
            keys = ", ".join(sorted(self._left))
            raise ConfigError(f"[strategy] unknown option(s) for {self._name!r}: {keys}")


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _kind_name(kind: type | tuple[type, ...]) -> str:
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
    return " or ".join(names.get(k, k.__name__) for k in _as_tuple(kind))
