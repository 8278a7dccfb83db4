"""The child process that runs a Python objective (kept importable and tiny: it is spawned)."""

from __future__ import annotations

import collections
import contextlib
import importlib
import inspect
import math
import os
import select
import signal
import struct
import sys
import traceback
from multiprocessing.connection import Connection
from typing import Any

import msgpack

# Each child has its own pipe to and from the agent, carrying length-prefixed msgpack
# frames written and read on the raw descriptor: multiprocessing's Connection pickles
# every message with a fresh pickler and reads each in two system calls, which was a
# third of the agent's own work per evaluation. Agent -> child: ``[seq, x]`` (a job for
# this child), ``["width", n]`` (the size of a feed frame), ``["poke"]`` (look at the
# feed), ``["drop", seq]`` (a job in the feed not to start) or nil (stop). Child ->
# agent: ``["ready", ""]``, ``["took", seq]`` (it starts this job from the feed),
# ``["dropped", seq]``, ``["idle", ""]`` (poked, it found the feed empty), and for the
# job it runs ``["partial", value, info]`` then ``["value", value]`` or ``["error", text]``.
#
# The feed is one more pipe, shared by all the children of an agent: fixed-size frames
# (``seq`` then x as float64), each written whole in one write, so one read of that
# size takes exactly one job whichever child reads it (Linux takes the pipe's lock for
# each read and write). A child that ends a job takes the next one itself; none waits
# behind a busy sibling. A child takes a job and reports it under its own lock, which
# the agent holds to kill it: a job is never taken by a child that dies before saying so.
_HEAD = struct.Struct("<I")
_SEQ = struct.Struct("<q")


def write_frame(fd: int, obj: Any) -> None:
    body = msgpack.packb(obj)
    _write_all(fd, _HEAD.pack(len(body)) + body)


def write_frames(fd: int, objs: list[Any]) -> None:
    """Several frames in one write: the agent reads them together."""
    parts: list[bytes] = []
    for obj in objs:
        body = msgpack.packb(obj)
        parts += (_HEAD.pack(len(body)), body)
    _write_all(fd, b"".join(parts))


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:  # a long traceback may not fit the pipe's buffer at once
        view = view[os.write(fd, view):]


class FrameReader:
    """The frames arriving on a pipe; one read may bring several, or part of one."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._buf = b""

    def read(self) -> list[Any] | None:
        """Read once (blocks until something arrives); the complete frames, None at EOF."""
        chunk = os.read(self.fd, 1 << 16)
        if not chunk:
            return None
        buf = self._buf + chunk if self._buf else chunk
        frames, at, size = [], 0, len(buf)
        while size - at >= 4:
            end = at + 4 + _HEAD.unpack_from(buf, at)[0]
            if end > size:
                break
            frames.append(msgpack.unpackb(buf[at + 4:end]))
            at = end
        self._buf = buf[at:]
        return frames


def load(target: str) -> Any:
    # as ``python -m`` does: a module next to where the worker was started is found
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    mod_name, _, attr = target.partition(":")
    module = importlib.import_module(mod_name)
    fn = module
    for part in attr.split("."):
        fn = getattr(fn, part)
    if not callable(fn):
        raise TypeError(f"{target} is not callable")
    return fn


class _Stop(Exception):
    """The agent said stop, or went away."""


def main(conn: Connection, target: str, feed: Connection | None = None,
         lock: Any = None) -> None:
    # The agent owns signals: Ctrl-C in a terminal, or the SIGTERM a batch system sends to
    # every process of a job, must reach the agent and not fail the evaluation under it.
    # The agent ends this child with SIGKILL when it abandons the evaluation.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    fd = conn.fileno()
    try:
        fn = load(target)
        takes_report = accepts_report(fn)
    except Exception as exc:
        write_frame(fd, ("error", f"cannot load {target}: {type(exc).__name__}: {exc}"))
        return
    write_frame(fd, ("ready", ""))
    jobs = _Jobs(fd, feed.fileno() if feed is not None else -1, lock)
    out: list[Any] = []
    try:
        while True:
            x = jobs.next(out)
            if out:
                write_frames(fd, out)
                out.clear()
            out.append(_run(fd, fn, takes_report, x))
    except _Stop:
        if out:
            with contextlib.suppress(OSError):
                write_frames(fd, out)


class _Jobs:
    """Where a child's next job comes from: its own pipe (stop, drops, pokes, a job sent
    to it), then the shared feed, which it looks at after each job and when poked. It
    sleeps on its own pipe only: if every idle child slept on the feed, each write to it
    would wake them all, for one of them to take the job (a thundering herd that cost
    more than it saved). The agent knows which children are idle (an outcome not
    followed by ``took``) and pokes as many as there are jobs in the feed."""

    def __init__(self, fd: int, feed: int, lock: Any) -> None:
        import numpy as np

        self.np = np
        self.fd = fd
        self.feed = feed
        self.lock = lock
        self.reader = FrameReader(fd)
        self.size = 0  # bytes per feed frame, once the agent said
        self.mine: collections.deque[Any] = collections.deque()
        self.dropped: set[int] = set()
        self.poked = False
        self.poll = select.poll()
        self.poll.register(fd, select.POLLIN)

    def next(self, out: list[Any]) -> Any:
        """The next job's x, waiting if there is none (what ``out`` holds is written
        before it sleeps). Appends "took", "dropped" and "idle" frames to ``out``."""
        look = self.size > 0  # a job just ended: the next may be waiting in the feed
        while True:
            # news before the next job starts (a drop, a poke, stop); with nothing to
            # start the blocking read below brings them anyway
            if (self.mine or look or self.poked) and self.poll.poll(0):
                self._own()
            while self.mine:  # jobs sent to this child, in order; a dropped one is skipped
                seq, x = self.mine.popleft()
                if seq not in self.dropped:
                    self._prune(seq)
                    return self.np.asarray(x, dtype=float)
                self.dropped.discard(seq)
                out.append(("dropped", seq))
            if look or self.poked:
                x = self._from_feed(out)
                if x is not None:
                    self.poked = False
                    return x
                if self.poked:  # so the agent may poke it again
                    out.append(("idle", ""))
                look = self.poked = False
            if out:
                write_frames(self.fd, out)
                out.clear()
            self._own()  # sleeps until the agent writes

    def _own(self) -> None:
        try:
            got = self.reader.read()
        except OSError:
            got = None
        if got is None:
            raise _Stop
        for frame in got:
            if frame is None:
                raise _Stop
            kind = frame[0]
            if kind == "poke":
                self.poked = True
            elif kind == "drop":
                self.dropped.add(frame[1])
            elif kind == "width":
                self.size = frame[1]
            else:
                self.mine.append(frame)

    def _prune(self, seq: int) -> None:
        """Jobs are numbered in the order they are sent and read: a drop older than the
        job starting now was for one that started already, or that a sibling took."""
        if self.dropped:
            self.dropped = {s for s in self.dropped if s > seq}

    def _from_feed(self, out: list[Any]) -> Any:
        """Take the next job from the feed that is not dropped; None if it is empty
        (or a sibling was faster)."""
        with self.lock:
            while True:
                try:
                    data = os.read(self.feed, self.size)
                except BlockingIOError:
                    return None
                if not data:
                    raise _Stop  # the agent closed the feed
                seq = _SEQ.unpack_from(data)[0]
                if seq not in self.dropped:
                    break
                self.dropped.discard(seq)
                out.append(("dropped", seq))
            self._prune(seq)
            out.append(("took", seq))
            # reported before it starts, still under the lock the agent kills under
            write_frames(self.fd, out)
            out.clear()
        return self.np.frombuffer(data, dtype=float, offset=_SEQ.size).copy()


def objective_value(raw: Any) -> float:
    """The one rule for what an objective may return: a finite float (or a number)."""
    if isinstance(raw, (tuple, list)):
        raise TypeError("the objective returned a sequence: return a float, and stream "
                        "partial results with report(value)")
    value = float(raw)
    if not math.isfinite(value):
        raise ValueError(f"objective returned a non-finite value: {value}")
    return value


def accepts_report(fn: Any) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return "report" in params


def _run(fd: int, fn: Any, takes_report: bool, x: Any) -> tuple[Any, ...]:
    """Call the objective; its outcome frame (partials are written as they come)."""
    def report(value: float, **info: Any) -> None:
        write_frame(fd, ("partial", float(value), plain_info(info)))

    try:
        raw = fn(x, report=report) if takes_report else fn(x)
        value = objective_value(raw)
    except Exception as exc:
        tb = traceback.format_exc(limit=8)
        return ("error", f"{type(exc).__name__}: {exc}\n{tb}")
    return ("value", value)


def plain_info(info: dict[str, Any]) -> dict[str, Any]:
    # info travels in msgpack: keep only scalars a log line can hold
    return {str(k): v for k, v in info.items() if isinstance(v, (int, float, str, bool))}
