"""``tether launch slurm`` submitting for real (issue 16, part 3).

A controller runs here on 127.0.0.1; ``tether launch slurm`` writes and submits a worker
job to the single-node Slurm that ``scripts/ci-slurm.sh`` starts; its node agent joins,
the run meets its budget, the agent exits 0 and the job ends COMPLETED by itself, long
before its walltime.

Until ``tether worker --slots`` exists (it is being added beside this work), the job
runs tether through a small shim that drops ``--slots auto`` from the worker's options;
with ``--slots`` the generated script runs exactly as a user would get it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.contract import check_log, load
from tests.integration.harness import TETHER, Cluster, env, wait_for

pytestmark = pytest.mark.slurm
BUDGET = 8
OBJECTIVE = "tests.integration.objectives:quadratic"


def _slurm_state() -> str:
    try:
        r = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True,
                           timeout=30)
    except FileNotFoundError:
        return ""
    return r.stdout if r.returncode == 0 else f"ERROR: {r.stderr.strip()}"


def _worker_has_slots() -> bool:
    r = subprocess.run([*TETHER, "worker", "--help"], capture_output=True, text=True,
                       env=env(), timeout=60)
    return "--slots" in r.stdout


def _shim(tmp: Path) -> str:
    """A tether command for the job that ignores --slots (for a worker without it)."""
    path = tmp / "tether_noslots.py"
    path.write_text(textwrap.dedent("""\
        import runpy, sys
        if __name__ == "__main__":  # not again in the spawned child of --python
            args = sys.argv[1:]
            if "--slots" in args:
                i = args.index("--slots")
                del args[i:i + 2]
            sys.argv = ["tether", *args]
            runpy.run_module("tether", run_name="__main__")
        """))
    return f"{sys.executable} {path}"


def _job_field(job: str, name: str) -> str | None:
    r = subprocess.run(["scontrol", "show", "job", "-o", job], capture_output=True, text=True,
                       timeout=30)
    found = re.search(rf"\b{name}=(\S+)", r.stdout)
    return found.group(1) if found else None


def _active(job: str) -> bool:
    return (_job_field(job, "JobState") or "GONE") in ("PENDING", "RUNNING", "COMPLETING",
                                                        "CONFIGURING")


@pytest.mark.timeout(400)
def test_launch_slurm_submits_a_worker_job_that_completes_evaluations(cluster: Cluster) -> None:
    state = _slurm_state()
    if not state:
        pytest.skip("Slurm is not installed (no sinfo): run scripts/ci-slurm.sh as root")
    assert not state.startswith("ERROR"), f"sinfo is installed but Slurm does not answer: {state}"

    cluster.start_controller(config=cluster.config(budget=BUDGET))
    name = f"tlaunch{os.getpid()}"
    how = [] if _worker_has_slots() else ["--tether-cmd", _shim(cluster.tmp)]
    r = subprocess.run([*TETHER, "launch", "slurm", "--nodes", "1", "--time", "00:05:00",
                        "--eval-time", "10", "--cpus-per-node", "1", "--job-name", name, *how,
                        "--", "--address-file", str(cluster.addr), "--python", OBJECTIVE],
                       capture_output=True, text=True, env=env(), cwd=cluster.tmp, timeout=120)
    assert r.returncode == 0, r.stderr
    jobs = r.stdout.split()
    assert len(jobs) == 1 and jobs[0].isdigit(), r.stdout
    job = jobs[0]
    try:
        scripts = list(cluster.tmp.glob(f"{name}-*.sbatch"))
        assert len(scripts) == 1 and "--slots auto" in scripts[0].read_text()

        # the job may queue behind others on the shared node: generous, not a timing claim;
        # a job that dies (a broken script) ends the wait at once
        wait_for(lambda: cluster.controller.poll() is not None  # type: ignore[union-attr]
                 or not _active(job), 300, "the run's end or the job's")
        out = cluster.tmp / f"{name}-{job}.out"
        assert cluster.wait_controller(30) == 0, \
            (out.read_text() if out.exists() else "no job output") + cluster.output("controller")
        check_log(cluster.log, completed=BUDGET)
        events = load(cluster.log)
        workers = {e["worker"] for e in events if e["event"] == "completed"}
        assert workers == {f"{name}-{job}-0"}, workers  # the node agent named by the script

        # told the run is over, the agent exits 0; srun and the job end by themselves
        wait_for(lambda: not _active(job), 120, "the job's end")
        state_now = _job_field(job, "JobState")
        if state_now is not None:  # still in slurmctld's memory (MinJobAge)
            assert state_now == "COMPLETED", (state_now, _job_field(job, "ExitCode"))
        assert out.exists() and "tether worker" in out.read_text(), \
            out.read_text() if out.exists() else "no job output"
    finally:
        subprocess.run(["scancel", job], capture_output=True, timeout=60)
