"""Run settings and the TOML configuration file of DESIGN.md (``[space]``, ``[strategy]``, ``[run]``)."""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, cast

from tether.errors import ConfigError
from tether.space import Space

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@dataclass(frozen=True)
class RunSettings:
    """The ``[run]`` table. ``None`` for an optional stop means it is off."""

    budget: int = 30
    bind: str = "tcp://*:5555"
    log: str = "run.jsonl"
    eval_timeout: float = 600.0
    max_retries: int = 2
    heartbeat: float = 1.0
    liveness: int = 3
    max_time: float | None = None
    target: float | None = None
    patience: int | None = None
    grace: float | None = None  # wait after --resume for in-flight evals; default: liveness window
    max_failures: int | None = None  # consecutive failures that end the run; None: 3 x slots + 10
    max_unproven: int = 16384  # connected workers that never answered an evaluate
    hello_rate: float = 2000.0  # new worker identities admitted per second (burst as much)
    progress: float = 30.0  # seconds between plain progress lines off a terminal; 0: quiet
    # evaluations queued at a worker beyond its slots, or "auto" (sized per worker from
    # its evaluations' durations); None: the strategy's default
    prefetch: int | str | None = None
    fsync: bool = False  # fsync the log at every flush: survives a power loss, costs throughput
    keys: str | None = None  # CURVE key directory (tether keys generate): workers need a key

    def __post_init__(self) -> None:
        if self.budget < 1:
            raise ConfigError(f"[run] budget must be >= 1, got {self.budget}")
        for name in ("eval_timeout", "heartbeat"):
            v = getattr(self, name)
            if not (v > 0 and math.isfinite(v)):
                raise ConfigError(f"[run] {name} must be a positive number, got {v}")
        if self.liveness < 1:
            raise ConfigError(f"[run] liveness must be >= 1, got {self.liveness}")
        if self.max_retries < 0:
            raise ConfigError(f"[run] max_retries must be >= 0, got {self.max_retries}")
        for name in ("max_time", "patience", "grace"):
            v = getattr(self, name)
            if v is not None and not (v > 0 and math.isfinite(v)):
                raise ConfigError(f"[run] {name} must be a positive number, got {v}")
        if self.max_unproven < 1 or not (self.hello_rate > 0 and math.isfinite(self.hello_rate)):
            raise ConfigError("[run] max_unproven must be >= 1 and hello_rate > 0")
        p = self.prefetch
        if p is not None and p != "auto" and (not isinstance(p, int) or p < 0):
            raise ConfigError(f'[run] prefetch must be an integer >= 0 or "auto", got {p!r}')
        if not (self.progress >= 0 and math.isfinite(self.progress)):
            raise ConfigError(f"[run] progress must be >= 0 seconds, got {self.progress}")
        if self.max_failures is not None and self.max_failures < 1:
            raise ConfigError(f"[run] max_failures must be >= 1, got {self.max_failures}")
        if self.target is not None and not math.isfinite(self.target):
            raise ConfigError(f"[run] target must be a finite number, got {self.target}")

    @property
    def liveness_window(self) -> float:
        return self.heartbeat * self.liveness

    @property
    def resume_grace(self) -> float:
        return self.grace if self.grace is not None else 2 * self.liveness_window

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


_RUN_TYPES: dict[str, tuple[type, ...]] = {
    "budget": (int,), "bind": (str,), "log": (str,), "eval_timeout": (int, float),
    "max_retries": (int,), "heartbeat": (int, float), "liveness": (int,),
    "max_time": (int, float), "target": (int, float), "patience": (int,),
    "grace": (int, float), "max_failures": (int,),
    "max_unproven": (int,), "hello_rate": (int, float), "progress": (int, float),
    "keys": (str,), "prefetch": (int, str), "fsync": (bool,),
}


@dataclass(frozen=True)
class Config:
    space: Space
    strategy: str = "random"
    strategy_options: dict[str, Any] = field(default_factory=dict)
    run: RunSettings = field(default_factory=RunSettings)

    def with_overrides(self, *, strategy: str | None = None, **run: Any) -> Config:
        """Command-line options override the file; ``None`` means not given."""
        given = {k: v for k, v in run.items() if v is not None}
        try:
            new_run = replace(self.run, **given)
        except TypeError as exc:  # e.g. a comparison of a str budget with an int
            raise ConfigError(f"bad command-line override: {exc}") from None
        return replace(self, strategy=strategy or self.strategy, run=new_run)


def parse_config(data: dict[str, Any]) -> Config:
    unknown = set(data) - {"space", "strategy", "run"}
    if unknown:
        raise ConfigError(f"unknown table(s) in config: {', '.join(sorted(unknown))}")
    if "space" not in data or not isinstance(data["space"], dict):
        raise ConfigError("config needs a [space] table with name = [low, high] entries")
    space = Space.from_mapping(data["space"])
    strat = dict(_table(data, "strategy"))
    name = strat.pop("name", "random")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"[strategy] name must be a string, got {name!r}")
    return Config(space, name, strat, _parse_run(_table(data, "run")))


def _table(data: dict[str, Any], key: str) -> dict[str, Any]:
    t = data.get(key, {})
    if not isinstance(t, dict):
        raise ConfigError(f"[{key}] must be a table")
    return t


def _parse_run(table: dict[str, Any]) -> RunSettings:
    values: dict[str, Any] = {}
    for key, raw in table.items():
        value: Any = raw
        kinds = _RUN_TYPES.get(key)
        if kinds is None:
            raise ConfigError(f"unknown key in [run]: {key}")
        if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
            wants: dict[tuple[type, ...], str] = {
                (int,): "an integer", (str,): "a string", (bool,): "true or false",
                (int, str): 'an integer or "auto"'}
            want = wants.get(kinds, "a number")
            raise ConfigError(f"[run] {key} must be {want}, got {value!r}")
        values[key] = float(cast(float, value)) if float in kinds else value
    return RunSettings(**values)


def load_config(path: str | Path) -> Config:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config {p}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config {p} is not UTF-8 text") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config {p} is not valid TOML: {exc}") from None
    return parse_config(data)
