"""Composition (POAP's): merged strategies, retries, input checks, and the wrapper base.

- :class:`Merged` runs several strategies together; every child is told every event,
  whoever proposed the evaluation, so a local optimizer started beside DYCORS sees
  DYCORS's points and the other way round. ``mode="cycle"`` asks the children in turn,
  ``"priority"`` takes the first child that proposes (POAP's multistart), ``"best"``
  asks them all and keeps the point a shared RBF surrogate of all results rates lowest.
- :class:`Retry` re-proposes a point whose evaluation failed, up to ``max_failures``
  attempts in all, then abandons it.
- :class:`Checked` guards against a strategy proposing points outside the box or with
  non-finite coordinates: it projects onto the box (or rejects) and never lets a
  broken strategy make the controller spin.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tether.errors import ConfigError
from tether.records import (
    FAILED,
    PROPOSED,
    Evaluate,
    Kill,
    Proposal,
    Record,
    RunView,
    Terminate,
)
from tether.space import Space
from tether.strategies.base import Strategy
from tether.strategies.rbf import CubicRBF


class Wrapper(Strategy):
    """Forwards everything to ``inner``; subclasses override what they change."""

    def __init__(self, inner: Strategy) -> None:
        self.inner = inner
        self.name = inner.name

    def propose(self, view: RunView) -> Proposal | None:
        return self.inner.propose(view)

    def interrupt(self, view: RunView) -> Kill | Terminate | None:
        return self.inner.interrupt(view)

    def on_accepted(self, proposal: Proposal, record: Record | None) -> None:
        self.inner.on_accepted(proposal, record)

    def on_rejected(self, proposal: Proposal, reason: str) -> None:
        self.inner.on_rejected(proposal, reason)

    def on_event(self, kind: str, record: Record, view: RunView) -> None:
        self.inner.on_event(kind, record, view)

    def warm_start(self, records: Sequence[Record]) -> None:
        self.inner.warm_start(records)


class Merged(Strategy):
    """Several strategies sharing one run; see the module docstring for the modes."""

    MODES = ("cycle", "priority", "best")

    def __init__(self, space: Space, children: Sequence[Strategy], mode: str = "cycle") -> None:
        if not children:
            raise ConfigError("merged strategy needs at least one child")
        if mode not in self.MODES:
            raise ConfigError(f"merged mode must be one of {', '.join(self.MODES)}, got {mode!r}")
        self.space = space
        self.children = list(children)
        self.mode = mode
        self.name = "+".join(c.name for c in self.children)
        self.n_proposed = 0  # from PROPOSED events, so the cycle survives a replay
        self._from: dict[int, int] = {}  # id(proposal) -> child index, until answered
        self._model = CubicRBF()

    def _order(self) -> list[int]:
        n = len(self.children)
        if self.mode == "cycle":
            return [(self.n_proposed + k) % n for k in range(n)]
        return list(range(n))

    def propose(self, view: RunView) -> Proposal | None:
        offers: list[tuple[int, Proposal]] = []
        for i in self._order():
            p = self.children[i].propose(view)
            if p is None:
                continue
            if self.mode != "best" or not isinstance(p, Evaluate):
                return self._remember(i, p)
            offers.append((i, p))
        if not offers:
            return None
        i, p = offers[self._most_promising([p for _, p in offers], view)]
        return self._remember(i, p)

    def _remember(self, i: int, p: Proposal) -> Proposal:
        self._from = {id(p): i}
        return p

    def _most_promising(self, offers: list[Proposal], view: RunView) -> int:
        done = list(view.completed())
        if len(offers) == 1 or len(done) < CubicRBF.min_points(self.space.dim):
            return 0
        x = self.space.to_unit(np.array([r.x for r in done]))
        self._model.fit(x, np.array([r.value for r in done], dtype=float))
        pts = self.space.to_unit(np.array([p.x for p in offers if isinstance(p, Evaluate)]))
        return int(np.argmin(self._model.predict(pts)))

    def _child_of(self, proposal: Proposal) -> Strategy | None:
        i = self._from.pop(id(proposal), None)
        return None if i is None else self.children[i]

    def interrupt(self, view: RunView) -> Kill | Terminate | None:
        for c in self.children:
            action = c.interrupt(view)
            if action is not None:
                return action
        return None

    def on_accepted(self, proposal: Proposal, record: Record | None) -> None:
        child = self._child_of(proposal)
        if child is not None:
            child.on_accepted(proposal, record)

    def on_rejected(self, proposal: Proposal, reason: str) -> None:
        child = self._child_of(proposal)
        if child is not None:
            child.on_rejected(proposal, reason)

    def on_event(self, kind: str, record: Record, view: RunView) -> None:
        if kind == PROPOSED:
            self.n_proposed += 1
        for c in self.children:
            c.on_event(kind, record, view)

    def warm_start(self, records: Sequence[Record]) -> None:
        for c in self.children:
            c.warm_start(records)


class Retry(Wrapper):
    """Re-propose points whose evaluation failed, ``max_failures`` attempts in all.

    Failures are counted per point (the coordinates), across records. Retries go out
    before anything new, tagged ``<original tag>:retry`` so that the inner strategy
    does not take them for new proposals of its own (it still sees all their events).
    Killed evaluations are not retried (a kill is deliberate).
    """

    def __init__(self, inner: Strategy, max_failures: int = 3) -> None:
        super().__init__(inner)
        if max_failures < 1:
            raise ConfigError(f"max_failures must be >= 1, got {max_failures}")
        self.max_failures = max_failures
        self.failures: dict[tuple[float, ...], int] = {}
        self.to_retry: list[tuple[tuple[float, ...], str]] = []
        self.abandoned: list[tuple[float, ...]] = []

    def propose(self, view: RunView) -> Proposal | None:
        if self.to_retry:
            x, tag = self.to_retry[0]
            return Evaluate(x, tag)
        return self.inner.propose(view)

    def on_accepted(self, proposal: Proposal, record: Record | None) -> None:
        if not (self.to_retry and isinstance(proposal, Evaluate)
                and (proposal.x, proposal.tag) == self.to_retry[0]):
            self.inner.on_accepted(proposal, record)

    def on_rejected(self, proposal: Proposal, reason: str) -> None:
        if self.to_retry and isinstance(proposal, Evaluate) and proposal.x == self.to_retry[0][0]:
            self.abandoned.append(self.to_retry.pop(0)[0])  # the core refuses it: give up
            return
        self.inner.on_rejected(proposal, reason)

    def on_event(self, kind: str, record: Record, view: RunView) -> None:
        if kind == PROPOSED and (record.x, record.tag) in self.to_retry:
            self.to_retry.remove((record.x, record.tag))
        elif kind == FAILED:
            n = self.failures.get(record.x, 0) + 1
            self.failures[record.x] = n
            if n < self.max_failures:
                self.to_retry.append((record.x, _retry_tag(record.tag)))
            else:
                self.abandoned.append(record.x)
        self.inner.on_event(kind, record, view)


def _retry_tag(tag: str) -> str:
    base = tag.removesuffix(":retry")
    return f"{base}:retry" if base else "retry"


class Checked(Wrapper):
    """Validate the inner strategy's points before the controller sees them.

    Non-finite coordinates or a wrong length: the inner strategy is told the proposal
    was rejected and asked again, up to ``max_bad`` times per call; then the wrapper
    waits (``None``), or ends the run if nothing is in flight, instead of spinning.
    Points outside the box are projected onto it (``clip=True``) or rejected.
    """

    def __init__(self, space: Space, inner: Strategy, *, clip: bool = True,
                 max_bad: int = 10) -> None:
        super().__init__(inner)
        self.space = space
        self.clip = clip
        self.max_bad = max_bad
        self.rejected = 0

    def propose(self, view: RunView) -> Proposal | None:
        for _ in range(self.max_bad):
            p = self.inner.propose(view)
            if not isinstance(p, Evaluate):
                return p
            problem, fixed = self._check(p)
            if not problem:
                return fixed
            self.rejected += 1
            self.inner.on_rejected(p, problem)
        if view.n_in_flight == 0:
            return Terminate(f"strategy {self.inner.name!r} keeps proposing invalid points")
        return None

    def _check(self, p: Evaluate) -> tuple[str, Evaluate]:
        problem = self.space.check_point(p.x)
        if problem != "point is outside the bounds" or not self.clip:
            return problem, p
        x = np.asarray(p.x, dtype=float)
        return "", Evaluate.at(np.clip(x, self.space.lo, self.space.hi), p.tag)

    def on_accepted(self, proposal: Proposal, record: Record | None) -> None:
        self.inner.on_accepted(proposal, record)

