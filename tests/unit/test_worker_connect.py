"""The worker's wait for a controller that has not written its address file yet."""

from __future__ import annotations

from pathlib import Path

import pytest

from tether.worker.agent import WorkerAgent, WorkerOptions
from tether.worker.evaluators import CommandEvaluator


def test_missing_address_file_is_polled_at_a_fixed_interval(tmp_path: Path) -> None:
    # A controller importing TensorFlow takes seconds to write its address. Backing
    # off exponentially meanwhile made some workers join 8 s after their siblings.
    addr = tmp_path / "address"
    agent = WorkerAgent(CommandEvaluator("true"), WorkerOptions(address_file=str(addr)))
    try:
        for i in range(12):
            now = 100.0 + i
            agent._connect(now)
            assert agent.sock is None
            assert agent._reconnect_at == pytest.approx(now + agent.opts.address_poll)
        addr.write_text("tcp://127.0.0.1:9\n")  # nothing listens: connect is lazy anyway
        agent._connect(200.0)
        assert agent.sock is not None
    finally:
        agent._shutdown()
