"""tether.testing: the replay check catches a strategy that keeps state off the event stream."""

from __future__ import annotations

import numpy as np
import pytest

from tether.records import Evaluate, Proposal, RunView
from tether.space import Space
from tether.strategies.base import Strategy
from tether.strategies.compose import Merged
from tether.strategies.dycors import DYCORS
from tether.strategies.localsearch import LocalSearch
from tether.strategies.sampling import LatinHypercube, RandomSampling
from tether.testing import NotReplayable, check_replayable

SPACE = Space.unit(2)


@pytest.mark.parametrize("factory", [
    lambda: RandomSampling(SPACE, seed=3),
    lambda: LatinHypercube(SPACE, 20, seed=3),
    lambda: DYCORS(SPACE, 20, seed=3),
    lambda: LocalSearch(SPACE, step=0.05),
    lambda: Merged(SPACE, [DYCORS(SPACE, 20, seed=2), LocalSearch(SPACE, step=0.05)]),
])
def test_builtin_strategies_replay(factory: object) -> None:
    got = check_replayable(factory, SPACE, budget=20)  # type: ignore[arg-type]
    assert got.cuts >= 5 and got.events > 40


class Forgetful(Strategy):
    """Draws from one long-lived generator: a replay cannot restore where it was."""

    def __init__(self) -> None:
        self.rng = np.random.default_rng(0)

    def propose(self, view: RunView) -> Proposal | None:
        return Evaluate.at(self.rng.random(2))


def test_a_strategy_with_hidden_state_is_caught() -> None:
    with pytest.raises(NotReplayable, match="live strategy proposed"):
        check_replayable(Forgetful, SPACE, budget=10)
