"""Sampling strategies (random, lhs, fixed), strategy options and the strategy registry."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tether import strategies
from tether.controller.local import SimulatedController
from tether.controller.settings import RunSettings
from tether.errors import ConfigError
from tether.records import Evaluate, Record, RunView, Status, Terminate
from tether.space import Space
from tether.strategies.base import Options, Strategy, rng_for
from tether.strategies.sampling import (
    FixedPoints,
    LatinHypercube,
    RandomSampling,
    load_points,
    make_fixed,
    make_lhs,
    make_random,
)

SPACE = Space(("a", "b", "c"), (-1.0, 0.0, 10.0), (1.0, 5.0, 10.5))


def view_with(n: int, space: Space = SPACE, budget: int = 100) -> RunView:
    v = RunView(space=space, budget=budget)
    for k in range(n):
        v.put(Record(k, tuple(space.lo), status=Status.COMPLETED, value=1.0))
    return v


def points(strategy: Strategy, n: int, space: Space = SPACE) -> np.ndarray:
    """Propose ``n`` points as a controller would (one record per accepted proposal)."""
    v = RunView(space=space, budget=n)
    out = []
    for k in range(n):
        p = strategy.propose(v)
        assert isinstance(p, Evaluate)
        out.append(p.x)
        v.put(Record(k, p.x))
    return np.array(out)


# ---------------------------------------------------------------------- random
def test_random_points_inside_and_deterministic_per_seed() -> None:
    a = points(RandomSampling(SPACE, seed=1), 50)
    b = points(RandomSampling(SPACE, seed=1), 50)
    c = points(RandomSampling(SPACE, seed=2), 50)
    assert a.shape == (50, 3)
    assert np.array_equal(a, b)
    assert not np.allclose(a, c)
    assert all(SPACE.contains(x) for x in a)
    assert len({tuple(x) for x in a}) == 50


def test_random_point_k_depends_only_on_seed_and_k() -> None:
    ref = points(RandomSampling(SPACE, seed=5), 2100)  # spans several blocks
    for k in (0, 1, 17, 1023, 1024, 1025, 2047, 2048, 2099, 5):
        fresh = RandomSampling(SPACE, seed=5)  # as after a restart: no history
        p = fresh.propose(view_with(k))
        assert isinstance(p, Evaluate)
        assert p.x == tuple(ref[k]), k


def test_random_covers_the_box() -> None:
    a = points(RandomSampling(SPACE, seed=0), 2000)
    u = SPACE.to_unit(a)
    assert u.min() >= 0.0 and u.max() <= 1.0
    assert np.all(np.abs(u.mean(axis=0) - 0.5) < 0.05)


def test_rng_for_is_keyed() -> None:
    assert rng_for(3, 7).random() == rng_for(3, 7).random()
    assert rng_for(3, 7).random() != rng_for(3, 8).random()
    assert rng_for(3, 7).random() != rng_for(4, 7).random()


# ---------------------------------------------------------------------- lhs
@pytest.mark.parametrize("size", [1, 7, 16])
def test_lhs_stratified_per_block(size: int) -> None:
    n = size * 3
    a = points(LatinHypercube(SPACE, size=size, seed=3), n)
    assert all(SPACE.contains(x) for x in a)
    u = SPACE.to_unit(a)
    for block in range(3):
        chunk = u[block * size:(block + 1) * size]
        for d in range(SPACE.dim):
            cells = np.floor(chunk[:, d] * size).astype(int)
            assert sorted(cells.tolist()) == list(range(size)), (block, d)
    if size > 1:
        assert not np.allclose(u[:size], u[size:2 * size])  # blocks differ


def test_lhs_deterministic_and_replayable() -> None:
    ref = points(LatinHypercube(SPACE, size=10, seed=9), 35)
    assert np.array_equal(ref, points(LatinHypercube(SPACE, size=10, seed=9), 35))
    assert not np.allclose(ref, points(LatinHypercube(SPACE, size=10, seed=8), 35))
    for k in (0, 9, 10, 23, 34):
        p = LatinHypercube(SPACE, size=10, seed=9).propose(view_with(k))
        assert isinstance(p, Evaluate)
        assert p.x == tuple(ref[k]), k


def test_make_lhs_size_defaults_to_budget() -> None:
    s = make_lhs(SPACE, 12, {"seed": 1})
    assert isinstance(s, LatinHypercube) and s.size == 12
    s = make_lhs(SPACE, 12, {"size": 4})
    assert isinstance(s, LatinHypercube) and s.size == 4 and s.seed == 0


# ---------------------------------------------------------------------- fixed
SPACE2 = Space(("x", "y"), (0.0, 0.0), (10.0, 10.0))
ROWS = np.array([[1.0, 2.0], [3.5, 4.25], [0.1, 9.9]])


def test_fixed_csv_with_header_in_another_order(tmp_path: Path) -> None:
    p = tmp_path / "pts.csv"
    p.write_text("y, x\n2.0, 1.0\n4.25,3.5\n\n9.9,0.1\n")
    assert np.array_equal(load_points(p, SPACE2), ROWS)


def test_fixed_csv_with_extra_header_columns(tmp_path: Path) -> None:
    p = tmp_path / "pts.csv"
    p.write_text("note,x,y\n7,1.0,2.0\n8,3.5,4.25\n9,0.1,9.9\n")
    assert np.array_equal(load_points(p, SPACE2), ROWS)


def test_fixed_csv_without_header(tmp_path: Path) -> None:
    p = tmp_path / "pts.csv"
    p.write_text("1.0,2.0\n3.5,4.25\n0.1,9.9\n")
    assert np.array_equal(load_points(p, SPACE2), ROWS)


def test_fixed_npy(tmp_path: Path) -> None:
    p = tmp_path / "pts.npy"
    np.save(p, ROWS)
    assert np.array_equal(load_points(p, SPACE2), ROWS)
    one = tmp_path / "one.npy"
    np.save(one, np.array([1.0, 2.0]))
    assert load_points(one, SPACE2).shape == (1, 2)


@pytest.mark.parametrize(("name", "body", "words"), [
    ("empty.csv", "", "empty"),
    ("blank.csv", "\n \n", "empty"),
    ("missing-col.csv", "x,z\n1,2\n", "lacks"),
    ("bad-row.csv", "x,y\n1,2\n3,oops\n", "bad row"),
    ("short-row.csv", "x,y\n1,2\n3\n", "bad row"),
    ("short-noheader.csv", "1,2\n3\n", "bad row"),
])
def test_fixed_bad_csv(tmp_path: Path, name: str, body: str, words: str) -> None:
    p = tmp_path / name
    p.write_text(body)
    with pytest.raises(ConfigError, match=words):
        load_points(p, SPACE2)


def test_fixed_bad_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_points(tmp_path / "nope.csv", SPACE2)
    with pytest.raises(ConfigError, match="not found"):
        load_points(tmp_path, SPACE2)  # a directory
    p = tmp_path / "three.npy"
    np.save(p, np.ones((4, 3)))
    with pytest.raises(ConfigError, match="2 columns"):
        make_fixed(SPACE2, 5, {"points": str(p)})
    with pytest.raises(ConfigError, match="needs points"):
        make_fixed(SPACE2, 5, {})
    with pytest.raises(ConfigError, match="points"):
        make_fixed(SPACE2, 5, {"points": 5})


def test_fixed_corrupt_npy(tmp_path: Path) -> None:
    p = tmp_path / "bad.npy"
    p.write_bytes(b"this is not a numpy file")
    with pytest.raises(ConfigError):
        load_points(p, SPACE2)


def test_fixed_proposes_rows_then_terminates(tmp_path: Path) -> None:
    p = tmp_path / "pts.csv"
    p.write_text("x,y\n1,2\n3.5,4.25\n0.1,9.9\n")
    s = make_fixed(SPACE2, 10, {"points": str(p)})
    assert isinstance(s, FixedPoints)
    v = RunView(space=SPACE2, budget=10)
    got = []
    for k in range(3):
        prop = s.propose(v)
        assert isinstance(prop, Evaluate)
        got.append(prop.x)
        v.put(Record(k, prop.x, status=Status.RUNNING))
    assert np.array_equal(np.array(got), ROWS)
    assert s.propose(v) is None  # exhausted, but evaluations still run
    for k in range(3):
        v.put(Record(k, tuple(ROWS[k]), status=Status.COMPLETED, value=1.0))
    assert isinstance(s.propose(v), Terminate)


def test_fixed_run_ends_when_exhausted(tmp_path: Path) -> None:
    p = tmp_path / "pts.npy"
    np.save(p, ROWS)
    s = strategies.create("fixed", SPACE2, 10, {"points": str(p)})
    res = SimulatedController(SPACE2, s, lambda x: float(x.sum()), workers=2,
                              settings=RunSettings(budget=10)).run()
    assert res.reason == "fixed points exhausted"
    assert len(res.completed) == 3
    assert [r.x for r in res.records.values()] == [tuple(r) for r in ROWS]


# ---------------------------------------------------------------------- options
def test_options_unknown_key() -> None:
    with pytest.raises(ConfigError, match=r"unknown option.*sed"):
        make_random(SPACE, 10, {"sed": 1})
    with pytest.raises(ConfigError, match="unknown option"):
        make_lhs(SPACE, 10, {"seed": 1, "initial_points": 3})
    with pytest.raises(ConfigError, match="unknown option"):
        make_fixed(SPACE, 10, {"points": "x.csv", "extra": True})


@pytest.mark.parametrize(("opts", "word"), [
    ({"seed": "1"}, "integer"), ({"seed": 1.5}, "integer"), ({"seed": True}, "integer"),
])
def test_options_wrong_types(opts: dict[str, Any], word: str) -> None:
    with pytest.raises(ConfigError, match=word):
        make_random(SPACE, 10, opts)


def test_options_typed_access() -> None:
    o = Options("demo", {"rate": 2, "flag": True, "name": "n"})
    assert o.get("rate", 0.5, float) == 2.0 and isinstance(o.get("missing", 0.5, float), float)
    assert o.get("flag", False, bool) is True
    assert o.get("name", "", (str, int)) == "n"
    o.done()
    o2 = Options("demo", {"n": True})
    with pytest.raises(ConfigError, match="integer"):
        o2.get("n", 1, int)


# ---------------------------------------------------------------------- registry
def test_create_builtins() -> None:
    assert isinstance(strategies.create("random", SPACE, 10, {"seed": 4}), RandomSampling)
    assert isinstance(strategies.create("lhs", SPACE, 10, {}), LatinHypercube)
    s = strategies.create("tether.strategies.sampling:make_random", SPACE, 10, {})
    assert isinstance(s, RandomSampling)


def not_a_strategy(space: Space, budget: int, options: Mapping[str, Any]) -> Any:
    return object()


@pytest.mark.parametrize(("name", "word"), [
    ("nope", "unknown strategy"),
    ("async_bo", "unknown strategy"),
    ("tether.no_such_module:make", "cannot import"),
    ("no_such_top_level_pkg_xyz:make", "cannot import"),
    ("tether.strategies.sampling:no_such_factory", "no callable"),
    ("tether.strategies.sampling:", "no callable"),
    ("tether.strategies.sampling:BUILTIN", "no callable"),
    (f"{__name__}:not_a_strategy", "did not return"),
])
def test_create_bad_names(name: str, word: str) -> None:
    with pytest.raises(ConfigError, match=word):
        strategies.create(name, SPACE, 10, {})


@pytest.mark.parametrize("name", [":make", ".relative:make"])
def test_create_malformed_reference(name: str) -> None:
    with pytest.raises(ConfigError):
        strategies.create(name, SPACE, 10, {})


# ---------------------------------------------------------------------- scale
def test_simulated_random_ten_thousand_evaluations() -> None:
    space = Space.unit(2)
    res = SimulatedController(space, RandomSampling(space, seed=0),
                              lambda x: float(np.sum((x - 0.5) ** 2)), workers=8,
                              settings=RunSettings(budget=10_000),
                              duration=lambda x: 0.5 + float(x[0])).run()
    assert res.reason == "budget"
    assert len(res.completed) == 10_000
    assert sum(e["event"] == "completed" for e in res.events) == 10_000
    assert len(res.records) == 10_000  # nothing wasted: no kills at the end with 1-slot
    ev = res.events
    assert [e["seq"] for e in ev[:5]] == [0, 1, 2, 3, 4] and ev[-1]["seq"] == len(ev) - 1
    best = res.best
    assert best is not None and best.value is not None and best.value < 1e-3
