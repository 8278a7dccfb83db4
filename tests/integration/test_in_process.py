"""``tether worker --python MOD:FN --in-process``, with real processes: the objective runs
in the agent itself. Budgets complete, exceptions become failed records, a timeout's kill
is obeyed when the uninterruptible call returns, and a SIGKILLed agent loses nothing."""

from __future__ import annotations

import subprocess

import pytest

from tests.contract import check_log
from tests.integration.harness import TETHER, Cluster, env, events_of, wait_for
from tests.integration.test_slots import assert_held_work_requeued_and_done_once, max_concurrent

OBJ = "tests.integration.objectives"


@pytest.mark.timeout(120)
def test_in_process_workers_complete_a_budget_with_partials(cluster: Cluster) -> None:
    cluster.start_controller(config=cluster.config(budget=30, run="prefetch = 2"))
    for i in range(2):
        cluster.start_worker("--in-process", name=f"ip{i}", python=f"{OBJ}:streaming")
    assert cluster.wait_controller(90) == 0, cluster.output("controller")
    counts = check_log(cluster.log, completed=30)
    assert counts["failed"] == 0 and counts["lost"] == 0
    # report() partials reach the log, before their evaluation's result
    partial_ids = {e["eval_id"] for e in events_of(cluster.log, "partial")}
    assert partial_ids == {e["eval_id"] for e in events_of(cluster.log, "completed")}
    for w in cluster.workers:
        assert w.wait(timeout=30) == 0  # told the run is over, left cleanly


@pytest.mark.timeout(120)
def test_an_in_process_objective_that_raises_fails_its_records(cluster: Cluster) -> None:
    cluster.start_controller(config=cluster.config(budget=8))
    cluster.start_worker("--in-process", python=f"{OBJ}:raises_left")
    assert cluster.wait_controller(90) == 0, cluster.output("controller")
    counts = check_log(cluster.log, completed=8)
    assert counts["failed"] >= 1
    for e in events_of(cluster.log, "failed"):
        assert "left half is forbidden" in e["error"] and "Traceback" in e["error"]
    assert counts["lost"] == 0  # the exception failed the evaluation, not the agent


@pytest.mark.timeout(150)
def test_a_timed_out_in_process_evaluation_is_killed_when_it_returns(
        cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    # liveness window 10 s: a stalled call (it cannot heartbeat) is not taken for a loss
    monkeypatch.setenv("TETHER_TEST_LOG", str(cluster.log))
    cluster.start_controller(config=cluster.config(
        budget=12, strategy="lhs", run="heartbeat = 0.5\nliveness = 20\neval_timeout = 1"))
    cluster.start_worker("--in-process", name="ip",
                         python=f"{OBJ}:stalls_left_until_timed_out")
    assert cluster.wait_controller(120) == 0, cluster.output("controller")
    counts = check_log(cluster.log, completed=12)  # one terminal event per evaluation
    killed = [e for e in events_of(cluster.log, "killed") if e["error"].startswith("eval_timeout")]
    assert killed, "no evaluation stalled: the test proved nothing"
    # the result that came after the kill was dropped: killed, never also completed
    done = {e["eval_id"] for e in events_of(cluster.log, "completed")}
    assert not done & {e["eval_id"] for e in killed}
    assert counts["lost"] == 0 and counts["worker_joined"] == 1


@pytest.mark.timeout(180)
@pytest.mark.parametrize("budget, prefetch, objective, held", [
    # one running and three queued behind it
    (40, "prefetch = 3", "sleepy", 4),
    # random's default, "auto": one queued until the first result, then about 50 ms of
    # the worker's own 2 ms evaluations (~25) queued behind the running one
    (600, "", "brief", 10),
], ids=["prefetch-3", "auto"])
def test_sigkill_of_an_in_process_worker_with_prefetched_work_loses_none(
        cluster: Cluster, budget: int, prefetch: str, objective: str, held: int) -> None:
    cluster.start_controller(config=cluster.config(
        budget=budget, run=f"heartbeat = 0.2\nliveness = 3\n{prefetch}"))
    victim = cluster.start_worker("--in-process", name="victim", python=f"{OBJ}:{objective}")
    wait_for(lambda: max_concurrent(events_of(cluster.log), "victim") >= held, 60,
             f"the worker to hold {held} evaluations, running and prefetched")
    cluster.kill(victim)
    cluster.start_worker("--in-process", name="rescuer", python=f"{OBJ}:{objective}")
    assert cluster.wait_controller(120) == 0, cluster.output("controller")
    counts = check_log(cluster.log, completed=budget)
    assert_held_work_requeued_and_done_once(cluster.log, "victim")
    assert counts["failed"] == 0
    assert max_concurrent(events_of(cluster.log), "rescuer") <= 1 + 64  # auto's cap


@pytest.mark.timeout(60)
@pytest.mark.parametrize("extra, needle", [
    (["--command", "true"], "needs --python"),
    (["--python", f"{OBJ}:quadratic", "--slots", "2"], "one evaluation at a time"),
    (["--python", "no_such_module_here:f"], "cannot load"),
])
def test_in_process_usage_errors_exit_2_before_connecting(extra: list[str], needle: str) -> None:
    res = subprocess.run([*TETHER, "worker", "--connect", "tcp://127.0.0.1:9", "--in-process",
                          *extra], capture_output=True, text=True, env=env(), timeout=50)
    assert res.returncode == 2, res.stderr
    assert needle in res.stderr
