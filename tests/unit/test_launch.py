"""``tether launch slurm|pbs`` without a batch system: the job scripts it would submit
(``--dry-run``), read back by bash itself, and its usage errors (exit 2)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.integration.harness import TETHER, env

pytestmark = pytest.mark.timeout(60)

COMMAND = "sim --input 'my deck.inp' {x0} {x1}"
WORKER = ["--address-file", "/shared/run/tether.address", "--command", COMMAND,
          "--parser", r"re:^objective = (?P<value>\S+)$"]


def tether(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*TETHER, *args], capture_output=True, text=True, env=env(),
                          cwd=cwd, timeout=60)


def worker_argv(script: str) -> list[str]:
    """The worker's argv exactly as bash will build it from the script's array."""
    line = next(ln for ln in script.splitlines() if ln.startswith("worker=("))
    r = subprocess.run(["bash", "-c", f'{line}\nprintf "%s\\0" "${{worker[@]}}"'],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return r.stdout.split("\0")[:-1]


def directives(script: str, prefix: str) -> list[str]:
    return [ln[len(prefix):].strip() for ln in script.splitlines() if ln.startswith(prefix)]


def test_slurm_dry_run(tmp_path: Path) -> None:
    r = tether("launch", "slurm", "--nodes", "3", "--time", "04:00:00", "--partition", "short",
               "--account", "proj42", "--eval-time", "600", "--directive=--mem=8G",
               "--dry-run", "--", *WORKER, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    script = r.stdout
    assert script.startswith("#!/bin/bash\n")
    assert list(tmp_path.iterdir()) == [], "a dry run writes nothing"
    sb = directives(script, "#SBATCH")
    for want in ["--nodes=3", "--ntasks-per-node=1", "--time=04:00:00", "--partition=short",
                 "--account=proj42", "--exclusive", "--mem=8G", "--signal=TERM@30"]:
        assert want in sb, (want, sb)
    argv = worker_argv(script)
    i = argv.index("worker")
    # --slots auto and the drain (600 s evaluation + 90 s) first: the user's options win
    assert argv[i:] == ["worker", "--slots", "auto", "--drain", "690", *WORKER]
    srun = [ln for ln in script.splitlines() if ln.startswith("srun ")]
    assert len(srun) == 1 and "--ntasks-per-node=1" in srun[0] and "--nodes=3" in srun[0]
    assert "$SLURM_NODEID" in script  # one name per node's agent
    check = subprocess.run(["bash", "-n"], input=script, capture_output=True, text=True,
                           timeout=30)
    assert check.returncode == 0, check.stderr


def test_slurm_dry_run_with_cpus_and_default_drain() -> None:
    r = tether("launch", "slurm", "--nodes", "1", "--time", "01:00:00", "--cpus-per-node", "8",
               "--job-name", "opt7", "--tether-cmd", "/opt/venv/bin/tether", "--dry-run",
               "--", *WORKER)
    assert r.returncode == 0, r.stderr
    sb = directives(r.stdout, "#SBATCH")
    assert "--cpus-per-task=8" in sb and "--exclusive" not in sb and "--job-name=opt7" in sb
    assert worker_argv(r.stdout)[:6] == ["/opt/venv/bin/tether", "worker", "--slots", "auto",
                                         "--drain", "300"]
    assert '--name "opt7-$SLURM_JOB_ID-$SLURM_NODEID"' in r.stdout


def test_pbs_dry_run() -> None:
    r = tether("launch", "pbs", "--nodes", "4", "--time", "02:00:00", "--queue", "workq",
               "--account", "proj42", "--cpus-per-node", "36", "--eval-time", "120",
               "--dry-run", "--", *WORKER)
    assert r.returncode == 0, r.stderr
    pbs = directives(r.stdout, "#PBS")
    for want in ["-l select=1:ncpus=36", "-l walltime=02:00:00", "-q workq", "-A proj42",
                 "-N tether-workers"]:
        assert want in pbs, (want, pbs)
    assert "submitted 4 time(s)" in r.stdout  # one single-node job per node
    assert worker_argv(r.stdout)[-len(WORKER) - 5:] == ["worker", "--slots", "auto",
                                                        "--drain", "210", *WORKER]
    check = subprocess.run(["bash", "-n"], input=r.stdout, capture_output=True, text=True,
                           timeout=30)
    assert check.returncode == 0, check.stderr


@pytest.mark.parametrize("args, needle", [
    (["slurm", "--nodes", "1", "--time", "90min"], "HH:MM:SS"),
    (["slurm", "--nodes", "0", "--time", "01:00:00"], "--nodes"),
    (["slurm", "--nodes", "1", "--time", "00:05:00", "--eval-time", "600"], "no time to work"),
    (["slurm", "--nodes", "1", "--time", "00:04:00"], "no time to work"),  # default drain
    (["pbs", "--nodes", "1", "--time", "01:00:00"], "--cpus-per-node"),
    (["slurm", "--nodes", "1", "--time", "01:00:00", "--job-name", "a b"], "--job-name"),
])
def test_usage_errors_exit_2_with_one_line(args: list[str], needle: str) -> None:
    r = tether("launch", *args, "--dry-run", "--", *WORKER)
    assert r.returncode == 2, r.stderr
    assert needle in r.stderr and r.stderr.strip().count("\n") == 0, r.stderr


def test_worker_options_are_checked_before_anything_is_submitted() -> None:
    base = ["launch", "slurm", "--nodes", "1", "--time", "01:00:00", "--dry-run"]
    r = tether(*base)
    assert r.returncode == 2 and "after '--'" in r.stderr, r.stderr
    r = tether(*base, "--", "--address-file", "a")  # no objective
    assert r.returncode == 2 and "--python" in r.stderr and not r.stdout, r.stderr
    r = tether(*base, "--", *WORKER, "--name", "x")
    assert r.returncode == 2 and "--job-name" in r.stderr, r.stderr


def test_submitting_without_the_batch_system_says_so(tmp_path: Path) -> None:
    if shutil.which("qsub"):
        pytest.skip("PBS is installed here")
    r = tether("launch", "pbs", "--nodes", "1", "--time", "01:00:00", "--cpus-per-node", "2",
               "--", *WORKER, cwd=tmp_path)
    assert r.returncode == 1 and "qsub not found" in r.stderr, r.stderr
    assert r.stdout == ""  # no job id
    written = list(tmp_path.glob("tether-workers-*.pbs"))
    assert len(written) == 1 and re.search(r"^#PBS -l walltime=01:00:00$",
                                           written[0].read_text(), re.M)
