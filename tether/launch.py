"""``tether launch slurm|pbs``: write and submit a batch job of worker agents.

A thin helper over ``sbatch`` / ``qsub``, in the spirit of dask-jobqueue: one node agent
per node (``tether worker --slots auto``), a drain margin computed from the evaluation
time the user states, and the job ids printed on stdout (one a line) so scripts can
chain on them. ``--dry-run`` prints the job script instead of submitting it.

Slurm: one job of N nodes; ``srun`` starts one task (one agent) per node. PBS: N
single-node jobs, because starting one task per node inside a PBS job (``pbsdsh``,
``pbs_tmrsh``, ``mpiexec``) differs between PBS Pro, OpenPBS and Torque, while ``qsub``
of a one-node job is the same everywhere.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tether.errors import ConfigError, TetherError

# Slurm checks time limits about every 30 s and may deliver a --signal up to a minute
# early; a drain that starts this long (plus one evaluation) before the end is never
# overtaken by the safety-net signal, sent SIGNAL_LEAD seconds before the end.
SIGNAL_LEAD = 30
SLURM_JITTER = 60
DEFAULT_DRAIN = 300  # seconds, as the job templates use when no evaluation time is given


@dataclass
class LaunchOptions:
    system: str  # "slurm" or "pbs"
    nodes: int
    time: str  # HH:MM:SS
    worker: list[str]  # options for `tether worker`
    partition: str | None = None  # Slurm partition, PBS queue
    account: str | None = None
    eval_time: float | None = None  # seconds: the longest one evaluation takes
    cpus_per_node: int | None = None  # None: whole nodes (exclusive)
    job_name: str = "tether-workers"
    directives: list[str] = field(default_factory=list)  # extra #SBATCH / #PBS lines
    tether_cmd: str | None = None  # how compute nodes run tether
    dry_run: bool = False


def walltime_seconds(text: str) -> int:
    """``HH:MM:SS`` (hours may exceed 24) in seconds; ConfigError otherwise."""
    found = re.fullmatch(r"(\d+):([0-5]\d):([0-5]\d)", text.strip())
    if not found:
        raise ConfigError(f"--time wants HH:MM:SS, got {text!r}")
    h, m, s = (int(g) for g in found.groups())
    return h * 3600 + m * 60 + s


def drain_seconds(eval_time: float | None) -> int:
    """How long before the job's end a worker stops taking new evaluations."""
    if eval_time is None:
        return DEFAULT_DRAIN
    return int(eval_time + 0.999) + SIGNAL_LEAD + SLURM_JITTER


def check(o: LaunchOptions) -> None:
    """Everything that can be wrong before anything is written (exit 2)."""
    if o.system not in ("slurm", "pbs"):
        raise ConfigError(f"tether launch knows slurm and pbs, not {o.system!r}")
    if o.nodes < 1:
        raise ConfigError("--nodes must be at least 1")
    if o.cpus_per_node is not None and o.cpus_per_node < 1:
        raise ConfigError("--cpus-per-node must be at least 1")
    if o.system == "pbs" and o.cpus_per_node is None:
        # PBS has no "the whole node" request: ncpus decides what the agent may use
        raise ConfigError("tether launch pbs needs --cpus-per-node (the node's cores, "
                          "for whole nodes)")
    if o.eval_time is not None and not 0 < o.eval_time < float("inf"):
        raise ConfigError("--eval-time must be a positive number of seconds")
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", o.job_name):
        raise ConfigError(f"--job-name may hold letters, digits, '_', '.', '-': {o.job_name!r}")
    wall, drain = walltime_seconds(o.time), drain_seconds(o.eval_time)
    if drain >= wall:
        why = (f"--eval-time {o.eval_time:g} s + {SIGNAL_LEAD + SLURM_JITTER} s"
               if o.eval_time is not None else "the default without --eval-time")
        raise ConfigError(f"--time {o.time} leaves no time to work: workers stop taking "
                          f"evaluations {drain} s before the end ({why})")
    if not o.worker:
        raise ConfigError("give the worker's options after '--', e.g. -- --address-file "
                          "PATH --python module:function")
    if any(a == "--name" or a.startswith("--name=") for a in o.worker):
        raise ConfigError("tether launch names each worker JOBNAME-JOBID-NODE: "
                          "use --job-name instead of --name")


def _tether_argv(o: LaunchOptions) -> list[str]:
    # the Python running this command, by default: on a cluster the login and compute
    # nodes share the file system the virtual environment lives on
    return shlex.split(o.tether_cmd) if o.tether_cmd else [sys.executable, "-m", "tether"]


def _worker_array(o: LaunchOptions) -> str:
    """The worker's argv as a bash array; the user's options come last, so they win."""
    argv = [*_tether_argv(o), "worker", "--slots", "auto",
            "--drain", str(drain_seconds(o.eval_time)), *o.worker]
    return "worker=(" + " ".join(shlex.quote(a) for a in argv) + ")"


def slurm_script(o: LaunchOptions) -> str:
    cpus = o.cpus_per_node
    lines = ["#!/bin/bash",
             f"# written by: tether launch slurm ({time.strftime('%Y-%m-%d %H:%M:%S')})",
             f"#SBATCH --job-name={o.job_name}",
             f"#SBATCH --nodes={o.nodes}",
             "#SBATCH --ntasks-per-node=1",
             f"#SBATCH --time={o.time}",
             f"#SBATCH --signal=TERM@{SIGNAL_LEAD}",
             f"#SBATCH --output={o.job_name}-%j.out"]
    lines.append(f"#SBATCH --cpus-per-task={cpus}" if cpus else "#SBATCH --exclusive")
    lines += [f"#SBATCH --partition={o.partition}"] * bool(o.partition)
    lines += [f"#SBATCH --account={o.account}"] * bool(o.account)
    lines += [f"#SBATCH {d}" for d in o.directives]
    # srun does not pass --cpus-per-task on to its tasks by itself (Slurm >= 22.05)
    per_task = str(cpus) if cpus else '"$SLURM_CPUS_ON_NODE"'
    lines += [
        "set -euo pipefail",
        "",
        "# one node agent per node; it evaluates on every CPU it was given (--slots auto),",
        f"# takes no new work {drain_seconds(o.eval_time)} s before the job's end (--drain)"
        " and leaves when",
        "# the run is over. --signal sends SIGTERM to the agents as a safety net.",
        _worker_array(o),
        f"srun --nodes={o.nodes} --ntasks-per-node=1 --cpus-per-task={per_task} "
        "--kill-on-bad-exit=0 \\",
        f"    bash -c 'exec \"$@\" --name \"{o.job_name}-$SLURM_JOB_ID-$SLURM_NODEID\"' "
        'agent "${worker[@]}"',
        ""]
    return "\n".join(lines)


def pbs_script(o: LaunchOptions) -> str:
    cpus = o.cpus_per_node
    lines = ["#!/bin/bash",
             f"# written by: tether launch pbs ({time.strftime('%Y-%m-%d %H:%M:%S')}); "
             f"submitted {o.nodes} time(s), one single-node job per node",
             f"#PBS -N {o.job_name}",
             f"#PBS -l select=1:ncpus={cpus}",
             f"#PBS -l walltime={o.time}",
             "#PBS -j oe",
             "#PBS -V"]
    lines += [f"#PBS -q {o.partition}"] * bool(o.partition)
    lines += [f"#PBS -A {o.account}"] * bool(o.account)
    lines += [f"#PBS {d}" for d in o.directives]
    lines += [
        "set -euo pipefail",
        'cd "${PBS_O_WORKDIR:-$PWD}"',
        "",
        "# one node agent on this node; it evaluates on every CPU it was given (--slots auto),",
        f"# takes no new work {drain_seconds(o.eval_time)} s before the job's end (--drain,"
        " read from qstat)",
        "# and leaves when the run is over. At the limit PBS sends SIGTERM, then SIGKILL.",
        _worker_array(o),
        f'exec "${{worker[@]}}" --name "{o.job_name}-${{PBS_JOBID%%.*}}-0"',
        ""]
    return "\n".join(lines)


def _submit(argv: list[str], script: Path) -> str:
    tool = argv[0]
    if shutil.which(tool) is None:
        raise TetherError(f"{tool} not found: run tether launch where jobs are submitted "
                          "(a login node), or use --dry-run")
    try:
        r = subprocess.run([*argv, str(script)], capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        raise TetherError(f"{tool} did not answer within 120 s") from None
    if r.returncode != 0:
        raise TetherError(f"{tool} {script} failed: {r.stderr.strip() or r.stdout.strip()}")
    # sbatch --parsable prints "ID" or "ID;CLUSTER"; qsub prints "ID.SERVER"
    return r.stdout.strip().split(";")[0]


def launch(o: LaunchOptions) -> list[str]:
    """Write and submit the job (or only print it with ``dry_run``); the job ids."""
    check(o)
    text = slurm_script(o) if o.system == "slurm" else pbs_script(o)
    if o.dry_run:
        print(text, end="", flush=True)
        return []
    suffix = "sbatch" if o.system == "slurm" else "pbs"
    path = Path(f"{o.job_name}-{time.strftime('%Y%m%d-%H%M%S')}.{suffix}").resolve()
    path.write_text(text)
    print(f"tether launch: job script {path}", file=sys.stderr, flush=True)
    if o.system == "slurm":
        ids = [_submit(["sbatch", "--parsable"], path)]
    else:
        ids = [_submit(["qsub"], path) for _ in range(o.nodes)]
    for job in ids:
        print(job, flush=True)
    return ids
