"""The pipe between a worker agent and its objective's child process: framing, and the
evaluator over a real spawned child."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import threading
import time
from collections.abc import Iterator

import pytest

from tether.worker import pychild
from tether.worker.evaluators import Done, Output, PartialOut, Running
from tether.worker.pyeval import PythonEvaluator

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    r, w = os.pipe()
    try:
        yield r, w
    finally:
        for fd in (r, w):
            with contextlib.suppress(OSError):
                os.close(fd)


def test_frames_read_together_apart_and_to_eof(pipe: tuple[int, int]) -> None:
    r, w = pipe
    reader = pychild.FrameReader(r)
    pychild.write_frame(w, ("partial", 1.5, {"step": 1}))
    pychild.write_frame(w, ("value", 2.0))
    assert reader.read() == [["partial", 1.5, {"step": 1}], ["value", 2.0]]
    # a frame that arrives in pieces is returned once whole
    body = b"\x92\xa5value\xcb@\x08\x00\x00\x00\x00\x00\x00"  # msgpack of ["value", 3.0]
    data = len(body).to_bytes(4, "little") + body
    os.write(w, data[:3])
    assert reader.read() == []
    os.write(w, data[3:9])
    assert reader.read() == []
    os.write(w, data[9:])
    assert reader.read() == [["value", 3.0]]
    os.close(w)
    assert reader.read() is None


def test_a_frame_larger_than_the_pipe_buffer(pipe: tuple[int, int]) -> None:
    r, w = pipe
    text = "x" * 300_000  # a pipe holds 64 KiB: the writer blocks until the reader drains it
    writer = threading.Thread(target=pychild.write_frame, args=(w, ("error", text)))
    writer.start()
    reader = pychild.FrameReader(r)
    frames: list[object] = []
    while not frames:
        got = reader.read()
        assert got is not None
        frames.extend(got)
    writer.join(30)
    assert frames == [["error", text]]


def _outcome(run: Running, deadline: float = 60.0) -> list[Output]:
    """Everything the run says until its outcome, waiting on its pipe as the agent does."""
    out: list[Output] = []
    end = time.monotonic() + deadline
    while not any(isinstance(o, Done) for o in out):
        assert time.monotonic() < end, "no outcome from the child"
        select.select(run.fds(), [], [], 1.0)
        out.extend(run.poll(time.monotonic()))
    return out


def test_evaluator_streams_fails_and_replaces_a_dead_idle_child() -> None:
    ev = PythonEvaluator("tests.integration.objectives:streaming")
    try:
        out = _outcome(ev.start(1, [0.25, 0.5], ["x0", "x1"]))
        assert [o.value for o in out if isinstance(o, PartialOut)] == [3.75, 2.75, 1.75]
        assert [o.info for o in out if isinstance(o, PartialOut)] == [{"step": 0}, {"step": 1},
                                                                      {"step": 2}]
        assert out[-1] == Done(True, 0.75)
        # the idle child dies (OOM killer, an admin): the next evaluation gets a new one
        (child,) = ev._idle
        os.kill(child.proc.pid, signal.SIGKILL)
        child.proc.join(10)
        out = _outcome(ev.start(2, [0.5, 0.5], ["x0", "x1"]))
        assert out[-1] == Done(True, 1.0)
        assert ev._idle and ev._idle[0] is not child
    finally:
        ev.close()
    bad = PythonEvaluator("tests.integration.objectives:raises_left")
    try:
        done = _outcome(bad.start(3, [0.1, 0.9], ["x0", "x1"]))[-1]
        assert isinstance(done, Done) and not done.ok
        assert "left half is forbidden" in done.error and "Traceback" in done.error
    finally:
        bad.close()
