"""The pure controller core: decisions over an event-sourced run state. No sockets, no files.

Inputs are method calls (a worker joined, a result arrived, time passed). Each decision
is an event (tether.events): :meth:`ControllerCore._emit` folds it into the
:class:`~tether.controller.state.RunState` (the only place records change), hands it to
the injected :class:`Journal`, then tells the strategy. Commands for the transport
(:class:`Dispatch`, :class:`SendKill`, :class:`Finish`) collect in ``commands``; the
transport writes the journal out before it sends them. ``--resume`` is the same
``RunState.apply`` folded over the log. The ZeroMQ daemon, the in-process controllers
and the simulated-time controller all drive this one class.

Accounting rules (the exactly-once contract):
- an evaluation's first outcome wins, from whichever attempt or worker it comes; any
  later outcome for it is a duplicate and is dropped (the transport still ACKs it);
- each evaluation gets exactly one terminal journal event: completed, failed or killed;
- a worker's slots are tracked apart from records (controller/workers.py).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from tether.controller.guard import StrategyGuard
from tether.controller.settings import RunSettings
from tether.controller.state import RunState
from tether.controller.workers import AUTO, WorkerPool, WorkerState
from tether.errors import LogError
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
    WorkerLeft,
    parse_event,
)
from tether.records import Evaluate, Kill, Proposal, Record, Status, Terminate
from tether.space import Space
from tether.strategies.base import Strategy


class Journal(Protocol):
    """Where the core writes events; the writer adds ``seq``."""

    def append(self, ev: Event) -> None: ...


# Commands are built per evaluation; not frozen, like the events (treat as immutable).
@dataclass(slots=True)
class Dispatch:
    worker: str
    eval_id: int
    attempt: int
    x: tuple[float, ...]
    timeout: float


@dataclass(slots=True)
class SendKill:
    worker: str
    eval_id: int
    attempt: int
    reason: str


@dataclass(slots=True)
class Finish:
    reason: str


Command = Dispatch | SendKill | Finish


class ControllerCore:
    """Drives one strategy over one run. Call :meth:`start` (or :meth:`resume`) first."""

    def __init__(self, space: Space, strategy: Strategy, settings: RunSettings,
                 journal: Journal, clock: Callable[[], float],
                 run_info: dict[str, Any] | None = None) -> None:
        self.space = space
        self.settings = settings
        self.journal = journal
        self.clock = clock
        self.run_info = run_info or {}
        self.state = RunState(space, settings.budget)
        self.view = self.state.view
        self.strategy = StrategyGuard(strategy, self.view, clock, self._strategy_failed)
        self.workers = WorkerPool()
        self.commands: list[Command] = []
        self._orphans: dict[int, float] = {}  # resumed RUNNING evals -> requeue deadline
        self._timeouts: list[tuple[float, int]] = []  # (deadline, eval_id), lazily pruned
        self._deadline: dict[int, float] = {}  # eval_id -> its current timeout deadline
        self._error_trace = ""
        #: extra counters for run_finished (the session's refused/dropped messages)
        self.counters: Callable[[], dict[str, Any]] | None = None
        self._ending = False
        self._replaying = False
        self._deferred_error: str | None = None  # a strategy error met while replaying

    # ---------------------------------------------------------------- state access
    @property
    def finished(self) -> str | None:
        return self.state.finished

    @property
    def queue(self) -> list[int]:
        return self.state.queue.order()

    @property
    def t0(self) -> float:
        return self.state.t0

    def was_dispatched_to(self, eval_id: int, name: str) -> bool:
        """Whether the log shows an attempt of ``eval_id`` started on worker ``name``."""
        on = self.state.dispatched.get(eval_id)
        return on == name or (type(on) is set and name in on)

    def key_of(self, name: str) -> str:
        """The key id a worker name is bound to in this run ("" when none yet)."""
        return self.state.keys.get(name, "")

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> None:
        self._emit(RunStarted(self._now(), dict(self.run_info)))
        self.pump()

    def replay(self, events: Iterable[Event | dict[str, Any]]) -> int:
        """Fold a journal's events into the state, telling the strategy each one, and
        writing nothing. Decoded JSON objects are parsed first. Returns how many."""
        n = 0
        self._replaying = True
        try:
            for ev in events:
                if isinstance(ev, dict):
                    ev = parse_event(ev, f"event {n}")
                n += 1
                rec = self.state.apply(ev)
                if rec is not None:
                    self.strategy.on_event(ev.kind, rec, rec.eval_id)
        finally:
            self._replaying = False
        if math.isnan(self.state.t0):
            raise LogError("log has no run_started event")
        return n

    def resume(self, events: Iterable[Event | dict[str, Any]], grace: float) -> int:
        """:meth:`replay` the log, then carry on where it stopped.

        Evaluations that were running at the crash wait ``grace`` seconds for their
        worker to rejoin and report; then they are re-queued. Returns how many events
        were replayed.
        """
        n = self.replay(events)
        self.state.finished = None
        self._emit(RunStarted(self._now(), {"resumed": True, "replayed": n, **self.run_info}))
        now = self.clock()
        for rec in self.view.pending():
            if rec.status is Status.RUNNING:
                self._orphans[rec.eval_id] = now + grace
                self._set_deadline(rec.eval_id, rec.t_started)
        if self._deferred_error is not None:
            self.end(self._deferred_error)
        self._check_stops()
        self.pump()
        return n

    def take_commands(self) -> list[Command]:
        out, self.commands = self.commands, []
        return out

    # ---------------------------------------------------------------- workers
    def join(self, name: str, slots: int = 1, running: Iterable[tuple[int, int]] = (),
             key: str = "") -> None:
        """A worker (re)joined, reporting the evaluations it is still running."""
        if self.workers.remove(name) is not None:
            self._emit(WorkerLeft(self._now(), name, "reconnected"))
        # slots == 0: a worker that is draining already (e.g. started late in its job)
        w = self.workers.add(name, max(1, slots), draining=slots == 0, prefetch=self.prefetch)
        self._emit(WorkerJoined(self._now(), name, w.slots, key))
        reported = dict(running)
        for eval_id, attempt in reported.items():
            self._adopt(w, eval_id, attempt)
        # what the log says this worker runs but it no longer has (it restarted, or its
        # result was lost with it) goes back to the queue; reported work stays where it is
        for eval_id in sorted(self.state.running_on.get(name, ())):
            if eval_id not in reported:
                self._requeue(eval_id, name, "worker rejoined without it", count_retry=False)
        self._sync_view()
        self.pump()

    def _adopt(self, w: WorkerState, eval_id: int, attempt: int) -> None:
        rec = self.view.records.get(eval_id)
        self.workers.hold(w, eval_id, attempt)
        if rec is None or not rec.in_flight:
            self.commands.append(SendKill(w.name, eval_id, attempt, "evaluation already ended"))
            return
        self._orphans.pop(eval_id, None)
        if rec.status is Status.RUNNING and (rec.worker == w.name or rec.worker in self.workers):
            return  # its own, or a later attempt runs on a live worker: first result wins
        self._start(Started(self._now(), eval_id, w.name, rec.attempt, adopted=True))

    def leave(self, name: str, reason: str) -> None:
        """A worker said goodbye (or rejoined): re-queue its work without using retries.

        Leaving at a walltime is not the evaluation's fault, so it does not spend
        ``max_retries`` (Parsl users lose retries that way: parsl#1905).
        """
        self._drop_worker(name, reason, count_retry=False)

    def lost(self, name: str, spend_retry: bool = True) -> None:
        """A worker went silent past the liveness window (or its connection vanished).

        Its evaluations are logged ``lost`` and re-queued. ``spend_retry=False`` for a
        worker that never answered anything: its loss says nothing about the evaluation
        (a flood of connections that never answer must not fail work), so the attempt
        count stays.
        """
        self._drop_worker(name, "lost", count_retry=spend_retry, lost=True)

    def _drop_worker(self, name: str, reason: str, count_retry: bool,
                     lost: bool = False) -> None:
        w = self.workers.remove(name)
        if w is None:
            return
        self._emit(WorkerLeft(self._now(), name, reason))
        why = "worker lost" if lost else reason
        for eval_id in list(w.busy):
            self._requeue(eval_id, name, why, count_retry=count_retry, lost=lost)
        self._sync_view()
        self.pump()

    def drain(self, name: str) -> None:
        """The worker takes no new work (close to its walltime) but finishes what it has."""
        w = self.workers.get(name)
        if w is not None and not w.draining:
            self.workers.set_draining(w)
            self._sync_view()

    def dispatch_failed(self, name: str, eval_id: int, attempt: int) -> None:
        """The transport could not hand an evaluation to its worker: it never left, so it
        goes back to the queue at once without spending a retry. (What happens to the
        worker is the transport's call: see ControllerSession.undeliverable.)"""
        w = self.workers.get(name)
        if w is not None:
            self.workers.release(w, eval_id)
        self._requeue(eval_id, name, "dispatch refused by the transport", count_retry=False)
        self._sync_view()

    def _requeue(self, eval_id: int, worker: str, reason: str, count_retry: bool,
                 lost: bool = False) -> None:
        rec = self.view.records.get(eval_id)
        if rec is None or rec.status is not Status.RUNNING or rec.worker != worker:
            return  # finished already, or a later attempt runs elsewhere
        self._no_deadline(eval_id)
        if count_retry or lost:
            self._emit(Lost(self._now(), eval_id, worker, rec.attempt, reason))
        attempt = rec.attempt + (1 if count_retry else 0)
        if count_retry and attempt > self.settings.max_retries:
            err = f"{reason}: gave up after {rec.attempt + 1} attempts (max_retries)"
            self._emit(Failed(self._now(), eval_id, worker, err))
            return
        self._emit(Requeued(self._now(), eval_id, attempt, reason))

    # ---------------------------------------------------------------- outcomes
    def partial(self, worker: str, eval_id: int, attempt: int, value: float,
                info: dict[str, Any] | None = None) -> None:
        rec = self.view.records.get(eval_id)
        if rec is None or not rec.in_flight or not math.isfinite(value):
            return
        self._emit(Partial(self._now(), eval_id, worker, value, len(rec.partials), info or {}))
        self.pump()

    def completed(self, worker: str, eval_id: int, attempt: int, value: float,
                  seconds: float | None = None) -> bool:
        """Returns whether the result counted (False: a duplicate, already dropped).
        ``seconds``: how long the worker says it ran (sizes an auto prefetch)."""
        if not math.isfinite(value):
            return self.failed(worker, eval_id, attempt, f"objective returned {value!r}",
                               seconds)
        return self._outcome(worker, eval_id, Completed(self._now(), eval_id, worker, value),
                             seconds)

    def failed(self, worker: str, eval_id: int, attempt: int, error: str,
               seconds: float | None = None) -> bool:
        return self._outcome(worker, eval_id,
                             Failed(self._now(), eval_id, worker, error or "failed"), seconds)

    def killed(self, worker: str, eval_id: int, attempt: int, reason: str = "killed") -> bool:
        return self._outcome(worker, eval_id,
                             Killed(self._now(), eval_id, worker, reason or "killed"))

    def _outcome(self, worker: str, eval_id: int, ev: Completed | Failed | Killed,
                 seconds: float | None = None) -> bool:
        w = self.workers.get(worker)
        if w is not None:
            self.workers.release(w, eval_id)
            if w.auto and seconds is not None and seconds >= 0 and math.isfinite(seconds):
                self.workers.observe(w, seconds)
        rec = self.view.records.get(eval_id)
        counted = rec is not None and rec.in_flight
        if counted:
            self._no_deadline(eval_id)
            self._orphans.pop(eval_id, None)
            self._emit(ev)
            self._kill_holders(eval_id, "result arrived", but=worker)
            self._check_stops()
        self._sync_view()
        self.pump()
        return counted

    # ---------------------------------------------------------------- time
    def tick(self) -> None:
        """Apply what time alone decides: timeouts, orphan grace, max_time."""
        now = self.clock()
        timeout = self.settings.eval_timeout
        while self._timeouts and self._timeouts[0][0] < now:
            deadline, eval_id = heapq.heappop(self._timeouts)
            if self._deadline.get(eval_id) != deadline:
                continue  # ended, or its deadline moved (it started after waiting)
            del self._deadline[eval_id]
            rec = self.view.records[eval_id]
            if rec.status is Status.RUNNING:
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
        if self.strategy.interrupts:
            self._interrupts()
        while self.finished is None:
            worker = self.workers.pick()
            if worker is None:
                return
            eval_id = self.state.queue.pop()
            if eval_id is not None:
                self._dispatch(worker, eval_id)
                continue
            if self.view.remaining <= 0:
                return
            proposal = self.strategy.propose()
            if proposal is None or not self.carry_out(proposal):
                return  # asking again at once could spin on the same bad point

    def prepare(self) -> bool:
        """Ask ahead: while every worker is busy, queue up to ``strategy.ask_ahead`` proposals.

        The transport calls this when it has nothing else to do (no message waiting),
        so the ask overlaps the running evaluations and the next free worker gets its
        point without waiting for the model. Returns whether anything was queued.
        """
        want = self.strategy.ask_ahead
        if (want <= 0 or self.finished is not None or len(self.state.queue) >= want
                or not self.workers or self.view.remaining <= 0
                or self.workers.pick() is not None):  # a free worker is pump()'s business
            return False
        proposal = self.strategy.propose()
        if proposal is None:
            return False
        ok = self.carry_out(proposal)
        self.pump()  # a Kill may have freed a worker
        return ok

    def _interrupts(self) -> None:
        """Kills and terminations a strategy wants now, even with every worker busy."""
        for _ in range(1000):  # bounded: a strategy cannot hold the loop forever
            if self.finished is not None:
                return
            action = self.strategy.interrupt()
            if action is None:
                return
            if isinstance(action, Evaluate):  # evaluations wait for a slot: propose()
                self.strategy.on_rejected(action, "interrupt() may only kill or terminate")
                return
            if not self.carry_out(action):
                return

    def carry_out(self, proposal: Proposal) -> bool:
        """Do what the strategy asked; False when it was rejected (or the strategy broke)."""
        if isinstance(proposal, Evaluate):
            problem = self.space.check_point(proposal.x)
            if problem:
                self.strategy.on_rejected(proposal, problem)
                return False
            eval_id = self.state.next_id
            ev = Proposed(self._now(), eval_id, proposal.x, proposal.tag)
            rec = self.state.apply(ev)
            self.journal.append(ev)
            assert rec is not None
            if self.strategy.hears_accepts:
                self.strategy.on_accepted(proposal, rec)
            if self.strategy.hears_events:
                self.strategy.on_event(ev.kind, self.view.records[eval_id], eval_id)
        elif isinstance(proposal, Kill):
            target = self.view.records.get(proposal.eval_id)
            if target is None or not target.in_flight:
                self.strategy.on_rejected(proposal, "no such evaluation in flight")
                return False
            self._kill_record(target, proposal.reason)
            self.strategy.on_accepted(proposal, self.view.records[proposal.eval_id])
        elif isinstance(proposal, Terminate):
            self.strategy.on_accepted(proposal, None)
            self.end(proposal.reason)
        return self.finished is None or isinstance(proposal, Terminate)

    def _strategy_failed(self, message: str, trace: str) -> None:
        """The strategy raised: the run ends with the reason (the guard formatted it)."""
        self._error_trace = trace
        if self._replaying:  # end once the log is folded in, never in the middle of it
            self._deferred_error = message
        else:
            self.end(message)

    # ---------------------------------------------------------------- internals
    def _dispatch(self, w: WorkerState, eval_id: int) -> None:
        rec = self.view.records[eval_id]
        self.workers.hold(w, eval_id, rec.attempt)
        self._sync_view()
        # beyond the worker's slots it waits in the worker's queue (prefetch): its timeout
        # really starts with the worker's `running`; until then, allow for those ahead of it
        queued = max(0, len(w.busy) - w.slots)
        self._start(Started(self._now(), eval_id, w.name, rec.attempt), waits=queued)
        self.commands.append(
            Dispatch(w.name, eval_id, rec.attempt, rec.x, self.settings.eval_timeout))

    def _start(self, ev: Started, waits: int = 0) -> None:
        self._emit(ev)
        self._set_deadline(ev.eval_id, ev.t, waits)

    def _set_deadline(self, eval_id: int, since: float, waits: int = 0) -> None:
        deadline = since + self.settings.eval_timeout * (1 + waits)
        self._deadline[eval_id] = deadline
        heap = self._timeouts
        heapq.heappush(heap, (deadline, eval_id))
        # Entries of evaluations that ended stay in the heap until their deadline (600 s
        # by default): at 10,000 evaluations a second, millions. Rebuilt from the live
        # deadlines when mostly stale, the heap stays O(in flight), amortised O(1).
        if len(heap) > 2 * len(self._deadline) + 1024:
            self._timeouts = [(d, e) for e, d in self._deadline.items()]
            heapq.heapify(self._timeouts)

    def _no_deadline(self, eval_id: int) -> None:
        self._deadline.pop(eval_id, None)  # its heap entry goes stale (see _set_deadline)

    def running(self, worker: str, eval_id: int, attempt: int) -> None:
        """A prefetched evaluation started on its worker: its timeout counts from now."""
        rec = self.view.records.get(eval_id)
        if rec is not None and rec.status is Status.RUNNING and rec.worker == worker:
            self._set_deadline(eval_id, self.clock())

    def _kill_record(self, rec: Record, reason: str) -> None:
        self._no_deadline(rec.eval_id)
        self._kill_holders(rec.eval_id, reason)
        self._emit(Killed(self._now(), rec.eval_id, rec.worker or "", reason))

    def _kill_holders(self, eval_id: int, reason: str, but: str | None = None) -> None:
        """Tell every worker still running ``eval_id`` (any attempt) to stop."""
        held = self.workers.holders.get(eval_id)
        if held is None:  # the usual case after an outcome: its worker released it
            return
        for name, attempt in held.items():
            if name != but:
                self.commands.append(SendKill(name, eval_id, attempt, reason))

    def _check_stops(self) -> None:
        if self.finished is not None:
            return
        s, st, v = self.settings, self.state, self.view
        best = v.best.value if v.best is not None and v.best.value is not None else math.inf
        if v.n_completed >= s.budget:
            self.end("budget")
        elif s.target is not None and best <= s.target:
            self.end("target")
        elif s.patience is not None and v.n_completed - st.last_improvement >= s.patience:
            self.end("patience")
        elif s.max_time is not None and self.clock() - st.t0 >= s.max_time:
            self.end("max_time")
        elif st.fail_streak and st.fail_streak >= self.max_failures:
            self.end("too many failures")

    @property
    def prefetch(self) -> int | str:
        """Evaluations a worker may hold queued beyond its slots, or ``"auto"`` (sized
        per worker from its evaluations' durations: controller/workers.py):
        ``[run] prefetch``, else the strategy's default (0 for model-based strategies)."""
        p = self.settings.prefetch
        if p is None:
            p = getattr(self.strategy.inner, "prefetch", 0)
        return p if p == AUTO else max(0, int(p))

    @property
    def max_failures(self) -> int:
        """Consecutive failures that end the run: ``[run] max_failures`` or 3 x slots + 10."""
        if self.settings.max_failures is not None:
            return self.settings.max_failures
        return 3 * max(self.workers.n_slots, self.view.n_workers, 1) + 10

    def end(self, reason: str) -> None:
        if self.finished is not None or self._ending:
            return
        self._ending = True  # the kills below tell the strategy, which must not end it again
        for rec in self.view.pending():
            self._kill_record(rec, f"run finished ({reason})")
        self.state.queue.clear()
        best = self.view.best
        extra: dict[str, Any] = {"failed": self.state.n_failed, "killed": self.state.n_killed}
        if self.counters is not None:
            extra.update(self.counters())
        if self._error_trace:
            extra["traceback"] = self._error_trace
        self._emit(RunFinished(self._now(), reason, self.view.n_completed,
                               best.value if best else None, best.x if best else None, extra))
        self.commands.append(Finish(reason))
        self._ending = False

    def _sync_view(self) -> None:
        self.view.n_workers = self.workers.n_slots
        self.view.free_slots = self.workers.n_free

    def _emit(self, ev: Event) -> None:
        """Fold, write, tell: the one way the run's state changes."""
        rec = self.state.apply(ev)
        self.journal.append(ev)
        if rec is not None and self.strategy.hears_events:
            self.strategy.on_event(ev.kind, rec, rec.eval_id)

    def _now(self) -> float:
        # The log keeps microseconds, stamped once here, so live and replayed state are
        # equal. Not round(t, 6): it is correctly rounded through decimal digits and
        # cost 0.5 µs, three times per evaluation; this is 0.1 µs, monotonic, and at most
        # a microsecond off round()'s choice (the nearest double to a whole number of
        # microseconds either way, so it prints with at most six decimals).
        return int(self.clock() * 1e6 + 0.5) / 1e6


__all__ = ["Command", "ControllerCore", "Dispatch", "Finish", "Journal", "SendKill",
           "WorkerState"]
