"""``tether worker``: build the evaluator and run the agent."""

from __future__ import annotations

import argparse
import sys

from tether import keys
from tether.worker.agent import WorkerAgent, WorkerOptions
from tether.worker.evaluators import make_evaluator
from tether.worker.walltime import job_seconds_left


def run_worker(a: argparse.Namespace) -> int:
    if a.keys:
        keys.load_client(a.keys)  # unusable keys: exit 2 now, not at the first connection
    walltime = a.walltime if a.walltime is not None else job_seconds_left()
    evaluator = make_evaluator(a.python, a.command)
    opts = WorkerOptions(connect=a.connect, address_file=a.address_file, name=a.name,
                         walltime=walltime, drain=a.drain, keys=a.keys)
    agent = WorkerAgent(evaluator, opts)
    code = agent.run()
    print(f"tether worker {agent.name}: {agent.exit_reason}", file=sys.stderr, flush=True)
    return code
