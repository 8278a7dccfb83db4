"""Property-based tests of both sans-IO sessions (hypothesis): hostile message sequences
never raise out of them, and never change the accounting of an evaluation another worker
owns."""

from __future__ import annotations

from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from tether.controller.core import ControllerCore
from tether.controller.session import ControllerSession
from tether.controller.settings import RunSettings
from tether.log.journal import MemoryJournal
from tether.protocol import messages as m
from tether.protocol.session import PeerTable, WorkerSession
from tether.space import Space
from tether.strategies.sampling import RandomSampling

SPACE = Space.unit(2)
HONEST_SESSION = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"  # random per process in real life

ids = st.integers(min_value=-2, max_value=12)
attempts = st.integers(min_value=-1, max_value=3)
names = st.sampled_from(["a", "b", "mallory", ""])
floats = st.floats(allow_nan=True, allow_infinity=True)
refs = st.lists(st.tuples(ids, attempts), max_size=4).map(tuple)

hostile = st.one_of(
    st.builds(m.Hello, names, st.text(alphabet="xyz", max_size=4), st.integers(0, 3), refs),
    st.builds(m.Result, ids, attempts, floats),
    st.builds(m.Failure, ids, attempts, st.text(max_size=20)),
    st.builds(m.Killed, ids, attempts, st.text(max_size=10)),
    st.builds(m.Partial, ids, attempts, floats,
              st.dictionaries(st.text(max_size=5), st.integers(), max_size=3)),
    st.builds(m.Drain, st.floats(0, 100)),
    st.builds(m.Goodbye, st.text(max_size=8), refs),
    st.just(m.Heartbeat()),
    st.just(m.StatusQuery()),
)


def honest_run() -> tuple[ControllerSession, MemoryJournal, set[int]]:
    journal = MemoryJournal()
    core = ControllerCore(SPACE, RandomSampling(SPACE, seed=0),
                          RunSettings(budget=8, max_unproven=4, hello_rate=50.0), journal,
                          lambda: 0.0)
    core.start()
    sess = ControllerSession(core, "epoch", SPACE.names)
    sess.receive(b"A", m.Hello("a", HONEST_SESSION, 2), 0.0)
    owned = {msg.eval_id for _, msg in sess.outgoing() if isinstance(msg, m.Evaluate)}
    return sess, journal, owned


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([b"M", b"N", b"A2"]), hostile), max_size=30))
def test_hostile_sequences_never_raise_nor_touch_owned_evaluations(
        attack: list[tuple[bytes, Any]]) -> None:
    sess, journal, owned = honest_run()
    assert owned
    for t, (rid, msg) in enumerate(attack):
        sess.receive(rid, msg, 0.01 * t)
        sess.outgoing()
        sess.tick(0.01 * t)
    for e in journal.events:
        if e.get("eval_id") in owned and e["event"] in ("partial", "completed", "failed"):
            assert e["worker"] == "a", e
        if e.get("eval_id") in owned and e["event"] == "started":
            assert e["worker"] == "a", e  # nobody adopted it: the claim was refused
    # the honest worker still owns and can finish its evaluations
    for eid in owned:
        sess.receive(b"A", m.Result(eid, 0, 1.0), 1.0)
    done = {e["eval_id"]: e["worker"] for e in journal.of("completed")}
    assert all(done.get(eid) == "a" for eid in owned), done


controller_msgs = st.one_of(
    st.builds(m.Welcome, st.text(max_size=4), st.floats(0.01, 5), st.integers(1, 5),
              st.lists(st.text(max_size=3), max_size=3).map(tuple)),
    st.builds(m.Evaluate, ids, attempts, st.lists(floats, max_size=3).map(tuple),
              st.floats(0, 10)),
    st.builds(m.Ack, ids, attempts),
    st.builds(m.Kill, ids, attempts, st.text(max_size=5)),
    st.builds(m.Terminate, st.text(max_size=5)),
    st.just(m.Drained()), st.just(m.Rehello()), st.just(m.Heartbeat()),
    st.builds(m.Status, st.just({"x": 1})),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(controller_msgs, max_size=40), st.integers(1, 3))
def test_worker_session_survives_any_controller_sequence(msgs: list[Any], slots: int) -> None:
    s = WorkerSession("w", "sess", slots=slots, t_end=50.0, drain=5.0)
    s.hello(0.0)
    for t, msg in enumerate(msgs):
        now = 0.5 * t
        for eff in s.receive(msg, now):
            if isinstance(eff, m.Hello):
                continue
        s.tick(now)
        s.check_walltime(now, idle=not s.running, connected=True)
        for key in list(s.running)[:1]:  # evaluations end; their outcomes wait for an ACK
            s.finished(m.Result(key[0], key[1], 1.0), now)
    # never more running than its slots; everything held is listed in a new hello
    assert len(s.running) <= s.capacity
    held = set(s.hello(99.0).running)
    assert held == set(s.running) | set(s.queued) | set(s.outbox)


# PeerTable liveness: the heap must declare exactly the peers a scan of all peers would
peer_ops = st.lists(st.one_of(
    st.tuples(st.just("add"), st.integers(0, 7), st.integers(0, 5)),  # rid, name
    st.tuples(st.just("remove"), st.integers(0, 5), st.just(0)),
    st.tuples(st.just("seen"), st.integers(0, 7), st.just(0)),
    st.tuples(st.just("sent"), st.integers(0, 7), st.just(0)),
    st.tuples(st.just("wait"), st.sampled_from([0, 1, 3, 7, 10, 31, 100, 250, 401]),
              st.just(0)),
    st.tuples(st.just("tick"), st.integers(0, 1), st.just(0)),  # 1: act on what it says
    # the controller falls behind for a while: that time does not count as silence
    st.tuples(st.just("stall"), st.sampled_from([5, 100, 250]), st.just(0)),
), max_size=80)


@settings(max_examples=400, deadline=None)
@given(peer_ops, st.sampled_from([0.1, 0.2, 1.0]), st.integers(1, 4))
# two peers due at once, and due again at the next tick (nothing sent, nobody removed)
@example([("add", 1, 1), ("add", 2, 2), ("wait", 100, 0), ("tick", 0, 0), ("tick", 0, 0),
          ("wait", 100, 0), ("wait", 100, 0), ("wait", 100, 0), ("tick", 0, 0),
          ("tick", 1, 0), ("tick", 1, 0)], 1.0, 3)
# heard from after its entry was pushed: examined early, pushed again, lost later
@example([("add", 1, 1), ("add", 2, 2), ("wait", 250, 0), ("seen", 1, 0), ("seen", 2, 0),
          ("wait", 100, 0), ("tick", 1, 0), ("wait", 250, 0), ("tick", 0, 0)], 1.0, 3)
def test_peer_table_heaps_agree_with_a_scan_of_all_peers(
        ops: list[tuple[str, int, int]], heartbeat: float, liveness: int) -> None:
    pt = PeerTable(heartbeat, liveness)
    now = 1000.0
    stall_at: dict[bytes, float] = {}  # the stall total when each peer was last heard
    for op, a, b in ops:
        if op == "add":
            pt.add(bytes([a]), m.Hello(f"w{b}", "s"), now)
            stall_at[bytes([a])] = pt.stalled
        elif op == "remove":
            pt.remove(f"w{a}")
        elif op == "seen":
            pt.seen(bytes([a]), now)
            stall_at[bytes([a])] = pt.stalled
        elif op == "stall":
            now += a * 0.01 * heartbeat
            pt.stalled += a * 0.01 * heartbeat
        elif op == "sent" and bytes([a]) in pt.by_rid:
            pt.by_rid[bytes([a])].last_tx = now
        elif op == "wait":
            now += a * 0.01 * heartbeat  # steps that round differently from the window
        elif op == "tick":
            window = pt.heartbeat * pt.liveness
            scan_lost = {p.rid for p in pt.by_rid.values()
                         if now - p.last_rx - (pt.stalled - stall_at[p.rid]) > window}
            scan_owed = {p.rid for p in pt.by_rid.values() if now - p.last_tx >= heartbeat}
            got_lost = [p.rid for p in pt.expired(now)]
            got_owed = [p.rid for p in pt.owed_heartbeat(now)]
            assert len(got_lost) == len(set(got_lost)) and set(got_lost) == scan_lost
            assert len(got_owed) == len(set(got_owed)) and set(got_owed) == scan_owed
            if a:  # as the controller does: heartbeats go out, some lost peers are forgotten
                for rid in got_owed[::2]:
                    pt.by_rid[rid].last_tx = now
                for rid in got_lost[:1]:
                    pt.remove(pt.by_rid[rid].name)
    # no leak: one live entry per peer, plus entries of peers replaced or removed
    assert len(pt._rx.heap) + len(pt._rx.recheck) >= len(pt.by_rid)
