"""An Optuna study as a tether strategy, through the ask/tell adapter.

    tether controller run.toml --strategy examples.asktell_optuna:make_strategy

Optuna is not a dependency of tether; install it where the controller runs. Each
``ask()`` creates a trial and suggests one float per variable of the space; results
come back through ``study.tell``; failed or killed evaluations are told as failed
trials. Warm-start data becomes completed trials with ``study.add_trial``.

The same pattern fits any ask/tell library, e.g. Trieste::

    AskTellStrategy(space, ask=lambda: opt.ask(),          # a (1, d) tensor
                    tell=lambda q, v: v is not None and opt.tell(Dataset(q, [[v]])),
                    point=lambda q: q.numpy()[0])
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tether.errors import ConfigError
from tether.space import Space
from tether.strategies.asktell import AskTellStrategy
from tether.strategies.base import Options, Strategy


def make_strategy(space: Space, budget: int, options: Mapping[str, Any]) -> Strategy:
    o = Options("examples.asktell_optuna", options)
    seed = o.get("seed", 0, int)
    o.done()
    try:
        import optuna
    except ImportError:
        raise ConfigError("this strategy needs optuna: pip install optuna") from None
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed))
    dists = {n: optuna.distributions.FloatDistribution(lo, hi)
             for n, lo, hi in zip(space.names, space.lower, space.upper, strict=True)}

    def ask() -> Any:
        trial = study.ask(dists)
        return trial

    def tell(trial: Any, value: float | None) -> None:
        if value is None:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        else:
            study.tell(trial, value)

    def prior(x: tuple[float, ...], value: float) -> None:
        study.add_trial(optuna.trial.create_trial(
            params=dict(zip(space.names, x, strict=True)), distributions=dists, value=value))

    return AskTellStrategy(space, ask, tell, point=lambda t: t.params, tag="optuna",
                           prior=prior)
