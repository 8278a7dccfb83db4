"""Connected workers, their slots and what each holds: O(1) per event at any scale.

A worker's slot stays busy until the worker itself says the evaluation ended, even when
the record finished earlier (a duplicate attempt elsewhere won): the worker is still
running it until it obeys the kill. So who-holds-what is tracked here, apart from the
records, and is not part of the event-sourced run state.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

# [run] prefetch = "auto": a worker's queue holds about this many seconds of its own
# evaluations (from the durations it reports), at least AUTO_MIN and at most AUTO_MAX
# per slot (a node agent's slots are as many workers).
# What that bounds is the cost of prefetching: work queued at one worker while another
# has none (at the end of a budget, or when a worker joins) is at most this long.
# The queues of all workers together hold at most AUTO_TOTAL (beyond AUTO_MIN each):
# prefetch hides a round trip, and more than the controller dispatches in a moment is
# only a burst of asks (10,000 workers x 64 would be 640,000 points proposed at once).
AUTO_WINDOW = 0.05
AUTO_MIN, AUTO_MAX, AUTO_TOTAL = 1, 64, 4096
AUTO = "auto"


@dataclass
class WorkerState:
    name: str
    slots: int = 1
    busy: dict[int, int] = field(default_factory=dict)  # eval_id -> attempt
    draining: bool = False
    prefetch: int = 0  # evaluations it may hold queued beyond its slots
    auto: bool = False  # prefetch sized from its evaluations' durations (observe)
    pace: float = -1.0  # smoothed seconds per evaluation it reported; < 0: none yet

    @property
    def free(self) -> int:
        return 0 if self.draining else max(0, self.slots + self.prefetch - len(self.busy))


class WorkerPool:
    """Workers by name, the free ones in round-robin order, and holders by evaluation."""

    def __init__(self) -> None:
        self.by_name: dict[str, WorkerState] = {}
        self._free: dict[str, None] = {}  # an ordered set of workers with a free slot
        self.holders: dict[int, dict[str, int]] = {}  # eval_id -> {worker: attempt}
        self.n_slots = 0
        self.n_free = 0

    def __contains__(self, name: object) -> bool:
        return name in self.by_name

    def __len__(self) -> int:
        return len(self.by_name)

    def __getitem__(self, name: str) -> WorkerState:
        return self.by_name[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.by_name)

    def values(self) -> Iterable[WorkerState]:
        return self.by_name.values()

    def get(self, name: str) -> WorkerState | None:
        return self.by_name.get(name)

    def add(self, name: str, slots: int, draining: bool,
            prefetch: int | str = 0) -> WorkerState:
        auto = prefetch == AUTO
        w = WorkerState(name, slots=slots, draining=draining,
                        prefetch=AUTO_MIN if auto else int(prefetch), auto=auto)
        self.by_name[name] = w
        self.n_slots += w.slots
        self._sync(w, 0)
        return w

    def remove(self, name: str) -> WorkerState | None:
        w = self.by_name.pop(name, None)
        if w is None:
            return None
        self.n_slots -= w.slots
        self.n_free -= w.free
        self._free.pop(name, None)
        for eval_id in w.busy:
            self._unhold(eval_id, name)
        return w

    # hold and release run once per evaluation each: the free-slot count before and
    # after is worked out inline from the busy count (two property calls and a _sync
    # call less per evaluation)
    def hold(self, w: WorkerState, eval_id: int, attempt: int) -> None:
        busy = w.busy
        n = len(busy)
        busy[eval_id] = attempt  # (a later attempt of what it holds replaces it: no growth)
        held = self.holders.get(eval_id)
        if held is None:
            self.holders[eval_id] = {w.name: attempt}
        else:
            held[w.name] = attempt
        self._free.pop(w.name, None)  # round robin: it queues up behind the others
        if not w.draining:
            cap = w.slots + w.prefetch
            if len(busy) > n and cap > n:
                self.n_free -= 1
            if cap > len(busy):
                self._free[w.name] = None

    def release(self, w: WorkerState, eval_id: int) -> None:
        if w.busy.pop(eval_id, None) is None:
            return
        self._unhold(eval_id, w.name)
        if not w.draining:
            room = w.slots + w.prefetch - len(w.busy)  # free after; one less before
            if room > 0:
                self.n_free += 1
                if w.name not in self._free:
                    self._free[w.name] = None

    def observe(self, w: WorkerState, seconds: float) -> None:
        """An evaluation of ``w`` took ``seconds`` (its own report): with auto prefetch,
        size its queue to about AUTO_WINDOW seconds of such evaluations over its slots."""
        pace = seconds if w.pace < 0 else 0.7 * w.pace + 0.3 * seconds
        w.pace = pace
        room = AUTO_WINDOW * w.slots
        most = min(AUTO_MAX * w.slots, AUTO_TOTAL // len(self.by_name))
        k = most if pace * most <= room else int(room / pace)
        k = max(AUTO_MIN, k)
        if k != w.prefetch:
            before = w.free
            w.prefetch = k
            self._sync(w, before)

    def set_draining(self, w: WorkerState) -> None:
        before = w.free
        w.draining = True
        self._sync(w, before)

    def pick(self) -> WorkerState | None:
        """A worker with a free slot; the one that waited longest goes first."""
        for name in self._free:
            return self.by_name[name]
        return None

    def _unhold(self, eval_id: int, name: str) -> None:
        held = self.holders.get(eval_id)
        if held is not None:
            held.pop(name, None)
            if not held:
                del self.holders[eval_id]

    def _sync(self, w: WorkerState, before: int) -> None:
        after = w.free
        self.n_free += after - before
        if after > 0:
            if w.name not in self._free:
                self._free[w.name] = None
        else:
            self._free.pop(w.name, None)
