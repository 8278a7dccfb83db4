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
    # a user's SLURM_TIME_FORMAT (e.g. "relative") would change the dates printed
    env = {**os.environ, "SLURM_TIME_FORMAT": "standard"}
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=10, env=env).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def _slurm_left(job: str) -> float | None:
    # Slurm 22.05 does not set SLURM_JOB_END_TIME: ask squeue, then scontrol
    out = _run(["squeue", "-h", "-j", job, "-o", "%e"]).strip()
    if not out:
        found = re.search(r"\bEndTime=(\S+)", _run(["scontrol", "show", "job", job]))
        out = found.group(1) if found else ""
    try:
        end = datetime.strptime(out, "%Y-%m-%dT%H:%M:%S")  # the node's local time
    except ValueError:
        return None  # "Unknown", "N/A": no limit known
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
