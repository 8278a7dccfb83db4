"""The controller's protocol rules, sans IO: messages and time in, ordered replies out.

The server loop only moves bytes and reads the clock; every decision about the wire
lives here and is tested message by message in memory (tests/unit/test_controller_session.py):

- handshake: ``hello`` -> ``welcome`` (or ``terminate`` once the run is over); an
  unknown connection that speaks without a handshake gets ``rehello``;
- ownership: an outcome or partial counts only from a worker that holds an attempt of
  that evaluation (dispatched to it, or adopted through the reconnect rules); a
  ``hello`` may claim only evaluations the log shows were dispatched to that name; a
  name held by a live, heartbeating session cannot be taken by another session;
- bounded resources: at most ``max_unproven`` connections that never answered an
  ``evaluate``, and at most ``hello_rate`` new identities per second;
- ordering: ACKs go out after the journal holds what they acknowledge (the server
  flushes before :meth:`outgoing`), then the core's commands, then ``drained`` replies,
  which must follow every dispatch made before them;
- liveness: heartbeats owed and peers expired.

Everything refused is dropped and counted by reason (``stats``), never raised.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tether.controller.core import ControllerCore, Dispatch, SendKill
from tether.protocol import messages as m
from tether.protocol.session import Peer, PeerTable

Outbound = tuple[bytes, m.Message]
_OUTCOMES = (m.Result, m.Failure, m.Killed)
INFO_KEYS, INFO_TEXT = 16, 200  # limits on report(**info) entries that reach the log
HELLO_WAIT_MAX = 30.0  # seconds: the latest turn a refused hello is told to come back at
STATUS_WORKERS = 500  # workers listed in a status reply (it must fit one message)


@dataclass
class SessionStats:
    received: int = 0
    dropped: int = 0
    refused: dict[str, int] = field(default_factory=dict)  # reason -> count

    def refuse(self, reason: str) -> None:
        self.dropped += 1
        self.refused[reason] = self.refused.get(reason, 0) + 1


class ControllerSession:
    def __init__(self, core: ControllerCore, epoch: str, names: tuple[str, ...]) -> None:
        s = core.settings
        max_unproven, hello_rate = s.max_unproven, s.hello_rate
        self.core = core
        self.peers = PeerTable(s.heartbeat, s.liveness)
        self.welcome = m.Welcome(epoch, s.heartbeat, s.liveness, names)
        self.stats = SessionStats()
        self.max_unproven = max_unproven
        self.hello_rate = hello_rate
        self._bucket, self._bucket_t = hello_rate, -math.inf
        self._turns: dict[str, float] = {}  # name -> turn it was given (its token is taken)
        self._proven: set[str] = set()  # names that answered at least one evaluate
        self._unproven: set[str] = set()  # connected names not in _proven
        self._acks: list[Outbound] = []
        self._after: list[Outbound] = []  # sent after the commands
        self._replies: list[Outbound] = []  # sent first (welcome, rehello, terminate)
        self.beats: list[bytes] = []  # connections owed a heartbeat (take_beats)
        self.last_refusal: tuple[bytes, str] | None = None
        self._joins: list[tuple[str, int, list[tuple[int, int]], str]] = []
        self._joining: dict[str, int] = {}  # name -> slots of its join in _joins
        # what each message from a joined worker does (a dispatch on the exact type: it
        # runs for every message); outcomes are also answered after the run has finished
        self._handlers: dict[type, Callable[[bytes, Peer, Any], None]] = {
            m.Result: self._outcome, m.Failure: self._outcome, m.Killed: self._outcome,
            m.Partial: self._partial, m.Running: self._running, m.Drain: self._drain,
            m.Goodbye: self._goodbye}
        core.counters = self.counters

    # ------------------------------------------------------------ inbound
    def receive(self, rid: bytes, msg: m.Message, now: float, key: str = "") -> None:
        """Apply one decoded message from connection ``rid`` (``key``: its CURVE key id)."""
        self.stats.received += 1
        if isinstance(msg, m.StatusQuery):  # an observer: answered, never registered
            self._replies.append((rid, m.Status(self.status(now))))
            return
        if isinstance(msg, m.Hello):
            self._hello(rid, msg, now, key)
            return
        if self._joins:
            self.settle()  # a deferred join comes before anything its worker says next
        peer = self.peers.by_rid.get(rid)
        if peer is not None and peer.key != key:
            self._refuse(rid, "message under another key than its hello")
            return
        handle = self._handlers.get(type(msg))
        finished = self.core.finished
        if finished is not None and type(msg) not in _OUTCOMES:
            if peer is not None:
                self.peers.seen(rid, now)
            self._replies.append((rid, m.Terminate(finished)))
            return
        if peer is None:
            self._replies.append((rid, m.Rehello()))  # e.g. we restarted: introduce yourself
            return
        self.peers.heard_from(peer, now)
        if handle is not None:  # heartbeat: nothing beyond the sign of life
            handle(rid, peer, msg)

    def _partial(self, rid: bytes, peer: Peer, msg: m.Partial) -> None:
        if self._owns(peer, msg.eval_id, "partial"):
            self.core.partial(peer.name, msg.eval_id, msg.attempt, msg.value,
                              _clean_info(msg.info))

    def _running(self, rid: bytes, peer: Peer, msg: m.Running) -> None:
        if self._owns(peer, msg.eval_id, "running"):
            self.core.running(peer.name, msg.eval_id, msg.attempt)

    def _drain(self, rid: bytes, peer: Peer, msg: m.Drain) -> None:
        self.core.drain(peer.name)
        # once the worker reads this, nothing else is on its way and it may leave
        self._after.append((rid, m.Drained()))

    def _goodbye(self, rid: bytes, peer: Peer, msg: m.Goodbye) -> None:
        self._forget(peer.name)
        self.core.leave(peer.name, msg.reason or "goodbye")

    def heartbeat(self, rid: bytes, now: float, key: str = "") -> None:
        """A frame holding only a heartbeat: the same as :meth:`receive` of one, without
        building the message. With thousands of workers heartbeats are most of what
        arrives, so the common case (a known peer, its key, nothing deferred) is one
        lookup and one store."""
        peer = self.peers.by_rid.get(rid)
        if peer is None or peer.key != key or self._joins or self.core.finished is not None:
            self.receive(rid, m.Heartbeat(), now, key)
            return
        self.stats.received += 1
        self.peers.heard_from(peer, now)

    def drop(self, rid: bytes, reason: str) -> None:
        """A frame the codec refused (malformed, oversized, unknown type)."""
        self._refuse(rid, reason.split(":")[0][:40])

    def _outcome(self, rid: bytes, peer: Peer, msg: m.Result | m.Failure | m.Killed) -> None:
        # ACK even a refused outcome: the sender must not resend it forever
        self._acks.append((rid, m.Ack(msg.eval_id, msg.attempt)))
        core, name, kind = self.core, peer.name, type(msg)
        w = core.workers.get(name)
        if w is None or msg.eval_id not in w.busy:
            if kind is not m.Killed:  # a killed one is an honest answer to a stale kill
                self._refuse(peer.rid, "outcome for an evaluation it does not hold")
            return
        if name not in self._proven:
            self._proven.add(name)
            self._unproven.discard(name)
        if isinstance(msg, m.Result):
            core.completed(name, msg.eval_id, msg.attempt, msg.value, msg.seconds)
        elif isinstance(msg, m.Failure):
            core.failed(name, msg.eval_id, msg.attempt, msg.error, msg.seconds)
        else:
            core.killed(name, msg.eval_id, msg.attempt, msg.reason or "killed")

    def _owns(self, peer: Peer, eval_id: int, what: str) -> bool:
        w = self.core.workers.get(peer.name)
        if w is not None and eval_id in w.busy:
            return True
        self._refuse(peer.rid, f"{what} for an evaluation it does not hold")
        return False

    # ------------------------------------------------------------ handshake
    def _hello(self, rid: bytes, hello: m.Hello, now: float, key: str) -> None:
        known = self.peers.by_rid.get(rid)
        if (known is not None and known.name == hello.name and known.session == hello.session
                and known.key == key and self.core.finished is None and self._joined_as(hello)):
            # a repeat on the same connection (the worker timed out waiting for our
            # welcome while we were behind): welcome it again, nothing else changes
            self.peers.seen(rid, now)
            self._replies.append((rid, self.welcome))
            return
        old = self.peers.by_name.get(hello.name)
        if known is None and not self._admit(rid, hello.name, now):
            return
        if (old is not None and old.rid != rid and old.session != hello.session
                and not self.peers.silent(old, now)):
            self._refuse(rid, "name held by a live session")
            return
        bound = self.core.key_of(hello.name)
        if key and bound and bound != key:
            self._refuse(rid, "name bound to another key")
            return
        replaced = self.peers.add(rid, hello, now, key)
        if replaced is not None and replaced.name != hello.name:
            self._unproven.discard(replaced.name)
        if hello.name not in self._proven:
            self._unproven.add(hello.name)
        self._replies.append((rid, self.welcome))
        if self.core.finished is not None:
            self._replies.append((rid, m.Terminate(self.core.finished)))
            return
        claims = [(e, a) for e, a in hello.running if self.core.was_dispatched_to(e, hello.name)]
        if len(claims) < len(hello.running):
            self._refuse(rid, "hello claims evaluations never dispatched to it")
        # joining may ask the strategy (a model fit can take seconds): the welcome goes
        # out first (take_replies), so the worker's handshake never waits for an ask
        self._joins.append((hello.name, hello.slots, claims, key))
        self._joining[hello.name] = hello.slots

    def _joined_as(self, hello: m.Hello) -> bool:
        """Whether the worker already joined with what ``hello`` offers (a repeat)."""
        if hello.name in self._joining:  # joins when this batch settles
            return self._joining[hello.name] == hello.slots
        w = self.core.workers.get(hello.name)
        return w is not None and w.draining == (hello.slots == 0) and (
            hello.slots == 0 or w.slots == hello.slots)

    def settle(self) -> None:
        """Carry out deferred joins (call before flushing the journal and sending)."""
        joins, self._joins = self._joins, []
        self._joining.clear()
        for name, slots, claims, key in joins:
            if self.peers.by_name.get(name) is not None:
                self.core.join(name, slots, claims, key=key)

    def _admit(self, rid: bytes, name: str, now: float) -> bool:
        """Bound what strangers can hold: new identities per second and idle newcomers.

        A hello over the rate is refused with its turn (``rehello`` with ``after``): the
        token it will use is taken now (the bucket goes into debt), so the turns are
        spaced at the rate, later strangers queue behind them, and a worker that comes
        back for its turn is admitted on its reservation however late it is. A storm of
        thousands is so admitted in order instead of retrying blindly.
        """
        if len(self._unproven) >= self.max_unproven:
            self._refuse(rid, "too many workers that never answered")
            return False
        if self._turns.pop(name, None) is not None:
            return True  # its token was reserved when it was given its turn
        # the burst is the rate's worth, but at least one: below 1/s it must still admit
        burst = max(1.0, self.hello_rate)
        self._bucket = min(burst, self._bucket + (now - self._bucket_t) * self.hello_rate)
        self._bucket_t = now
        if self._bucket >= 1.0:
            self._bucket -= 1.0
            return True
        self._refuse(rid, "hello rate limit")
        wait = (1.0 - self._bucket) / self.hello_rate  # until a token of its own
        if len(self._turns) >= self.max_unproven:  # drop the turns nobody came back for
            self._turns = {k: t for k, t in self._turns.items() if t > now - HELLO_WAIT_MAX}
        if wait <= HELLO_WAIT_MAX and len(self._turns) < self.max_unproven:
            self._bucket -= 1.0
            self._turns[name] = now + wait
        # past the bound nothing is reserved (a flood of strangers cannot book the
        # controller for hours): come back then and queue again
        self._replies.append((rid, m.Rehello(after=min(wait, HELLO_WAIT_MAX))))
        return False

    def _forget(self, name: str) -> None:
        self.peers.remove(name)
        self._unproven.discard(name)

    def _refuse(self, rid: bytes, reason: str) -> None:
        self.stats.refuse(reason)
        self.last_refusal = (rid, reason)

    # ------------------------------------------------------------ time
    def tick(self, now: float) -> list[str]:
        """Declare silent peers lost, queue owed heartbeats; return the names lost."""
        lost = []
        for peer in self.peers.expired(now):
            proven = peer.name in self._proven
            self._forget(peer.name)
            self.core.lost(peer.name, spend_retry=proven)
            lost.append(peer.name)
        self.settle()
        for peer in self.peers.owed_heartbeat(now):
            self.beats.append(peer.rid)
            peer.last_tx = now  # the caller sends them in this turn (take_beats)
        self.core.tick()
        return lost

    # ------------------------------------------------------------ outbound
    def outgoing(self) -> list[Outbound]:
        """Everything to send now, in protocol order. Call after the journal is flushed."""
        self.settle()
        out = self._replies + self._acks
        self._replies, self._acks = [], []
        for cmd in self.core.take_commands():
            peer = self.peers.by_name.get(getattr(cmd, "worker", ""))
            if peer is None:
                continue
            if isinstance(cmd, Dispatch):
                out.append((peer.rid, m.Evaluate(cmd.eval_id, cmd.attempt, cmd.x, cmd.timeout)))
            elif isinstance(cmd, SendKill):
                out.append((peer.rid, m.Kill(cmd.eval_id, cmd.attempt, cmd.reason)))
        out += self._after
        self._after = []
        return out

    def take_beats(self) -> list[bytes]:
        """Connections owed a heartbeat: the transport sends each one a frame holding
        only ``heartbeat`` (order against other messages does not matter for it). A
        failed send is reported through :meth:`undeliverable` like any other."""
        out, self.beats = self.beats, []
        return out

    def has_replies(self) -> bool:
        return bool(self._replies)

    def take_replies(self) -> list[Outbound]:
        """Replies that need nothing from the journal (welcome, rehello, terminate,
        heartbeats): the transport may send them at once."""
        out, self._replies = self._replies, []
        return out

    def undeliverable(self, rid: bytes, msg: m.Message, gone: bool = False) -> None:
        """The socket refused ``msg``: the connection is gone (``gone``: EHOSTUNREACH) or its
        queue is full.

        A refused dispatch never left: it goes back to the queue without spending a retry.
        The connection is forgotten either way, so nothing else is sent into it: a vanished
        worker is lost (as if silent past the window: a retry spent for what it held), a
        worker whose queue is full leaves as ``unreachable``. One that is still there
        speaks again, is told to ``rehello`` and rejoins with what it holds.
        """
        peer = self.peers.by_rid.get(rid)
        if peer is None:
            return
        proven = peer.name in self._proven
        self._forget(peer.name)
        if isinstance(msg, m.Evaluate):
            self.core.dispatch_failed(peer.name, msg.eval_id, msg.attempt)
        if gone:
            self.core.lost(peer.name, spend_retry=proven)
        else:
            self.core.leave(peer.name, "unreachable")

    def sent(self, rid: bytes, now: float) -> None:
        peer = self.peers.by_rid.get(rid)
        if peer is not None:
            peer.last_tx = now

    def counters(self) -> dict[str, Any]:
        """What was refused, for run_finished and status."""
        return {"refused": dict(self.stats.refused), "dropped": self.stats.dropped}

    def status(self, now: float) -> dict[str, Any]:
        """A snapshot for ``tether status`` (bounded: at most STATUS_WORKERS workers)."""
        core, st, v = self.core, self.core.state, self.core.view
        best = v.best
        elapsed = max(1e-9, now - st.t0)
        workers = []
        for name, w in list(core.workers.by_name.items())[:STATUS_WORKERS]:
            peer = self.peers.by_name.get(name)
            running = [{"eval_id": e, "attempt": a,
                        "seconds": now - v.records[e].t_started if e in v.records else None}
                       for e, a in w.busy.items()]
            workers.append({"name": name, "slots": w.slots, "draining": w.draining,
                            "running": running,
                            "heard": None if peer is None else now - peer.last_rx})
        return {
            "budget": core.settings.budget, "completed": v.n_completed, "failed": st.n_failed,
            "killed": st.n_killed, "in_flight": v.n_in_flight, "queued": len(st.queue),
            "finished": st.finished, "elapsed": elapsed,
            "rate_per_hour": v.n_completed / elapsed * 3600,
            "best_value": best.value if best else None,
            "best_x": dict(zip(core.space.names, best.x)) if best else None,
            "best_eval_id": best.eval_id if best else None,
            "strategy": core.strategy.name, "n_workers": len(core.workers),
            "slots": core.workers.n_slots, "free_slots": core.workers.n_free,
            "workers": workers,
            "recent_failures": [{"t": t, "eval_id": e, "worker": w, "error": err}
                                for t, e, w, err in st.recent_failures],
            **self.counters(),
        }

    def goodbyes(self) -> list[Outbound]:
        reason = self.core.finished or "run over"
        return [(p.rid, m.Terminate(reason)) for p in self.peers.by_rid.values()]


def _clean_info(info: dict[str, Any]) -> dict[str, Any]:
    """Scalar ``report(**info)`` entries, bounded, that cannot clash with event fields."""
    out: dict[str, Any] = {}
    for k, v in list(info.items())[:INFO_KEYS]:
        if not isinstance(k, str) or len(k) > 64 or k in ("event", "t", "seq"):
            continue
        if isinstance(v, (bool, int)) or (isinstance(v, float) and math.isfinite(v)):
            out[k] = v
        elif isinstance(v, str):
            out[k] = v[:INFO_TEXT]
    return out
