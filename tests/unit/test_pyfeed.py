"""The feed a multi-slot agent's children take their jobs from (tether.worker.pyfeed),
over real spawned children: a free child does not wait for a busy one, and a job too
wide for the feed goes to a child directly. Order, drops, kills and a dead child are
tested for both evaluators in test_pyeval.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.test_pyeval import NAMES, done, outcome, started, tmp
from tether.worker.pyfeed import FeedEvaluator

pytestmark = pytest.mark.timeout(120)
__all__ = ["tmp"]  # the fixture, shared


def test_a_free_child_takes_the_work_written_ahead_while_its_sibling_is_busy(
        tmp: Path) -> None:
    ev = FeedEvaluator("tests.integration.objectives:traced", slots=2)
    try:
        first = ev.start(1, [0.1, 1.0], NAMES)
        ((_, pid_a),) = started(tmp, 1)  # held at its gate until the others are done
        for i in (2, 3, 4):
            assert ev.presend((i, 1), [i / 10, 0.0])
        ev.flush()
        for i in (2, 3, 4):
            run = ev.take((i, 1))
            assert run is not None and outcome(run) == done(i / 10)
        trace = started(tmp, 4)
        assert [x for x, _ in trace] == ["0.1", "0.2", "0.3", "0.4"]
        assert {p for _, p in trace[1:]} != {pid_a} and pid_a not in {p for _, p in trace[1:]}
        (tmp / "gate.1").touch()
        assert outcome(first) == done(0.1)
    finally:
        ev.close()


def test_a_job_too_wide_for_the_feed_goes_to_an_idle_child_directly(tmp: Path) -> None:
    ev = FeedEvaluator("tests.integration.objectives:traced")
    try:
        wide = [0.5, 0.0] + [0.0] * 600  # 602 coordinates: more than a feed frame holds
        assert not ev.presend((1, 1), wide)
        assert outcome(ev.start(1, wide, NAMES)) == done(0.5)
        assert outcome(ev.start(2, [0.7, 0.0], NAMES)) == done(0.7)
    finally:
        ev.close()
