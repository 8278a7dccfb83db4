"""The pure controller core: records, dispatch, retries, stops. No sockets, no files.

Inputs are method calls (a worker joined, a result arrived, time passed); outputs are
journal events (through an injected :class:`Journal`) and commands for the transport
(:class:`Dispatch`, :class:`SendKill`, :class:`Finish`) collected in ``commands``. The
ZeroMQ daemon, the serial and pool controllers and the simulated-time controller all
drive this one class, so the behaviour tested in memory is the behaviour on the wire.

Accounting rules (the exactly-once contract):
- an evaluation's first outcome wins, from whichever attempt or worker it comes; any
  later outcome for it is a duplicate and is dropped (the transport still ACKs it);
- each evaluation gets exactly one terminal journal event: completed, failed or killed;
- a worker's slots are tracked apart from records, so a slot stays busy until the
  worker itself says the evaluation ended, even if the record finished earlier.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from tether.controller.settings import RunSettings
from tether.records import (
    COMPLETED,
    FAILED,
    KILLED,
    LOST,
    PARTIAL,
    PROPOSED,
    REQUEUED,
    STARTED,
    Evaluate,
    Kill,
    Proposal,
    Record,
    RunView,
    Status,
    Terminate,
)
from tether.space import Space
from tether.strategies.base import Strategy


class Journal(Protocol):
    """Where the core writes events; the writer adds ``seq``."""

    def append(self, event: str, t: float, **fields: Any) -> None: ...


@dataclass(frozen=True, slots=True)
class Dispatch:
    worker: str
    eval_id: int
    attempt: int
    x: tuple[float, ...]
    timeout: float


@dataclass(frozen=True, slots=True)
class SendKill:
    worker: str
    eval_id: int
    attempt: int
    reason: str


@dataclass(frozen=True, slots=True)
class Finish:
    reason: str


Command = Dispatch | SendKill | Finish


@dataclass
class WorkerState:
    name: str
    slots: int = 1
    busy: dict[int, int] = field(default_factory=dict)  # eval_id -> attempt
    draining: bool = False

    @property
    def free(self) -> int:
        return 0 if self.draining else max(0, self.slots - len(self.busy))


class ControllerCore:
    """Drives one strategy over one run. Call :meth:`start` (or :meth:`resume`) first."""

    def __init__(
        self,
        space: Space,
        strategy: Strategy,
        settings: RunSettings,
        journal: Journal,
        clock: Callable[[], float],
        run_info: dict[str, Any] | None = None,
    ) -> None:
        self.space = space
        self.strategy = strategy
        self.settings = settings
        self.journal = journal
        self.clock = clock
        self.run_info = run_info or {}
        self.view = RunView(space=space, budget=settings.budget)
        self.workers: dict[str, WorkerState] = {}
        self.queue: deque[int] = deque()  # PENDING eval ids, oldest first
        self.commands: list[Command] = []
        self.finished: str | None = None  # the reason, once the run is over
        self.t0 = math.nan
        self._next_id = 0
        self._last_improvement = 0  # n_completed when the best last improved
        self._orphans: dict[int, float] = {}  # resumed RUNNING evals -> requeue deadline
        self._rejected = False

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> None:
        self.t0 = self.clock()
        self._log("run_started", **self.run_info)
        self.pump()

    def resume(self, events: Iterable[dict[str, Any]], grace: float) -> None:
        """Rebuild state from a journal's events, then carry on.

        Evaluations that were running at the crash wait ``grace`` seconds for their
        worker to rejoin and report; then they are re-queued.
        """
        from tether.controller.replay import replay_into

        replayed = replay_into(self, events)
        self._log("run_started", resumed=True, replayed=replayed, **self.run_info)
        now = self.clock()
        for rec in self.view.pending():
            if rec.status is Status.RUNNING:
                self._orphans[rec.eval_id] = now + grace
            else:
                self.queue.append(rec.eval_id)
        self._check_stops()
        self.pump()

    def take_commands(self) -> list[Command]:
        out, self.commands = self.commands, []
        return out

    # ---------------------------------------------------------------- workers
    def join(self, name: str, slots: int = 1, running: Iterable[tuple[int, int]] = ()) -> None:
        """A worker (re)joined, reporting the evaluations it is still running."""
        if self.workers.pop(name, None) is not None:
            self._log("worker_left", worker=name, reason="reconnected")
        # slots == 0: a worker that is draining already (e.g. started late in its job)
        w = WorkerState(name, slots=max(1, slots), draining=slots == 0)
        self.workers[name] = w
        self._log("worker_joined", worker=name, slots=w.slots)
        reported = dict(running)
        for eval_id, attempt in reported.items():
            self._adopt(w, eval_id, attempt)
        # what the log says this worker runs but it no longer has (it restarted, or its
        # result was lost with it) goes back to the queue; reported work stays where it is
        for rec in self.view.pending():
            if rec.status is Status.RUNNING and rec.worker == name and rec.eval_id not in reported:
                self._requeue(rec.eval_id, name, "worker rejoined without it", count_retry=False)
        self._update_slots()
        self.pump()

    def _adopt(self, w: WorkerState, eval_id: int, attempt: int) -> None:
        rec = self.view.records.get(eval_id)
        w.busy[eval_id] = attempt
        if rec is None or not rec.in_flight:
            self.commands.append(SendKill(w.name, eval_id, attempt, "evaluation already ended"))
            return
        self._orphans.pop(eval_id, None)
        if rec.status is Status.RUNNING and rec.worker == w.name:
            return
        if rec.status is Status.RUNNING and rec.worker in self.workers:
            # another live worker holds a later attempt: both run, first result wins
            return
        if eval_id in self.queue:
            self.queue.remove(eval_id)
        self._set(replace(rec, status=Status.RUNNING, worker=w.name, t_started=self.clock()))
        self._log(STARTED, eval_id=eval_id, worker=w.name, attempt=rec.attempt, adopted=True)
        self._tell(STARTED, eval_id)

    def leave(self, name: str, reason: str) -> None:
        """A worker said goodbye (or rejoined): re-queue its work without using retries.

        Leaving at a walltime is not the evaluation's fault, so it does not spend
        ``max_retries`` (Parsl users lose retries that way: parsl#1905).
        """
        w = self.workers.pop(name, None)
        if w is None:
            return
        self._log("worker_left", worker=name, reason=reason)
        for eval_id in list(w.busy):
            self._requeue(eval_id, name, reason, count_retry=False)
        self._update_slots()
        self.pump()

    def lost(self, name: str) -> None:
        """A worker went silent past the liveness window."""
        w = self.workers.pop(name, None)
        if w is None:
            return
        self._log("worker_left", worker=name, reason="lost")
        for eval_id in list(w.busy):
            self._requeue(eval_id, name, "worker lost", count_retry=True)
        self._update_slots()
        self.pump()

    def drain(self, name: str) -> None:
        """The worker takes no new work (close to its walltime) but finishes what it has."""
        w = self.workers.get(name)
        if w is not None and not w.draining:
            w.draining = True
            self._update_slots()

    def _requeue(self, eval_id: int, worker: str, reason: str, count_retry: bool) -> None:
        rec = self.view.records.get(eval_id)
        if rec is None or rec.status is not Status.RUNNING or rec.worker != worker:
            return  # finished already, or a later attempt runs elsewhere
        if count_retry:
            self._log(LOST, eval_id=eval_id, worker=worker, attempt=rec.attempt, reason=reason)
            self._tell(LOST, eval_id)
        attempt = rec.attempt + (1 if count_retry else 0)
        if count_retry and attempt > self.settings.max_retries:
            err = f"{reason}: gave up after {rec.attempt + 1} attempts (max_retries)"
            self._finish_record(eval_id, Status.FAILED, error=err, worker=worker)
            return
        self._set(replace(rec, status=Status.PENDING, attempt=attempt, worker=None))
        self._log(REQUEUED, eval_id=eval_id, attempt=attempt, reason=reason)
        self.queue.appendleft(eval_id)
        self._tell(REQUEUED, eval_id)

    # ---------------------------------------------------------------- outcomes
    def partial(self, worker: str, eval_id: int, attempt: int, value: float) -> None:
        rec = self.view.records.get(eval_id)
        if rec is None or not rec.in_flight or not math.isfinite(value):
            return
        self._set(replace(rec, partials=(*rec.partials, value)))
        self._log(PARTIAL, eval_id=eval_id, worker=worker, value=value, step=len(rec.partials))
        self._tell(PARTIAL, eval_id)
        self.pump()

    def completed(self, worker: str, eval_id: int, attempt: int, value: float) -> bool:
        """Returns whether the result counted (False: a duplicate, already dropped)."""
        if not math.isfinite(value):
            return self.failed(worker, eval_id, attempt, f"objective returned {value!r}")
        return self._outcome(worker, eval_id, attempt, Status.COMPLETED, value=value)

    def failed(self, worker: str, eval_id: int, attempt: int, error: str) -> bool:
        return self._outcome(worker, eval_id, attempt, Status.FAILED, error=error or "failed")

    def killed(self, worker: str, eval_id: int, attempt: int, reason: str = "killed") -> bool:
        return self._outcome(worker, eval_id, attempt, Status.KILLED, error=reason)

    def _outcome(self, worker: str, eval_id: int, attempt: int, status: Status,
                 value: float | None = None, error: str | None = None) -> bool:
        w = self.workers.get(worker)
        if w is not None:
            w.busy.pop(eval_id, None)
        rec = self.view.records.get(eval_id)
        counted = rec is not None and rec.in_flight
        if counted:
            self._finish_record(eval_id, status, value=value, error=error, worker=worker)
            self._kill_holders(eval_id, "result arrived", but=worker)
            self._check_stops()
        self._update_slots()
        self.pump()
        return counted

    def _finish_record(self, eval_id: int, status: Status, *, worker: str | None,
                       value: float | None = None, error: str | None = None) -> None:
        rec = self.view.records[eval_id]
        if eval_id in self.queue:
            self.queue.remove(eval_id)
        self._orphans.pop(eval_id, None)
        failures = rec.failures + (status is Status.FAILED)
        best_before = self.view.best
        self._set(replace(rec, status=status, value=value, error=error, worker=worker or rec.worker,
                          failures=failures, t_finished=self.clock()))
        fields: dict[str, Any] = {"eval_id": eval_id, "worker": worker or rec.worker or ""}
        if status is Status.COMPLETED:
            fields["value"] = value
        else:
            fields["error"] = error
        self._log(status.value, **fields)
        if self.view.best is not best_before:
            self._last_improvement = self.view.n_completed
        self._tell(status.value, eval_id)

    # ---------------------------------------------------------------- time
    def tick(self) -> None:
        """Apply what time alone decides: timeouts, orphan grace, max_time."""
        now = self.clock()
        timeout = self.settings.eval_timeout
        for rec in self.view.pending():
            if rec.status is Status.RUNNING and now - rec.t_started > timeout:
                self._kill_record(rec, f"eval_timeout ({timeout:g} s) exceeded")
        for eval_id, deadline in list(self._orphans.items()):
            if now >= deadline:
                del self._orphans[eval_id]
                rec = self.view.records[eval_id]
                if rec.status is Status.RUNNING and rec.worker not in self.workers:
                    self._requeue(eval_id, rec.worker or "", "not reclaimed after restart",
                                  count_retry=False)
        self._check_stops()
        self.pump()

    # ---------------------------------------------------------------- strategy
    def pump(self) -> None:
        """Ask the strategy for work while slots are free and the budget needs it."""
        self._interrupts()
        while self.finished is None:
            worker = self._free_worker()
            if worker is None:
                return
            if self.queue:
                self._dispatch(worker, self.queue.popleft())
                continue
            if self.view.remaining <= 0:
                return
            self.view.now = self.clock()
            proposal = self.strategy.propose(self.view)
            if proposal is None:
                return
            self._rejected = False
            self._apply(proposal)
            if self._rejected:  # asking again at once could spin on the same bad point
                return

    def prepare(self) -> bool:
        """Ask ahead: while every worker is busy, queue up to ``strategy.ask_ahead`` proposals.

        The transport calls this when it has nothing else to do (no message waiting),
        so the ask overlaps the running evaluations and the next free worker gets its
        point without waiting for the model. Returns whether anything was queued.
        """
        want = self.strategy.ask_ahead
        if (want <= 0 or self.finished is not None or len(self.queue) >= want
                or not self.workers or self.view.remaining <= 0
                or self._free_worker() is not None):  # a free worker is pump()'s business
            return False
        self.view.now = self.clock()
        proposal = self.strategy.propose(self.view)
        if proposal is None:
            return False
        self._rejected = False
        self._apply(proposal)
        self.pump()  # a Kill may have freed a worker
        return not self._rejected

    def _interrupts(self) -> None:
        """Kills and terminations a strategy wants now, even with every worker busy."""
        for _ in range(1000):  # bounded: a strategy cannot hold the loop forever
            if self.finished is not None:
                return
            self.view.now = self.clock()
            action = self.strategy.interrupt(self.view)
            if action is None:
                return
            if isinstance(action, Evaluate):  # evaluations wait for a slot: propose()
                self.strategy.on_rejected(action, "interrupt() may only kill or terminate")
                return
            self._rejected = False
            self._apply(action)
            if self._rejected:
                return

    def _apply(self, proposal: Proposal) -> None:
        if isinstance(proposal, Evaluate):
            problem = self._check_point(proposal.x)
            if problem:
                self.strategy.on_rejected(proposal, problem)
                self._rejected = True
                return
            rec = self._new_record(proposal)
            self.strategy.on_accepted(proposal, rec)
            self._tell(PROPOSED, rec.eval_id)
            self.queue.append(rec.eval_id)
        elif isinstance(proposal, Kill):
            target = self.view.records.get(proposal.eval_id)
            if target is None or not target.in_flight:
                self.strategy.on_rejected(proposal, "no such evaluation in flight")
                self._rejected = True
                return
            self._kill_record(target, proposal.reason)
            self.strategy.on_accepted(proposal, self.view.records[proposal.eval_id])
        elif isinstance(proposal, Terminate):
            self.strategy.on_accepted(proposal, None)
            self.end(proposal.reason)

    def _check_point(self, x: tuple[float, ...]) -> str:
        # plain Python: for a handful of coordinates numpy's call overhead dominates
        space = self.space
        if len(x) != space.dim:
            return f"point has {len(x)} coordinates, space has {space.dim}"
        if not all(math.isfinite(v) for v in x):
            return "point has non-finite coordinates"
        if any(v < lo or v > hi for v, lo, hi in zip(x, space.lower, space.upper)):
            return "point is outside the bounds"
        return ""

    def _new_record(self, proposal: Evaluate) -> Record:
        eval_id = self._next_id
        self._next_id += 1
        rec = Record(eval_id, proposal.x, tag=proposal.tag, t_proposed=self.clock())
        self._set(rec)
        extra = {"tag": proposal.tag} if proposal.tag else {}
        self._log(PROPOSED, eval_id=eval_id, x=list(proposal.x), **extra)
        return rec

    # ---------------------------------------------------------------- internals
    def _free_worker(self) -> WorkerState | None:
        if self.view.free_slots <= 0:
            return None
        best: WorkerState | None = None
        for w in self.workers.values():
            if w.free > 0 and (best is None or w.free > best.free):
                best = w
        return best

    def _dispatch(self, w: WorkerState, eval_id: int) -> None:
        rec = self.view.records[eval_id]
        w.busy[eval_id] = rec.attempt
        self.view.free_slots -= 1
        self._set(replace(rec, status=Status.RUNNING, worker=w.name, t_started=self.clock()))
        self._log(STARTED, eval_id=eval_id, worker=w.name, attempt=rec.attempt)
        self.commands.append(
            Dispatch(w.name, eval_id, rec.attempt, rec.x, self.settings.eval_timeout))
        self._tell(STARTED, eval_id)

    def _kill_record(self, rec: Record, reason: str) -> None:
        self._kill_holders(rec.eval_id, reason)
        self._finish_record(rec.eval_id, Status.KILLED, error=reason, worker=rec.worker)

    def _kill_holders(self, eval_id: int, reason: str, but: str | None = None) -> None:
        """Tell every worker still running ``eval_id`` (any attempt) to stop."""
        for w in self.workers.values():
            if eval_id in w.busy and w.name != but:
                self.commands.append(SendKill(w.name, eval_id, w.busy[eval_id], reason))

    def _check_stops(self) -> None:
        if self.finished is not None:
            return
        s, v = self.settings, self.view
        best = v.best.value if v.best is not None and v.best.value is not None else math.inf
        if v.n_completed >= s.budget:
            self.end("budget")
        elif s.target is not None and best <= s.target:
            self.end("target")
        elif s.patience is not None and v.n_completed - self._last_improvement >= s.patience:
            self.end("patience")
        elif s.max_time is not None and self.clock() - self.t0 >= s.max_time:
            self.end("max_time")

    def end(self, reason: str) -> None:
        if self.finished is not None:
            return
        self.finished = reason
        for rec in self.view.pending():
            self._kill_record(rec, f"run finished ({reason})")
        self.queue.clear()
        best = self.view.best
        self._log("run_finished", reason=reason, completed=self.view.n_completed,
                  best_value=best.value if best else None,
                  best_x=list(best.x) if best else None)
        self.commands.append(Finish(reason))

    def _update_slots(self) -> None:
        self.view.n_workers = sum(w.slots for w in self.workers.values())
        self.view.free_slots = sum(w.free for w in self.workers.values())

    def _set(self, rec: Record) -> None:
        self.view.put(rec)

    def _tell(self, kind: str, eval_id: int) -> None:
        self.strategy.on_event(kind, self.view.records[eval_id], self.view)

    def _log(self, event: str, **fields: Any) -> None:
        self.journal.append(event, self.clock(), **fields)


__all__ = [
    "COMPLETED", "FAILED", "KILLED", "Command", "ControllerCore", "Dispatch", "Finish",
    "Journal", "SendKill", "WorkerState",
]
