"""``tether worker``: build the evaluator and run the agent."""

from __future__ import annotations

import argparse
import os
import sys

from tether import gcpolicy, keys
from tether.errors import ConfigError
from tether.worker.agent import WorkerAgent, WorkerOptions
from tether.worker.evaluators import CommandEvaluator, Evaluator
from tether.worker.inprocess import InProcessEvaluator
from tether.worker.parsers import load_parser
from tether.worker.pyeval import PythonEvaluator
from tether.worker.pyfeed import FEED, FeedEvaluator
from tether.worker.walltime import job_seconds_left

#: --max-wait inside a Slurm/PBS job when not given: a worker whose run is gone must not
#: burn its allocation waiting
BATCH_MAX_WAIT = 600.0


def parse_slots(text: str) -> int:
    """``--slots N`` or ``auto``: the cores the batch job gave this node, else the machine's."""
    if text == "auto":
        for var in ("SLURM_CPUS_ON_NODE", "PBS_NCPUS", "NCPUS"):
            v = os.environ.get(var, "")
            if v.isdigit() and int(v) > 0:
                return int(v)
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
            os.cpu_count() or 1)
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise ConfigError(f"--slots must be a positive integer or auto, got {text!r}")
    return n


def in_batch_job() -> bool:
    return bool(os.environ.get("SLURM_JOB_ID") or os.environ.get("PBS_JOBID"))


def make_evaluator(python: str | None, command: str | None,
                   parser: str | None = None, slots: int = 1) -> Evaluator:
    if (python is None) == (command is None):
        raise ConfigError("give exactly one of --python module:function or --command TEMPLATE")
    if python is not None:
        if parser is not None:
            raise ConfigError("--parser reads a program's output: it needs --command")
        if slots > 1 and FEED:  # children that take their jobs from a shared pipe
            return FeedEvaluator(python, slots=slots)
        return PythonEvaluator(python, slots=slots)
    assert command is not None
    return CommandEvaluator(command, parser=load_parser(parser) if parser else None)


def run_worker(a: argparse.Namespace) -> int:
    gcpolicy.tune()
    if a.keys:
        keys.load_client(a.keys)  # unusable keys: exit 2 now, not at the first connection
    walltime = a.walltime if a.walltime is not None else job_seconds_left()
    slots = parse_slots(a.slots)
    max_wait = a.max_wait if a.max_wait is not None else (
        BATCH_MAX_WAIT if in_batch_job() else None)
    if max_wait is not None and max_wait <= 0:
        max_wait = None  # --max-wait 0: wait forever
    evaluator: Evaluator
    if getattr(a, "in_process", False):
        if a.python is None:
            raise ConfigError("--in-process runs a Python objective: it needs --python")
        if slots != 1:
            raise ConfigError("--in-process runs one evaluation at a time: it cannot be "
                              f"combined with --slots {a.slots} (start more workers instead)")
        evaluator = InProcessEvaluator(a.python)
    else:
        evaluator = make_evaluator(a.python, a.command, getattr(a, "parser", None), slots)
    opts = WorkerOptions(connect=a.connect, address_file=a.address_file, name=a.name,
                         walltime=walltime, drain=a.drain, slots=slots, max_wait=max_wait,
                         keys=a.keys)
    agent = WorkerAgent(evaluator, opts)
    code = agent.run()
    print(f"tether worker {agent.name}: {agent.exit_reason}", file=sys.stderr, flush=True)
    return code
