"""Independent searches ("islands") inside one ``async-bo`` run, for multimodal problems.

On Hartmann6 a single search ends in whichever basin held its deeper point early, and
the model it fits then cannot see the other basin (docs/bo.md, Known limits). Two
searches that never share data each make that draw on their own: each island is a
complete ``async-bo`` (its own start, GP, refits and end game) fed only its own results,
and the asks alternate between them. At ``handover`` of the budget the island holding
the best point gets every remaining ask, to polish its basin with its own model (whose
lengthscales were fitted on that basin, not on a mixture).

With ``stagger`` > 0 the islands are not independent: island ``i`` starts only once
``i * stagger`` of the budget is out (it then asks alone until it has half as many
points as the earlier island had, CATCH_UP), from a Sobol design, and keeps out of a box
around each earlier island's best point (AVOID_RADIUS fitted lengthscales of that
island's GP per axis). Independent islands each fall into the local basin of Hartmann6
with probability about 0.55; an island that cannot enter the basin the first one chose
has to find another (docs/bo.md, Islands).

With ``yield_logei`` an island whose ask has a penalized log-EI below it (its model
expects nothing more from its basin) yields the ask to the next island, unless that one
is below it too: a converged island no longer takes every other ask from one still
climbing another basin (docs/bo.md, Sixth pass). When every island has converged, the
one holding the run's best asks (Ninth pass).

With ``handover_wait`` the hand-over waits for islands still climbing: after
``handover`` of the budget an island stays in while its model's lower bound, in a box
around its best point, is below the run's best value (WAIT_RADIUS, WAIT_SDS). The best
island asks first and keeps its asks until it yields (``yield_logei``); only then does
an island still climbing ask. A fixed hand-over gave the run to a converged island in
the local basin while the island in the global basin was still climbing towards a
deeper value (docs/bo.md, Sixth and Seventh pass).

Everything is read from the view: a point's island is in its tag
(``async-bo:island<i>:<tag of the island's own proposal>``), so a resumed run rebuilds
each island's data, pending points and explorer state.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Sequence

import numpy as np

from tether.records import Evaluate, Proposal, Record, RunView
from tether.space import Space
from tether.strategies.base import Strategy
from tether.strategies.bo.strategy import BayesOpt

_TAG = re.compile(r"^async-bo:island(\d+):(.*)$", re.S)
# Half-width of the box a staggered island avoids around an earlier island's best point,
# in that island's fitted lengthscales per axis, clipped to [AVOID_MIN, AVOID_MAX] of the
# cube; an axis whose lengthscale is AVOID_LONG or more is one the basin ignores, and the
# box spans it whole (Hartmann6's local basin ignores x3 and x5, lengthscales 2-8 there:
# a box clipped in those axes let the second island climb the same bump at another x3).
# At most 0.4 in the other axes keeps the global minimizer, 0.6-0.7 away from the local
# one in x2 and x6, outside the box.
AVOID_RADIUS = 2.0
AVOID_MIN, AVOID_MAX = 0.05, 0.4
AVOID_LONG = 1.0
# A staggered island asks alone until it has CATCH_UP of the points the earlier island
# had at its start, then they alternate. Catching up fully froze the first island for a
# third of the run, and one in the global basin (slow to climb) then lost the hand-over
# unconverged; not catching up at all left the second island too few points to find and
# climb another basin (docs/bo.md, Islands: 100 seeds each, 17 / 18 / 32 trapped).
CATCH_UP = 0.5
# The default of ``yield_logei``: an island whose ask has a penalized log-EI (its own
# standardized units) below it yields to an island above it. Off by default; -5 is the
# measured value with staggered islands (docs/bo.md, Sixth pass).
YIELD_LOGEI = -math.inf
# ``handover_wait``: after the hand-over an island keeps asking while the lowest of its
# posterior's mean - WAIT_SDS sd, in a box of WAIT_RADIUS fitted lengthscales per axis
# around its best point, is below the run's best value. The mean alone (0 sd) never
# kept the island climbing the global basin of seed 210 (at -2.94 against -3.196, its
# mean predicted -3.04); 3 sd kept islands that were hopeless as well, and their asks cost
# the winners' last digits (docs/bo.md, Seventh pass: screens with 1, 2 and 3 sd).
WAIT_RADIUS = 1.0
WAIT_SDS = 2.0


class Islands(Strategy):
    """``islands`` independent searches, then a hand-over to the best one."""

    name = "async-bo"

    def __init__(self, space: Space, budget: int, islands: int, handover: float,
                 make: Callable[[int, int], Strategy], stagger: float = 0.0,
                 yield_logei: float = -math.inf, handover_wait: bool = False) -> None:
        """``make(i, budget)`` builds island ``i``'s strategy for that budget."""
        self.space, self.budget, self.k, self.handover = space, budget, islands, handover
        self.stagger = stagger
        self.yield_logei = yield_logei
        self.handover_wait = handover_wait
        self.shares = [budget // islands + (i < budget % islands) for i in range(islands)]
        self.subs = [make(i, self.shares[i]) for i in range(islands)]
        for sub in self.subs:  # its polish phase is the end of the run, not of its share
            if hasattr(sub, "run_budget"):
                sub.run_budget = budget

    @staticmethod
    def island_of(rec: Record) -> tuple[int, str]:
        """(island, the island's own tag) of a record; (-1, tag) if it has none."""
        m = _TAG.match(rec.tag)
        return (int(m.group(1)), m.group(2)) if m else (-1, rec.tag)

    def _counts(self, view: RunView) -> list[int]:
        counts = [0] * self.k
        for rec in view.records.values():
            i, _ = self.island_of(rec)
            if i >= 0:
                counts[i] += 1
        return counts

    def _alive(self, view: RunView, asking: bool = False) -> list[int]:
        """The islands still asking: all, then after ``handover`` the one holding the
        best point (with ``handover_wait`` and ``asking``: and those still climbing).
        Read from the view at every ask, so a replay agrees (up to the refits)."""
        best = view.best
        started = [i for i in range(self.k) if len(view.records) >= i * self.stagger * self.budget]
        if best is not None and self._handed_over(view):
            w, _ = self.island_of(best)
            if w >= 0:  # a warm-start record is the best: keep alternating
                if not (self.handover_wait and asking):
                    return [w]
                assert best.value is not None
                return [i for i in started if i == w or self._climbing(view, i, best.value)]
        return started

    def _handed_over(self, view: RunView) -> bool:
        return len(view.records) >= self.handover * self.budget

    def _climbing(self, view: RunView, i: int, best: float) -> bool:
        """Whether island ``i``'s model predicts a value below ``best`` near its best point."""
        sub, me = self._view(view, i, self.budget), self.subs[i]
        if not isinstance(me, BayesOpt) or me.in_design_phase(sub):
            return False
        return me.predicted_min(sub, WAIT_RADIUS, WAIT_SDS) < best

    def _budgets(self, view: RunView, counts: list[int],
                 asking: bool = False) -> tuple[list[int], list[int]]:
        """Each island's budget, and the islands still asking.

        An island that lost the hand-over stops where it is; an island still asking
        sees the run's remaining budget as its own, so its end game (``exploit``,
        ``polish``) runs at the end of the run.
        """
        alive = self._alive(view, asking)
        left = self.budget - sum(counts)
        budgets = [counts[i] + left if i in alive else counts[i] for i in range(self.k)]
        return budgets, alive

    def _view(self, view: RunView, i: int, budget: int) -> RunView:
        sub = RunView(self.space, budget, n_workers=view.n_workers, now=view.now)
        for rec in view.records.values():
            j, tag = self.island_of(rec)
            if j == i:
                sub.put(dataclasses.replace(rec, tag=tag))
        return sub

    def propose(self, view: RunView) -> Proposal | None:
        counts = self._counts(view)
        budgets, alive = self._budgets(view, counts, asking=True)
        # the island with the fewest points asks, so the ones still asking alternate; a
        # staggered island counts as if it had (1 - CATCH_UP) of the points out at its start
        head = [(1.0 - CATCH_UP) * i * self.stagger * self.budget for i in range(self.k)]
        order = sorted(alive, key=lambda i: counts[i] + head[i])
        best_island = self.island_of(view.best)[0] if view.best is not None else -1
        if len(alive) > 1 and self._handed_over(view):
            # after the hand-over the best island asks first: a climbing island only gets
            # the asks the best one yields (converged), not every other one
            order.sort(key=lambda i: i != best_island)
        spare: tuple[int, Evaluate] | None = None
        for i in order:
            sub = self._view(view, i, budgets[i])
            if sub.remaining <= 0:
                continue
            if self.stagger > 0 and i > 0:
                self._set_avoid(view, i, budgets)
            p = self.subs[i].propose(sub)
            if not isinstance(p, Evaluate):
                continue
            # a converged island (its best log-EI below yield_logei) asks only when
            # every other island still asking has converged too; then the one holding
            # the run's best asks, since its last digits are what the run reports
            if getattr(self.subs[i], "last_logei", math.inf) >= self.yield_logei:
                return Evaluate(p.x, f"async-bo:island{i}:{p.tag}")
            if spare is None or i == best_island:
                spare = (i, p)
        if spare is not None:
            return Evaluate(spare[1].x, f"async-bo:island{spare[0]}:{spare[1].tag}")
        return None

    def _set_avoid(self, view: RunView, i: int, budgets: list[int]) -> None:
        """Island ``i`` keeps out of a box around each earlier island's best point.

        The box is scaled by that island's own fitted lengthscales (its model is brought
        up to date with its data first, as its next ask would), so it covers the basin
        as that island sees it, including the axes the basin ignores.
        """
        me = self.subs[i]
        if not isinstance(me, BayesOpt):
            return
        boxes = []
        for j in range(i):
            other, sub = self.subs[j], self._view(view, j, budgets[j])
            best = sub.best
            if not isinstance(other, BayesOpt) or best is None or other.in_design_phase(sub):
                continue
            ls = other.fitted_lengthscales(sub)
            half = np.where(ls >= AVOID_LONG, 1.0,
                            np.clip(AVOID_RADIUS * ls, AVOID_MIN, AVOID_MAX))
            boxes.append((self.space.to_unit(np.array(best.x, dtype=float)), half))
        me.avoid = boxes

    def on_event(self, kind: str, record: Record, view: RunView) -> None:
        i, tag = self.island_of(record)
        if i >= 0:
            budgets, _ = self._budgets(view, self._counts(view))
            self.subs[i].on_event(kind, dataclasses.replace(record, tag=tag),
                                  self._view(view, i, budgets[i]))

    def warm_start(self, records: Sequence[Record]) -> None:
        for sub in self.subs:  # prior results are every island's data
            sub.warm_start(records)
