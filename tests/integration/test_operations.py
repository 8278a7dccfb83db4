"""Operating a run: status, failures that end the run, stops and resumes, leaving workers.

Real controller and worker processes on 127.0.0.1, real signals.
"""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import pytest

from tests.contract import check_log, load
from tests.integration.harness import TETHER, Cluster, env, events_of, wait_for

FAST = "heartbeat = 0.2\nliveness = 3"
SLOW = "tests.integration.objectives:slow"


def status(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*TETHER, "status", str(cluster.addr), *args], capture_output=True,
                          text=True, env=env(), timeout=30)


@pytest.mark.timeout(120)
def test_status_lists_workers_and_what_they_run(cluster: Cluster, tmp_path: Path) -> None:
    flag = tmp_path / "go"
    cluster.start_controller(config=cluster.config(budget=6, run=f"{FAST}\nprefetch = 0"))
    import os

    os.environ["TETHER_TEST_FLAG"] = str(flag)
    try:
        for _ in range(2):
            cluster.start_worker(python=SLOW)
    finally:
        del os.environ["TETHER_TEST_FLAG"]
    wait_for(lambda: {e["worker"] for e in events_of(cluster.log, "started")} == {"w0", "w1"},
             60, "both workers busy")
    out = status(cluster, "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["budget"] == 6 and data["completed"] == 0 and data["in_flight"] >= 2
    assert sorted(w["name"] for w in data["workers"]) == ["w0", "w1"]
    assert all(len(w["running"]) == 1 for w in data["workers"])
    text = status(cluster).stdout
    assert "0/6 completed" in text and "w0" in text and "w1" in text
    # an observer is never given work and never appears as a worker
    assert not [e for e in events_of(cluster.log, "worker_joined") if e["worker"] not in
                ("w0", "w1")]
    flag.write_text("")
    assert cluster.wait_controller(60) == 0
    check_log(cluster.log, completed=6)


@pytest.mark.timeout(60)
def test_status_without_a_controller_exits_3(tmp_path: Path) -> None:
    out = subprocess.run([*TETHER, "status", "tcp://127.0.0.1:9", "--timeout", "1"],
                         capture_output=True, text=True, env=env(), timeout=30)
    assert out.returncode == 3 and "no controller answered at tcp://127.0.0.1:9" in out.stderr


@pytest.mark.timeout(120)
def test_an_always_failing_objective_ends_the_run(cluster: Cluster) -> None:
    cluster.start_controller(config=cluster.config(budget=50, run=f"{FAST}\nmax_failures = 8"))
    cluster.start_worker(python="tests.integration.objectives:raises_left", name="w0")
    cluster.start_worker(command="false", name="w1")
    assert cluster.wait_controller(60) == 1
    out = cluster.output("controller")
    assert "too many failures" in out and "failed on" in out
    finished = events_of(cluster.log, "run_finished")[-1]
    assert finished["reason"] == "too many failures" and finished["failed"] >= 8
    assert f"{finished['failed']} failed" in out


@pytest.mark.timeout(60)
def test_worker_with_a_missing_program_exits_2(cluster: Cluster) -> None:
    w = cluster.start_worker("--connect", "tcp://127.0.0.1:9", command="./nosuchprog {x0}")
    assert w.wait(timeout=30) == 2
    assert "not found" in cluster.output("w0")


@pytest.mark.timeout(60)
def test_worker_gives_up_after_max_wait_naming_the_endpoint(cluster: Cluster) -> None:
    w = cluster.start_worker("--connect", "tcp://127.0.0.1:9", "--max-wait", "1.5",
                             python="tests.integration.objectives:quadratic")
    assert w.wait(timeout=40) == 3
    out = cluster.output("w0")
    assert "tcp://127.0.0.1:9" in out and "--max-wait" in out


@pytest.mark.timeout(120)
def test_late_worker_of_a_finished_run_exits_at_once(cluster: Cluster) -> None:
    cluster.start_controller(config=cluster.config(budget=3, run=FAST))
    cluster.start_worker(python="tests.integration.objectives:quadratic")
    assert cluster.wait_controller(60) == 0
    assert cluster.addr.read_text().split("\n")[1].startswith("finished budget")
    late = cluster.start_worker(python="tests.integration.objectives:quadratic", name="late")
    assert late.wait(timeout=30) == 0
    assert "already finished" in cluster.output("late")


@pytest.mark.timeout(180)
def test_sigterm_stops_resumably_and_workers_hold_on(cluster: Cluster, tmp_path: Path) -> None:
    flag = tmp_path / "go"
    cfg = cluster.config(budget=6, run=FAST)
    cluster.start_controller(config=cfg)
    import os

    os.environ["TETHER_TEST_FLAG"] = str(flag)
    try:
        for _ in range(2):
            cluster.start_worker(python=SLOW)
    finally:
        del os.environ["TETHER_TEST_FLAG"]
    # both busy, and both past their welcome: with prefetch one worker can take the first
    # two evaluations, and an evaluate still unread when the controller stops is dropped
    # with the connection (IMMEDIATE), which would leave that worker nothing to hold on to
    wait_for(lambda: len({e["worker"] for e in events_of(cluster.log, "started")}) == 2, 60,
             "both workers busy")
    wait_for(lambda: all("joined the controller" in cluster.output(f"w{i}") for i in range(2)),
             60, "both workers to read their welcome")
    assert cluster.controller is not None
    cluster.controller.send_signal(signal.SIGTERM)
    assert cluster.wait_controller(30) == 75
    assert "continue with --resume" in cluster.output("controller")
    assert not events_of(cluster.log, "run_finished")
    flag.write_text("")  # the workers finish while no controller runs, and keep the results
    cluster.start_controller("--resume", config=cfg)
    assert cluster.wait_controller(90) == 0
    counts = check_log(cluster.log, completed=6)
    assert counts["lost"] == 0 and counts["requeued"] == 0 and counts["failed"] == 0
    assert "resumed: 0 completed so far" in cluster.output("controller")


@pytest.mark.timeout(120)
def test_ctrl_c_on_a_worker_leaves_like_sigterm(cluster: Cluster, tmp_path: Path) -> None:
    cluster.start_controller(config=cluster.config(budget=3, run=FAST))
    w = cluster.start_worker(python=SLOW, name="quitter")
    wait_for(lambda: events_of(cluster.log, "started"), 60, "the worker to be busy")
    w.send_signal(signal.SIGINT)
    assert w.wait(timeout=30) == 0
    left = wait_for(lambda: events_of(cluster.log, "worker_left"), 30, "the goodbye")
    assert left[0]["reason"] == "interrupted"
    requeued = wait_for(lambda: events_of(cluster.log, "requeued"), 30, "the re-queue")
    assert requeued[0]["attempt"] == 0  # no retry spent
    assert not events_of(cluster.log, "lost")


@pytest.mark.timeout(120)
def test_report_info_and_a_module_in_the_working_directory(cluster: Cluster) -> None:
    (cluster.tmp / "myobj.py").write_text(
        "def f(x, report):\n    for k in range(3):\n        report(float(x[0]) + k, epoch=k)\n"
        "    return float(x[0])\n")
    cluster.start_controller(config=cluster.config(budget=3, run=FAST))
    cluster.start_worker(python="myobj:f")
    assert cluster.wait_controller(60) == 0, cluster.output("w0")
    partials = [e for e in load(cluster.log) if e["event"] == "partial"]
    assert sorted({e["epoch"] for e in partials}) == [0, 1, 2]


@pytest.mark.timeout(120)
def test_status_with_keys_needs_them(cluster: Cluster, tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    gen = subprocess.run([*TETHER, "keys", "generate", str(keys), "--workers", "2"],
                         capture_output=True, text=True, env=env(), timeout=60)
    assert gen.returncode == 0, gen.stderr
    worker_dirs = sorted(p for p in (keys / "workers").iterdir())
    flag = tmp_path / "go"
    cluster.start_controller("--keys", str(keys), config=cluster.config(budget=2, run=FAST))
    import os

    os.environ["TETHER_TEST_FLAG"] = str(flag)
    try:
        cluster.start_worker("--keys", str(worker_dirs[0]), python=SLOW)
    finally:
        del os.environ["TETHER_TEST_FLAG"]
    wait_for(lambda: events_of(cluster.log, "started"), 60, "the worker to be busy")
    refused = status(cluster, "--timeout", "2")
    assert refused.returncode == 3 and "no controller answered" in refused.stderr
    ok = status(cluster, "--json", "--keys", str(worker_dirs[1]))
    assert ok.returncode == 0, ok.stderr
    assert [w["name"] for w in json.loads(ok.stdout)["workers"]] == ["w0"]
    joined = events_of(cluster.log, "worker_joined")
    assert joined[0]["key"].startswith("sha256:")  # the fingerprint, never the key
    flag.write_text("")
    assert cluster.wait_controller(60) == 0


@pytest.mark.timeout(120)
def test_a_strategy_error_ends_the_run_with_one_line_and_resume_retries(
        cluster: Cluster) -> None:
    cfg = cluster.config(budget=10, strategy="tests.integration.objectives:breaks_after",
                         run=FAST)
    cluster.start_controller(config=cfg)
    cluster.start_worker(python="tests.integration.objectives:quadratic")
    assert cluster.wait_controller(60) == 1
    out = cluster.output("controller")
    line = ("tether controller: strategy error: breaks raised ZeroDivisionError: the model "
            "blew up")
    assert line in out and "Traceback" not in out
    end = events_of(cluster.log, "run_finished")[-1]
    assert end["reason"].startswith("strategy error: breaks raised ZeroDivisionError")
    assert "Traceback" in end["traceback"] and "the model blew up" in end["traceback"]
    check_log(cluster.log)  # what was in flight was killed with the run, logged once
    # resumed unchanged: the replay succeeds, the next ask fails the same way
    cluster.start_controller("--resume", config=cfg)
    cluster.start_worker(python="tests.integration.objectives:quadratic", name="again")
    assert cluster.wait_controller(60) == 1
    assert cluster.output("controller").count(line) == 2
    # the user fixed the strategy: the resume carries the run to its budget
    import os

    os.environ["TETHER_TEST_FIXED"] = "1"
    try:
        cluster.start_controller("--resume", config=cfg)
        cluster.start_worker(python="tests.integration.objectives:quadratic", name="fixed")
    finally:
        del os.environ["TETHER_TEST_FIXED"]
    assert cluster.wait_controller(60) == 0
    check_log(cluster.log, completed=10)
