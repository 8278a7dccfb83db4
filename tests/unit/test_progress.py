"""The controller's progress output off a terminal: plain lines, failures rate-limited.

Progress reads a real run state, folded from events as the controller folds them."""

from __future__ import annotations

import io

from tether.controller.progress import FAILS_PER_WINDOW, Progress
from tether.controller.state import RunState
from tether.events import Completed, Failed, Proposed, Started
from tether.space import Space


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def start(st: RunState, k: int) -> None:
    st.apply(Proposed(0.0, k, (0.5,)))
    st.apply(Started(0.0, k, "w0"))


def test_plain_lines_every_period_with_counts_best_and_rate() -> None:
    out, clock = io.StringIO(), Clock()
    st = RunState(Space.unit(1), budget=10)
    p = Progress(budget=10, every=30.0, out=out, clock=clock, live=False)
    p.attach(st)
    for k in range(3):
        start(st, k)
        st.apply(Completed(clock.t, k, "w0", 5.0 - k))
    start(st, 3)
    st.apply(Proposed(0.0, 4, (0.5,)))  # waiting for a worker: not running
    clock.t = 10.0
    p.tick()
    assert out.getvalue() == ""  # not yet: one line per period
    clock.t = 31.0
    p.tick()
    line = out.getvalue().strip()
    assert line.startswith("progress: 3/10 completed, 1 running, 0 failed, best 3")
    assert "/h" in line and "left" in line
    clock.t = 40.0
    p.tick()
    assert out.getvalue().count("progress:") == 1


def test_failures_show_their_first_line_at_a_bounded_rate() -> None:
    out, clock = io.StringIO(), Clock()
    st = RunState(Space.unit(1), budget=100)
    p = Progress(budget=100, every=0.0, out=out, clock=clock, live=False)
    p.attach(st)
    for k in range(10):
        start(st, k)
        st.apply(Failed(clock.t, k, "w1", f"ValueError: bad {k}\nTraceback ..."))
        p.tick()
    text = out.getvalue()
    assert text.count("failed on w1") == FAILS_PER_WINDOW
    assert "ValueError: bad 0" in text and "Traceback" not in text
    clock.t = 11.0  # next window: says how many were held back
    start(st, 10)
    st.apply(Failed(clock.t, 10, "w1", "ValueError: bad 10"))
    p.tick()
    assert f"{10 - FAILS_PER_WINDOW} more failures not shown" in out.getvalue()
    assert "ValueError: bad 10" in out.getvalue()


def test_a_burst_between_ticks_and_a_resumed_runs_old_failures() -> None:
    out, clock = io.StringIO(), Clock()
    st = RunState(Space.unit(1), budget=100)
    start(st, 0)
    st.apply(Failed(0.0, 0, "w1", "OldError: before the resume"))
    p = Progress(budget=100, every=0.0, out=out, clock=clock, live=False)
    p.attach(st)  # a resumed run: its earlier failures are not shown again
    for k in range(1, 31):  # more than the state keeps between two ticks
        start(st, k)
        st.apply(Failed(0.0, k, "w1", f"ValueError: bad {k}"))
    p.tick()
    text = out.getvalue()
    assert "OldError" not in text
    assert text.count("failed on w1") == FAILS_PER_WINDOW
    assert "ValueError: bad 21" in text  # the oldest the state still holds
    clock.t = 11.0
    p.close()
    assert f"{30 - FAILS_PER_WINDOW} more failures not shown" in out.getvalue()
