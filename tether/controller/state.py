"""The run's state as a fold over its events: the only place records change.

The core decides and emits an event; :meth:`RunState.apply` updates records, the queue of
pending evaluations and the counters; the journal writes the same event. ``--resume``
folds the log through the same :meth:`RunState.apply`, so a live run and a replayed log
cannot disagree (tests/unit/test_replay_equivalence.py checks this at every cut point of
many fault-ridden runs).

Worker connections (slots, who holds which attempt) are not part of this state: they are
transport facts that end with the controller process, and workers re-announce what they
hold when they rejoin.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from typing import Any

from tether.events import (
    Completed,
    Event,
    Failed,
    Killed,
    Lost,
    Partial,
    Proposed,
    Requeued,
    RunFinished,
    RunStarted,
    Started,
    WorkerJoined,
)
from tether.records import Record, RunView, Status, build_record
from tether.space import Space

# module globals for the fold's status tests (an Enum class attribute costs ~100 ns)
_PENDING, _RUNNING, _FAILED, _KILLED = Status.PENDING, Status.RUNNING, Status.FAILED, Status.KILLED
_NAN = math.nan
_TERMINAL_STATUS = {"completed": Status.COMPLETED, "failed": Status.FAILED,
                    "killed": Status.KILLED}


class EvalQueue:
    """Pending evaluation ids in dispatch order, with O(1) removal from anywhere.

    Removal only forgets the id's token; stale deque entries are skipped when popped,
    so re-queueing an id that still has a stale entry cannot dispatch it twice.
    """

    def __init__(self) -> None:
        self._dq: deque[tuple[int, int]] = deque()
        self._live: dict[int, int] = {}
        self._token = 0

    def push(self, eval_id: int, front: bool = False) -> None:
        self._token += 1
        self._live[eval_id] = self._token
        if front:
            self._dq.appendleft((eval_id, self._token))
        else:
            self._dq.append((eval_id, self._token))

    def discard(self, eval_id: int) -> None:
        self._live.pop(eval_id, None)

    def pop(self) -> int | None:
        while self._dq:
            eval_id, token = self._dq.popleft()
            if self._live.get(eval_id) == token:
                del self._live[eval_id]
                return eval_id
        return None

    def clear(self) -> None:
        self._dq.clear()
        self._live.clear()

    def order(self) -> list[int]:
        return [e for e, tok in self._dq if self._live.get(e) == tok]

    def __contains__(self, eval_id: object) -> bool:
        return eval_id in self._live

    def __len__(self) -> int:
        return len(self._live)


class RunState:
    """Records, queue and counters of one run, changed only by :meth:`apply`."""

    def __init__(self, space: Space, budget: int) -> None:
        self.view = RunView(space=space, budget=budget)
        self.queue = EvalQueue()
        self.t0 = math.nan  # the first run_started: a resumed run keeps its clock
        self.next_id = 0
        self.last_improvement = 0  # n_completed when the best last improved
        self.finished: str | None = None
        self.n_failed = 0
        self.n_killed = 0
        self.fail_streak = 0  # consecutive failed evaluations (max_failures)
        self.applied = 0  # events applied so far
        # eval_id -> the worker it was started on, or the set of them once there are
        # several (one string per evaluation, not a set: a million evaluations on --resume)
        self.dispatched: dict[int, str | set[str]] = {}
        # worker -> evaluations the log has running there now: a rejoining worker's are
        # found without a scan of everything in flight (30,000 with 10,000 workers)
        self.running_on: dict[str, set[int]] = {}
        self.keys: dict[str, str] = {}  # worker name -> the key id that first used it
        self.recent_failures: deque[tuple[float, int, str, str]] = deque(maxlen=10)
        # worker_left is not run state (connections are not), so it has no fold
        self._folds: dict[type, Callable[[Any], Record | None]] = {
            RunStarted: self._run_started, RunFinished: self._run_finished,
            Proposed: self._proposed, WorkerJoined: self._joined, Started: self._started,
            Partial: self._partial, Requeued: self._requeued, Lost: self._lost,
            Completed: self._ended, Failed: self._ended, Killed: self._ended}

    def apply(self, ev: Event) -> Record | None:
        """Fold one event into the state; return the evaluation record it touched."""
        self.applied += 1
        # a dispatch on the exact type: this runs for every event, three per evaluation
        # live and a million times on a large --resume, where an isinstance chain showed
        fold = self._folds.get(type(ev))
        return None if fold is None else fold(ev)

    def _run_started(self, ev: RunStarted) -> None:
        if math.isnan(self.t0):
            self.t0 = ev.t
        if ev.data.get("resumed"):
            self.finished = None  # a finished run resumed with a larger budget

    def _run_finished(self, ev: RunFinished) -> None:
        self.finished = ev.reason

    def _joined(self, ev: WorkerJoined) -> None:
        if ev.key:
            self.keys.setdefault(ev.worker, ev.key)

    # Records are rebuilt positionally, not with dataclasses.replace: this runs once per
    # event, a million times on a large --resume, and replace() costs five times more.
    def _started(self, ev: Started) -> Record:
        r = self.view.records[ev.eval_id]
        self.queue.discard(ev.eval_id)
        on = self.dispatched.get(ev.eval_id)
        if on is None:
            self.dispatched[ev.eval_id] = ev.worker
        elif isinstance(on, set):
            on.add(ev.worker)
        elif on != ev.worker:
            self.dispatched[ev.eval_id] = {on, ev.worker}
        self._not_running(r)
        running = self.running_on.get(ev.worker)
        if running is None:
            running = self.running_on[ev.worker] = set()
        running.add(ev.eval_id)
        rec = build_record(r.eval_id, r.x, _RUNNING, ev.attempt, r.failures, ev.worker,
                           r.value, r.error, r.partials, r.tag, r.t_proposed, ev.t,
                           r.t_finished)
        self.view.put(rec)
        return rec

    def _partial(self, ev: Partial) -> Record:
        r = self.view.records[ev.eval_id]
        rec = build_record(r.eval_id, r.x, r.status, r.attempt, r.failures, r.worker, r.value,
                           r.error, (*r.partials, ev.value), r.tag, r.t_proposed,
                           r.t_started, r.t_finished)
        self.view.put(rec)
        return rec

    def _requeued(self, ev: Requeued) -> Record:
        r = self.view.records[ev.eval_id]
        self._not_running(r)
        rec = build_record(r.eval_id, r.x, _PENDING, ev.attempt, r.failures, None, r.value,
                           r.error, r.partials, r.tag, r.t_proposed, r.t_started,
                           r.t_finished)
        self.view.put(rec)
        self.queue.push(ev.eval_id, front=True)  # re-queued work goes first
        return rec

    def _lost(self, ev: Lost) -> Record:
        return self.view.records[ev.eval_id]  # a fact: the requeue or failure follows

    def _ended(self, ev: Completed | Failed | Killed) -> Record:
        return self._terminal(ev, self.view.records[ev.eval_id])

    def _proposed(self, ev: Proposed) -> Record:
        rec = build_record(ev.eval_id, ev.x, _PENDING, 0, 0, None, None, None, (), ev.tag, ev.t,
                           _NAN, _NAN)
        self.view.put(rec)
        self.next_id = max(self.next_id, ev.eval_id + 1)
        self.queue.push(ev.eval_id)
        return rec

    def _not_running(self, rec: Record) -> None:
        """``rec`` is leaving its worker (if it was running on one): unindex it."""
        running = self.running_on.get(rec.worker or "") if rec.status is _RUNNING else None
        if running is not None:
            running.discard(rec.eval_id)
            if not running:
                del self.running_on[rec.worker or ""]

    def _terminal(self, ev: Completed | Failed | Killed, rec: Record) -> Record:
        self.queue.discard(ev.eval_id)
        self._not_running(rec)
        status = _TERMINAL_STATUS[ev.kind]
        value = ev.value if isinstance(ev, Completed) else None
        error = None if isinstance(ev, Completed) else ev.error
        best_before = self.view.best
        rec = build_record(rec.eval_id, rec.x, status, rec.attempt,
                           rec.failures + (status is _FAILED), ev.worker or rec.worker, value,
                           error, rec.partials, rec.tag, rec.t_proposed, rec.t_started, ev.t)
        self.view.put(rec)
        if self.view.best is not best_before:
            self.last_improvement = self.view.n_completed
        if status is _FAILED:
            self.n_failed += 1
            first = (rec.error or "").strip().split("\n", 1)[0][:200]
            self.recent_failures.append((ev.t, ev.eval_id, rec.worker or "", first))
            self.fail_streak += 1
        elif status is _KILLED:
            self.n_killed += 1
        else:
            self.fail_streak = 0
        return rec

    def snapshot(self) -> dict[str, Any]:
        """Everything the fold determines, as plain data (for equality checks)."""
        v = self.view
        return {
            "records": dict(v.records), "queue": self.queue.order(), "t0": self.t0,
            "next_id": self.next_id, "last_improvement": self.last_improvement,
            "finished": self.finished, "n_completed": v.n_completed,
            "n_failed": self.n_failed, "n_killed": self.n_killed,
            "fail_streak": self.fail_streak, "in_flight": sorted(r.eval_id for r in v.pending()),
            "best": None if v.best is None else v.best.eval_id, "applied": self.applied,
            "dispatched": {k: sorted(w) if type(w) is set else [w]
                           for k, w in self.dispatched.items()},
            "running_on": {k: sorted(e) for k, e in self.running_on.items()},
            "keys": dict(self.keys), "recent_failures": list(self.recent_failures),
        }
