"""The heavy-tailed scenario's program (tether/heavy.py) run by real workers through
``--command``, as benchmarks/daemon_vs_sim.py runs it: each evaluation gets its id, the
value is Hartmann 6-D at the dispatched point. Durations are scaled to microseconds and
not asserted (no timing in the suite)."""

from __future__ import annotations

import shlex
import sys

import numpy as np
import pytest

from tests.contract import check_log, load
from tests.integration.harness import ROOT, Cluster
from tether.problems import hartmann6

pytestmark = pytest.mark.timeout(120)

PROGRAM = (f"{shlex.quote(sys.executable)} -I -S {ROOT / 'tether' / 'heavy.py'} 7 {{eval_id}} "
           + " ".join(f"{{x{i}}}" for i in range(6)) + " 1e-6")


def test_heavy_program_through_real_workers(cluster: Cluster) -> None:
    cluster.start_controller(config=cluster.config(budget=8, dim=6))
    for _ in range(2):
        cluster.start_worker(command=PROGRAM)
    assert cluster.wait_controller(90) == 0, cluster.output("controller") + cluster.output("w0")
    check_log(cluster.log, completed=8)
    events = load(cluster.log)
    x = {e["eval_id"]: e["x"] for e in events if e["event"] == "proposed"}
    done = [e for e in events if e["event"] == "completed"]
    assert sorted(e["eval_id"] for e in done) == list(range(8))
    for e in done:
        assert e["value"] == pytest.approx(hartmann6(np.array(x[e["eval_id"]])), rel=1e-12)
