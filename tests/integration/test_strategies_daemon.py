"""The same strategies as in-process, under the ZeroMQ daemon with real worker processes."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.contract import check_log
from tests.integration.harness import Cluster, events_of
from tether.problems import BRANIN_MIN

pytestmark = pytest.mark.timeout(180)
BRANIN = "tether.problems:branin"


def best(log: Path) -> float:
    return min(e["value"] for e in events_of(log, "completed"))


def test_dycors_on_branin_with_three_workers(cluster: Cluster) -> None:
    cluster.start_controller(config=cluster.config(budget=30, strategy="dycors",
                                                   strategy_opts="seed = 1"))
    for _ in range(3):
        cluster.start_worker(python=BRANIN)
    assert cluster.wait_controller(timeout=150) == 0
    check_log(cluster.log, completed=30)
    assert best(cluster.log) - BRANIN_MIN < 0.05


@pytest.mark.bo
def test_async_bo_with_three_workers(cluster: Cluster) -> None:
    pytest.importorskip("gpflow")
    cluster.start_controller(config=cluster.config(budget=15, strategy="async-bo",
                                                   strategy_opts="seed = 0\ninitial_points = 3"))
    for _ in range(3):
        cluster.start_worker(python=BRANIN)
    assert cluster.wait_controller(timeout=170) == 0
    check_log(cluster.log, completed=15)
    assert best(cluster.log) - BRANIN_MIN < 0.1


def test_warm_start_from_another_runs_log(cluster: Cluster, tmp_path: Path) -> None:
    cluster.start_controller(config=cluster.config(budget=12, strategy="lhs"))
    cluster.start_worker(python=BRANIN)
    assert cluster.wait_controller() == 0
    old = tmp_path / "old.jsonl"
    cluster.log.rename(old)
    cluster.start_controller("--warm-start", str(old),
                             config=cluster.config(budget=10, strategy="dycors"))
    cluster.start_worker(python=BRANIN)
    assert cluster.wait_controller(timeout=120) == 0
    check_log(cluster.log, completed=10)
    (start,) = events_of(cluster.log, "run_started")
    assert start["warm_start_records"] == 12 and start["warm_start"] == str(old)


@pytest.mark.bo
def test_async_bo_warm_started_from_another_runs_log(cluster: Cluster, tmp_path: Path) -> None:
    pytest.importorskip("gpflow")
    cluster.start_controller(config=cluster.config(budget=12, strategy="lhs"))
    cluster.start_worker(python=BRANIN)
    assert cluster.wait_controller() == 0
    old = tmp_path / "old.jsonl"
    cluster.log.rename(old)
    prior_best = best(old)
    cluster.start_controller("--warm-start", str(old), config=cluster.config(
        budget=6, strategy="async-bo", strategy_opts="seed = 0\ninitial_points = 3"))
    cluster.start_worker(python=BRANIN)
    assert cluster.wait_controller(timeout=170) == 0
    check_log(cluster.log, completed=6)
    (start,) = events_of(cluster.log, "run_started")
    assert start["warm_start_records"] == 12
    # 12 prior results cover the design: every point comes from the model, which knows
    # the prior best and improves on it
    assert best(cluster.log) < prior_best
