"""A connection storm with real workers: hellos over ``[run] hello_rate`` are told when
their turn comes (``rehello`` with ``after``), and the workers wait for it on their
connection instead of timing out and reconnecting."""

from __future__ import annotations

import pytest

from tests.contract import check_log
from tests.integration.harness import Cluster, events_of, wait_for

OBJ = "tests.integration.objectives"


@pytest.mark.timeout(120)
def test_workers_over_the_hello_rate_join_in_turn_without_reconnecting(cluster: Cluster) -> None:
    n = 6
    # one admission a second, so five of the six are refused at first; the workers are
    # started before the controller and poll for its address file, so they all say
    # hello within a few milliseconds of each other
    config = cluster.config(budget=200, run="hello_rate = 1.0\nprefetch = 0")
    for i in range(n):
        cluster.start_worker("--in-process", name=f"s{i}", python=f"{OBJ}:sleepy")
    wait_for(lambda: all(w.poll() is None for w in cluster.workers), 10, "workers running")
    cluster.start_controller(config=config)
    assert cluster.wait_controller(100) == 0, cluster.output("controller")
    check_log(cluster.log, completed=200)
    joined = [e["worker"] for e in events_of(cluster.log, "worker_joined")]
    assert sorted(joined) == [f"s{i}" for i in range(n)]  # each once: nobody reconnected
    assert not [e for e in events_of(cluster.log, "worker_left") if e["reason"] == "reconnected"]
    finished = events_of(cluster.log, "run_finished")[-1]
    assert finished["refused"].get("hello rate limit", 0) >= 1, "no hello was refused: proved nothing"
    for i in range(n):
        assert "lost the controller" not in cluster.output(f"s{i}"), cluster.output(f"s{i}")
