"""The controller's protocol rules, message by message, in memory (no sockets)."""

from __future__ import annotations

import random
from typing import Any

import pytest

from tether.controller.core import ControllerCore
from tether.controller.session import ControllerSession
from tether.controller.settings import RunSettings
from tether.controller.workers import WorkerPool
from tether.log.journal import MemoryJournal
from tether.protocol import messages as m
from tether.space import Space
from tether.strategies.sampling import RandomSampling

SPACE = Space.unit(2)


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def make(budget: int = 10, **run: Any) -> tuple[ControllerSession, MemoryJournal, Clock]:
    clock = Clock()
    journal = MemoryJournal()
    core = ControllerCore(SPACE, RandomSampling(SPACE, seed=1),
                          RunSettings(budget=budget, **{"prefetch": 0, **run}), journal, clock)
    core.start()
    return ControllerSession(core, "epoch1", SPACE.names), journal, clock


def hello(name: str, session: str = "s", running: tuple[tuple[int, int], ...] = (),
          slots: int = 1) -> m.Hello:
    return m.Hello(name, session, slots, running)


def sent(sess: ControllerSession) -> list[tuple[bytes, m.Message]]:
    return sess.outgoing() + [(rid, m.Heartbeat()) for rid in sess.take_beats()]


def evaluates(out: list[tuple[bytes, m.Message]], rid: bytes) -> list[m.Evaluate]:
    return [msg for r, msg in out if r == rid and isinstance(msg, m.Evaluate)]


def test_handshake_welcome_then_work() -> None:
    sess, _, clock = make()
    sess.receive(b"A", hello("a"), clock.t)
    out = sent(sess)
    assert isinstance(out[0][1], m.Welcome) and out[0][0] == b"A"
    assert len(evaluates(out, b"A")) == 1


def test_unknown_connection_gets_rehello() -> None:
    sess, _, clock = make()
    sess.receive(b"X", m.Heartbeat(), clock.t)
    assert sent(sess) == [(b"X", m.Rehello())]


def test_after_the_end_everyone_gets_terminate_but_outcomes_are_acked() -> None:
    sess, _, clock = make(budget=1)
    sess.receive(b"A", hello("a"), clock.t)
    (ev,) = evaluates(sent(sess), b"A")
    sess.receive(b"A", m.Result(ev.eval_id, ev.attempt, 1.0), clock.t)
    out = sent(sess)
    assert (b"A", m.Ack(ev.eval_id, ev.attempt)) in out
    assert sess.core.finished == "budget"
    sess.receive(b"B", m.Heartbeat(), clock.t)
    assert sent(sess) == [(b"B", m.Terminate("budget"))]
    sess.receive(b"C", hello("c"), clock.t)
    out = sent(sess)
    assert [type(msg) for _, msg in out] == [m.Welcome, m.Terminate]


def test_ack_goes_out_before_the_next_dispatch_and_drained_after_it() -> None:
    sess, _, clock = make()
    sess.receive(b"A", hello("a"), clock.t)
    (ev,) = evaluates(sent(sess), b"A")
    sess.receive(b"A", m.Result(ev.eval_id, ev.attempt, 0.5), clock.t)
    sess.receive(b"A", m.Drain(10.0), clock.t)
    kinds = [type(msg) for _, msg in sent(sess)]
    # the result freed the slot before the drain arrived: the next point was dispatched,
    # and Drained follows it, so the worker knows nothing else is on its way
    assert kinds == [m.Ack, m.Evaluate, m.Drained]


def test_outcome_from_a_worker_that_does_not_hold_the_evaluation_is_refused() -> None:
    sess, journal, clock = make()
    sess.receive(b"A", hello("a"), clock.t)
    (ev,) = evaluates(sent(sess), b"A")
    sess.receive(b"M", hello("mallory"), clock.t)
    sent(sess)
    sess.receive(b"M", m.Result(ev.eval_id, ev.attempt, -1e9), clock.t)
    sess.receive(b"M", m.Result(999, 0, -1e9), clock.t)
    sess.receive(b"M", m.Partial(ev.eval_id, ev.attempt, -1e9), clock.t)
    assert not journal.of("completed") and not journal.of("partial")
    assert sess.stats.refused == {"outcome for an evaluation it does not hold": 2,
                                  "partial for an evaluation it does not hold": 1}
    sess.receive(b"A", m.Result(ev.eval_id, ev.attempt, 0.25), clock.t)
    assert [e["value"] for e in journal.of("completed")] == [0.25]


def test_hello_may_claim_only_evaluations_dispatched_to_that_name() -> None:
    sess, journal, clock = make()
    sess.receive(b"A", hello("a"), clock.t)
    (ev,) = evaluates(sent(sess), b"A")
    sess.receive(b"M", hello("mallory", running=((ev.eval_id, 0), (77, 0))), clock.t)
    assert sess.stats.refused == {"hello claims evaluations never dispatched to it": 1}
    assert not [e for e in journal.of("started") if e["worker"] == "mallory"
                and e["eval_id"] == ev.eval_id]
    # the rightful worker reconnects from a new connection and keeps its evaluation
    sess.receive(b"A2", hello("a", running=((ev.eval_id, 0),)), clock.t)
    assert sess.stats.refused.get("name held by a live session") is None
    assert ev.eval_id in sess.core.workers["a"].busy


def test_a_live_name_cannot_be_taken_by_another_session() -> None:
    sess, _journal, clock = make()
    sess.receive(b"A", hello("a", session="s1"), clock.t)
    sent(sess)
    clock.t += 1.0
    sess.receive(b"M", hello("a", session="evil"), clock.t)
    assert sess.stats.refused == {"name held by a live session": 1}
    assert sent(sess) == []  # no welcome
    # once the old session has gone silent past the window, a restart may take the name
    clock.t += 10.0
    sess.receive(b"A3", hello("a", session="s2"), clock.t)
    assert isinstance(sent(sess)[0][1], m.Welcome)


def test_strangers_are_bounded() -> None:
    sess, _, clock = make(max_unproven=3, hello_rate=1000.0)
    for i in range(5):
        sess.receive(bytes([i]), hello(f"ghost{i}"), clock.t)
    assert sess.stats.refused == {"too many workers that never answered": 2}
    sess2, _, clock2 = make(hello_rate=2.0)
    for i in range(5):
        sess2.receive(bytes([i]), hello(f"g{i}"), clock2.t)
    assert sess2.stats.refused == {"hello rate limit": 3}
    clock2.t += 1.0  # the bucket refills, but the three refused hold turns in it
    sess2.receive(b"y", hello("later"), clock2.t)
    assert sess2.stats.refused == {"hello rate limit": 4}
    clock2.t += 3.0  # their turns and its own have passed
    sess2.receive(b"z", hello("late"), clock2.t)
    assert sess2.stats.refused == {"hello rate limit": 4}


def test_refused_hellos_are_given_turns_at_the_admission_rate() -> None:
    sess, _, clock = make(hello_rate=4.0)  # a burst of 4, then one every 0.25 s
    for i in range(10):
        sess.receive(bytes([i]), hello(f"g{i}"), clock.t)
    out = sent(sess)
    turns = [msg.after for _, msg in out if isinstance(msg, m.Rehello)]
    assert sum(isinstance(msg, m.Welcome) for _, msg in out) == 4
    assert turns == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.25, 1.5])
    # a stranger after them queues behind them (their tokens are taken)
    sess.receive(b"X", hello("stranger"), clock.t)
    assert sent(sess) == [(b"X", m.Rehello(after=1.75))]
    # each comes back at its turn and is admitted
    t0 = clock.t
    for i, after in zip(range(4, 10), turns, strict=True):
        clock.t = t0 + after + 0.05  # late: admitted on its reservation all the same
        sess.receive(bytes([i]), hello(f"g{i}"), clock.t)
    assert sum(isinstance(msg, m.Welcome) for _, msg in sent(sess)) == 6
    assert sess.stats.refused == {"hello rate limit": 7}


def test_silent_peer_is_lost_and_heartbeats_are_owed() -> None:
    sess, journal, clock = make(heartbeat=1.0, liveness=3)
    sess.receive(b"A", hello("a"), clock.t)
    sent(sess)
    clock.t += 1.5
    assert sess.tick(clock.t) == []
    assert (b"A", m.Heartbeat()) in sent(sess)
    clock.t += 2.0
    assert sess.tick(clock.t) == ["a"]
    assert journal.of("worker_left")[-1]["reason"] == "lost"


def test_controller_stall_is_not_the_workers_silence() -> None:
    # the loop was behind for 10 s (a backlog it could not read): the heartbeats a
    # worker sent meanwhile may still be queued, so that time does not count
    sess, journal, clock = make(heartbeat=1.0, liveness=3)
    sess.receive(b"A", hello("a"), clock.t)
    sess.receive(b"B", hello("b"), clock.t)
    sent(sess)
    clock.t += 10.0
    sess.peers.stalled += 9.0  # the server's measure of its own stall
    sess.heartbeat(b"B", clock.t)
    assert sess.tick(clock.t) == []  # A: 1 s of attention, B: just heard
    clock.t += 2.5
    assert sess.tick(clock.t) == ["a"]  # 3.5 s of attention without a word from A
    assert [e["worker"] for e in journal.of("worker_left")] == ["a"]
    # a live session is judged on the same clock: B's name is not free for a stranger
    sess.receive(b"C", m.Hello("b", "other-session"), clock.t)
    assert sess.stats.refused == {"name held by a live session": 1}


def test_heartbeat_fast_path_acts_like_receive() -> None:
    fast, _, c1 = make()
    slow, _, c2 = make()
    for sess, clock in ((fast, c1), (slow, c2)):
        sess.receive(b"A", hello("a"), clock.t)
        sent(sess)
        clock.t += 2.0
    fast.heartbeat(b"A", c1.t)
    slow.receive(b"A", m.Heartbeat(), c2.t)
    assert fast.peers.by_rid[b"A"] == slow.peers.by_rid[b"A"]
    assert fast.stats == slow.stats
    # unknown connection: told to introduce itself, either way
    fast.heartbeat(b"Z", c1.t)
    slow.receive(b"Z", m.Heartbeat(), c2.t)
    assert sent(fast) == sent(slow) == [(b"Z", m.Rehello())]
    # a heartbeat under another key than the hello's is refused, either way
    fast.heartbeat(b"A", c1.t, key="other")
    slow.receive(b"A", m.Heartbeat(), c2.t, key="other")
    assert fast.stats == slow.stats and fast.stats.dropped == 1


def test_undeliverable_dispatch_is_requeued_at_once() -> None:
    sess, journal, clock = make()
    sess.receive(b"A", hello("a"), clock.t)
    (ev,) = evaluates(sent(sess), b"A")
    sess.undeliverable(b"A", ev)
    (req,) = journal.of("requeued")
    assert req["eval_id"] == ev.eval_id and req["reason"] == "dispatch refused by the transport"
    assert journal.of("lost") == []  # no retry spent
    # the connection is forgotten: nothing more goes into it, and no dispatch loop
    assert journal.of("worker_left")[-1]["reason"] == "unreachable"
    assert evaluates(sent(sess), b"A") == []
    sess.receive(b"A", m.Heartbeat(), clock.t)
    assert sent(sess) == [(b"A", m.Rehello())]


def test_report_info_reaches_the_partial_event_cleaned() -> None:
    sess, journal, clock = make()
    sess.receive(b"A", hello("a"), clock.t)
    (ev,) = evaluates(sent(sess), b"A")
    info = {"epoch": 3, "lr": 0.1, "note": "x" * 500, "bad": [1, 2], "seq": 9}
    sess.receive(b"A", m.Partial(ev.eval_id, ev.attempt, 0.7, info), clock.t)
    (p,) = journal.of("partial")
    assert p["epoch"] == 3 and p["lr"] == 0.1 and len(p["note"]) == 200
    assert "bad" not in p and p["seq"] != 9 and p["value"] == 0.7


def test_malformed_frames_are_counted_by_reason() -> None:
    sess, _, _ = make()
    sess.drop(b"X", "not msgpack: junk")
    sess.drop(b"Y", "not msgpack: other junk")
    assert sess.stats.refused == {"not msgpack": 2} and sess.stats.dropped == 2


def test_a_prefetched_evaluation_times_out_from_when_it_started() -> None:
    sess, journal, clock = make(eval_timeout=10.0, prefetch=1)
    sess.receive(b"A", hello("a"), clock.t)
    first, queued = evaluates(sent(sess), b"A")
    clock.t += 8.0  # the first one ran for 8 s; the queued one waited behind it
    sess.receive(b"A", m.Result(first.eval_id, 0, 1.0), clock.t)
    sess.receive(b"A", m.Running(queued.eval_id, 0), clock.t)
    for _ in range(5):  # 13 s after its dispatch, 5 s after it started (A keeps talking)
        clock.t += 1.0
        sess.receive(b"A", m.Heartbeat(), clock.t)
        sess.tick(clock.t)
    assert not journal.of("killed")
    for _ in range(6):  # 11 s after it started
        clock.t += 1.0
        sess.receive(b"A", m.Heartbeat(), clock.t)
        sess.tick(clock.t)
    killed = {k["eval_id"]: k["error"] for k in journal.of("killed")}
    assert killed.get(queued.eval_id, "").startswith("eval_timeout")


def test_a_repeated_hello_on_the_same_connection_is_only_welcomed_again() -> None:
    sess, journal, clock = make()
    sess.receive(b"A", hello("a"), clock.t)
    first = sent(sess)
    assert isinstance(first[0][1], m.Welcome) and evaluates(first, b"A")
    clock.t += 3.0  # the worker gave up waiting for that welcome and said it again
    sess.receive(b"A", hello("a"), clock.t)
    assert sent(sess) == [(b"A", sess.welcome)]
    assert len(journal.of("worker_joined")) == 1 and not journal.of("worker_left")
    # what it was sent stays dispatched to it: its result counts
    eid = evaluates(first, b"A")[0].eval_id
    sess.receive(b"A", m.Result(eid, 0, 0.5), clock.t)
    assert [e["eval_id"] for e in journal.of("completed")] == [eid]
    # a hello that offers something else (draining) is a real re-join
    sess.receive(b"A", m.Hello("a", "s", 0), clock.t)
    sent(sess)
    assert journal.of("worker_left")[-1]["reason"] == "reconnected"


def test_a_repeat_before_the_join_settles_is_a_repeat_too() -> None:
    sess, journal, clock = make()
    sess.receive(b"A", hello("a"), clock.t)
    sess.receive(b"A", hello("a"), clock.t + 2.0)  # the same batch: join not yet settled
    out = sent(sess)
    assert [msg for _, msg in out if isinstance(msg, m.Welcome)] == [sess.welcome] * 2
    assert len(journal.of("worker_joined")) == 1 and not journal.of("worker_left")


def test_auto_prefetch_sizes_each_queue_from_the_durations_its_worker_reports() -> None:
    # a sampler's default: one queued at first, then about 50 ms of the worker's own
    # evaluations (controller/workers.py: AUTO_WINDOW), at most 64
    sess, journal, clock = make(budget=1000, prefetch=None)
    sess.receive(b"F", hello("fast"), clock.t)
    sess.receive(b"S", hello("slow", slots=2), clock.t)
    out = sent(sess)
    fast, slow = evaluates(out, b"F"), evaluates(out, b"S")
    assert (len(fast), len(slow)) == (2, 3)  # its slots and one queued
    sess.receive(b"F", m.Result(fast[0].eval_id, 0, 1.0, seconds=1e-5), clock.t)
    sess.receive(b"S", m.Result(slow[0].eval_id, 0, 1.0, seconds=0.01), clock.t)
    out = sent(sess)
    # fast: 64 queued behind its slot; slow: 0.05 s x 2 slots / 0.01 s = 10 queued
    assert len(evaluates(out, b"F")) == 1 + 64 - 1
    assert len(evaluates(out, b"S")) == 2 + 10 - 2
    # slower now: no new work until what it holds drains below the smaller queue
    held = [e.eval_id for e in fast[1:] + evaluates(out, b"F")]
    sess.receive(b"F", m.Result(held[0], 0, 1.0, seconds=1.0), clock.t)
    assert not evaluates(sent(sess), b"F")
    assert sess.core.workers["fast"].prefetch == 1
    dispatched = {e["eval_id"] for e in journal.of("started")}
    assert set(held) <= dispatched


def test_a_fixed_prefetch_ignores_durations() -> None:
    sess, _, clock = make(budget=100, prefetch=2)
    sess.receive(b"A", hello("a"), clock.t)
    first = evaluates(sent(sess), b"A")
    assert len(first) == 3
    sess.receive(b"A", m.Result(first[0].eval_id, 0, 1.0, seconds=1e-6), clock.t)
    assert len(evaluates(sent(sess), b"A")) == 1


def test_auto_prefetch_of_many_workers_is_bounded_in_all() -> None:
    # 200 workers with instant evaluations: 4096 // 200 = 20 queued each, not 64
    sess, _, clock = make(budget=100_000, prefetch=None)
    for i in range(200):
        sess.receive(b"R%d" % i, hello(f"w{i}"), clock.t)
    out = sent(sess)
    first = evaluates(out, b"R0")
    sess.receive(b"R0", m.Result(first[0].eval_id, 0, 1.0, seconds=0.0), clock.t)
    assert len(evaluates(sent(sess), b"R0")) == 1 + 20 - 1


def test_pool_counts_stay_exact_under_random_holds_releases_and_rehold() -> None:
    """The inlined free-slot bookkeeping against a recount from scratch, including a
    worker given a later attempt of an evaluation it still holds."""
    rng = random.Random(5)
    pool = WorkerPool()
    ws = [pool.add(f"w{i}", slots=rng.randint(1, 3), draining=False,
                   prefetch=rng.choice([0, 1, 2, "auto"]))
          for i in range(5)]
    for step in range(5000):
        w = rng.choice(ws)
        op = rng.random()
        if op < 0.45:
            pool.hold(w, rng.randint(0, 20), step)
        elif op < 0.9:
            pool.release(w, rng.randint(0, 20))
        elif op < 0.95:
            pool.observe(w, rng.random() * 0.01)
        elif not w.draining:
            pool.set_draining(w)
        free = {x.name: x.free for x in ws}
        assert pool.n_free == sum(free.values())
        assert set(pool._free) == {n for n, f in free.items() if f > 0}
        assert all(pool.holders.get(e, {}).get(x.name) == a
                   for x in ws for e, a in x.busy.items())


def test_auto_prefetch_of_a_node_agent_is_64_per_slot() -> None:
    # a node agent's slots are as many workers: its queue may hold what theirs would
    sess, _, clock = make(budget=1000, prefetch=None)
    sess.receive(b"N", hello("node", slots=4), clock.t)
    first = evaluates(sent(sess), b"N")
    assert len(first) == 4 + 1  # its slots and one queued, until its first result
    sess.receive(b"N", m.Result(first[0].eval_id, 0, 1.0, seconds=1e-5), clock.t)
    assert len(evaluates(sent(sess), b"N")) == 1 + 4 * 64 - 1
