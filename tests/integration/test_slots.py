"""Node agents (--slots N) and prefetch, with real processes: each evaluation is killable on
its own, the agent drains and restarts as a whole, and queued work is never lost."""

from __future__ import annotations

import signal
from collections import Counter
from pathlib import Path

import pytest

from tests.contract import check_log, load
from tests.integration.harness import Cluster, events_of, wait_for

FAST = "heartbeat = 0.2\nliveness = 3"


def max_concurrent(events: list[dict], worker: str) -> int:
    running: set[int] = set()
    best = 0
    for e in events:
        if e["event"] == "started" and e["worker"] == worker:
            running.add(e["eval_id"])
            best = max(best, len(running))
        elif e["event"] in ("completed", "failed", "killed", "requeued"):
            running.discard(e["eval_id"])
    return best


def assert_held_work_requeued_and_done_once(log: Path, victim: str) -> None:
    """What a killed worker held (at least 3 unfinished) went back to the queue, and
    every evaluation it ever started completed exactly once."""
    back = {e["eval_id"] for e in events_of(log, "requeued")}
    held = {e["eval_id"] for e in events_of(log, "started") if e["worker"] == victim}
    victim_done = {e["eval_id"] for e in events_of(log, "completed") if e["worker"] == victim}
    assert held - victim_done <= back and len(held - victim_done) >= 3
    done = Counter(e["eval_id"] for e in events_of(log, "completed"))
    assert all(done[eid] == 1 for eid in held)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("slots, prefetch", [(4, 0), (1, 3)],
                         ids=["4-slot agent", "one slot, queued work sent ahead"])
def test_one_evaluation_times_out_while_the_others_finish(
        cluster: Cluster, slots: int, prefetch: int) -> None:
    # one slot and prefetch: the queued evaluations wait in the child's pipe behind the
    # hanging one; its timeout kills the child, and they run on its replacement
    cluster.start_controller(config=cluster.config(
        budget=16, strategy="lhs", run=f"{FAST}\neval_timeout = 3\nprefetch = {prefetch}"))
    cluster.start_worker("--slots", str(slots), python="tests.integration.objectives:hangs_left",
                         name="node")
    assert cluster.wait_controller(90) == 0, cluster.output("controller")
    counts = check_log(cluster.log, completed=16)
    events = load(cluster.log)
    killed = [e for e in events if e["event"] == "killed"
              and e["error"].startswith("eval_timeout")]
    assert killed, "no evaluation hung: the test proved nothing"
    # only the hanging ones timed out: the others ran on, none stuck behind a kill
    x0 = {e["eval_id"]: e["x"][0] for e in events if e["event"] == "proposed"}
    assert all(x0[e["eval_id"]] < 0.3 for e in killed), killed
    assert max_concurrent(events, "node") == 4  # slots + prefetch
    # the agent stayed (one connection) and kept working after each kill
    assert counts["worker_joined"] == 1 and counts["lost"] == 0 and counts["failed"] == 0
    assert all(e["worker"] == "node" for e in events if e["event"] == "completed")


@pytest.mark.timeout(180)
def test_sigkill_of_an_agent_with_prefetched_work_loses_none(cluster: Cluster) -> None:
    cluster.start_controller(config=cluster.config(budget=40, run=f"{FAST}\nprefetch = 3"))
    victim = cluster.start_worker("--slots", "2", name="victim",
                                  python="tests.integration.objectives:sleepy")
    # it holds its 2 slots and 3 prefetched evaluations: 5 started on it at once
    wait_for(lambda: max_concurrent(events_of(cluster.log), "victim") >= 5, 60,
             "the agent to hold running and queued work")
    cluster.kill(victim)
    cluster.start_worker("--slots", "2", name="rescuer",
                         python="tests.integration.objectives:sleepy")
    assert cluster.wait_controller(120) == 0
    counts = check_log(cluster.log, completed=40)
    # what it held went back to the queue (declared lost, or unreachable at the next send:
    # either way) and each completed exactly once, elsewhere
    assert_held_work_requeued_and_done_once(cluster.log, "victim")
    assert counts["failed"] == 0


@pytest.mark.timeout(180)
def test_a_4_slot_agent_drains_at_its_walltime_and_restarts_with_the_controller(
        cluster: Cluster) -> None:
    cfg = cluster.config(budget=40, run=f"{FAST}\ngrace = 5")
    cluster.start_controller(config=cfg)
    cluster.start_worker("--slots", "4", "--walltime", "4", "--drain", "2", name="short",
                         python="tests.integration.test_netns:one_second")
    keeper = cluster.start_worker("--slots", "4", name="keeper",
                                  python="tests.integration.test_netns:one_second")
    wait_for(lambda: [e for e in events_of(cluster.log, "worker_left")
                      if e["worker"] == "short"], 60, "the short agent to leave at its walltime")
    # the controller dies while the keeper holds 4 evaluations; a new one resumes
    wait_for(lambda: max_concurrent(events_of(cluster.log), "keeper") >= 4, 60, "keeper busy")
    cluster.kill(cluster.controller)  # type: ignore[arg-type]
    cluster.start_controller("--resume", config=cfg)
    assert cluster.wait_controller(120) == 0
    assert keeper.wait(timeout=30) == 0
    counts = check_log(cluster.log, completed=40)
    left = [e for e in events_of(cluster.log, "worker_left") if e["worker"] == "short"]
    assert left[0]["reason"] == "walltime"
    assert counts["failed"] == 0 and counts["lost"] == 0
    # what the keeper ran across the restart was adopted, not re-run
    assert not [e for e in events_of(cluster.log, "requeued")
                if e["reason"] == "not reclaimed after restart"]
    assert signal.SIGTERM  # (signals are real: the agents' own handlers ran)
