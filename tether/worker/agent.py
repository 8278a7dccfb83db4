"""The worker agent: a DEALER loop that never blocks on the objective.

It polls its socket and the running evaluation's pipes together, feeds the sans-IO
:class:`~tether.protocol.session.WorkerSession`, and carries out what it returns. When
the controller goes silent it drops the socket and reconnects with exponential backoff
and jitter while the evaluation keeps running; the finished result waits in the
session's outbox until a controller acknowledges it.
"""

from __future__ import annotations

import itertools
import logging
import os
import random
import signal
import socket
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Any

import zmq

from tether import keys
from tether.addressfile import read_address
from tether.errors import ConfigError, RemoteProtocolError
from tether.protocol import codec
from tether.protocol import messages as m
from tether.protocol.session import (
    Exit,
    Reconnect,
    StartEval,
    StopEval,
    WorkerSession,
    compact,
)
from tether.worker.evaluators import Done, Evaluator, PartialOut, Running
from tether.worker.pyeval import PythonEvaluator
from tether.worker.pyfeed import FeedEvaluator

# ZMTP heartbeats on the worker's socket: libzmq drops a link silent this long after a
# ping (a cut cable, a vanished controller), which is how a worker tells a dead
# controller from a busy one (see docs/fault-tolerance.md, Heartbeats). A ping every
# 2.5 s finds a dead link within 5-7.5 s; the controller's I/O thread answers every
# ping of every worker, so at 10,000 workers a 1 s ping was 10,000 pongs a second.
ZMTP_PING_MS, ZMTP_TIMEOUT_MS = 2500, 5000

log = logging.getLogger("tether.worker")

SIGNAL_HOLD = 1.0  # seconds a signalled program's failure waits for the agent's own SIGTERM
IN_TURN_BATCH = 0.005  # seconds of queued in-process evaluations run in one loop turn
# the compiled send/recv under pyzmq's Python wrappers (see tether/controller/server.py)
_send = zmq.backend.Socket.send
_recv = zmq.backend.Socket.recv
_get: Callable[[Any, int], int] = zmq.backend.Socket.get  # type: ignore[assignment]


@dataclass
class WorkerOptions:
    connect: str | None = None
    address_file: str | None = None
    name: str | None = None
    walltime: float | None = None  # seconds from start; None: from the batch job or unlimited
    drain: float = 0.0  # stop taking work when less than this remains
    backoff_min: float = 0.5
    backoff_max: float = 30.0
    hello_timeout: float = 2.0
    address_poll: float = 0.2  # seconds between reads of a missing --address-file
    slots: int = 1  # evaluations run at once over this one connection (a node agent)
    max_wait: float | None = None  # give up (exit 3) after this long without a controller
    keys: str | None = None  # CURVE key directory: this worker's pair and the controller's key

#: exit status when no controller answered for --max-wait seconds
EXIT_NO_CONTROLLER = 3


class WorkerAgent:
    def __init__(self, evaluator: Evaluator, opts: WorkerOptions,
                 context: zmq.Context[Any] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not opts.connect and not opts.address_file:
            raise ConfigError("give --connect tcp://HOST:PORT or --address-file PATH")
        self.evaluator = evaluator
        self.opts = opts
        host = socket.gethostname()
        self.name = opts.name or f"{host}:{os.getpid()}"
        job = os.environ.get("SLURM_JOB_ID") or os.environ.get("PBS_JOBID") or ""
        self.clock = clock
        now = clock()
        t_end = now + opts.walltime if opts.walltime else None
        self.session = WorkerSession(self.name, uuid.uuid4().hex, opts.slots, host, os.getpid(),
                                     job, hello_timeout=opts.hello_timeout, t_end=t_end,
                                     drain=opts.drain)
        # an owned context is terminated on exit: that is what lets a Goodbye leave
        self._own_ctx = context is None
        self.ctx = context or zmq.Context()
        self.sock: zmq.Socket[bytes] | None = None
        self.runs: dict[tuple[int, int], Running] = {}
        self.dying: list[Running] = []  # killed, still being reaped
        self.held: dict[tuple[int, int], tuple[Done, float]] = {}  # signalled, undecided
        self.exit_reason: str | None = None
        self.exit_code = 0
        self._attempts = 0
        self._reconnect_at = 0.0
        self._signal: str | None = None  # "sigterm" or "interrupted", set by the handler
        self._heard = now  # when the controller last answered (for --max-wait)
        self._lost_at: float | None = now  # since when we have had no controller
        self._endpoint_now = ""
        self._poller = zmq.Poller()
        self._polled: set[Any] = set()  # what the poller watches: the socket and pipe fds
        self._outgoing: list[m.Message] = []  # sent as one frame at the end of the turn
        # a Python evaluator takes prefetched work ahead (see pyeval and pyfeed)
        self._ahead = evaluator if isinstance(evaluator, (PythonEvaluator, FeedEvaluator)) \
            and evaluator.lookahead else None

    # ------------------------------------------------------------ public
    def run(self) -> int:
        previous = {sig: signal.signal(sig, self._on_signal)
                    for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            while self.exit_reason is None:
                self._turn()
            return self.exit_code
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self._shutdown()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # Ctrl-C leaves like the batch system's SIGTERM: goodbye, no retry spent
        self._signal = "sigterm" if signum == signal.SIGTERM else "interrupted"

    # ------------------------------------------------------------ one loop turn
    def _turn(self) -> None:
        now = self.clock()
        if self.sock is None and now >= self._reconnect_at:
            self._connect(now)
        timeout = 0.05 if self.sock is None else min(0.1, self.session.next_deadline(now))
        if any(run.due() for run in self.runs.values()):
            timeout = 0.0  # an in-process evaluation is waiting for its turn
        sock_ready = True
        if self._sync_poller():
            events = self._poller.poll(int(timeout * 1000) + (timeout > 0))
            # zmq_poll is level-triggered on the socket: not listed means nothing to read,
            # and skipping the read spares a raised zmq.Again (6 µs) on most turns
            sock = self.sock
            sock_ready = any(ev[0] is sock for ev in events)
        elif timeout > 0:  # disconnected and idle: nothing can wake us before the reconnect
            time.sleep(max(0.0, min(timeout, self._reconnect_at - now)))
        now = self.clock()
        if self._signal:  # the job is ending: what dies with us is abandoned, not failed
            self._leave(self._signal, now)
            self._flush()
            return
        if sock_ready:
            self._read_socket(now)
        self._poll_runs(now)
        # in-process evaluations queued behind the one just run go now, for a few ms, so
        # their outcomes share one frame (a kill sent meanwhile is obeyed when they return)
        until = now + IN_TURN_BATCH
        while any(run.due() for run in self.runs.values()) and self.clock() < until:
            now = self.clock()
            self._poll_runs(now)
        if self._ahead is not None:
            self._send_ahead()
        self._release_held(now)
        if self.sock is not None:
            # with IMMEDIATE, POLLOUT means a live connection (ZMTP heartbeats answered)
            linked = self.session.silent(now) and bool(self.sock.poll(0, zmq.POLLOUT))
            self._do(self.session.tick(now, linked), now)
        idle = not self.runs and not self.held
        self._do(self.session.check_walltime(now, idle, self.sock is not None), now)
        self._check_max_wait(now)
        self._flush()

    def _sync_poller(self) -> bool:
        """Bring the reused poller up to date with the socket and the evaluations' pipes;
        whether it watches anything. Registration changes only when that set changes
        (a poller built afresh each turn cost more than the turn's own work)."""
        want: set[Any] = {fd for run in self.runs.values() for fd in run.fds()}
        for run in self.dying:
            want.update(run.fds())
        if self.sock is not None:
            want.add(self.sock)
        if want != self._polled:
            for gone in self._polled - want:
                self._poller.unregister(gone)
            for new in want - self._polled:
                self._poller.register(new, zmq.POLLIN)
            self._polled = want
        return bool(want)

    def _read_socket(self, now: float) -> None:
        # ZMQ_EVENTS says when the queue is empty: ending on a raised zmq.Again cost 6 µs
        while self.sock is not None and _get(self.sock, zmq.EVENTS) & zmq.POLLIN:
            try:
                frame = _recv(self.sock, zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                msgs = codec.decode_frame(frame, m.CONTROLLER_MESSAGES)
            except RemoteProtocolError as exc:
                log.warning("dropped a bad message from the controller: %s", exc)
                continue
            self._heard = now
            for msg in msgs:
                self._receive(msg, now)

    def _receive(self, msg: m.Message, now: float) -> None:
        if isinstance(msg, m.Welcome):
            self._attempts = 0
            if self._lost_at is not None:
                log.warning("joined the controller at %s after %.0f s", self._endpoint_now,
                            now - self._lost_at)
            self._lost_at = None
        self._do(self.session.receive(msg, now), now)

    def _poll_runs(self, now: float) -> None:
        for key, run in list(self.runs.items()):
            if key in self.held:
                continue
            ran_here = run.due()  # in-process: the call runs inside poll()
            outs = run.poll(now)
            if ran_here:  # its duration, and the start of the next queued one, are later
                now = self.clock()
            for out in outs:
                if isinstance(out, PartialOut):
                    self._do(self.session.partial(m.Partial(*key, out.value, out.info), now), now)
                elif isinstance(out, Done):
                    if out.signal in (signal.SIGTERM, signal.SIGKILL, signal.SIGINT):
                        # maybe the batch system is ending the job and our own SIGTERM
                        # is on its way: wait a moment before calling it a failure
                        self.held[key] = (out, now + SIGNAL_HOLD)
                        continue
                    del self.runs[key]
                    self._finished(key, out, now)
        self.dying = [r for r in self.dying if not _reap(r, now)]

    def _send_ahead(self) -> None:
        """Keep the child's pipe stocked with the next prefetched evaluations, in the
        order the session starts them, and take back those it no longer holds."""
        ev = self._ahead
        assert ev is not None
        queued = self.session.queued
        if ev.ahead:
            for key in [k for k in ev.ahead if k not in queued]:
                ev.forget(key)
        # what is ahead is the front of the queue (sent in order): look past it only
        for key, start in itertools.islice(queued.items(), len(ev.ahead), ev.ahead_max):
            if key not in ev.ahead and not ev.presend(key, start.x):
                break
        ev.flush()

    def _release_held(self, now: float) -> None:
        for key, (out, until) in list(self.held.items()):
            if now >= until:
                del self.held[key]
                self.runs.pop(key, None)
                self._finished(key, out, now)

    def _finished(self, key: tuple[int, int], out: Done, now: float) -> None:
        seconds = now - self.session.running.get(key, now)
        msg: m.Result | m.Failure
        msg = m.Result(*key, out.value, seconds) if out.ok else m.Failure(*key, out.error, seconds)
        self._do(self.session.finished(msg, now), now)

    # ------------------------------------------------------------ effects
    def _do(self, effects: list[Any], now: float) -> None:
        for eff in effects:
            if isinstance(eff, StartEval):
                key = (eff.eval_id, eff.attempt)
                run = self._ahead.take(key) if self._ahead is not None else None
                self.runs[key] = run or self.evaluator.start(eff.eval_id, eff.x,
                                                             self.session.names)
            elif isinstance(eff, StopEval):
                self._stop((eff.eval_id, eff.attempt), eff.reason, now)
            elif isinstance(eff, Reconnect):
                if self._lost_at is None:
                    self._lost_at = now
                    log.warning("lost the controller at %s (%s); waiting for it",
                                self._endpoint_now, eff.reason)
                self._disconnect(now)
            elif isinstance(eff, Exit):
                self.exit_reason = eff.reason
            else:
                self._send(eff)

    def _stop(self, key: tuple[int, int], reason: str, now: float) -> None:
        run = self.runs.pop(key, None)
        if run is None:
            return
        run.kill(now)
        self.dying.append(run)
        self._do(self.session.finished(m.Killed(*key, reason), now), now)

    def _send(self, msg: m.Message) -> None:
        if self.sock is not None:
            self._outgoing.append(msg)

    def _flush(self) -> None:
        """Send what this turn produced: several messages travel as one frame."""
        out, self._outgoing = self._outgoing, []
        if self.sock is None or not out:
            return
        out = compact(out)
        for i in range(0, len(out), codec.MAX_BATCH):
            # once per frame: a try, not contextlib.suppress (1 µs)
            try:  # noqa: SIM105
                _send(self.sock, codec.encode_many(out[i:i + codec.MAX_BATCH]), zmq.NOBLOCK)
            except zmq.Again:  # not connected (IMMEDIATE); the handshake timeout will retry
                pass

    # ------------------------------------------------------------ connection
    def _endpoint(self) -> str | None:
        if self.opts.connect:
            return self.opts.connect
        try:
            addr = read_address(self.opts.address_file or "")
        except OSError:
            return None
        held = self.session.running or self.session.queued or self.session.outbox
        if addr.finished is not None and not held:
            # the run this address belonged to is over: a late worker has nothing to do
            self.exit_reason = f"the run already finished ({addr.finished})"
            return None
        return addr.endpoint

    def _connect(self, now: float) -> None:
        endpoint = self._endpoint()
        if endpoint is not None and endpoint != self._endpoint_now:
            log.warning("waiting for the controller at %s", endpoint)
            self._endpoint_now = endpoint
        if endpoint is None:
            # The controller has not written its address yet (it may be importing
            # TensorFlow). Reading a file costs the controller nothing, so poll it at a
            # short fixed interval instead of backing off: a worker that backed off to
            # 8 s would join that much later than its siblings.
            self._reconnect_at = now + self.opts.address_poll
            return
        s = self.ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.IMMEDIATE, 1)  # never queue for a dead connection (stale traffic)
        s.setsockopt(zmq.RECONNECT_IVL, 500)
        s.setsockopt(zmq.RECONNECT_IVL_MAX, 5000)
        s.setsockopt(zmq.MAXMSGSIZE, codec.MAX_MESSAGE)
        s.setsockopt(zmq.HEARTBEAT_IVL, ZMTP_PING_MS)
        s.setsockopt(zmq.HEARTBEAT_TIMEOUT, ZMTP_TIMEOUT_MS)
        keys.configure_client(s, self.opts.keys)  # CURVE; before connect
        try:
            s.connect(endpoint)
        except zmq.ZMQError as exc:
            s.close(0)
            raise ConfigError(f"cannot connect to {endpoint}: {exc}") from None
        self.sock = s
        hello = self.session.hello(now)
        # give the TCP handshake a moment so the first Hello is not refused by IMMEDIATE
        self._wait_connected(s, 0.5)
        self._outgoing.clear()  # meant for the connection that was dropped
        self._send(hello)
        self._flush()

    def _wait_connected(self, s: zmq.Socket[bytes], limit: float) -> None:
        deadline = self.clock() + limit
        while self.clock() < deadline:
            if s.poll(20, zmq.POLLOUT):
                return

    def _disconnect(self, now: float) -> None:
        if self.sock is not None:
            self._flush()  # as before batching: what this turn said goes to the old link
            self.sock.close(0)
            self.sock = None
        self._schedule_reconnect(now)

    def _schedule_reconnect(self, now: float) -> None:
        base = min(self.opts.backoff_max, self.opts.backoff_min * 2 ** min(self._attempts, 10))
        self._reconnect_at = now + base * random.uniform(0.75, 1.25)
        self._attempts += 1

    # ------------------------------------------------------------ walltime and exit
    def _check_max_wait(self, now: float) -> None:
        limit = self.opts.max_wait
        if limit is None or self._lost_at is None or now - self._heard < limit:
            return
        where = self._endpoint_now or self.opts.address_file or "?"
        print(f"tether worker {self.name}: no controller answered at {where} for "
              f"{limit:.0f} s; giving up (--max-wait)", file=sys.stderr, flush=True)
        self.exit_code = EXIT_NO_CONTROLLER
        self.exit_reason = "no controller (--max-wait)"

    def _leave(self, reason: str, now: float) -> None:
        self.held.clear()  # their programs died with the job: abandoned like the rest
        abandoned = tuple(self.runs)
        for key in abandoned:
            run = self.runs.pop(key)
            run.kill(now)
            self.dying.append(run)
        self._do(self.session.leave(reason, abandoned, now), now)

    def _shutdown(self) -> None:
        runs = [*self.runs.values(), *self.dying]
        for hard, wait in ((False, 2.0), (True, 5.0)):  # polite first, then SIGKILL
            deadline = self.clock() + wait
            for r in runs:
                r.kill(self.clock(), hard=hard)
            while runs and self.clock() < deadline:
                runs = [r for r in runs if not _reap(r, self.clock())]
                if runs:
                    time.sleep(0.01)  # reaping children: nothing to wait on but their exit
        self.evaluator.close()
        if self.sock is not None:
            self._flush()  # the Goodbye, if the loop ended before its turn's flush
            self.sock.setsockopt(zmq.LINGER, 1000)  # let the Goodbye leave
            self.sock.close()
            self.sock = None
        if self._own_ctx:
            self.ctx.term()


def _reap(run: Running, now: float) -> bool:
    """Poll a killed evaluation; True once its process is gone and its pipes closed."""
    run.poll(now)
    return run.reaped()
