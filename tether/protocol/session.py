"""Sans-IO session state for both ends. No sockets, no clocks: ``now`` is passed in.

Worker side (:class:`WorkerSession`): handshake, heartbeats, liveness of the controller,
and the outbox of outcomes kept until the controller acknowledges them, so a result
finished while disconnected is delivered after the next handshake. The agent feeds it
messages and time and carries out the returned effects.

Controller side (:class:`PeerTable`): which connection belongs to which worker, when
each was last heard from, and when each is owed a heartbeat.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass, field

from tether.protocol import messages as m

Outcome = m.Result | m.Failure | m.Killed


@dataclass(frozen=True, slots=True)
class StartEval:
    eval_id: int
    attempt: int
    x: tuple[float, ...]
    timeout: float


@dataclass(frozen=True, slots=True)
class StopEval:
    eval_id: int
    attempt: int
    reason: str


@dataclass(frozen=True, slots=True)
class Reconnect:
    """Drop the socket and connect afresh (the controller went silent or restarted)."""

    reason: str


@dataclass(frozen=True, slots=True)
class Exit:
    reason: str


Action = StartEval | StopEval | Reconnect | Exit
Effect = m.Message | Action


MAX_HELLO_WAIT = 60.0  # seconds a worker waits when told to come back later
MAX_HELLO_BACKOFF = 30.0  # seconds between hellos repeated on a live connection
BUSY_WINDOWS = 10  # liveness windows a worker waits on a silent controller it is linked to


class WorkerSession:
    """The worker's view of its link to the controller."""

    CONNECTING, READY = "connecting", "ready"

    def __init__(self, name: str, session: str, slots: int = 1, host: str = "", pid: int = 0,
                 job: str = "", hello_timeout: float = 5.0, t_end: float | None = None,
                 drain: float = 0.0) -> None:
        self.name, self.session, self.capacity = name, session, max(1, slots)
        self.host, self.pid, self.job = host, pid, job
        self.hello_timeout = hello_timeout
        self.state = self.CONNECTING
        self.epoch: str | None = None
        self.heartbeat = 1.0
        self.liveness = 3
        self.names: tuple[str, ...] = ()
        self.running: dict[tuple[int, int], float] = {}  # (eval_id, attempt) -> start time
        # prefetched: received beyond our slots, started in order as slots free up
        self.queued: dict[tuple[int, int], StartEval] = {}
        self.outbox: dict[tuple[int, int], Outcome] = {}
        self.last_rx = self.last_tx = 0.0
        self.drained = False  # the controller confirmed it sends us no more work
        self.t_end, self.drain_margin = t_end, drain  # walltime end on the caller's clock
        self.draining = slots == 0  # no slots offered: take no work at all
        self.left: str | None = None  # why we said goodbye
        self.hello_at: float | None = None  # told to say hello again then (Rehello.after)
        self._resends = 0  # hellos repeated on this connection without a welcome

    @property
    def slots(self) -> int:
        """What the hello offers: 0 once draining (a reconnect must say so too)."""
        return 0 if self.draining else self.capacity
    # ------------------------------------------------------------ handshake
    def hello(self, now: float) -> m.Hello:
        """The message that opens a (new) connection."""
        if self.t_end is not None and self.t_end - now <= self.drain_margin:
            self.draining = True  # started inside its drain window: take no work at all
        self.state = self.CONNECTING
        self.hello_at = None
        self.last_rx = self.last_tx = now
        held = tuple(sorted(set(self.running) | set(self.queued) | set(self.outbox)))
        return m.Hello(self.name, self.session, self.slots, held, self.host, self.pid, self.job)

    # ------------------------------------------------------------ inbound
    def receive(self, msg: m.Message, now: float) -> list[Effect]:
        self.last_rx = now
        if isinstance(msg, m.Rehello):
            if msg.after > 0:  # our turn comes then: wait on this connection, no timeout
                self.hello_at = now + min(msg.after, MAX_HELLO_WAIT)
                self.state = self.CONNECTING
                return []
            # before the handshake completes only Welcome means anything (a stale
            # rehello answers something we sent on this connection before our hello)
            return [self.hello(now)] if self.state == self.READY else []
        if isinstance(msg, m.Welcome):
            self._resends = 0
            self.state = self.READY
            self.epoch, self.heartbeat, self.liveness = msg.epoch, msg.heartbeat, msg.liveness
            self.names = msg.names
            self.drained = self.slots == 0  # our Hello said: no work
            return self._sent(list(self.outbox.values()), now)
        if self.state != self.READY:
            return []  # only Welcome means anything before the handshake completes
        if isinstance(msg, m.Evaluate):
            key = (msg.eval_id, msg.attempt)
            if key in self.running or key in self.outbox or key in self.queued:
                return []  # a duplicate dispatch: already on it
            start = StartEval(msg.eval_id, msg.attempt, msg.x, msg.timeout)
            if len(self.running) >= self.capacity:
                self.queued[key] = start  # prefetched: it starts when a slot frees
                return []
            self.running[key] = now
            return [start]
        if isinstance(msg, m.Kill):
            key = (msg.eval_id, msg.attempt)
            if key in self.running:
                return [StopEval(msg.eval_id, msg.attempt, msg.reason or "killed")]
            if self.queued.pop(key, None) is not None:  # never started: ends here
                return self.finished(m.Killed(msg.eval_id, msg.attempt, msg.reason or "killed"),
                                     now)
            if key not in self.outbox:  # not ours any more: say so, or it stays busy there
                return self._sent([m.Killed(msg.eval_id, msg.attempt, "not running")], now)
            return []
        if isinstance(msg, m.Ack):
            self.outbox.pop((msg.eval_id, msg.attempt), None)
            return []
        if isinstance(msg, m.Terminate):
            return [Exit(msg.reason or "run over")]
        if isinstance(msg, m.Drained):
            self.drained = True
            return []
        return []

    # ------------------------------------------------------------ local events
    def finished(self, outcome: Outcome, now: float) -> list[Effect]:
        """An evaluation ended here; keep its outcome until the controller ACKs it."""
        key = (outcome.eval_id, outcome.attempt)
        self.running.pop(key, None)
        self.outbox[key] = outcome
        out: list[Effect] = self._sent([outcome], now) if self.state == self.READY else []
        while self.queued and len(self.running) < self.capacity:
            nxt_key, start = next(iter(self.queued.items()))
            del self.queued[nxt_key]
            self.running[nxt_key] = now
            out.append(start)
            if self.state == self.READY:  # its timeout runs from now, not from dispatch
                out += self._sent([m.Running(*nxt_key)], now)
        return out

    def partial(self, msg: m.Partial, now: float) -> list[Effect]:
        # partials are a progress stream: while disconnected they are dropped, not queued
        if self.state != self.READY or (msg.eval_id, msg.attempt) not in self.running:
            return []
        return self._sent([msg], now)

    def tick(self, now: float, linked: bool = False) -> list[Effect]:
        """Heartbeat when quiet; reconnect when the controller has been silent too long.

        ``linked`` says the connection itself is up (libzmq's own heartbeats are being
        answered). A controller that is silent but linked is alive and busy (an ask can
        outlast the window); reconnecting would only re-route what it sends meanwhile,
        so a linked worker waits ``BUSY_WINDOWS`` windows before it gives up on it.
        """
        if self.state == self.CONNECTING:
            if self.hello_at is not None:
                return [self.hello(now)] if now >= self.hello_at else []
            if now - self.last_tx >= self._hello_wait():
                if linked:
                    # the connection is up, so the controller is there but behind (a
                    # storm of thousands of hellos) or restarted under us (libzmq
                    # reconnected; our hello went to the old process): say it again
                    # here, backing off; the controller takes a repeat as a repeat
                    self._resends += 1
                    return [self.hello(now)]
                self._resends = 0
                return [Reconnect("no welcome")]
            return []
        busy_for = BUSY_WINDOWS * self.heartbeat * self.liveness
        if self.silent(now) and (not linked or now - self.last_rx > busy_for):
            self.state = self.CONNECTING
            return [Reconnect("controller busy too long" if linked else "controller silent")]
        if now - self.last_tx >= self.heartbeat:
            return self._sent([m.Heartbeat()], now)
        return []

    def check_walltime(self, now: float, idle: bool, connected: bool) -> list[Effect]:
        """Drain when the walltime is near; leave once nothing more can come or is owed.

        A dispatch may cross our ``drain`` on the wire; the controller answers it with
        ``drained`` after everything it sent before, so then nothing else is coming.
        """
        if self.t_end is None or self.left is not None:
            return []
        left = self.t_end - now
        out: list[Effect] = []
        if not self.draining and left <= self.drain_margin:
            self.draining = True
            if self.state == self.READY:
                out += self._sent([m.Drain(max(0.0, left))], now)
        settled = self.drained or not connected or left <= 0
        if self.draining and settled and idle and not self.queued and not self.outbox:
            out += self.leave("walltime", (), now)
        return out

    def leave(self, reason: str, abandoned: tuple[tuple[int, int], ...],
              now: float) -> list[Effect]:
        """Say goodbye (what we abandon goes back to the queue without a retry) and exit."""
        if self.left is not None:
            return []
        self.left = reason
        abandoned = (*abandoned, *self.queued)  # prefetched work goes back too
        self.queued.clear()
        for key in abandoned:
            self.running.pop(key, None)
        return [*self._sent([m.Goodbye(reason, abandoned)], now), Exit(reason)]

    def silent(self, now: float) -> bool:
        """Whether the controller has been silent past the window, or has not answered
        our hello in time (the agent then checks its connection, which costs a system
        call it need not make on every turn)."""
        if self.state == self.CONNECTING:
            return self.hello_at is None and now - self.last_tx >= self._hello_wait()
        return now - self.last_rx > self.heartbeat * self.liveness

    def _hello_wait(self) -> float:
        """The hello timeout, doubled for every repeat on a live connection (to 30 s)."""
        return min(MAX_HELLO_BACKOFF, self.hello_timeout * 2.0 ** self._resends)

    def next_deadline(self, now: float) -> float:
        """Seconds until :meth:`tick` may have something to do."""
        if self.state == self.CONNECTING:
            if self.hello_at is not None:
                return max(0.0, self.hello_at - now)
            return max(0.0, self.last_tx + self._hello_wait() - now)
        due = self.last_tx + self.heartbeat
        silent_at = self.last_rx + self.heartbeat * self.liveness
        if silent_at > now:  # past it, the link state is checked at every heartbeat
            due = min(due, silent_at)
        return max(0.0, due - now)

    def _sent(self, msgs: list[m.Message], now: float) -> list[Effect]:
        if msgs:
            self.last_tx = now
        return list(msgs)


def compact(msgs: list[m.Message]) -> list[m.Message]:
    """One frame's messages without the ``running`` of an evaluation whose outcome is
    in the same frame: ``running`` only restarts the controller's timeout clock, which
    the outcome stops. Cheap objectives run several prefetched evaluations per loop
    turn, and each dropped ``running`` is a message the controller need not decode."""
    done = {(x.eval_id, x.attempt) for x in msgs if isinstance(x, Outcome)}
    if not done:
        return msgs
    return [x for x in msgs
            if not (isinstance(x, m.Running) and (x.eval_id, x.attempt) in done)]


@dataclass
class Peer:
    rid: bytes
    name: str
    session: str
    last_rx: float
    last_tx: float
    job: str = ""
    key: str = ""  # fingerprint of the CURVE key its hello came with ("" without keys)
    heard: float = 0.0  # last_rx on the liveness clock (PeerTable.stalled taken off)


@dataclass
class _Deadlines:
    """Which peers' time field (``last_rx`` or ``last_tx``) is older than a limit, without a
    scan of all peers: a heap of (the field's value when pushed, seq, peer), one live entry
    per peer, lazily corrected.

    Touching a peer (a message heard or sent) only overwrites its field, O(1). An entry is
    examined only when its pushed value is old enough; if the peer was touched since, it is
    pushed again with its current value; if the peer was replaced or removed, it is dropped.
    So each entry popped stands for at least one message since the last push, or for a
    peer that really is due: the work per tick is amortised against messages, not peers.
    Times must never decrease (a monotonic clock), as the controller's are.
    """

    attr: str  # "heard" or "last_tx"
    heap: list[tuple[float, int, Peer]] = field(default_factory=list)
    recheck: list[Peer] = field(default_factory=list)  # returned last call: still due?
    seq: int = 0

    def push(self, peer: Peer) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (getattr(peer, self.attr), self.seq, peer))

    def due(self, now: float, older_than: Callable[[float], bool],
            live: dict[bytes, Peer]) -> list[Peer]:
        """Live peers whose field ``t`` has ``older_than(now - t)`` (in no promised order).

        ``older_than`` must be monotone (true for a gap, true for any larger gap): the
        heap is popped only while its oldest pushed value qualifies, and a pushed value
        is never newer than the peer's field.
        """
        for peer in self.recheck:  # the caller may have touched or removed them since
            if live.get(peer.rid) is peer:
                self.push(peer)
        self.recheck = []
        out: list[Peer] = []
        fresh: list[Peer] = []
        heap = self.heap
        while heap and older_than(now - heap[0][0]):
            peer = heapq.heappop(heap)[2]
            if live.get(peer.rid) is not peer:
                continue  # replaced or removed since it was pushed
            if older_than(now - getattr(peer, self.attr)):
                out.append(peer)
            else:
                fresh.append(peer)  # touched since: pushed again below, not re-examined
        for peer in fresh:
            self.push(peer)
        self.recheck = out
        return out


@dataclass
class PeerTable:
    """The controller's map of connections (ROUTER routing ids) to named workers.

    Liveness costs no scan of all peers per tick (see :class:`_Deadlines`): with 10,000
    connected workers the controller's tick does work only for peers heard from or owed a
    heartbeat since the last one.
    """

    heartbeat: float
    liveness: int
    by_rid: dict[bytes, Peer] = field(default_factory=dict)
    by_name: dict[str, Peer] = field(default_factory=dict)
    # Seconds, in all, that the owner could not read its socket (behind on a backlog, or
    # its loop blocked). Silence is judged on a clock that stops while the owner is
    # stalled: a heartbeat still queued in the kernel or in libzmq when the owner falls
    # behind is not the peer's silence, so a peer gets a window of the owner's
    # attention, not of wall time. Only ever grows.
    stalled: float = 0.0
    _rx: _Deadlines = field(default_factory=lambda: _Deadlines("heard"), repr=False)
    _tx: _Deadlines = field(default_factory=lambda: _Deadlines("last_tx"), repr=False)

    def add(self, rid: bytes, hello: m.Hello, now: float, key: str = "") -> Peer | None:
        """Register a connection; return the peer it replaces (same name), if any."""
        old = self.by_name.get(hello.name)
        if old is not None:
            self.by_rid.pop(old.rid, None)
        prev = self.by_rid.pop(rid, None)
        if prev is not None and prev.name != hello.name:
            self.by_name.pop(prev.name, None)
        peer = Peer(rid, hello.name, hello.session, now, now, hello.job, key, now - self.stalled)
        self.by_rid[rid] = peer
        self.by_name[hello.name] = peer
        self._rx.push(peer)
        self._tx.push(peer)
        return old

    def remove(self, name: str) -> Peer | None:
        peer = self.by_name.pop(name, None)
        if peer is not None:
            self.by_rid.pop(peer.rid, None)
        return peer

    def seen(self, rid: bytes, now: float) -> Peer | None:
        peer = self.by_rid.get(rid)
        if peer is not None:
            self.heard_from(peer, now)
        return peer

    def heard_from(self, peer: Peer, now: float) -> None:
        """``peer`` said something at ``now`` (on both clocks)."""
        peer.last_rx = now
        peer.heard = now - self.stalled

    def silent(self, peer: Peer, now: float) -> bool:
        """Whether ``peer`` has been silent for longer than the liveness window."""
        return now - self.stalled - peer.heard > self.heartbeat * self.liveness

    def expired(self, now: float) -> list[Peer]:
        """Peers silent for longer than the liveness window (not counting ``stalled``)."""
        window = self.heartbeat * self.liveness
        return self._rx.due(now - self.stalled, lambda gap: gap > window, self.by_rid)

    def owed_heartbeat(self, now: float) -> list[Peer]:
        """Peers sent nothing for a heartbeat interval (the caller sends, then sets last_tx)."""
        beat = self.heartbeat
        return self._tx.due(now, lambda gap: gap >= beat, self.by_rid)
