from pathlib import Path

import numpy as np
import pytest

from tether.controller.scripted import ScriptedController
from tether.errors import ConfigError
from tether.records import Terminate
from tether.space import Space
from tether.strategies import create
from tether.strategies.sampling import LatinHypercube, RandomSampling


def test_random_is_reproducible_and_in_the_box() -> None:
    space = Space(("a", "b"), (-1.0, 2.0), (1.0, 3.0))
    xs = [[sc.accept_eval().x for _ in range(5)]
          for sc in (ScriptedController(space, RandomSampling(space, seed=3)) for _ in range(2))]
    assert xs[0] == xs[1] and all(space.contains(x) for x in xs[0])


def test_lhs_puts_one_point_in_each_stratum() -> None:
    space = Space.unit(3)
    sc = ScriptedController(space, LatinHypercube(space, size=8, seed=1), workers=8)
    pts = np.array([sc.accept_eval().x for _ in range(8)])
    for j in range(3):
        assert sorted(np.floor(pts[:, j] * 8).astype(int)) == list(range(8))


def test_fixed_reads_csv_by_name_then_terminates(tmp_path: Path) -> None:
    space = Space(("x0", "x1"), (0.0, 0.0), (1.0, 1.0))
    f = tmp_path / "pts.csv"
    f.write_text("x1,x0\n0.25,0.5\n0.75,0.125\n")
    sc = ScriptedController(space, create("fixed", space, 10, {"points": str(f)}))
    a, b = sc.accept_eval(), sc.accept_eval()
    assert (a.x, b.x) == ((0.5, 0.25), (0.125, 0.75))
    assert sc.proposal() is None  # waits for the evaluations in flight
    sc.complete(a, 1.0)
    sc.complete(b, 2.0)
    assert isinstance(sc.proposal(), Terminate)
    np.save(tmp_path / "p.npy", np.array([[0.1, 0.2]]))
    s = create("fixed", space, 10, {"points": str(tmp_path / "p.npy")})
    assert ScriptedController(space, s).accept_eval().x == (0.1, 0.2)


def test_fixed_errors(tmp_path: Path) -> None:
    space = Space.unit(2)
    with pytest.raises(ConfigError):
        create("fixed", space, 10, {})
    with pytest.raises(ConfigError):
        create("fixed", space, 10, {"points": str(tmp_path / "none.csv")})
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(ConfigError):
        create("fixed", space, 10, {"points": str(bad)})
