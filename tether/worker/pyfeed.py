"""A multi-slot agent's Python children, taking their jobs from one shared pipe.

A single-slot agent sends prefetched work ahead to its one child (:mod:`pyeval`). With
more slots a job sent ahead to one child could wait behind its long evaluation while a
sibling is idle, so the children share a pipe, the feed, and a child that ends a job
takes the next one itself (see :mod:`tether.worker.pychild`): it goes from one job to
the next without sleeping, and the agent reads several outcomes per wake-up. Children
sleep on their own pipes, not on the feed, whose every write would wake them all (a
thundering herd that cost more than the feed saved): the agent knows which are idle,
gives a new evaluation to one of them directly, and pokes as many as there are jobs
waiting in the feed.

Kills keep their meaning. A job in the feed that is no longer wanted is dropped by the
child that reads it (every child is told: a ``drop`` frame on its own pipe); if that
child took it before the drop arrived, it says so (``took``) and is killed. A running
job's child is killed (SIGKILL) under the child's lock, so the child is never caught
between taking a job from the feed and saying which. Jobs whose x does not fit a feed
frame (more than 510 coordinates) go to an idle child's own pipe instead.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import select
import struct
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from tether.errors import ConfigError
from tether.worker import pychild
from tether.worker.evaluators import Done, Output
from tether.worker.pyeval import DIED, Key, _Child, outputs

# a write of at most PIPE_BUF bytes is atomic (POSIX), and at most this much is in the
# feed, half of Linux's default pipe buffer: a write to it never blocks the agent
PIPE_BUF = 4096
FEED_BYTES = 32768
# a shared pipe read whole by several processes: Linux's pipes are locked per read
FEED = sys.platform.startswith("linux")
KILL_LOCK_WAIT = 2.0  # seconds; a child holds its lock for a read and a write



@dataclass(eq=False, slots=True)
class _Job:
    seq: int  # unique per evaluator: names the job in feed, took and drop frames
    x: list[float]
    child: _FeedChild | None = None  # None while it waits in the feed
    frames: list[Any] = field(default_factory=list)  # the child's, not yet handed out
    ended: bool = False  # its outcome (or its drop) arrived, or its child died under it
    killed: bool = False  # no longer wanted: its frames go nowhere


class _FeedChild(_Child):
    """A child that also reads the feed, and takes a job from it under its lock."""

    def __init__(self, ctx: Any, target: str, start_timeout: float,
                 feed: Connection | None) -> None:
        self.lock = ctx.Lock()
        super().__init__(ctx, target, start_timeout, feed, self.lock)
        self.job: _Job | None = None  # the job it runs, as far as the agent has read
        self.poked = False  # told to look at the feed, no answer yet

    def send(self, frame: Any) -> None:
        if not self.ready:
            self._unsent.append(frame)
            return
        # a child that died is found by the EOF on its pipe (pump), not here
        with contextlib.suppress(BrokenPipeError):
            pychild.write_frames(self.fd, [frame])

    def kill(self) -> None:
        # the pipe stays open: what the child wrote before it died is still to be read
        self.dead = True
        self.proc.kill()
        self.proc.join()


class FeedEvaluator:
    """Runs ``module:function`` in ``slots`` persistent child processes.

    The first child starts at once and is waited for, so a bad target is reported before
    the worker connects; the others start beside it in the background. A killed
    evaluation's child is killed with it, and a new one takes its place without blocking
    the agent; a finished one's child goes on to the next job.
    """

    def __init__(self, target: str, start_timeout: float = 60.0, slots: int = 1) -> None:
        if ":" not in target:
            raise ConfigError(f"--python needs module:function, got {target!r}")
        self.target = target
        self.start_timeout = start_timeout
        self.slots = max(1, slots)
        self.lookahead = FEED
        self.ahead_max = FEED_BYTES // pychild._SEQ.size  # checked again in presend
        self.ahead: dict[Key, _Job] = {}  # written ahead, not yet started by the agent
        self.waiting: dict[int, _Job] = {}  # in the feed (or being taken), by seq
        self._seq = 0
        self._size = 0  # bytes per feed frame, fixed by the first job that fits one
        self._unwritten: list[_Job] = []  # for the feed, with the next flush
        self._frame = pychild._SEQ
        self._ctx = mp.get_context("spawn")
        self._feed_w = -1
        self._feed: Connection | None = None
        if FEED:
            r, self._feed_w = os.pipe()
            os.set_blocking(r, False)  # a sibling may take the job a child saw arrive
            os.set_blocking(self._feed_w, False)  # never wait on children that are starting
            self._feed = Connection(r, writable=False)
        self._children: dict[int, _FeedChild] = {}  # live ones, by pipe fd
        self._idle: set[_FeedChild] = set()  # ready, no job, not poked: asleep on its pipe
        self._poll = select.poll()
        first = self._spawn()
        for _ in range(self.slots - 1):
            self._spawn()
        first.wait_ready()
        self._idle.add(first)

    # ------------------------------------------------------------ children
    def _spawn(self) -> _FeedChild:
        child = _FeedChild(self._ctx, self.target, self.start_timeout, self._feed)
        self._children[child.fd] = child
        self._poll.register(child.fd, select.POLLIN)
        if self._size:
            child.send(("width", self._size))
        for job in self.waiting.values():
            if job.killed:  # still in the feed: this child may be the one to read it
                child.send(("drop", job.seq))
        return child

    def _kill(self, child: _FeedChild, reason: str = "", unwanted: bool = False) -> None:
        """End a child; the job it runs fails with ``reason`` (if any); a new one takes
        its place with the next work (:meth:`_top_up`). ``unwanted``: only if, once what
        it wrote is read, it runs a job nobody wants (it may have finished that one and
        taken the next)."""
        # under its lock the child is not between taking a job from the feed and saying so
        locked = child.lock.acquire(timeout=KILL_LOCK_WAIT)
        try:
            if unwanted:
                alive = self._drain(child)
                job = child.job
                if alive and (job is None or not job.killed):
                    return
            child.kill()
        finally:
            if locked:
                child.lock.release()
        self._route(child, to_eof=True)  # what it wrote before it died
        if self._children.pop(child.fd, None) is not None:
            self._poll.unregister(child.fd)
        self._idle.discard(child)
        child.conn.close()
        job, child.job = child.job, None
        if job is not None and not job.ended:
            job.ended = True
            if not job.killed:
                job.frames.append(("error", reason or DIED))
        if reason and not child.ready:
            self._fail_oldest(reason)

    def _top_up(self) -> None:
        """Start children in place of those that died or were killed (not at once: an
        agent that is leaving kills its evaluations and must not start new children)."""
        while len(self._children) < self.slots:
            self._spawn()

    def _fail_oldest(self, reason: str) -> None:
        """A child could not start: the oldest job in the feed fails with the reason (as
        it would have on that child), so an objective that no longer loads fails the
        run's evaluations instead of leaving them waiting."""
        job = next((j for j in self.waiting.values() if not j.killed), None)
        if job is not None:
            job.frames.append(("error", reason))
            job.ended = job.killed = True
            self._drop(job)

    def _drop(self, job: _Job) -> None:
        for child in self._children.values():
            child.send(("drop", job.seq))

    # ------------------------------------------------------------ reading
    def pump(self) -> None:
        """Read every child that wrote something (one poll for all of them)."""
        if self._unwritten:
            self.flush()
        ready = [self._children.get(fd) for fd, _ in self._poll.poll(0)]
        for child in ready:
            if child is None or child.dead:
                continue
            if not child.ready:
                problem = child.check_ready()
                if problem:
                    self._kill(child, problem)
                elif child.ready and child.job is None:
                    self._idle.add(child)
            elif not self._route(child):
                self._kill(child, DIED)
            elif child.job is not None and child.job.killed:
                self._kill(child, unwanted=True)  # it took the job before its drop came
        now = time.monotonic()
        for child in list(self._children.values()):
            if not child.ready and now > child.deadline:
                self._kill(child, "the Python evaluation process did not start in time")
        if not self._children and self.waiting:
            self._spawn()  # work in the feed and no child left to take it
        self._poke()

    def _poke(self) -> None:
        """Wake as many idle children as there are jobs in the feed nobody took yet."""
        if not self._idle or not self.waiting:
            return
        want = sum(1 for j in self.waiting.values() if not j.killed)
        want -= sum(1 for c in self._children.values() if c.poked)
        while want > 0 and self._idle:
            child = self._idle.pop()
            child.poked = True
            child.send(("poke",))
            want -= 1

    def _drain(self, child: _FeedChild) -> bool:
        """Read what the child has written so far; False if it is gone."""
        while select.select([child.fd], [], [], 0)[0]:
            if not self._route(child):
                return False
        return True

    def _route(self, child: _FeedChild, to_eof: bool = False) -> bool:
        """Read once (or, ``to_eof``, all that is left) and hand each frame to its job;
        False at EOF."""
        while True:
            frames = child._read()
            if frames is None:
                return False
            for frame in frames:
                kind = frame[0]
                if kind == "took":
                    job = self.waiting.pop(frame[1], None)
                    child.job = job
                    child.poked = False
                    if job is not None:
                        job.child = child
                elif kind == "idle":
                    child.poked = False
                elif kind == "dropped":
                    job = self.waiting.pop(frame[1], None)
                    if job is not None:
                        job.ended = True
                elif child.job is not None:
                    job = child.job
                    if not job.killed:
                        job.frames.append(frame)
                    if kind != "partial":
                        job.ended = True
                        child.job = None
            if not to_eof:
                if child.job is None and not child.poked:
                    self._idle.add(child)
                else:
                    self._idle.discard(child)
                return True

    # ------------------------------------------------------------ jobs
    def _new(self, x: Sequence[float]) -> _Job:
        self._seq += 1
        return _Job(self._seq, list(x))

    def _fits(self, x: Sequence[float]) -> bool:
        size = pychild._SEQ.size + 8 * len(x)
        if self._feed is None or size > PIPE_BUF:
            return False
        if not self._size:
            self._size = size
            self._frame = struct.Struct(f"<q{len(x)}d")
            for child in self._children.values():
                child.send(("width", size))
        return size == self._size

    def start(self, eval_id: int, x: Sequence[float], names: Sequence[str]) -> _FeedRun:
        self.pump()  # an idle child that died is replaced, not given the job
        self._top_up()
        job = self._new(x)
        if self._idle or not self._fits(x):  # to an idle child's own pipe
            child = self._idle.pop() if self._idle else next(
                (c for c in self._children.values() if c.job is None), None)
            child = child or self._spawn()
            self._idle.discard(child)
            job.child = child
            child.job = job
            child.send((job.seq, job.x))
        else:  # a child finishing its job takes it
            self._unwritten.append(job)
            self.waiting[job.seq] = job
            self.flush()
        return _FeedRun(self, job)

    def take(self, key: Key) -> _FeedRun | None:
        """The run of an evaluation written ahead, now started by the agent; None if it
        was not written ahead."""
        job = self.ahead.pop(key, None)
        if job is None:
            return None
        self._top_up()
        return _FeedRun(self, job)

    def presend(self, key: Key, x: Sequence[float]) -> bool:
        """Put a queued evaluation in the feed; False when the feed cannot take more."""
        if not self._fits(x) or len(self.waiting) >= FEED_BYTES // self._size:
            return False
        job = self._new(x)
        self._unwritten.append(job)
        self.waiting[job.seq] = job
        self.ahead[key] = job
        return True

    def flush(self) -> None:
        """Write the jobs queued for the feed: whole frames, at most PIPE_BUF bytes per
        write (atomic). What does not fit now waits for the next flush."""
        jobs = self._unwritten
        if not jobs:
            return
        per, done = PIPE_BUF // self._size, 0
        pack = self._frame.pack
        try:
            while done < len(jobs):
                chunk = jobs[done:done + per]
                os.write(self._feed_w, b"".join([pack(j.seq, *j.x) for j in chunk]))
                done += len(chunk)
        except BlockingIOError:
            pass  # the feed is full: its children are slow to start or all busy
        del jobs[:done]
        self._poke()

    def forget(self, key: Key) -> None:
        """An evaluation written ahead is not to run after all (killed, given back)."""
        job = self.ahead.pop(key, None)
        if job is not None:
            self._cancel(job)

    def _cancel(self, job: _Job) -> None:
        """Make sure a job does not run (on): taken back if not written yet, dropped if
        it waits in the feed, its child killed if it runs; an outcome already back is
        discarded."""
        job.killed = True
        job.frames.clear()
        if job.ended:
            return
        if job.child is None and job in self._unwritten:
            self._unwritten.remove(job)
            del self.waiting[job.seq]
            job.ended = True
            return
        self.pump()  # it may have been taken, or ended, meanwhile
        if job.ended:
            return
        if job.child is None:
            self._drop(job)
        elif not job.child.dead:
            self._kill(job.child, unwanted=True)

    def close(self) -> None:
        if self._feed_w >= 0:
            os.close(self._feed_w)  # EOF on the feed: every child stops
            self._feed_w = -1
        for child in self._children.values():
            if child.job is None:
                child.close()
            else:
                child.kill()
            child.conn.close()
        self._children.clear()
        if self._feed is not None:
            self._feed.close()
        self.ahead.clear()
        self.waiting.clear()


class _FeedRun:
    def __init__(self, ev: FeedEvaluator, job: _Job) -> None:
        self.ev = ev
        self.job = job
        self.done = False

    def fds(self) -> list[int]:
        if self.done or self.job.ended:
            return []
        child = self.job.child
        # in the feed: any child may take it and say so
        return [child.fd] if child is not None else list(self.ev._children)

    def due(self) -> bool:
        # its outcome was read with another job's: nothing will wake the poller for it
        return not self.done and bool(self.job.frames)

    def poll(self, now: float) -> list[Output]:
        if not self.done and not self.job.ended:
            self.ev.pump()
        if self.done or not self.job.frames:
            return []
        out = outputs(self.job.frames)
        self.done = isinstance(out[-1], Done)
        return out

    def kill(self, now: float, hard: bool = False) -> None:
        if not self.done:
            self.done = True
            self.ev._cancel(self.job)

    def reaped(self) -> bool:
        return self.done
