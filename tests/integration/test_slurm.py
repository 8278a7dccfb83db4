"""Workers as real Slurm jobs killed at their walltime (issue 4, test 4).

A controller runs here; workers run as Slurm job arrays with ``--time=1`` (one minute;
Slurm checks limits every ~30 s, so a job ends 60-100 s after it starts). The throttle
``%1`` makes each array a stream of job generations: when one task ends, the next one
starts and its worker joins. The optimisation needs about two generations per stream.
Three streams run side by side, one per way a job can end:

- ``drain``: scripts/slurm/worker-array.sbatch as shipped, ``--drain 10``: the worker
  reads its end time from Slurm, finishes what it has and leaves (reason ``walltime``);
  nothing is abandoned;
- ``signal``: the same template with ``--signal=B:TERM@20`` and a worker that does not
  know its walltime: SIGTERM reaches the worker (the batch shell ``exec``s it) mid
  evaluation; it says goodbye (reason ``sigterm``) and the evaluation is re-queued;
- ``limit``: a plain ``sbatch --wrap`` job, no ``--signal``, the objective as an
  external program (``--command``): Slurm's own time-limit kill, SIGTERM to every
  process of the job (the program too), SIGKILL after KillWait.

Everything is asserted from the log. ``TETHER_SLURM_BUDGET`` makes the run longer (the
walltime figures of docs/benchmarks.md come from ``-s`` runs of this test).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.contract import check_log, load
from tests.integration.harness import ROOT, Cluster, env, events_of, wait_for

TEMPLATE = ROOT / "scripts" / "slurm" / "worker-array.sbatch"
OBJECTIVE = "tests.integration.test_slurm:sleepy"
# the same objective as an external program (no shell: tether splits the template)
SLEEPY_CODE = ("import sys, time; x0, x1 = map(float, sys.argv[1:3]); time.sleep(1 + 2 * x0); "
               "print('tether:value', repr((x0 - 0.3) ** 2 + (x1 - 0.3) ** 2))")
COMMAND = f"{sys.executable} -c {shlex.quote(SLEEPY_CODE)} {{x0}} {{x1}}"
STREAMS = ("drain", "signal", "limit")
BUDGET = int(os.environ.get("TETHER_SLURM_BUDGET", "150"))
LIMIT = 60 + 2 * BUDGET  # seconds for the run: it takes about 0.85 s per evaluation
GENERATIONS = max(10, BUDGET // 8)  # array tasks per stream, run one after another


def sleepy(x: np.ndarray) -> float:
    """The objective: 1 to 3 s of 'work' (sleeping), then a quadratic."""
    time.sleep(1.0 + 2.0 * float(x[0]))
    return float(np.sum((x - 0.3) ** 2))


def _sinfo_ok() -> str:
    if shutil.which("sinfo") is None:
        return ""
    r = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=30)
    return r.stdout if r.returncode == 0 else f"ERROR: {r.stderr.strip()}"


def _sbatch(*args: str, cwd: Path) -> str:
    r = subprocess.run(["sbatch", "--parsable", *args], capture_output=True, text=True,
                       env=env(), cwd=cwd, timeout=60)
    assert r.returncode == 0, f"sbatch {args} failed: {r.stderr}"
    return r.stdout.strip().split(";")[0]


def _submit(tmp: Path, addr: Path) -> list[str]:
    py = f"{sys.executable} -m tether"
    common = ["--time=1", f"--array=0-{GENERATIONS - 1}%1", f"--chdir={tmp}",
              f"--output={tmp}/%x-%A_%a.out", "--export=ALL,TETHER_CMD=" + py]
    worker = ["--address-file", str(addr), "--python", OBJECTIVE]
    jobs = [
        # as shipped, with a drain margin that fits a one-minute job; the template's
        # safety-net SIGTERM is swapped for the harmless SIGURG: Slurm may deliver a
        # --signal up to 60 s early, i.e. at any time in a one-minute job
        _sbatch(*common, "--job-name=drain", "--signal=B:URG@1", str(TEMPLATE), *worker,
                "--drain", "10", cwd=tmp),
        # the worker thinks it has an hour: only the early SIGTERM tells it to go
        _sbatch(*common, "--job-name=signal", "--signal=B:TERM@20", str(TEMPLATE), *worker,
                "--drain", "0", "--walltime", "3600", cwd=tmp),
        # no template, no --signal: Slurm's time-limit kill of every process in the job,
        # the objective's program included (an external program: --command)
        _sbatch(*common, "--job-name=limit",
                "--wrap", f"exec {py} worker --walltime 3600 --address-file {addr} "
                          f"--command {shlex.quote(COMMAND)} --name "
                          "limit-${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}", cwd=tmp),
    ]
    return jobs


def _scancel(jobs: list[str]) -> None:
    if jobs:
        subprocess.run(["scancel", *jobs], capture_output=True, timeout=60)


def stream_of(worker: str) -> str:
    return worker.split("-", 1)[0]


def abandoned_at_leave(events: list[dict[str, Any]]) -> list[tuple[dict[str, Any], list[int]]]:
    """For each worker_left: the evaluations its worker still held (started, not ended)."""
    holding: dict[str, dict[int, float]] = defaultdict(dict)
    out = []
    for e in events:
        kind = e["event"]
        if kind == "started":
            holding[e["worker"]][e["eval_id"]] = e["t"]
        elif kind in ("completed", "failed", "killed"):
            for held in holding.values():
                held.pop(e["eval_id"], None)
        elif kind in ("requeued", "lost"):
            pass  # the worker_left just before says whose it was
        elif kind == "worker_left":
            out.append((e, sorted(holding.pop(e["worker"], {}))))
    return out


def walltime_figures(events: list[dict[str, Any]],
                     jobs: dict[str, tuple[float, float]]) -> dict[str, dict[str, float]]:
    """Per stream, over the jobs that ended during the run: how they ended and what it cost.

    ``jobs`` maps an array task ("27_1") to its (start, nominal end) in Unix seconds, as
    squeue showed them. ``tail_s`` is nominal end minus leaving: positive when a draining
    worker left early (allocation handed back unused), negative when Slurm's kill came
    after the limit (its ~30 s check period).
    """
    started: dict[tuple[int, str], float] = {}
    joined: dict[str, float] = {}
    busy: dict[str, float] = defaultdict(float)
    for e in events:
        kind, w = e["event"], e.get("worker", "")
        if kind == "worker_joined":
            joined[w] = e["t"]
        elif kind == "started":
            started[(e["eval_id"], w)] = e["t"]
        elif kind == "completed":
            busy[w] += e["t"] - started.get((e["eval_id"], w), e["t"])
    figs: dict[str, dict[str, float]] = {s: defaultdict(float) for s in STREAMS}
    for left, held in abandoned_at_leave(events):
        w = left["worker"]
        f = figs[stream_of(w)]
        f["jobs_ended"] += 1
        f["worker_s"] += left["t"] - joined.get(w, left["t"])
        f["busy_s"] += busy[w]
        f["abandoned"] += len(held)
        f["lost_s"] += sum(left["t"] - started[(i, w)] for i in held)
        task = w.split("-", 1)[1]
        if task in jobs:
            f["tail_s"] += jobs[task][1] - left["t"]
            f["timed_jobs"] += 1
    return {s: dict(f) for s, f in figs.items()}


def _job_times(into: dict[str, tuple[float, float]]) -> None:
    """Record (start, nominal end) of every running array task of this test."""
    r = subprocess.run(["squeue", "-h", "-t", "R", "-n", ",".join(STREAMS), "-o", "%i|%S|%e"],
                       capture_output=True, text=True, timeout=30,
                       env={**os.environ, "SLURM_TIME_FORMAT": "standard"})
    for line in r.stdout.split():
        task, start, end = line.split("|")
        try:
            into[task] = (datetime.strptime(start, "%Y-%m-%dT%H:%M:%S").timestamp(),
                          datetime.strptime(end, "%Y-%m-%dT%H:%M:%S").timestamp())
        except ValueError:
            continue


@pytest.mark.slurm
@pytest.mark.timeout(LIMIT + 60)
def test_workers_as_slurm_jobs_killed_at_walltime(cluster: Cluster) -> None:
    state = _sinfo_ok()
    if not state:
        pytest.skip("Slurm is not installed (no sinfo): run scripts/ci-slurm.sh as root")
    assert not state.startswith("ERROR"), f"sinfo is installed but Slurm does not answer: {state}"

    cfg = cluster.config(budget=BUDGET, run="heartbeat = 1.0\nliveness = 5\neval_timeout = 60")
    cluster.start_controller(config=cfg)
    t0 = time.monotonic()
    jobs: list[str] = []
    try:
        jobs = _submit(cluster.tmp, cluster.addr)
        times: dict[str, tuple[float, float]] = {}
        while cluster.controller.poll() is None:  # type: ignore[union-attr]
            assert time.monotonic() - t0 < LIMIT, "the budget was not met across job generations"
            _job_times(times)
            with contextlib.suppress(subprocess.TimeoutExpired):
                cluster.controller.wait(timeout=1.0)  # type: ignore[union-attr]
        took = time.monotonic() - t0
    finally:
        _scancel(jobs)
    assert cluster.controller is not None and cluster.controller.returncode == 0, \
        cluster.output("controller")

    # the log contract: the budget met, one terminal event per evaluation, seq gap-free
    counts = check_log(cluster.log, completed=BUDGET)
    events = load(cluster.log)

    # several job generations per stream, and later generations did real work
    joined = [e["worker"] for e in events if e["event"] == "worker_joined"]
    by_stream = {s: sorted({w for w in joined if stream_of(w) == s}) for s in STREAMS}
    for s, workers in by_stream.items():
        assert len(workers) >= 2, f"stream {s}: only {workers} joined: not several generations"
    done_by = {e["worker"] for e in events if e["event"] == "completed"}
    for s, workers in by_stream.items():
        assert done_by & set(workers[1:]), f"stream {s}: no later generation completed work"

    # how each job ended, from the log: no worker was merely 'lost' (everyone said goodbye)
    reasons = {s: [e["reason"] for e in events if e["event"] == "worker_left"
                   and stream_of(e["worker"]) == s] for s in STREAMS}
    assert reasons["drain"] and set(reasons["drain"]) == {"walltime"}, reasons
    assert reasons["signal"] and set(reasons["signal"]) == {"sigterm"}, reasons
    assert reasons["limit"] and set(reasons["limit"]) == {"sigterm"}, reasons
    assert counts["lost"] == 0, "a dying job was noticed by the liveness window, not a goodbye"

    # nothing lost or doubled: what a dying job held was re-queued at once and then
    # completed exactly once, by another worker; the objective never fails
    failed = [e for e in events if e["event"] in ("failed", "killed")
              and not str(e.get("error", "")).startswith("run finished")]
    assert not failed, f"evaluations failed when their job died: {failed}"
    terminal = {e["eval_id"]: e for e in events if e["event"] in ("completed", "failed", "killed")}
    finished = next(i for i, e in enumerate(events) if e["event"] == "run_finished")
    abandoned_total = 0
    for left, held in abandoned_at_leave(events):
        for eval_id in held:
            abandoned_total += 1
            after = events[left["seq"]:]
            req = [e for e in after if e["event"] == "requeued" and e["eval_id"] == eval_id]
            assert req, f"eval {eval_id} abandoned by {left['worker']} was never re-queued"
            assert req[0]["t"] - left["t"] < 1.0, "re-queued late: the goodbye was not used"
            if left["seq"] > finished:
                continue
            end = terminal.get(eval_id)
            assert end is not None and end["event"] == "completed", (eval_id, end)
            assert end["worker"] != left["worker"]
    figs = walltime_figures(events, times)
    assert figs["drain"].get("abandoned", 0) == 0, "draining workers abandoned evaluations"
    assert figs["signal"].get("abandoned", 0) >= 1 and figs["limit"].get("abandoned", 0) >= 1

    print(f"\nSlurm walltime run: budget {BUDGET}, {took:.0f} s, {counts['worker_joined']} "
          f"workers joined, {abandoned_total} evaluations abandoned and re-queued")
    print("  stream   jobs ended  abandoned/job  work lost s/job  busy %  tail s/job")
    for s in STREAMS:
        f = figs[s]
        n = max(1, int(f.get("jobs_ended", 0)))
        timed = max(1, int(f.get("timed_jobs", 0)))
        print(f"  {s:7s}  {int(f.get('jobs_ended', 0)):10d}  {f.get('abandoned', 0) / n:13.2f}"
              f"  {f.get('lost_s', 0) / n:15.2f}"
              f"  {100 * f.get('busy_s', 0) / max(1e-9, f.get('worker_s', 0)):6.1f}"
              f"  {f.get('tail_s', 0) / timed:10.1f}")


def _descendants(pid: int) -> list[int]:
    """Every process under ``pid`` (from /proc), like Slurm's proctrack/linuxproc."""
    children: dict[int, list[int]] = defaultdict(list)
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            children[int(stat.rsplit(")", 1)[1].split()[1])].append(int(entry))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


@pytest.mark.parametrize("how", ["python", "command"])
def test_job_wide_sigterm_requeues_and_never_fails(cluster: Cluster, how: str) -> None:
    """What Slurm does at a job's time limit, without Slurm: SIGTERM to the worker and to
    every process under it, the objective's own included, in the same instant."""
    if not Path("/proc/self/stat").exists():
        pytest.skip("needs /proc")
    cluster.start_controller(config=cluster.config(budget=12))
    what = {"python": {"python": OBJECTIVE}, "command": {"command": COMMAND}}[how]
    held = []
    for k in range(4):
        w = cluster.start_worker(name=f"victim{k}", **what)
        first = wait_for(lambda k=k: [e for e in events_of(cluster.log, "started")
                                      if e["worker"] == f"victim{k}"], 60, "an evaluation")
        # 1-3 s long: still running now; even if the dispatch were still on its way, the
        # goodbye re-queues everything the controller handed this worker
        held.append(first[0]["eval_id"])
        for pid in [w.pid, *_descendants(w.pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        assert w.wait(timeout=30) == 0
    cluster.start_worker(name="finisher", **what)
    assert cluster.wait_controller(120) == 0
    check_log(cluster.log, completed=12)
    events = load(cluster.log)
    left = [e for e in events if e["event"] == "worker_left" and e["worker"] != "finisher"]
    assert [e["reason"] for e in left] == ["sigterm"] * 4, left
    failed = [e for e in events if e["event"] == "failed"]
    assert not failed, f"the job-wide SIGTERM failed evaluations instead of re-queuing: {failed}"
    for eval_id, e in zip(held, left):  # abandoned, re-queued at once, completed once
        requeued = [r for r in events if r["event"] == "requeued" and r["eval_id"] == eval_id
                    and r["seq"] > e["seq"]]
        assert requeued and 0 <= requeued[0]["t"] - e["t"] < 1.0, (eval_id, e)
        done = [r for r in events if r["event"] == "completed" and r["eval_id"] == eval_id]
        assert len(done) == 1 and done[0]["worker"] != e["worker"], done
