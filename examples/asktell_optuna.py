"""An Optuna study as a tether strategy, through the ask/tell adapter.

    tether controller run.toml --strategy examples.asktell_optuna:make_strategy

``[strategy]`` options: ``sampler`` (``"tpe"``, the default, or ``"gp"``), ``seed``
(0), ``initial_points`` (Optuna's ``n_startup_trials``, 10: random trials before the
model), ``deterministic`` (GP only: the objective has no noise, default false).

Optuna is not a dependency of tether; install it where the controller runs (the GP
sampler also needs PyTorch); workers never import it. Each ``ask()`` creates a trial
and suggests one float per variable of the space; the trial is bound to the id of the
evaluation it becomes, and its result comes back through ``study.tell`` with that same
trial, whatever order workers finish in. Failed, killed or refused evaluations are
told as failed trials. Until then a trial is RUNNING, which is how both samplers see
pending points: TPE with ``constant_liar`` (each running trial counts as a poor result,
so free workers do not pile onto one spot) and the GP sampler, which conditions its
acquisition on the running trials. Warm-start data becomes completed trials
(``study.add_trial``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tether.errors import ConfigError
from tether.space import Space
from tether.strategies.asktell import AskTellStrategy
from tether.strategies.base import Options, Strategy


def _sampler(optuna: Any, kind: str, seed: int, startup: int, deterministic: bool) -> Any:
    if kind == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup,
                                          constant_liar=True)
    if kind == "gp":
        try:
            import torch  # noqa: F401  (Optuna imports it lazily: fail here, clearly)
        except ImportError:
            raise ConfigError("sampler = \"gp\" needs PyTorch: pip install torch") from None
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=startup,
                                         deterministic_objective=deterministic)
    raise ConfigError(f"[strategy] sampler must be \"tpe\" or \"gp\", got {kind!r}")


def make_strategy(space: Space, budget: int, options: Mapping[str, Any]) -> Strategy:
    return study_and_strategy(space, options)[1]


def study_and_strategy(space: Space, options: Mapping[str, Any]) -> tuple[Any, AskTellStrategy]:
    """The Optuna study and the adapter around it (the study is there to inspect)."""
    o = Options("examples.asktell_optuna", options)
    kind = o.get("sampler", "tpe", str)
    seed = o.get("seed", 0, int)
    startup = o.get("initial_points", 10, int)
    deterministic = o.get("deterministic", False, bool)
    o.done()
    try:
        import optuna
    except ImportError:
        raise ConfigError("this strategy needs optuna: pip install optuna") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no line per trial in the daemon
    study = optuna.create_study(sampler=_sampler(optuna, kind, seed, startup, deterministic))
    dists = {n: optuna.distributions.FloatDistribution(lo, hi)
             for n, lo, hi in zip(space.names, space.lower, space.upper, strict=True)}

    def tell(trial: Any, value: float | None) -> None:
        if value is None:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        else:
            study.tell(trial, value)

    def prior(x: tuple[float, ...], value: float) -> None:
        study.add_trial(optuna.trial.create_trial(
            params=dict(zip(space.names, x, strict=True)), distributions=dists, value=value))

    return study, AskTellStrategy(space, lambda: study.ask(dists), tell,
                                  point=lambda t: t.params, tag=f"optuna-{kind}", prior=prior)
