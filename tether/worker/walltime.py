"""When does this batch job end? (``--walltime`` wins; else Slurm or PBS; else never.)"""

from __future__ import annotations

import os
import re
import subprocess
import time
from datetime import datetime


def job_seconds_left() -> float | None:
    """Seconds until the enclosing Slurm or PBS job's time limit, if one can be found."""
    end = os.environ.get("SLURM_JOB_END_TIME")  # set by newer Slurm releases only
    if end and end.isdigit():
        return float(end) - time.time()
    job = os.environ.get("SLURM_JOB_ID")
    if job:
        return _slurm_left(job)
    job = os.environ.get("PBS_JOBID")
    if job:
        return _pbs_left(job)
    return None


def _run(argv: list[str]) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def _slurm_left(job: str) -> float | None:
    out = _run(["squeue", "-h", "-j", job, "-o", "%e"]).strip()
    try:
        end = datetime.strptime(out, "%Y-%m-%dT%H:%M:%S")
    except ValueError:
        return None
    return end.timestamp() - time.time()


def _pbs_left(job: str) -> float | None:
    out = _run(["qstat", "-f", job])
    limit = re.search(r"Resource_List\.walltime = (\d+):(\d+):(\d+)", out)
    used = re.search(r"resources_used\.walltime = (\d+):(\d+):(\d+)", out)
    if not limit:
        return None
    secs = [int(h) * 3600 + int(m) * 60 + int(s) for h, m, s in
            (g.groups() for g in (limit, used) if g)]
    return float(secs[0] - (secs[1] if len(secs) > 1 else 0))
