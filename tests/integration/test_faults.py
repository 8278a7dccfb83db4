"""Faults for real: SIGKILLed workers and controllers, timeouts, kills, walltime, SIGTERM.

Every property is asserted from the log file, the product's own contract.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import sys
from pathlib import Path

import pytest

from tests.contract import check_log
from tests.integration.harness import Cluster, events_of, wait_for

PROG = Path(__file__).parent / "progs" / "objective.py"
FAST = "heartbeat = 0.2\nliveness = 3\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def n_events(c: Cluster, kind: str) -> int:
    return len(events_of(c.log, kind))


NODE_AGENTS = {"one-slot": ([], ""), "3-slot agents, prefetch 2": (["--slots", "3"], "prefetch = 2")}


@pytest.mark.timeout(240)
@pytest.mark.parametrize("mode", NODE_AGENTS)
def test_sigkill_workers_repeatedly(cluster: Cluster, mode: str) -> None:
    cluster.worker_args, cluster.run_extra = NODE_AGENTS[mode]
    budget = 240
    cluster.start_controller(config=cluster.config(budget=budget, run=FAST))
    for _ in range(4):
        cluster.start_worker(python="tests.integration.objectives:sleepy")
    rng = random.Random(7)
    killed = 0
    while cluster.controller.poll() is None and killed < 8:  # type: ignore[union-attr]
        done = n_events(cluster, "completed")
        if done >= budget - 40:
            break
        # kill the busiest moment we can find: wait for a few more completions first
        wait_for(lambda d=done: n_events(cluster, "completed") >= d + 8
                 or cluster.controller.poll() is not None, 60, "progress")  # type: ignore[union-attr]
        alive = [w for w in cluster.workers if w.poll() is None]
        victim = rng.choice(alive)
        cluster.kill(victim)
        killed += 1
        cluster.start_worker(python="tests.integration.objectives:sleepy")
    assert cluster.wait_controller(timeout=180) == 0
    counts = check_log(cluster.log, completed=budget)
    assert killed >= 4
    assert counts["lost"] >= 1 and counts["requeued"] >= counts["lost"] - counts["failed"]
    # each lost evaluation was finished exactly once afterwards (or failed after retries)
    terminal = {e["eval_id"] for e in events_of(cluster.log)
                if e["event"] in ("completed", "failed", "killed")}
    assert {e["eval_id"] for e in events_of(cluster.log, "lost")} <= terminal


@pytest.mark.timeout(240)
@pytest.mark.parametrize("mode", NODE_AGENTS)
def test_sigkill_controller_and_resume_keeps_workers(cluster: Cluster, mode: str) -> None:
    cluster.worker_args, cluster.run_extra = NODE_AGENTS[mode]
    budget = 150
    port = free_port()
    cfg = cluster.config(budget=budget, run=FAST + "grace = 5\n")
    bind = ["--bind", f"tcp://127.0.0.1:{port}"]
    cluster.start_controller(*bind, config=cfg)
    for _ in range(3):
        cluster.start_worker(python="tests.integration.objectives:sleepy")
    worker_pids = [w.pid for w in cluster.workers]
    restarts = 0
    for target in (30, 70, 110):
        wait_for(lambda t=target: n_events(cluster, "completed") >= t, 90, f"{target} completed")
        cluster.kill(cluster.controller)  # type: ignore[arg-type]
        restarts += 1
        cluster.start_controller(*bind, "--resume", config=cfg)
    assert cluster.wait_controller(timeout=180) == 0
    counts = check_log(cluster.log, completed=budget)
    # the same worker processes served the whole run and were told it ended
    assert [w.pid for w in cluster.workers] == worker_pids
    for w in cluster.workers:
        assert w.wait(timeout=30) == 0
    starts = events_of(cluster.log, "run_started")
    assert len(starts) == 1 + restarts and all(s.get("resumed") for s in starts[1:])
    assert counts["worker_joined"] >= 3 * (1 + restarts) - 2  # they rejoined each controller
    # evaluations in flight at a crash: their results were counted once (check_log), and
    # most of them came from the worker that was running them (not re-run elsewhere)
    in_flight, kept = _in_flight_at_crashes(events_of(cluster.log))
    assert in_flight, "no evaluation was in flight at any crash: the test proved nothing"
    assert kept >= len(in_flight) // 2, (kept, len(in_flight))


def _in_flight_at_crashes(events: list[dict]) -> tuple[set[int], int]:
    running: dict[int, str] = {}
    at_crash: dict[int, str] = {}
    for e in events:
        kind = e["event"]
        if kind == "run_started" and e.get("resumed"):
            at_crash.update(running)
        elif kind == "started":
            running[e["eval_id"]] = e["worker"]
        elif kind in ("completed", "failed", "killed", "requeued"):
            running.pop(e["eval_id"], None)
    kept = sum(1 for e in events if e["event"] == "completed"
               and at_crash.get(e["eval_id"]) == e["worker"])
    return set(at_crash), kept


@pytest.mark.timeout(120)
def test_eval_timeout_kills_python_and_frees_the_worker(cluster: Cluster) -> None:
    cfg = cluster.config(budget=12, run="eval_timeout = 1.0\n")
    cluster.start_controller(config=cfg)
    cluster.start_worker(python="tests.integration.objectives:hangs_left")
    cluster.start_worker(python="tests.integration.objectives:hangs_left")
    assert cluster.wait_controller(timeout=100) == 0
    counts = check_log(cluster.log, completed=12)
    killed = events_of(cluster.log, "killed")
    assert counts["killed"] >= 1 and all("eval_timeout" in e["error"] for e in killed)
    xs = {e["eval_id"]: e["x"] for e in events_of(cluster.log, "proposed")}
    assert all(xs[e["eval_id"]][0] < 0.3 for e in killed)


@pytest.mark.timeout(120)
def test_eval_timeout_kills_the_whole_process_group(cluster: Cluster) -> None:
    pids = cluster.tmp / "pids"
    os.environ["TETHER_TEST_PIDS"] = str(pids)  # inherited by the worker and its programs
    try:
        cfg = cluster.config(budget=8, run="eval_timeout = 1.0\n")
        cluster.start_controller(config=cfg)
        cluster.start_worker(command=f"{sys.executable} {PROG} stubborn {{x0}} {{x1}}")
    finally:
        del os.environ["TETHER_TEST_PIDS"]
    assert cluster.wait_controller(timeout=100) == 0
    check_log(cluster.log, completed=8)
    assert n_events(cluster, "killed") >= 1
    for line in pids.read_text().split("\n"):
        for pid in map(int, line.split()):
            # SIGTERM was ignored, so SIGKILL after the grace period took program and child
            wait_for(lambda p=pid: not _alive(p), 15, f"process {pid} to be gone")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie counts as gone
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.timeout(120)
def test_sigterm_worker_says_goodbye_and_work_is_requeued_at_once(cluster: Cluster) -> None:
    # a liveness window of 30 s: only the goodbye can explain a quick re-queue
    cfg = cluster.config(budget=6, run="heartbeat = 10.0\nliveness = 3\n")
    cluster.start_controller(config=cfg)
    flag = cluster.tmp / "release"
    os.environ["TETHER_TEST_FLAG"] = str(flag)
    try:
        victim = cluster.start_worker(python="tests.integration.objectives:slow", name="victim")
        wait_for(lambda: any(e.get("worker") == "victim" for e in events_of(cluster.log, "started")),
                 30, "the victim to start an evaluation")
        cluster.kill(victim, signal.SIGTERM)
        assert victim.wait(timeout=20) == 0
        left = wait_for(lambda: events_of(cluster.log, "worker_left"), 10, "worker_left")
        assert left[0]["reason"] == "sigterm"
        requeued = events_of(cluster.log, "requeued")
        assert requeued and requeued[0]["t"] - left[0]["t"] < 1.0
        assert n_events(cluster, "lost") == 0  # leaving is not being lost: no retry spent
        flag.write_text("go")
        cluster.start_worker(python="tests.integration.objectives:slow", name="helper")
    finally:
        del os.environ["TETHER_TEST_FLAG"]
    assert cluster.wait_controller(timeout=60) == 0
    check_log(cluster.log, completed=6)


@pytest.mark.timeout(120)
def test_walltime_drain_leaves_without_abandoning(cluster: Cluster) -> None:
    cluster.start_controller(config=cluster.config(budget=60, run=FAST))
    short = cluster.start_worker("--walltime", "3", "--drain", "1",
                                 python="tests.integration.objectives:sleepy", name="short")
    assert short.wait(timeout=30) == 0
    left = [e for e in events_of(cluster.log, "worker_left") if e["worker"] == "short"]
    assert left and left[0]["reason"] == "walltime"
    assert n_events(cluster, "requeued") == 0  # drained: nothing was abandoned
    assert any(e["worker"] == "short" for e in events_of(cluster.log, "completed"))
    cluster.start_worker(python="tests.integration.objectives:sleepy", name="long")
    assert cluster.wait_controller(timeout=90) == 0
    check_log(cluster.log, completed=60)


@pytest.mark.timeout(60)
def test_worker_started_before_controller_keeps_trying(cluster: Cluster) -> None:
    port = free_port()
    w = cluster.start_worker("--connect", f"tcp://127.0.0.1:{port}",
                             python="tests.integration.objectives:quadratic")
    # the worker runs on its own for a while: it must not give up
    with pytest.raises(TimeoutError):
        wait_for(lambda: w.poll() is not None, 2.0, "the worker to exit")
    cluster.start_controller("--bind", f"tcp://127.0.0.1:{port}", config=cluster.config(budget=5))
    assert cluster.wait_controller(timeout=40) == 0
    assert w.wait(timeout=20) == 0
    check_log(cluster.log, completed=5)


@pytest.mark.timeout(60)
def test_worker_starting_inside_its_drain_window_takes_no_work(cluster: Cluster) -> None:
    cluster.start_controller(config=cluster.config(budget=5, run=FAST))
    late = cluster.start_worker("--walltime", "2", "--drain", "5",
                                python="tests.integration.objectives:quadratic", name="late")
    assert late.wait(timeout=30) == 0
    assert not [e for e in events_of(cluster.log, "started") if e["worker"] == "late"]
    cluster.start_worker(python="tests.integration.objectives:quadratic", name="normal")
    assert cluster.wait_controller(timeout=40) == 0
    check_log(cluster.log, completed=5)


@pytest.mark.timeout(120)
def test_asks_longer_than_the_liveness_window_lose_nothing(cluster: Cluster) -> None:
    # heartbeat 0.2 s x liveness 3: each 1.5 s ask silences the controller for 2.5 windows
    cluster.start_controller(config=cluster.config(
        budget=8, strategy="tests.integration.objectives:slow_asks", run=FAST))
    for _ in range(2):
        cluster.start_worker(python="tests.integration.objectives:quadratic")
    assert cluster.wait_controller(timeout=90) == 0
    counts = check_log(cluster.log, completed=8)  # one terminal event per evaluation
    assert counts["failed"] == 0 and counts["killed"] == 0
    # the workers' connections stayed up (libzmq's heartbeats were answered), so they
    # waited for the busy controller instead of reconnecting, and nothing was re-routed
    assert counts["worker_left"] == 0 and counts["requeued"] == 0 and counts["started"] == 8
