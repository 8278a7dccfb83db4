"""The TOML configuration file: parse_config, load_config, with_overrides."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from tether.controller.settings import Config, RunSettings, load_config, parse_config
from tether.errors import ConfigError, TetherError
from tether.space import Space

GOOD = """
[space]                  # box-bounded continuous variables, in the order given
x1 = [0.0, 1.0]
x0 = [-5, 10]

[strategy]
name = "lhs"
initial_points = 3
seed = 0

[run]
budget = 30
bind = "tcp://*:5555"
log = "run.jsonl"
eval_timeout = 600
max_retries = 2
heartbeat = 1.0
liveness = 3
max_time = 3600
target = -1.5
patience = 10
"""


def write(tmp_path: Path, text: str, name: str = "c.toml") -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(text), encoding="utf-8")
    return p


def cfg(run: dict[str, Any] | None = None, **tables: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"space": {"x0": [0.0, 1.0]}}
    if run is not None:
        data["run"] = run
    data.update(tables)
    return data


# ---------------------------------------------------------------------- good configs
def test_good_config(tmp_path: Path) -> None:
    c = load_config(write(tmp_path, GOOD))
    assert isinstance(c, Config)
    assert c.space.names == ("x1", "x0")  # order kept
    assert c.space.lower == (0.0, -5.0) and c.space.upper == (1.0, 10.0)
    assert all(isinstance(v, float) for v in c.space.lower + c.space.upper)
    assert c.strategy == "lhs"
    assert c.strategy_options == {"initial_points": 3, "seed": 0}
    r = c.run
    assert (r.budget, r.bind, r.log) == (30, "tcp://*:5555", "run.jsonl")
    assert r.eval_timeout == 600.0 and isinstance(r.eval_timeout, float)
    assert (r.max_retries, r.heartbeat, r.liveness) == (2, 1.0, 3)
    assert (r.max_time, r.target, r.patience) == (3600.0, -1.5, 10)
    assert r.liveness_window == 3.0


def test_minimal_config_uses_defaults() -> None:
    c = parse_config(cfg())
    assert c.strategy == "random" and c.strategy_options == {}
    assert c.run == RunSettings()
    assert c.run.max_time is None and c.run.target is None and c.run.patience is None


def test_run_settings_to_json_roundtrip() -> None:
    r = load_config_text_run()
    assert RunSettings(**r.to_json()) == r


def load_config_text_run() -> RunSettings:
    return parse_config(cfg({"budget": 7, "target": 0.5, "grace": 2})).run


def test_resume_grace_defaults_to_two_liveness_windows() -> None:
    assert RunSettings(heartbeat=0.5, liveness=4).resume_grace == 4.0
    assert RunSettings(grace=1.5).resume_grace == 1.5


# ---------------------------------------------------------------------- errors
def check(data: dict[str, Any], *words: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    msg = str(info.value)
    assert "\n" not in msg.strip()
    for w in words:
        assert w in msg, (w, msg)


def test_unknown_table() -> None:
    check(cfg(worker={"x": 1}), "unknown table", "worker")


def test_unknown_run_key() -> None:
    check(cfg({"budgt": 30}), "unknown key", "budgt")


@pytest.mark.parametrize(("key", "value", "want"), [
    ("budget", "30", "integer"),
    ("budget", 30.0, "integer"),
    ("budget", True, "integer"),
    ("heartbeat", True, "number"),
    ("heartbeat", "1.0", "number"),
    ("eval_timeout", [600], "number"),
    ("liveness", 3.5, "integer"),
    ("max_retries", False, "integer"),
    ("bind", 5555, "string"),
    ("log", True, "string"),
    ("target", "low", "number"),
    ("patience", 2.0, "integer"),
    ("max_time", {"s": 1}, "number"),
    ("prefetch", 1.5, '"auto"'),
    ("prefetch", True, '"auto"'),
    ("prefetch", "fast", '"auto"'),
])
def test_wrong_run_types(key: str, value: Any, want: str) -> None:
    check(cfg({key: value}), key, want)


@pytest.mark.parametrize(("key", "value"), [
    ("budget", 0), ("budget", -3), ("heartbeat", 0), ("heartbeat", -1.0),
    ("eval_timeout", 0), ("liveness", 0), ("max_retries", -1), ("max_time", 0),
    ("patience", 0), ("grace", -1), ("prefetch", -1),
])
def test_out_of_range_run_values(key: str, value: Any) -> None:
    check(cfg({key: value}), key)


@pytest.mark.parametrize("key", ["max_time", "grace", "target"])
def test_nan_run_values_rejected(key: str) -> None:
    check(cfg({key: float("nan")}), key)


@pytest.mark.parametrize("key", ["max_time", "grace", "target"])
def test_infinite_run_values_rejected(key: str) -> None:
    # JSON has no infinity: such a value could not be logged in run_started
    check(cfg({key: float("inf")}), key)


@pytest.mark.parametrize("bounds", [[1, 1], [0.5, 0.5], [2.0, 1.0], [1, -1]])
def test_empty_or_reversed_bounds(bounds: list[float]) -> None:
    check({"space": {"x0": [0, 1], "lr": bounds}}, "lr", "empty bounds")


@pytest.mark.parametrize("bounds", [
    ["0", "1"], [0, "1"], [True, 1], [0], [0, 1, 2], 5, "0..1", {"low": 0, "high": 1}, [],
])
def test_non_numeric_or_malformed_bounds(bounds: Any) -> None:
    check({"space": {"lr": bounds}}, "lr")


@pytest.mark.parametrize("bounds", [[0, float("inf")], [float("-inf"), 0], [float("nan"), 1]])
def test_non_finite_bounds(bounds: list[float]) -> None:
    check({"space": {"lr": bounds}}, "lr")


def test_missing_or_empty_space() -> None:
    check({"run": {"budget": 3}}, "[space]")
    check({"space": 5}, "[space]")
    check({"space": {}}, "no variables")


def test_tables_must_be_tables() -> None:
    check(cfg(run=5), "[run]")  # type: ignore[arg-type]
    check({"space": {"x": [0, 1]}, "strategy": "random"}, "[strategy]")


@pytest.mark.parametrize("name", [5, "", True, ["random"]])
def test_bad_strategy_name(name: Any) -> None:
    check(cfg(strategy={"name": name}), "name")


def test_load_config_invalid_toml(tmp_path: Path) -> None:
    for text in ("[space\nx = [0, 1]\n", "[space]\nx = [0, 1\n", "[space]\nx = 0..1\n",
                 "[space]\nx = [0, 1]\nx = [0, 2]\n"):
        p = write(tmp_path, text)
        with pytest.raises(ConfigError, match="not valid TOML") as info:
            load_config(p)
        assert str(p) in str(info.value)


def test_load_config_errors_name_the_problem(tmp_path: Path) -> None:
    p = write(tmp_path, '[space]\nx0 = [0, 1]\n[run]\nbudget = "30"\n')
    with pytest.raises(ConfigError, match="budget"):
        load_config(p)
    p = write(tmp_path, "[space]\nx0 = [0, 1]\n[run]\nheartbeat = true\n")
    with pytest.raises(ConfigError, match="heartbeat"):
        load_config(p)
    p = write(tmp_path, "[space]\nx0 = [1, 1]\n")
    with pytest.raises(ConfigError, match="x0"):
        load_config(p)


def test_load_config_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path)  # a directory


def test_load_config_not_utf8(tmp_path: Path) -> None:
    p = tmp_path / "latin.toml"
    p.write_bytes(b"[space]\nx\xe9 = [0, 1]\n")
    with pytest.raises(ConfigError):
        load_config(p)


def test_config_error_is_a_tether_error() -> None:
    with pytest.raises(TetherError):
        parse_config({})


# ---------------------------------------------------------------------- overrides
def test_with_overrides() -> None:
    c = parse_config(cfg({"budget": 30, "bind": "tcp://*:1"}, strategy={"name": "lhs", "seed": 3}))
    o = c.with_overrides(strategy="random", budget=5, bind="tcp://127.0.0.1:9", log=None)
    assert o.strategy == "random"
    assert o.strategy_options == {"seed": 3}
    assert (o.run.budget, o.run.bind, o.run.log) == (5, "tcp://127.0.0.1:9", "run.jsonl")
    assert c.run.budget == 30 and c.strategy == "lhs"  # the original is untouched
    same = c.with_overrides(strategy=None, budget=None, bind=None)
    assert same == c


def test_with_overrides_validates() -> None:
    c = parse_config(cfg())
    with pytest.raises(ConfigError, match="budget"):
        c.with_overrides(budget=0)
    with pytest.raises(ConfigError):
        c.with_overrides(no_such_option=1)


def test_space_equality_for_resume_checks() -> None:
    a = parse_config({"space": {"x": [0, 1], "y": [0, 2]}}).space
    b = Space(("x", "y"), (0.0, 0.0), (1.0, 2.0))
    assert a == b
    assert a != parse_config({"space": {"y": [0, 2], "x": [0, 1]}}).space


@pytest.mark.parametrize("value", [0, 5, "auto"])
def test_prefetch_is_a_count_or_auto(value: Any) -> None:
    assert parse_config(cfg({"prefetch": value})).run.prefetch == value
