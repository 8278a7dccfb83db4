"""Shared helpers of the core's tests: a manual clock, a scripted strategy, a fault driver."""

from __future__ import annotations

import random
from typing import Any

import numpy as np

from tests.contract import check_events
from tether.controller.core import ControllerCore, Dispatch, SendKill
from tether.controller.settings import RunSettings
from tether.log.journal import MemoryJournal
from tether.records import Evaluate, Proposal, Record, RunView, Status
from tether.space import Space
from tether.strategies.base import Strategy
from tether.strategies.sampling import RandomSampling

SPACE = Space(("a", "b"), (0.0, -1.0), (1.0, 1.0))
TERMINAL = {"completed", "failed", "killed"}
EVAL_EVENTS = {"proposed", "started", "partial", "completed", "failed", "killed", "lost",
               "requeued"}

# ---------------------------------------------------------------------- helpers
class Clock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, dt: float) -> None:
        self.t += dt


class Scripted(Strategy):
    """Proposes its script in order, then (if ``fallback``) deterministic valid points."""

    name = "scripted"

    def __init__(self, script: list[Proposal | None] | None = None, fallback: bool = True,
                 space: Space = SPACE) -> None:
        self.script = list(script or [])
        self.fallback = fallback
        self.space = space
        self.calls = 0
        self.accepted: list[tuple[Proposal, Record | None]] = []
        self.rejected: list[tuple[Proposal, str]] = []
        self.events: list[tuple[str, int, Status]] = []

    def propose(self, view: RunView) -> Proposal | None:
        self.calls += 1
        if self.script:
            return self.script.pop(0)
        if not self.fallback:
            return None
        k = len(view.records)
        u = np.array([(k * 0.618034) % 1.0, (k * 0.414214) % 1.0])
        return Evaluate.at(self.space.from_unit(u))

    def on_accepted(self, proposal: Proposal, record: Record | None) -> None:
        self.accepted.append((proposal, record))

    def on_rejected(self, proposal: Proposal, reason: str) -> None:
        self.rejected.append((proposal, reason))

    def on_event(self, kind: str, record: Record, view: RunView) -> None:
        self.events.append((kind, record.eval_id, record.status))


def objective(x: tuple[float, ...]) -> float:
    return float(sum((v - 0.3) ** 2 for v in x))


Made = tuple[ControllerCore, MemoryJournal, Clock]


def make(budget: int = 5, strategy: Strategy | None = None, journal: MemoryJournal | None = None,
         clock: Clock | None = None, **settings: Any) -> Made:
    settings.setdefault("prefetch", 0)  # one evaluation per slot, as the tests count them
    s = RunSettings(budget=budget, **settings)
    j = journal if journal is not None else MemoryJournal()
    c = clock or Clock()
    strat = strategy or RandomSampling(SPACE, seed=7)
    info = {"space": SPACE.to_json(), "strategy": {"name": strat.name}, "run": s.to_json()}
    return ControllerCore(SPACE, strat, s, j, c, info), j, c


def started(budget: int = 5, **kw: Any) -> Made:
    core, j, c = make(budget, **kw)
    core.start()
    return core, j, c


def dispatches(core: ControllerCore) -> list[Dispatch]:
    cmds = core.take_commands()
    return [cmd for cmd in cmds if isinstance(cmd, Dispatch)]


def kinds(cmds: list[Any], kind: type) -> list[Any]:
    return [c for c in cmds if isinstance(c, kind)]


def of(j: MemoryJournal, event: str, eval_id: int | None = None) -> list[dict[str, Any]]:
    return [e for e in j.events if e["event"] == event
            and (eval_id is None or e.get("eval_id") == eval_id)]


def check_log(events: list[dict[str, Any]], dim: int = 2, finished: bool = True) -> None:
    """The log contract (tests/contract.py, the one checker) on a core's journal."""
    check_events(events, dim=dim, finished=finished)


class Driver:
    """Simulated workers that obey the core's commands, with seeded faults."""

    def __init__(self, core: ControllerCore, clock: Clock, seed: int = 0,
                 faults: bool = False) -> None:
        self.core, self.clock = core, clock
        self.rng = random.Random(seed)
        self.faults = faults
        self.running: dict[tuple[str, int], int] = {}  # (worker, eval_id) -> attempt
        self.steps = 0

    def apply(self) -> None:
        while self.core.commands:
            for cmd in self.core.take_commands():
                if isinstance(cmd, Dispatch):
                    key = (cmd.worker, cmd.eval_id)
                    assert key not in self.running, f"{key} dispatched twice"
                    assert cmd.worker in self.core.workers
                    self.running[key] = cmd.attempt
                elif isinstance(cmd, SendKill) and self.running.pop(
                        (cmd.worker, cmd.eval_id), None) is not None:
                    self.core.killed(cmd.worker, cmd.eval_id, cmd.attempt, cmd.reason)

    def step(self) -> None:
        core, rng = self.core, self.rng
        self.apply()
        if core.finished is not None:
            return
        self.steps += 1
        assert self.steps < 20000, "run does not end"
        self.clock.advance(rng.random())
        r = rng.random()
        if self.faults and r < 0.05 and core.workers:
            name = rng.choice(sorted(core.workers))
            held = [(eid, a) for (w, eid), a in self.running.items() if w == name]
            for eid, _a in held:
                del self.running[(name, eid)]
            if rng.random() < 0.5:
                core.lost(name)
            else:
                core.leave(name, "goodbye")
            self.apply()
            # a lost worker may come back still holding its evaluations
            report = held if rng.random() < 0.5 else []
            for eid, a in report:
                self.running[(name, eid)] = a
            core.join(name, slots=1 + int(name[1:]) % 2, running=report)
            return
        if self.faults and r < 0.07:
            self.clock.advance(core.settings.eval_timeout + 1.0)
            core.tick()
            return
        assert self.running, "stalled: nothing running"
        key = rng.choice(sorted(self.running))
        attempt = self.running.pop(key)
        w, eid = key
        x = core.view.records[eid].x
        if self.faults and r < 0.17:
            core.partial(w, eid, attempt, objective(x) + 1.0)
            self.running[key] = attempt
        elif self.faults and r < 0.24:
            core.failed(w, eid, attempt, "RuntimeError: boom")
        else:
            core.completed(w, eid, attempt, objective(x))
        core.tick()

    def run(self) -> None:
        while self.core.finished is None:
            self.step()
        self.apply()


def full_run(seed: int = 3, budget: int = 40, faults: bool = True) -> MemoryJournal:
    core, j, clock = started(budget, eval_timeout=30.0, max_retries=1)
    for i in range(3):
        core.join(f"w{i}", slots=1 + i % 2)
    d = Driver(core, clock, seed=seed, faults=faults)
    d.run()
    assert core.view.n_completed == budget
    check_log(j.events)
    return j

