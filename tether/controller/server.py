"""The controller daemon: a ZeroMQ ROUTER loop around the pure controller core.

One thread, one socket. Each loop turn: read every waiting frame (bounded), feed the
core, let time act (heartbeats, liveness, timeouts), flush the journal, and only then
send what the core decided (evaluations, kills, ACKs). Flushing before sending is what
makes an ACKed result durable: the worker forgets a result only once it is in the log.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import zmq

from tether import keys
from tether.controller.core import ControllerCore
from tether.controller.progress import Progress
from tether.controller.session import ControllerSession
from tether.controller.settings import RunSettings
from tether.errors import ConfigError, RemoteProtocolError
from tether.events import Event
from tether.log.journal import JournalWriter
from tether.protocol import codec
from tether.protocol import messages as m
from tether.space import Space
from tether.strategies.base import Strategy

log = logging.getLogger("tether.controller")

MAX_BATCH = 1000  # frames handled per loop turn, so time-driven work is never starved
CATCH_UP_BATCHES = 50  # before a liveness check: up to 50,000 waiting frames (10,000 peers, 5 each)
# A frame holding only a heartbeat, as our codec writes it (the workers' codec): with
# thousands of workers most frames are this, and it needs no decoding. Another encoding
# of the same message still works, through the general path.
HEARTBEAT_FRAME = codec.encode(m.Heartbeat())

# pyzmq's Socket.send and recv are Python wrappers (the "sugar" layer) around compiled
# methods; with plain bytes and flags they only pass their arguments on. Called
# directly, a ROUTER frame (two sends) costs 2.2 µs instead of 4.8 through
# send_multipart, and the hot path sends about one per evaluation.
_send = zmq.backend.Socket.send
_recv = zmq.backend.Socket.recv
_MORE_NOBLOCK = zmq.SNDMORE | zmq.NOBLOCK


@dataclass
class ServerStats:
    """Transport counters; what the protocol refused is in ``session.stats``."""

    sent: int = 0
    unroutable: int = 0


class ControllerServer:
    """Binds ``settings.bind`` and runs ``strategy`` until the run ends."""

    def __init__(self, space: Space, strategy: Strategy, settings: RunSettings,
                 journal: JournalWriter, run_info: dict[str, Any],
                 clock: Callable[[], float] = time.time,
                 context: zmq.Context[Any] | None = None,
                 progress: Progress | None = None) -> None:
        self.settings = settings
        self.journal = journal
        self.clock = clock
        self.progress = progress
        self.core = ControllerCore(space, strategy, settings, journal, clock, run_info)
        self.stop_requested: str | None = None  # set from a signal handler
        self._last_tick = clock()
        self.epoch = secrets.token_hex(8)
        self.session = ControllerSession(self.core, self.epoch, space.names)
        self.stats = ServerStats()
        self._own_ctx = context is None
        self._ctx = context or zmq.Context()
        self.sock: zmq.Socket[bytes] = self._ctx.socket(zmq.ROUTER)
        self._configure(self.sock)
        self.endpoint = self._bind(settings.bind)

    # ------------------------------------------------------------ setup
    def _configure(self, s: zmq.Socket[bytes]) -> None:
        s.setsockopt(zmq.LINGER, 2000)
        s.setsockopt(zmq.ROUTER_MANDATORY, 1)  # unknown peer -> error, not a silent drop
        # no handover: a peer that sets its routing id to another worker's would take over
        # that worker's traffic (reproduced); workers never choose routing ids
        s.setsockopt(zmq.ROUTER_HANDOVER, 0)
        s.setsockopt(zmq.MAXMSGSIZE, codec.MAX_MESSAGE)
        # No ZMTP pings from the controller. libzmq 4.3 cancels a ping's timeout timer
        # with a scan of every timer of its I/O thread (poller_base_t::cancel_timer is
        # O(n)), so one ping round over N connections costs O(N^2): with 10,000 workers
        # that scan was half the controller's CPU (perf: std::_Rb_tree_increment). The
        # kernel frees a vanished peer's connection instead, with no per-connection work
        # here: keepalive probes once it is idle, and TCP_USER_TIMEOUT once data sent to
        # it stays unacknowledged. Workers still ping (one connection per I/O thread).
        probe_s = max(1, round(self.settings.heartbeat * 10))
        s.setsockopt(zmq.TCP_KEEPALIVE, 1)
        s.setsockopt(zmq.TCP_KEEPALIVE_IDLE, probe_s)
        s.setsockopt(zmq.TCP_KEEPALIVE_INTVL, probe_s)
        s.setsockopt(zmq.TCP_KEEPALIVE_CNT, self.settings.liveness)
        s.setsockopt(zmq.TCP_MAXRT, probe_s * self.settings.liveness * 1000)
        s.setsockopt(zmq.SNDHWM, 100_000)
        s.setsockopt(zmq.RCVHWM, 100_000)
        # libzmq listens with a backlog of 100: in a storm of thousands of connects (a
        # whole allocation starting at once) the kernel drops the SYNs over it, and each
        # drop costs the worker a retransmission backoff of 1, 2, 4, 8... s. The kernel
        # caps this at net.core.somaxconn (4096 on current Linux).
        s.setsockopt(zmq.BACKLOG, 4096)
        keys.configure_server(s, self.settings.keys)  # CURVE + allow-list; before bind

    def _bind(self, endpoint: str) -> str:
        try:
            self.sock.bind(endpoint)
        except zmq.ZMQError as exc:
            self.sock.close(0)
            if self._own_ctx:
                self._ctx.term()
            raise ConfigError(f"cannot bind {endpoint}: {exc}") from None
        return self.sock.getsockopt(zmq.LAST_ENDPOINT).decode()  # type: ignore[union-attr]

    # ------------------------------------------------------------ main loop
    def start(self, resume_events: Iterable[Event] | None = None) -> None:
        if resume_events is None:
            self.core.start()
        else:
            self.core.resume(resume_events, self.settings.resume_grace)
        self.journal.flush()
        if self.progress is not None:  # it reads the state at each tick from now on
            self.progress.attach(self.core.state)

    def run(self) -> str:
        """Serve until the run finishes; return the reason it finished."""
        poller = zmq.Poller()
        poller.register(self.sock, zmq.POLLIN)
        tick_every = min(0.1, self.settings.heartbeat / 4)
        next_tick = 0.0
        self._last_tick = self.clock()
        ask_ahead = self.core.strategy.ask_ahead > 0
        try:
            while self.core.finished is None and self.stop_requested is None:
                if poller.poll(int(tick_every * 1000)):
                    self._drain()
                    # what the messages caused goes out before any heartbeat: a worker
                    # that drains takes our next message as the end of what we sent it
                    self._flush_and_send()
                now = self.clock()
                if now >= next_tick:
                    # read what waited while we were busy (a long ask, a connection storm
                    # of thousands) before judging anyone silent: their heartbeats are in
                    # there, possibly many batches deep
                    behind = self._catch_up()
                    self._tick(self.clock(), tick_every, behind)
                    next_tick = now + tick_every
                    self._flush_and_send()
                # idle (nothing waiting): ask ahead so the next free worker need not wait
                # (a strategy that never asks ahead costs no extra poll per turn)
                if ask_ahead and not poller.poll(0) and self.core.prepare():
                    self._flush_and_send()
            self._flush_and_send()
            if self.stop_requested is not None:
                # no goodbye: workers keep evaluating and keep their outcomes until the
                # next controller generation acknowledges them (resumable, nothing lost)
                return self.stop_requested
            self._say_goodbye()
            self._linger(poller, min(1.0, self.settings.heartbeat))
        finally:
            self.journal.flush()
            if self.progress is not None:
                self.progress.close()
        return self.core.finished or ""

    def close(self) -> None:
        self.sock.close()  # LINGER bounds how long the last Terminates may take to leave
        if self._own_ctx:
            self._ctx.term()
        self.journal.close()

    def _drain(self) -> int:
        """Handle up to MAX_BATCH waiting frames; how many there were."""
        if self.settings.keys is not None:
            return self._drain_curve()
        sock = self.sock
        recv, more, handle, noblock = _recv, sock.getsockopt, self._handle, zmq.NOBLOCK
        for n in range(MAX_BATCH):
            # two recvs and one RCVMORE test instead of recv_multipart (a list, a loop and
            # a test per frame): with 10,000 workers this runs 10,000 times a second
            try:
                rid = recv(sock, noblock)
            except zmq.Again:
                return n
            frames = [rid, recv(sock, noblock)]  # a ROUTER message is whole once it is here
            while more(zmq.RCVMORE):  # a peer's multi-frame message: refused by _handle
                frames.append(recv(sock, noblock))
            handle(frames)
        return MAX_BATCH

    def _drain_curve(self) -> int:
        for n in range(MAX_BATCH):
            try:  # the key the connection authenticated with travels on its frames
                frames, key = keys.recv_with_key(self.sock, zmq.NOBLOCK)
            except zmq.Again:
                return n
            self._handle(frames, keys.fingerprint(key) if key else "")
        return MAX_BATCH

    def _catch_up(self) -> bool:
        """Read everything already waiting (bounded: a storm that never ends must not stop
        the ticks), writing and sending what it causes batch by batch. True when frames
        were still waiting at the bound (we are behind)."""
        for _ in range(CATCH_UP_BATCHES):
            if self._drain() < MAX_BATCH:
                return False
            self._flush_and_send()
        return True

    def _tick(self, now: float, tick_every: float, behind: bool) -> None:
        # Time we could not have read a heartbeat does not count as a worker's silence:
        # all of it when frames were still waiting at the catch-up bound, else whatever
        # the loop overran its tick by (a long ask, a huge batch). Never more than the
        # time that passed, so the liveness clock never runs backwards.
        gap = max(0.0, now - self._last_tick)
        self._last_tick = now
        self.session.peers.stalled += gap if behind else max(0.0, gap - 2 * tick_every)
        for name in self.session.tick(now):
            log.warning("worker %s silent past the liveness window: lost", name)
        if self.progress is not None:
            self.progress.tick()

    def _handle(self, frames: list[bytes], key: str = "") -> None:
        rid = frames[0]
        if len(frames) == 2 and frames[1] == HEARTBEAT_FRAME:
            self.session.heartbeat(rid, self.clock(), key)
            if self.session.has_replies():  # rehello or terminate
                self._send_all(self.session.take_replies())
            return
        if len(frames) != 2:
            self.session.drop(rid, "wrong frame count")
            return
        try:
            msgs = codec.decode_frame(frames[1], m.WORKER_MESSAGES)
        except RemoteProtocolError as exc:
            self.session.drop(rid, str(exc))
            log.warning("dropped a message from %s: %s", rid.hex(), exc)
            return
        before = self.session.stats.dropped
        now = self.clock()
        for msg in msgs:
            self.session.receive(rid, msg, now, key)
        if self.session.has_replies():  # welcome, rehello, terminate: at once
            self._send_all(self.session.take_replies())
        if self.session.stats.dropped != before and self.session.last_refusal is not None:
            log.warning("refused a message from %s: %s", rid.hex(), self.session.last_refusal[1])

    # ------------------------------------------------------------ outbound
    def _flush_and_send(self) -> None:
        self.session.settle()
        self.journal.flush()  # before any ACK or dispatch leaves: see module docstring
        for _ in range(100):  # bounded: each round only follows from the one before
            out = self.session.outgoing()
            if not out:
                break
            self._send_all(out)
            # a refused dispatch re-queued its evaluation: its events must be written
            # before anything that follows from them leaves
            self.journal.flush()
        self._send_beats()  # after what the messages caused, as before they had a path

    def _send_all(self, out: list[tuple[bytes, m.Message]]) -> None:
        """One frame per connection: its messages, in order (an ACK and the next
        evaluation travel together, which halves the sends per evaluation)."""
        by_rid: dict[bytes, list[m.Message]] = {}
        for rid, msg in out:
            by_rid.setdefault(rid, []).append(msg)
        for rid, msgs in by_rid.items():
            for k in range(0, len(msgs), codec.MAX_BATCH):
                self._send(rid, msgs[k:k + codec.MAX_BATCH])

    def _send(self, rid: bytes, msgs: list[m.Message]) -> None:
        frame = codec.encode_many(msgs)
        try:
            _send(self.sock, rid, _MORE_NOBLOCK)  # ROUTER_MANDATORY: an unknown peer fails here
            _send(self.sock, frame, zmq.NOBLOCK)  # and a full queue (EAGAIN) at the first part
        except zmq.ZMQError as exc:  # EHOSTUNREACH (gone) or EAGAIN (peer's queue full)
            self.stats.unroutable += 1
            for msg in msgs:
                self.session.undeliverable(rid, msg, gone=exc.errno == zmq.EHOSTUNREACH)
            return
        self.stats.sent += 1
        self.session.sent(rid, self.clock())

    def _send_beats(self) -> None:
        """Owed heartbeats, each a constant frame (no per-peer encoding or grouping)."""
        sock, beat = self.sock, HEARTBEAT_FRAME
        for rid in self.session.take_beats():
            try:  # ROUTER_MANDATORY: an unknown peer fails at its routing id
                _send(sock, rid, _MORE_NOBLOCK)
                _send(sock, beat, zmq.NOBLOCK)
            except zmq.ZMQError as exc:
                self.stats.unroutable += 1
                self.session.undeliverable(rid, m.Heartbeat(), gone=exc.errno == zmq.EHOSTUNREACH)
                continue
            self.stats.sent += 1

    def _linger(self, poller: zmq.Poller, seconds: float) -> None:
        """After the end, tell workers that (re)connect late that the run is over."""
        deadline = self.clock() + seconds
        while (left := deadline - self.clock()) > 0:
            if not poller.poll(int(left * 1000) + 1):
                continue
            self._drain()
            self._flush_and_send()

    def _say_goodbye(self) -> None:
        self._send_all(self.session.goodbyes())
