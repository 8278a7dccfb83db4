"""The child process that runs a Python objective (kept importable and tiny: it is spawned)."""

from __future__ import annotations

import collections
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

# The pipe between the agent and this child carries length-prefixed msgpack frames,
# written and read on the raw descriptor: multiprocessing's Connection pickles every
# message with a fresh pickler and reads each in two system calls, which was a third of
# the agent's own work per evaluation. Agent -> child: ``[seq, x]`` (a job),
# ``["drop", seq]`` (do not start it) or nil (stop); child -> agent: ``["ready", ""]``,
# ``["partial", value, info]``, ``["value", value]``, ``["error", text]`` (these three
# for the job it runs: jobs run in the order they came) or ``["dropped", seq]``.
_HEAD = struct.Struct("<I")


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


def main(conn: Connection, target: str) -> None:
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
    import numpy as np

    write_frame(fd, ("ready", ""))
    reader = FrameReader(fd)
    waiting = select.poll()
    waiting.register(fd, select.POLLIN)
    jobs: collections.deque[Any] = collections.deque()
    out: list[Any] = []
    while True:
        if not jobs:
            if not _take(reader, jobs, out):
                return
            if out:  # drops that came while idle
                write_frames(fd, out)
                out.clear()
            continue
        x = jobs.popleft()[1]
        out.append(_run(fd, fn, takes_report, np.asarray(x, dtype=float)))
        # drops (and jobs) that came while it ran: a job dropped now never starts, and
        # its "dropped" travels with this outcome, so the agent knows what runs next
        if jobs and waiting.poll(0) and not _take(reader, jobs, out):
            write_frames(fd, out)
            return
        write_frames(fd, out)
        out.clear()


def _take(reader: FrameReader, jobs: collections.deque[Any], out: list[Any]) -> bool:
    """Read the pipe once (blocks if empty): jobs join the queue, drops leave it; False
    at stop or EOF."""
    try:
        got = reader.read()
    except OSError:
        return False
    if got is None:
        return False
    for frame in got:
        if frame is None:
            return False
        if frame[0] == "drop":
            for job in jobs:
                if job[0] == frame[1]:
                    jobs.remove(job)
                    out.append(("dropped", frame[1]))
                    break
        else:
            jobs.append(frame)
    return True


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
