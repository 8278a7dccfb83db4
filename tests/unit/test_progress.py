"""The controller's progress output off a terminal: plain lines, failures rate-limited."""

from __future__ import annotations

import io

from tether.controller.progress import FAILS_PER_WINDOW, Progress
from tether.events import Completed, Failed, Started


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_plain_lines_every_period_with_counts_best_and_rate() -> None:
    out, clock = io.StringIO(), Clock()
    p = Progress(budget=10, every=30.0, out=out, clock=clock, live=False)
    for k in range(3):
        p.append(Started(clock.t, k, "w0"))
        p.append(Completed(clock.t, k, "w0", 5.0 - k))
    p.append(Started(clock.t, 3, "w0"))
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
    p = Progress(budget=100, every=0.0, out=out, clock=clock, live=False)
    for k in range(10):
        p.append(Failed(clock.t, k, "w1", f"ValueError: bad {k}\nTraceback ..."))
    text = out.getvalue()
    assert text.count("failed on w1") == FAILS_PER_WINDOW
    assert "ValueError: bad 0" in text and "Traceback" not in text
    clock.t = 11.0  # next window: says how many were held back
    p.append(Failed(clock.t, 10, "w1", "ValueError: bad 10"))
    assert f"{10 - FAILS_PER_WINDOW} more failures not shown" in out.getvalue()
