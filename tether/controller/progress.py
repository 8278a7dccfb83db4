"""What a running controller prints: progress and failures, read off the run state.

On a terminal a live tqdm line (completed/budget, running, best, rate, time left at this
rate); elsewhere (a daemon, a batch job's output file) one plain line every
``[run] progress`` seconds. Each failed evaluation's first error line is printed too,
at most a few per ``FAIL_WINDOW`` seconds with a count of what was held back, so an
always-failing objective is visible at once without flooding the output.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from typing import IO, Any

from tether.controller.state import RunState

FAIL_WINDOW, FAILS_PER_WINDOW = 10.0, 3


class Progress:
    """Reads the run state at each tick (:meth:`attach` it first). It watched every event
    once; reading the counters the state keeps anyway costs nothing per event."""

    def __init__(self, budget: int, every: float, out: IO[str] | None = None,
                 clock: Callable[[], float] = time.monotonic, live: bool | None = None) -> None:
        self.out = out or sys.stderr
        self.budget = budget
        self.every = every
        self.clock = clock
        self.live = self.out.isatty() if live is None else live
        self.completed = self.failed = self.running = 0
        self.best: float | None = None
        self.state: RunState | None = None
        self._failed_seen = 0  # failures already shown or counted as held back
        self._t0 = clock()
        self._next = self._t0 + every
        self._fail_window_end = -math.inf
        self._fails_shown = self._fails_held = 0
        self._bar: Any = None  # made at the first tick: after the startup lines, and from
        # the counts a resumed run starts with (a bar drawn earlier mangles those lines)

    def attach(self, state: RunState) -> None:
        """Follow ``state`` from now on; failures it already holds (a resumed run's) are
        not shown again."""
        self.state = state
        self._read()
        self._failed_seen = self.failed

    def _read(self) -> None:
        st = self.state
        if st is None:
            return
        v = st.view
        self.completed, self.failed = v.n_completed, st.n_failed
        self.running = v.n_in_flight - len(st.queue)  # in flight and not waiting here
        self.best = v.best.value if v.best is not None else None

    def _show_failures(self) -> None:
        """The failures since the last tick, from the state's most recent ones (older
        ones in a burst longer than that list only count as held back)."""
        new = self.failed - self._failed_seen
        if new <= 0 or self.state is None:
            return
        self._failed_seen = self.failed
        recent = list(self.state.recent_failures)[-new:]
        for _t, eval_id, worker, first in recent:
            self._show_failure(eval_id, worker, first)
        self._fails_held += new - len(recent)

    def _show_failure(self, eval_id: int, worker: str, first: str) -> None:
        now = self.clock()
        if now >= self._fail_window_end:
            if self._fails_held:
                self._say(f"... {self._fails_held} more failures not shown")
            self._fail_window_end, self._fails_shown, self._fails_held = now + FAIL_WINDOW, 0, 0
        if self._fails_shown < FAILS_PER_WINDOW:
            self._fails_shown += 1
            self._say(f"evaluation {eval_id} failed on {worker or '?'}: {first or 'failed'}")
        else:
            self._fails_held += 1

    # ------------------------------------------------------------ time
    def tick(self) -> None:
        self._read()
        self._show_failures()
        if self.every <= 0:
            return
        now = self.clock()
        if self._bar is None and self.live:
            from tqdm import tqdm

            self._bar = tqdm(total=self.budget, initial=self.completed, file=self.out,
                             unit="eval", dynamic_ncols=True, desc="tether", leave=True)
        if self._bar is not None:
            self._bar.update(self.completed - self._bar.n)
            self._bar.set_postfix_str(self._postfix(), refresh=False)
            self._bar.refresh()
            return
        if now >= self._next:
            self._next = now + self.every
            self._say(self.line(now))

    def line(self, now: float) -> str:
        rate = self.completed / max(1e-9, now - self._t0)
        left = self.budget - self.completed
        eta = f", ~{_duration(left / rate)} left" if rate > 0 and left > 0 else ""
        return (f"progress: {self.completed}/{self.budget} completed, {self.running} running, "
                f"{self.failed} failed, best {_fmt(self.best)}, {rate * 3600:.0f}/h{eta}")

    def _postfix(self) -> str:
        return f"running {self.running}, failed {self.failed}, best {_fmt(self.best)}"

    def _say(self, text: str) -> None:
        if self._bar is not None:
            self._bar.write(text, file=self.out)
        else:
            print(text, file=self.out, flush=True)

    def close(self) -> None:
        self._read()
        self._show_failures()
        if self._fails_held:  # the last window's count is said too, not lost at the end
            self._say(f"... {self._fails_held} more failures not shown")
            self._fails_held = 0
        if self._bar is not None:
            self._bar.update(self.completed - self._bar.n)
            self._bar.set_postfix_str(self._postfix(), refresh=False)  # the final counts
            self._bar.close()
            self._bar = None


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.6g}"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
