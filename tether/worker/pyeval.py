"""A Python objective in persistent child processes, with work sent ahead.

A child runs its jobs one at a time, in the order they reach its pipe. A single-slot
agent that holds prefetched evaluations sends the next few to its busy child before the
running one ends (:meth:`PythonEvaluator.presend`), so the child goes from one job to the
next without sleeping on its pipe, and the agent reads several outcomes per wake-up.
With 16 such workers on a 2-core machine a sleep and a wake-up per evaluation on each
side was about half of the pipe hop's CPU (docs/benchmarks.md, seventh pass).

Kills keep their meaning. The running job's child is killed (SIGKILL), as it always was.
A job still waiting behind another is dropped by the child before it starts: a ``drop``
frame, acknowledged by ``dropped`` in the same write as the outcome before it. If the
child started it before the drop arrived, the killed job is at the head of the child's
queue once that outcome is read, and the child is killed then. Jobs waiting behind a
killed or dead child's running one never started: they move to a new child, in the
same order.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import select
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from tether.errors import ConfigError
from tether.worker import pychild
from tether.worker.evaluators import Done, Output, PartialOut

AHEAD = 4  # jobs sent beyond the running one: enough that a child never waits on a turn
DIED = "the Python evaluation process died"

Key = tuple[int, int]  # (eval_id, attempt)


@dataclass(eq=False, slots=True)
class _Job:
    seq: int  # unique per evaluator: names the job in drop frames
    x: list[float]
    child: _Child
    frames: list[Any] = field(default_factory=list)  # the child's, not yet handed out
    ended: bool = False  # its outcome (or its drop) arrived, or its child died under it
    killed: bool = False  # no longer wanted: its frames go nowhere


class _Child:
    """One persistent child process running the objective (spawned, not forked).

    Starting one takes a second or so (a fresh interpreter imports the objective), so it
    never blocks the agent's loop: the child reports ``ready`` on its pipe, which the
    agent polls like any other, and what was sent before then goes out at that moment.
    """

    def __init__(self, ctx: Any, target: str, start_timeout: float, *extra: Any) -> None:
        parent, child = ctx.Pipe()
        self.proc = ctx.Process(target=pychild.main, args=(child, target, *extra),
                                daemon=True)
        self.proc.start()
        child.close()
        self.conn: Connection = parent  # kept for its lifetime; I/O goes through the fd
        self.fd = parent.fileno()
        self.frames = pychild.FrameReader(self.fd)
        # one poll object, kept: "is there something to read" for a microsecond or two
        self._readable = select.poll()
        self._readable.register(self.fd, select.POLLIN)
        self.target = target
        self.ready = False
        self.dead = False
        self.deadline = time.monotonic() + start_timeout
        self.fifo: deque[_Job] = deque()  # jobs sent and not ended, in the child's order
        self._unsent: list[Any] = []  # frames not written yet (queued, or not ready)

    def wait_ready(self) -> None:
        """Block until the child loaded the objective (used once, before connecting)."""
        while not self.ready:
            left = self.deadline - time.monotonic()
            if left <= 0 or not self._readable.poll(left * 1000):
                self.proc.kill()
                raise ConfigError(f"--python {self.target}: the child did not start in time")
            problem = self.check_ready()
            if problem:
                raise ConfigError(f"--python {self.target}: {problem}")

    def check_ready(self) -> str:
        """Read the child's ``ready`` (call when its pipe is readable); the error, or ""."""
        frames = self._read()
        if frames is None:
            frames = [("error", "the Python evaluation process died while starting")]
        if not frames:  # part of a frame so far
            return ""
        if frames[0][0] != "ready":
            self.proc.join(1)
            return str(frames[0][1])
        self.ready = True
        self.flush()
        return ""

    def send(self, frame: Any) -> None:
        self._unsent.append(frame)
        self.flush()

    def queue(self, frame: Any) -> None:
        """Send with the next :meth:`send` or :meth:`flush` (one write, one wake-up)."""
        self._unsent.append(frame)

    def flush(self) -> None:
        if self.ready and self._unsent:
            pychild.write_frames(self.fd, self._unsent)
            self._unsent.clear()

    def _read(self) -> list[Any] | None:
        """The complete frames that arrived; None once the child is gone."""
        try:
            return self.frames.read()
        except OSError:
            return None

    def unsend(self, seq: int) -> bool:
        """Take back a job not written yet; whether it was there."""
        for i, frame in enumerate(self._unsent):
            if frame is not None and frame[0] == seq:
                del self._unsent[i]
                return True
        return False

    def readable(self) -> bool:
        """Whether the pipe has something to read (or was closed), without waiting."""
        return bool(self._readable.poll(0))

    def route(self) -> bool:
        """Read once and hand each frame to its job; False at EOF (the child is gone)."""
        frames = self._read()
        if frames is None:
            return False
        fifo = self.fifo
        for frame in frames:
            if frame[0] == "dropped":
                for job in fifo:
                    if job.seq == frame[1]:
                        fifo.remove(job)
                        job.ended = True
                        break
            elif fifo:  # the child's frames belong to the oldest job not ended
                job = fifo[0]
                job.frames.append(frame)
                if frame[0] != "partial":
                    job.ended = True
                    fifo.popleft()
        return True

    def kill(self) -> None:
        # the child may be mid-function and ignores SIGTERM (see pychild): end it for sure
        self.dead = True
        self.proc.kill()
        self.proc.join()
        self.conn.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.send(None)
        self.proc.join(1)
        if self.proc.is_alive():
            self.proc.kill()
        self.dead = True


class PythonEvaluator:
    """Runs ``module:function`` in persistent child processes, one per busy slot.

    The first child starts at once and is waited for, so a bad target is reported before
    the worker connects; the others for ``--slots`` start beside it in the background. A
    killed evaluation's child is killed with it (its replacement starts without blocking
    the agent); a finished one's child is reused. With one slot, queued evaluations are
    sent ahead to the busy child (:meth:`presend`); with more, each child has one job at
    a time, since a job sent ahead to one child could wait there while another is idle.
    """

    def __init__(self, target: str, start_timeout: float = 60.0, slots: int = 1) -> None:
        if ":" not in target:
            raise ConfigError(f"--python needs module:function, got {target!r}")
        self.target = target
        self.start_timeout = start_timeout
        self.slots = slots
        self.lookahead = slots == 1
        self.ahead_max = AHEAD
        self.ahead: dict[Key, _Job] = {}  # sent ahead, not yet started by the agent
        self._seq = 0
        self._last: _Child | None = None  # the child the agent gave work to last
        self._children: list[_Child] = []
        self._ctx = mp.get_context("spawn")
        first = self._spawn()
        self._idle: list[_Child] = [self._spawn() for _ in range(slots - 1)]
        first.wait_ready()
        self._idle.append(first)

    def _spawn(self) -> _Child:
        child = _Child(self._ctx, self.target, self.start_timeout)
        self._children = [c for c in self._children if not c.dead]
        self._children.append(child)
        return child

    def _job(self, child: _Child, x: Sequence[float], later: bool = False) -> _Job:
        self._seq += 1
        job = _Job(self._seq, list(x), child)
        self._send(job, child, later)
        return job

    def _send(self, job: _Job, child: _Child, later: bool = False) -> None:
        job.child = child
        child.fifo.append(job)
        if later:
            child.queue((job.seq, job.x))
        else:
            child.send((job.seq, job.x))

    def _free_child(self) -> _Child:
        while self._idle:
            c = self._idle.pop()
            # a started idle child's pipe is readable only once it died (EOF): a poll,
            # where is_alive() would be a waitpid and four Python calls per evaluation
            if not c.ready or not c.readable():
                return c
            c.kill()
        return self._spawn()

    def start(self, eval_id: int, x: Sequence[float], names: Sequence[str]) -> _PythonRun:
        child = self._free_child()
        self._last = child
        return _PythonRun(self, self._job(child, x))

    def take(self, key: Key) -> _PythonRun | None:
        """The run of an evaluation sent ahead, now started by the agent; None if it
        was not sent ahead."""
        job = self.ahead.pop(key, None)
        if job is None:
            return None
        self._last = job.child
        return _PythonRun(self, job)

    def presend(self, key: Key, x: Sequence[float]) -> bool:
        """Send a queued evaluation to the busy child; False when it cannot take more."""
        child = self._last
        if child is None or child.dead or not child.fifo or len(child.fifo) > AHEAD:
            return False
        self.ahead[key] = self._job(child, x, later=True)
        return True

    def flush(self) -> None:
        """Write what :meth:`presend` queued, in one write."""
        if self._last is not None and not self._last.dead:
            self._last.flush()

    def forget(self, key: Key) -> None:
        """An evaluation sent ahead is not to run after all (killed, given back)."""
        job = self.ahead.pop(key, None)
        if job is not None:
            self._cancel(job)

    def _cancel(self, job: _Job) -> None:
        """Make sure a job does not run (on): dropped if it waits, its child killed if
        it runs; its outcome, if already back, is discarded."""
        job.killed = True
        child = job.child
        if not job.ended and not child.dead:
            if child.unsend(job.seq):  # it never reached the child: take it back
                child.fifo.remove(job)
                job.ended = True
            else:
                self._drain(child)  # it may have ended already: then nothing runs
                if child.dead or job.ended:
                    pass
                elif child.fifo[0] is job:
                    self._kill(child)
                else:
                    child.send(("drop", job.seq))
        job.frames.clear()
        if not child.dead:
            self._settle(child)

    def _drain(self, child: _Child, limit: int = 16) -> None:
        """Route what the child has written so far (a bounded number of reads)."""
        for _ in range(limit):
            if not child.readable():
                return
            if not child.route():
                self._kill(child, DIED)
                return

    def _settle(self, child: _Child) -> None:
        """After reading a child: kill it if it runs a job nobody wants; idle if done."""
        if child.fifo and child.fifo[0].killed:
            self._kill(child)
        elif not child.fifo and child not in self._idle:
            self._idle.append(child)

    def _kill(self, child: _Child, reason: str = "") -> None:
        """End a child. Its running job fails with ``reason`` (if any); the jobs queued
        behind it never started, and go to another child in the same order."""
        child.kill()
        with contextlib.suppress(ValueError):
            self._idle.remove(child)
        if not child.fifo:
            return
        head, *rest = child.fifo
        child.fifo.clear()
        head.ended = True
        if reason and not head.killed:
            head.frames.append(("error", reason))
        rest = [job for job in rest if not job.killed]
        if rest:
            new = self._free_child()
            if self._last is child:
                self._last = new
            for job in rest:
                self._send(job, new)

    def close(self) -> None:
        for child in self._children:
            if child.dead:
                continue
            if child in self._idle:
                child.close()
            else:
                child.kill()
        self._idle.clear()
        self.ahead.clear()


def outputs(frames: list[Any]) -> list[Output]:
    """A job's frames from its child, as outputs (an outcome ends them); clears them."""
    out: list[Output] = []
    for frame in frames:
        kind = frame[0]
        if kind == "partial":
            out.append(PartialOut(frame[1], frame[2]))
        else:
            out.append(Done(True, frame[1]) if kind == "value" else Done(False, error=frame[1]))
    frames.clear()
    return out


class _PythonRun:
    def __init__(self, ev: PythonEvaluator, job: _Job) -> None:
        self.ev = ev
        self.job = job
        self.done = False

    def fds(self) -> list[int]:
        return [] if self.done or self.job.ended else [self.job.child.fd]

    def due(self) -> bool:
        # its outcome was read with an earlier job's: nothing will wake the poller for it
        return not self.done and bool(self.job.frames)

    def poll(self, now: float) -> list[Output]:
        job = self.job
        if not self.done and not job.ended:
            child = job.child
            if not child.ready:
                self._poll_start(child)
            else:
                while not job.ended and child.readable():
                    if not child.route():
                        self.ev._kill(child, DIED)
                        break
                if not child.dead:
                    self.ev._settle(child)
        return self._outputs()

    def _outputs(self) -> list[Output]:
        if self.done or not self.job.frames:
            return []
        out = outputs(self.job.frames)
        self.done = isinstance(out[-1], Done)
        return out

    def _poll_start(self, child: _Child) -> None:
        if child.readable():
            problem = child.check_ready()
            if not problem:
                return
        elif time.monotonic() < child.deadline:
            return
        else:
            problem = "the Python evaluation process did not start in time"
        self.ev._kill(child, problem)

    def kill(self, now: float, hard: bool = False) -> None:
        if not self.done:
            self.done = True
            self.ev._cancel(self.job)

    def reaped(self) -> bool:
        return self.done
