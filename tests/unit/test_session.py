"""Sans-IO session state: the worker's WorkerSession and the controller's PeerTable."""

from __future__ import annotations

import pytest

from tether.protocol import messages as m
from tether.protocol.session import (
    BUSY_WINDOWS,
    Exit,
    PeerTable,
    Reconnect,
    StartEval,
    StopEval,
    WorkerSession,
    compact,
)

WELCOME = m.Welcome("epoch-1", heartbeat=1.0, liveness=3, names=("x0", "x1"))


def ready(now: float = 0.0, **kw: object) -> WorkerSession:
    s = WorkerSession("w1", "sess-1", **kw)  # type: ignore[arg-type]
    s.hello(now)
    assert s.receive(WELCOME, now) == []
    assert s.state == WorkerSession.READY
    return s


def start(s: WorkerSession, eval_id: int, attempt: int = 0, now: float = 0.0) -> None:
    assert s.receive(m.Evaluate(eval_id, attempt, (0.5, 0.5)), now) == [
        StartEval(eval_id, attempt, (0.5, 0.5), 0.0)]


# ---------------------------------------------------------------------- handshake
def test_hello_describes_the_worker() -> None:
    s = WorkerSession("w1", "sess-1", slots=2, host="node3", pid=77, job="1234")
    h = s.hello(0.0)
    assert h == m.Hello("w1", "sess-1", 2, (), "node3", 77, "1234")
    assert s.state == WorkerSession.CONNECTING


@pytest.mark.parametrize("msg", [
    m.Evaluate(1, 0, (0.1,)), m.Kill(1, 0), m.Ack(1, 0), m.Terminate("over"), m.Rehello(),
    m.Heartbeat(),
], ids=lambda x: type(x).__name__)
def test_nothing_but_welcome_matters_before_ready(msg: m.Message) -> None:
    s = WorkerSession("w1", "sess-1")
    s.hello(0.0)
    assert s.receive(msg, 0.1) == []
    assert s.state == WorkerSession.CONNECTING
    assert s.running == {}


def test_told_to_come_back_later_waits_without_reconnecting() -> None:
    # a hello refused by the controller's hello_rate is answered with our turn: we
    # wait on the same connection (no hello timeout), then say hello again
    s = WorkerSession("w1", "sess-1", hello_timeout=2.0)
    s.hello(0.0)
    assert s.receive(m.Rehello(after=7.5), 0.1) == []
    assert s.next_deadline(1.0) == pytest.approx(6.6)
    for t in (2.5, 5.0, 7.5):
        assert s.tick(t) == []  # no Reconnect("no welcome") while waiting for the turn
    assert s.tick(7.6) == [m.Hello("w1", "sess-1", 1, (), "", 0, "")]
    assert s.tick(9.0) == []
    assert s.tick(9.7) == [Reconnect("no welcome")]  # the new hello's timeout applies


def test_welcome_sets_link_parameters() -> None:
    s = WorkerSession("w1", "sess-1")
    s.hello(0.0)
    s.receive(m.Welcome("ep", heartbeat=0.5, liveness=4, names=("a", "b", "c")), 0.2)
    assert s.state == WorkerSession.READY
    assert (s.epoch, s.heartbeat, s.liveness, s.names) == ("ep", 0.5, 4, ("a", "b", "c"))


# ---------------------------------------------------------------------- evaluations
def test_evaluate_starts_an_evaluation() -> None:
    s = ready()
    eff = s.receive(m.Evaluate(4, 1, (0.25, 0.75), timeout=60.0), 1.0)
    assert eff == [StartEval(4, 1, (0.25, 0.75), 60.0)]
    assert (4, 1) in s.running


def test_duplicate_evaluate_is_ignored() -> None:
    s = ready()
    start(s, 4)
    assert s.receive(m.Evaluate(4, 0, (0.5, 0.5)), 0.5) == []
    # also once finished and waiting for its Ack
    s.finished(m.Result(4, 0, 1.0), 1.0)
    assert s.receive(m.Evaluate(4, 0, (0.5, 0.5)), 1.5) == []
    # a new attempt of the same evaluation is a different job
    assert s.receive(m.Evaluate(4, 1, (0.5, 0.5)), 2.0) == [StartEval(4, 1, (0.5, 0.5), 0.0)]


def test_kill_of_running_stops_it() -> None:
    s = ready()
    start(s, 2)
    assert s.receive(m.Kill(2, 0, "eval_timeout"), 1.0) == [StopEval(2, 0, "eval_timeout")]
    assert s.receive(m.Kill(2, 0), 1.0) == [StopEval(2, 0, "killed")]  # default reason


def test_kill_of_unknown_replies_not_running() -> None:
    s = ready()
    assert s.receive(m.Kill(9, 2), 1.0) == [m.Killed(9, 2, "not running")]
    assert s.last_tx == 1.0  # counts as traffic
    start(s, 3)
    assert s.receive(m.Kill(3, 1), 1.5) == [m.Killed(3, 1, "not running")]  # other attempt


def test_kill_of_finished_unacked_is_silent() -> None:
    s = ready()
    start(s, 2)
    s.finished(m.Result(2, 0, 0.5), 1.0)
    assert s.receive(m.Kill(2, 0), 1.5) == []  # the result is on its way


def test_terminate_and_rehello() -> None:
    s = ready()
    assert s.receive(m.Terminate(), 1.0) == [Exit("run over")]
    assert s.receive(m.Terminate("budget"), 1.0) == [Exit("budget")]
    start(s, 1)
    eff = s.receive(m.Rehello(), 2.0)
    assert eff == [m.Hello("w1", "sess-1", 1, ((1, 0),))]
    assert s.state == WorkerSession.CONNECTING


# ---------------------------------------------------------------------- outbox
def test_outcome_sent_and_kept_until_ack() -> None:
    s = ready()
    start(s, 1)
    out = m.Result(1, 0, 2.5, seconds=1.0)
    assert s.finished(out, 1.0) == [out]
    assert (1, 0) not in s.running
    assert s.outbox == {(1, 0): out}
    assert s.receive(m.Ack(1, 0), 1.1) == []
    assert s.outbox == {}
    assert s.receive(m.Ack(1, 0), 1.2) == []  # a second Ack is harmless


def test_outbox_resent_after_reconnect() -> None:
    s = ready(slots=2)
    start(s, 1)
    start(s, 2)
    res = m.Result(1, 0, 2.5)
    fail = m.Failure(2, 0, "boom")
    assert s.finished(res, 1.0) == [res]
    # the link breaks before the Ack; the second outcome arrives while disconnected
    assert s.tick(10.0) == [Reconnect("controller silent")]
    assert s.finished(fail, 10.5) == []
    h = s.hello(11.0)
    assert h.running == ((1, 0), (2, 0))  # both unacked outcomes are announced
    eff = s.receive(m.Welcome("epoch-2", 1.0, 3), 11.1)
    assert eff == [res, fail]
    assert s.epoch == "epoch-2"
    s.receive(m.Ack(1, 0), 11.2)
    s.receive(m.Ack(2, 0), 11.2)
    assert s.outbox == {}
    assert s.receive(m.Welcome("epoch-3", 1.0, 3), 12.0) == []  # nothing left to resend


def test_killed_outcome_is_kept_too() -> None:
    s = ready()
    start(s, 5)
    out = m.Killed(5, 0, "killed")
    assert s.finished(out, 1.0) == [out]
    assert s.outbox[(5, 0)] == out


def test_partial_sent_only_when_ready_and_running() -> None:
    s = ready()
    start(s, 1)
    p = m.Partial(1, 0, 0.5, {"step": 1})
    assert s.partial(p, 0.5) == [p]
    assert s.partial(m.Partial(2, 0, 0.5), 0.5) == []  # not ours
    assert s.tick(10.0) == [Reconnect("controller silent")]
    assert s.partial(m.Partial(1, 0, 0.4), 10.5) == []  # dropped while disconnected
    s.hello(11.0)
    assert s.partial(m.Partial(1, 0, 0.3), 11.0) == []  # still handshaking
    assert s.receive(WELCOME, 11.1) == []  # dropped partials are not queued
    assert s.partial(m.Partial(1, 0, 0.2), 11.2) == [m.Partial(1, 0, 0.2)]
    s.finished(m.Result(1, 0, 0.1), 12.0)
    assert s.partial(m.Partial(1, 0, 0.1), 12.1) == []  # after it finished


# ---------------------------------------------------------------------- time
def test_heartbeat_when_quiet() -> None:
    s = ready(0.0)
    assert s.tick(0.5) == []
    assert s.tick(1.0) == [m.Heartbeat()]
    assert s.last_tx == 1.0
    assert s.tick(1.5) == []
    s.receive(m.Heartbeat(), 1.8)
    assert s.tick(2.0) == [m.Heartbeat()]


def test_sending_postpones_heartbeat() -> None:
    s = ready(0.0)
    start(s, 1)
    s.finished(m.Result(1, 0, 1.0), 0.5)
    assert s.tick(1.25) == []
    assert s.tick(1.5) == [m.Heartbeat()]


def test_reconnect_after_liveness_window_of_silence() -> None:
    s = ready(0.0)  # heartbeat 1.0 x liveness 3
    for t in (1.0, 2.0, 3.0):
        assert s.tick(t) == [m.Heartbeat()]
    assert s.state == WorkerSession.READY
    assert s.tick(3.01) == [Reconnect("controller silent")]
    assert s.state == WorkerSession.CONNECTING


def test_a_linked_silent_controller_is_busy_not_gone() -> None:
    s = ready(0.0)  # window 3 s; the connection itself is up (ZMTP heartbeats answered)
    for t in (1.0, 2.0, 3.0, 4.0, 5.0):
        assert s.tick(t, linked=True) == [m.Heartbeat()]
    # past the window the link state is looked at every heartbeat, not in a busy loop
    assert s.next_deadline(5.0) == 1.0
    assert s.tick(5.5, linked=False) == [Reconnect("controller silent")]


def test_a_linked_controller_silent_for_too_long_is_given_up() -> None:
    s = ready(0.0)
    window = 3.0
    assert s.tick(BUSY_WINDOWS * window - 0.5, linked=True) == [m.Heartbeat()]
    assert s.state == WorkerSession.READY
    assert s.tick(BUSY_WINDOWS * window + 0.01, linked=True) == [
        Reconnect("controller busy too long")]


def test_drained_is_confirmed_by_the_controller() -> None:
    s = ready(0.0)
    assert not s.drained
    assert s.receive(m.Drained(), 1.0) == [] and s.drained
    # a worker that says "no slots" in its Hello is confirmed by the Welcome
    late = WorkerSession("w2", "sess-2", slots=0)
    late.hello(0.0)
    assert not late.drained
    late.receive(WELCOME, 0.1)
    assert late.drained and not ready(0.0).drained


def test_traffic_keeps_the_link_alive() -> None:
    s = ready(0.0)
    for k in range(1, 20):
        s.receive(m.Heartbeat(), k * 2.0)
        assert Reconnect("controller silent") not in s.tick(k * 2.0 + 2.9)


def test_reconnect_when_no_welcome() -> None:
    s = WorkerSession("w1", "sess-1", hello_timeout=5.0)
    s.hello(100.0)
    assert s.tick(101.0) == []
    assert s.tick(104.9) == []
    assert s.tick(105.0) == [Reconnect("no welcome")]
    # a fresh hello restarts the wait
    s.hello(106.0)
    assert s.tick(110.0) == []
    assert s.tick(111.0) == [Reconnect("no welcome")]


def test_no_heartbeat_while_connecting() -> None:
    s = WorkerSession("w1", "sess-1", hello_timeout=50.0)
    s.hello(0.0)
    for t in (1.0, 2.0, 3.0, 10.0):
        assert s.tick(t) == []


def test_next_deadline() -> None:
    s = WorkerSession("w1", "sess-1", hello_timeout=5.0)
    s.hello(10.0)
    assert s.next_deadline(11.0) == pytest.approx(4.0)
    assert s.next_deadline(20.0) == 0.0
    s.receive(m.Welcome("e", heartbeat=2.0, liveness=3), 12.0)
    s.last_tx = 12.0
    assert s.next_deadline(12.5) == pytest.approx(1.5)


def test_hello_lists_running_and_unacked() -> None:
    s = ready(slots=3)
    start(s, 3, 1)
    start(s, 1, 0)
    start(s, 2, 0)
    s.finished(m.Result(2, 0, 1.0), 1.0)
    s.finished(m.Failure(1, 0, "x"), 1.0)
    s.receive(m.Ack(1, 0), 1.1)
    h = s.hello(2.0)
    assert h.running == ((2, 0), (3, 1))


# ---------------------------------------------------------------------- PeerTable
def hello(name: str, session: str = "s", job: str = "") -> m.Hello:
    return m.Hello(name, session, job=job)


def test_peer_table_add_and_lookup() -> None:
    pt = PeerTable(heartbeat=1.0, liveness=3)
    assert pt.add(b"r1", hello("a", job="j1"), 0.0) is None
    assert pt.add(b"r2", hello("b"), 0.0) is None
    assert set(pt.by_name) == {"a", "b"}
    assert pt.by_rid[b"r1"].name == "a"
    assert pt.by_name["a"].job == "j1"
    assert pt.by_name["a"].last_rx == pt.by_name["a"].last_tx == 0.0


def test_peer_table_replace_same_name() -> None:
    pt = PeerTable(heartbeat=1.0, liveness=3)
    pt.add(b"r1", hello("a", "s1"), 0.0)
    old = pt.add(b"r9", hello("a", "s2"), 5.0)
    assert old is not None and old.rid == b"r1" and old.session == "s1"
    assert set(pt.by_rid) == {b"r9"}
    assert pt.by_name["a"].rid == b"r9"
    assert pt.by_name["a"].session == "s2"


def test_peer_table_same_connection_new_name() -> None:
    pt = PeerTable(heartbeat=1.0, liveness=3)
    pt.add(b"r1", hello("a"), 0.0)
    assert pt.add(b"r1", hello("b"), 1.0) is None
    assert set(pt.by_name) == {"b"}
    assert set(pt.by_rid) == {b"r1"}


def test_peer_table_same_connection_hello_again() -> None:
    pt = PeerTable(heartbeat=1.0, liveness=3)
    pt.add(b"r1", hello("a", "s1"), 0.0)
    old = pt.add(b"r1", hello("a", "s1"), 3.0)
    assert old is not None and old.rid == b"r1"
    assert len(pt.by_rid) == len(pt.by_name) == 1
    assert pt.by_name["a"].last_rx == 3.0


def test_peer_table_remove() -> None:
    pt = PeerTable(heartbeat=1.0, liveness=3)
    pt.add(b"r1", hello("a"), 0.0)
    peer = pt.remove("a")
    assert peer is not None and peer.rid == b"r1"
    assert pt.by_rid == {} and pt.by_name == {}
    assert pt.remove("a") is None
    assert pt.seen(b"r1", 1.0) is None


def test_peer_table_expired_and_seen() -> None:
    pt = PeerTable(heartbeat=1.0, liveness=3)
    pt.add(b"r1", hello("a"), 0.0)
    pt.add(b"r2", hello("b"), 0.0)
    assert pt.expired(3.0) == []  # exactly the window is still alive
    peer = pt.seen(b"r2", 2.0)
    assert peer is not None and peer.name == "b"
    assert [p.name for p in pt.expired(3.5)] == ["a"]
    assert {p.name for p in pt.expired(5.5)} == {"a", "b"}


def test_peer_table_owed_heartbeat() -> None:
    pt = PeerTable(heartbeat=1.0, liveness=3)
    pt.add(b"r1", hello("a"), 0.0)
    pt.add(b"r2", hello("b"), 0.5)
    assert pt.owed_heartbeat(0.9) == []
    assert [p.name for p in pt.owed_heartbeat(1.0)] == ["a"]
    pt.by_name["a"].last_tx = 1.0
    assert [p.name for p in pt.owed_heartbeat(1.5)] == ["b"]
    assert {p.name for p in pt.owed_heartbeat(2.0)} == {"a", "b"}


# ------------------------------------------------------------------ walltime and leaving
def test_walltime_drain_then_leave_once_drained_and_idle() -> None:
    s = WorkerSession("w", "sess", slots=2, t_end=100.0, drain=10.0)
    s.hello(0.0)
    s.receive(WELCOME, 0.0)
    assert s.check_walltime(50.0, idle=True, connected=True) == []
    (drain,) = s.check_walltime(91.0, idle=False, connected=True)
    assert isinstance(drain, m.Drain) and drain.remaining == 9.0 and s.slots == 0
    # a reconnect now must offer no slots
    assert s.hello(92.0).slots == 0
    s.receive(WELCOME, 92.0)
    # still running: stay, even once drained
    s.receive(m.Drained(), 92.5)
    assert s.check_walltime(93.0, idle=False, connected=True) == []
    out = s.check_walltime(94.0, idle=True, connected=True)
    assert out == [m.Goodbye("walltime", ()), Exit("walltime")] and s.left == "walltime"
    assert s.check_walltime(95.0, idle=True, connected=True) == []  # only once


def test_walltime_leave_waits_for_drained_or_the_end() -> None:
    s = WorkerSession("w", "sess", t_end=100.0, drain=10.0)
    s.hello(0.0)
    s.receive(WELCOME, 0.0)
    s.check_walltime(95.0, idle=True, connected=True)
    # a dispatch may still cross our Drain: without Drained we wait ...
    assert s.check_walltime(96.0, idle=True, connected=True) == []
    # ... until the walltime itself is over, or the link is down
    assert s.check_walltime(96.0, idle=True, connected=False)[-1] == Exit("walltime")


def test_walltime_leave_waits_for_unacknowledged_outcomes() -> None:
    s = WorkerSession("w", "sess", t_end=100.0, drain=10.0)
    s.hello(0.0)
    s.receive(WELCOME, 0.0)
    s.receive(m.Evaluate(1, 0, (0.5,)), 1.0)
    s.finished(m.Result(1, 0, 2.0), 2.0)
    s.check_walltime(95.0, idle=True, connected=True)
    s.receive(m.Drained(), 95.0)
    assert s.check_walltime(96.0, idle=True, connected=True) == []
    s.receive(m.Ack(1, 0), 96.5)
    assert s.check_walltime(97.0, idle=True, connected=True)[-1] == Exit("walltime")


def test_leave_abandons_running_work_in_the_goodbye() -> None:
    s = ready(0.0)
    s.receive(m.Evaluate(4, 1, (0.5,)), 1.0)
    out = s.leave("interrupted", ((4, 1),), 2.0)
    assert out == [m.Goodbye("interrupted", ((4, 1),)), Exit("interrupted")]
    assert s.running == {} and s.leave("again", (), 3.0) == []


def test_started_inside_the_drain_window_offers_no_slots() -> None:
    s = WorkerSession("w", "sess", slots=4, t_end=5.0, drain=10.0)
    assert s.hello(0.0).slots == 0
    s.receive(WELCOME, 0.1)
    assert s.drained


# ------------------------------------------------------------------ prefetch
def test_prefetched_evaluations_wait_for_a_slot_and_start_in_order() -> None:
    s = ready(0.0, slots=1)
    start(s, 1)
    assert s.receive(m.Evaluate(2, 0, (0.1, 0.1)), 0.1) == []  # beyond our one slot: queued
    assert s.receive(m.Evaluate(3, 0, (0.2, 0.2)), 0.2) == []
    assert s.hello(0.3).running == ((1, 0), (2, 0), (3, 0))  # a reconnect claims them all
    s.receive(WELCOME, 0.3)
    out = s.finished(m.Result(1, 0, 5.0), 1.0)
    # the controller is told it started: its timeout counts from now, not from dispatch
    assert out == [m.Result(1, 0, 5.0), StartEval(2, 0, (0.1, 0.1), 0.0), m.Running(2, 0)]
    # a kill of a queued evaluation ends it here, without starting it
    assert s.receive(m.Kill(3, 0, "no longer needed"), 1.1) == [m.Killed(3, 0, "no longer needed")]
    assert s.queued == {} and set(s.running) == {(2, 0)}


def test_leaving_gives_back_prefetched_work() -> None:
    s = ready(0.0, slots=1)
    start(s, 1)
    s.receive(m.Evaluate(2, 0, (0.1, 0.1)), 0.1)
    out = s.leave("sigterm", ((1, 0),), 0.2)
    assert out[0] == m.Goodbye("sigterm", ((1, 0), (2, 0)))


def test_a_frame_drops_the_running_of_an_evaluation_it_also_ends() -> None:
    msgs: list[m.Message] = [m.Result(1, 0, 1.0), m.Running(2, 0), m.Result(2, 0, 2.0),
                             m.Running(3, 0), m.Running(2, 1), m.Heartbeat()]
    assert compact(msgs) == [m.Result(1, 0, 1.0), m.Result(2, 0, 2.0), m.Running(3, 0),
                             m.Running(2, 1), m.Heartbeat()]
    assert compact([m.Running(3, 0)]) == [m.Running(3, 0)]


def test_no_welcome_on_a_live_connection_repeats_the_hello_backing_off() -> None:
    s = WorkerSession("w1", "sess-1", hello_timeout=2.0)
    s.hello(0.0)
    assert not s.silent(1.9) and s.silent(2.0)
    # the link is up (libzmq answers): the controller is behind, say it again here
    assert s.tick(2.0, linked=True) == [s.hello(2.0)]
    assert s.tick(5.9, linked=True) == []  # next after 4 s, then 8 s
    assert s.tick(6.0, linked=True) == [s.hello(6.0)]
    assert s.next_deadline(6.0) == pytest.approx(8.0)
    # the link went down: reconnect (a fresh socket), and the backoff starts over
    assert s.tick(14.0, linked=False) == [Reconnect("no welcome")]
    s.hello(20.0)
    assert s.tick(22.0, linked=True) == [s.hello(22.0)]
    s.receive(m.Welcome("e", 1.0, 3, ()), 23.0)
    assert s.state == WorkerSession.READY and s._hello_wait() == 2.0
