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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import zmq

from tether import keys
from tether.controller.core import ControllerCore, Dispatch, Finish, SendKill
from tether.controller.settings import RunSettings
from tether.errors import ConfigError, RemoteProtocolError
from tether.log.journal import JournalWriter
from tether.protocol import codec
from tether.protocol import messages as m
from tether.protocol.session import PeerTable
from tether.space import Space
from tether.strategies.base import Strategy

log = logging.getLogger("tether.controller")

MAX_BATCH = 1000  # frames handled per loop turn, so time-driven work is never starved


@dataclass
class ServerStats:
    received: int = 0
    sent: int = 0
    dropped: int = 0  # malformed, oversized or out-of-protocol frames
    unroutable: int = 0
    drop_reasons: dict[str, int] = field(default_factory=dict)


class ControllerServer:
    """Binds ``settings.bind`` and runs ``strategy`` until the run ends."""

    def __init__(self, space: Space, strategy: Strategy, settings: RunSettings,
                 journal: JournalWriter, run_info: dict[str, Any],
                 clock: Callable[[], float] = time.time,
                 context: zmq.Context[Any] | None = None) -> None:
        self.settings = settings
        self.journal = journal
        self.clock = clock
        self.core = ControllerCore(space, strategy, settings, journal, clock, run_info)
        self.peers = PeerTable(settings.heartbeat, settings.liveness)
        self.epoch = secrets.token_hex(8)
        self.names = space.names
        self.stats = ServerStats()
        self._own_ctx = context is None
        self._ctx = context or zmq.Context()
        self.sock: zmq.Socket[bytes] = self._ctx.socket(zmq.ROUTER)
        self._configure(self.sock)
        self.endpoint = self._bind(settings.bind)
        self._acks: list[tuple[bytes, m.Ack]] = []
        self._after: list[tuple[bytes, m.Message]] = []  # sent after the commands

    # ------------------------------------------------------------ setup
    def _configure(self, s: zmq.Socket[bytes]) -> None:
        s.setsockopt(zmq.LINGER, 2000)
        s.setsockopt(zmq.ROUTER_MANDATORY, 1)  # unknown peer -> error, not a silent drop
        s.setsockopt(zmq.ROUTER_HANDOVER, 1)
        s.setsockopt(zmq.MAXMSGSIZE, codec.MAX_MESSAGE)
        ivl = max(100, int(self.settings.heartbeat * 1000))
        s.setsockopt(zmq.HEARTBEAT_IVL, ivl)  # ZMTP pings drop dead TCP links underneath
        s.setsockopt(zmq.HEARTBEAT_TIMEOUT, ivl * self.settings.liveness)
        s.setsockopt(zmq.SNDHWM, 100_000)
        s.setsockopt(zmq.RCVHWM, 100_000)
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
    def start(self, resume_events: list[dict[str, Any]] | None = None) -> None:
        if resume_events is None:
            self.core.start()
        else:
            self.core.resume(resume_events, self.settings.resume_grace)
        self.journal.flush()

    def run(self) -> str:
        """Serve until the run finishes; return the reason it finished."""
        poller = zmq.Poller()
        poller.register(self.sock, zmq.POLLIN)
        tick_every = min(0.1, self.settings.heartbeat / 4)
        next_tick = 0.0
        try:
            while self.core.finished is None:
                if poller.poll(int(tick_every * 1000)):
                    self._drain()
                    # what the messages caused goes out before any heartbeat: a worker
                    # that drains takes our next message as the end of what we sent it
                    self._flush_and_send()
                now = self.clock()
                if now >= next_tick:
                    self._tick(now)
                    next_tick = now + tick_every
                self._flush_and_send()
                # idle (nothing waiting): ask ahead so the next free worker need not wait
                if not poller.poll(0) and self.core.prepare():
                    self._flush_and_send()
            self._flush_and_send()
            self._say_goodbye()
            self._linger(poller, min(1.0, self.settings.heartbeat))
        finally:
            self.journal.flush()
        return self.core.finished or ""

    def close(self) -> None:
        self.sock.close()  # LINGER bounds how long the last Terminates may take to leave
        if self._own_ctx:
            self._ctx.term()
        self.journal.close()

    def _drain(self) -> None:
        for _ in range(MAX_BATCH):
            try:
                frames = self.sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            self.stats.received += 1
            self._handle(frames)

    def _tick(self, now: float) -> None:
        for peer in self.peers.expired(now):
            log.warning("worker %s silent for %.1f s: lost", peer.name, now - peer.last_rx)
            self.peers.remove(peer.name)
            self.core.lost(peer.name)
        for peer in self.peers.owed_heartbeat(now):
            self._send(peer.rid, m.Heartbeat())
        self.core.tick()

    # ------------------------------------------------------------ inbound
    def _handle(self, frames: list[bytes]) -> None:
        rid = frames[0]
        if len(frames) != 2:
            return self._drop(rid, "wrong frame count")
        try:
            msg = codec.decode(frames[1], m.WORKER_MESSAGES)
        except RemoteProtocolError as exc:
            return self._drop(rid, str(exc))
        now = self.clock()
        if isinstance(msg, m.Hello):
            return self._hello(rid, msg, now)
        peer = self.peers.seen(rid, now)
        if self.core.finished is not None and not isinstance(msg, (m.Result, m.Failure, m.Killed)):
            self._send(rid, m.Terminate(self.core.finished))
            return None
        if peer is None:
            self._send(rid, m.Rehello())  # e.g. we restarted: the worker must introduce itself
            return None
        core, name = self.core, peer.name
        if isinstance(msg, m.Result):
            core.completed(name, msg.eval_id, msg.attempt, msg.value)
            self._acks.append((rid, m.Ack(msg.eval_id, msg.attempt)))
        elif isinstance(msg, m.Failure):
            core.failed(name, msg.eval_id, msg.attempt, msg.error)
            self._acks.append((rid, m.Ack(msg.eval_id, msg.attempt)))
        elif isinstance(msg, m.Killed):
            core.killed(name, msg.eval_id, msg.attempt, msg.reason or "killed")
            self._acks.append((rid, m.Ack(msg.eval_id, msg.attempt)))
        elif isinstance(msg, m.Partial):
            core.partial(name, msg.eval_id, msg.attempt, msg.value)
        elif isinstance(msg, m.Drain):
            core.drain(name)
            # after anything already dispatched to it (see _flush_and_send): once the
            # worker reads this, nothing else is on its way and it may leave
            self._after.append((rid, m.Drained()))
        elif isinstance(msg, m.Goodbye):
            self.peers.remove(name)
            core.leave(name, msg.reason or "goodbye")
        return None

    def _hello(self, rid: bytes, hello: m.Hello, now: float) -> None:
        self.peers.add(rid, hello, now)
        s = self.settings
        self._send(rid, m.Welcome(self.epoch, s.heartbeat, s.liveness, self.names))
        if self.core.finished is not None:
            self._send(rid, m.Terminate(self.core.finished))
            return
        self.core.join(hello.name, hello.slots, hello.running)

    def _drop(self, rid: bytes, reason: str) -> None:
        self.stats.dropped += 1
        key = reason.split(":")[0][:40]
        self.stats.drop_reasons[key] = self.stats.drop_reasons.get(key, 0) + 1
        log.warning("dropped a message from %s: %s", rid.hex(), reason)

    # ------------------------------------------------------------ outbound
    def _flush_and_send(self) -> None:
        self.journal.flush()  # before any ACK or dispatch leaves: see module docstring
        cmds = self.core.take_commands()
        for rid, ack in self._acks:
            self._send(rid, ack)
        self._acks.clear()
        for cmd in cmds:
            if isinstance(cmd, Dispatch):
                self._to(cmd.worker, m.Evaluate(cmd.eval_id, cmd.attempt, cmd.x, cmd.timeout))
            elif isinstance(cmd, SendKill):
                self._to(cmd.worker, m.Kill(cmd.eval_id, cmd.attempt, cmd.reason))
            elif isinstance(cmd, Finish):
                pass  # goodbyes go out once the loop ends
        for rid, msg in self._after:
            self._send(rid, msg)
        self._after.clear()

    def _to(self, name: str, msg: m.Message) -> None:
        peer = self.peers.by_name.get(name)
        if peer is not None:
            self._send(peer.rid, msg)

    def _send(self, rid: bytes, msg: m.Message) -> None:
        try:
            self.sock.send_multipart([rid, codec.encode(msg)], zmq.NOBLOCK)
        except zmq.ZMQError:  # EHOSTUNREACH (gone) or EAGAIN (peer's queue full)
            self.stats.unroutable += 1
            return
        self.stats.sent += 1
        peer = self.peers.by_rid.get(rid)
        if peer is not None:
            peer.last_tx = self.clock()

    def _linger(self, poller: zmq.Poller, seconds: float) -> None:
        """After the end, tell workers that (re)connect late that the run is over."""
        deadline = self.clock() + seconds
        while (left := deadline - self.clock()) > 0:
            if not poller.poll(int(left * 1000) + 1):
                continue
            self._drain()
            self._flush_and_send()

    def _say_goodbye(self) -> None:
        reason = self.core.finished or "run over"
        for peer in list(self.peers.by_rid.values()):
            self._send(peer.rid, m.Terminate(reason))
