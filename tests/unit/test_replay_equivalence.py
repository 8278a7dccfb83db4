"""Live and replayed state cannot drift: the log folded back equals the live core at every seq.

Each seeded run drives the real core through a random fault schedule (workers lost,
leaving, rejoining with or without their work, duplicate outcomes from two attempts,
outcomes for evaluations that already ended, kills and terminations from the strategy,
timeouts, drains, refused dispatches, failures and partials). Every event goes through
the JSON writer and the one parser; after each one, a fresh RunState that has applied
the same prefix must equal the live state on every field of every record and counter.
"""

from __future__ import annotations

import json
import math
import random
from typing import Any

import pytest

from tether.controller.core import ControllerCore, Dispatch, SendKill
from tether.controller.settings import RunSettings
from tether.controller.state import RunState
from tether.events import Event, parse_event, to_json_obj
from tether.records import Evaluate, Kill, Proposal, Record, RunView, Status, Terminate
from tether.space import Space
from tether.strategies.base import Strategy

SPACE = Space(("a", "b"), (0.0, -1.0), (1.0, 1.0))
N_SCHEDULES = 200


class Chaotic(Strategy):
    """Random points, plus kills and (rarely) a termination from ``interrupt``."""

    name = "chaotic"

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def propose(self, view: RunView) -> Proposal | None:
        if self.rng.random() < 0.03:
            return None
        return Evaluate((self.rng.random(), self.rng.uniform(-1, 1)), tag="chaos")

    def interrupt(self, view: RunView) -> Kill | Terminate | None:
        r = self.rng.random()
        if r < 0.02 and view.n_in_flight:
            victim = self.rng.choice(view.pending())
            return Kill(victim.eval_id, "chaos kill")
        if r < 0.0015:
            return Terminate("chaos over")
        return None


class RecordingJournal:
    """Writes each event as a JSON line and keeps the live state seen right after it."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.live: list[dict[str, Any]] = []
        self.core: ControllerCore | None = None

    def append(self, ev: Event) -> None:
        self.lines.append(json.dumps(to_json_obj(ev, len(self.lines)), allow_nan=False))
        assert self.core is not None
        self.live.append(self.core.state.snapshot())


class Clock:
    def __init__(self) -> None:
        self.t = 1_700_000_000.0

    def __call__(self) -> float:
        return self.t


def run_schedule(seed: int) -> RecordingJournal:
    rng = random.Random(seed)
    clock = Clock()
    journal = RecordingJournal()
    settings = RunSettings(budget=rng.randint(5, 30), eval_timeout=20.0,
                           max_retries=rng.randint(0, 2), max_failures=1000)
    core = ControllerCore(SPACE, Chaotic(seed), settings, journal, clock)
    journal.core = core
    core.start()
    held: dict[tuple[str, int], int] = {}  # (worker, eval_id) -> attempt, as workers see it
    names = [f"w{i}" for i in range(rng.randint(1, 4))]
    for name in names:
        core.join(name, slots=rng.randint(1, 3))
    for _ in range(3000):
        _obey(core, held, rng)
        if core.finished is not None:
            break
        clock.t += rng.expovariate(1.0)
        _fault_or_outcome(core, held, rng, names)
        core.tick()
    return journal


def _obey(core: ControllerCore, held: dict[tuple[str, int], int], rng: random.Random) -> None:
    for cmd in core.take_commands():
        if isinstance(cmd, Dispatch):
            if rng.random() < 0.03:  # the transport could not deliver it
                core.dispatch_failed(cmd.worker, cmd.eval_id, cmd.attempt)
            else:
                held[(cmd.worker, cmd.eval_id)] = cmd.attempt
        elif isinstance(cmd, SendKill) and held.pop((cmd.worker, cmd.eval_id), None) is not None:
            core.killed(cmd.worker, cmd.eval_id, cmd.attempt, cmd.reason)


def _fault_or_outcome(core: ControllerCore, held: dict[tuple[str, int], int],
                      rng: random.Random, names: list[str]) -> None:
    r = rng.random()
    name = rng.choice(names)
    mine = [(eid, a) for (w, eid), a in held.items() if w == name]
    if r < 0.04:  # the worker goes: lost or goodbye; half the time it comes back with its work
        for eid, _a in mine:
            del held[(name, eid)]
        how = rng.random()
        if how < 0.4:
            core.lost(name)
        elif how < 0.8:
            core.leave(name, "goodbye")
        # else: it reconnects without saying goodbye (a network blip)
        report = mine if rng.random() < 0.5 else []
        for eid, a in report:
            held[(name, eid)] = a
        core.join(name, slots=rng.randint(0, 3), running=report)
    elif r < 0.06:
        core.drain(name)
    elif r < 0.08 and core.view.records:  # a stale or duplicate outcome for any evaluation
        eid = rng.choice(list(core.view.records))
        core.completed(name, eid, 0, rng.random())
    elif r < 0.10:  # time passes: timeouts fire
        core.clock.t += 25.0  # type: ignore[attr-defined]
    elif mine:
        eid, a = rng.choice(mine)
        _outcome(core, held, rng, name, eid, a)


def _outcome(core: ControllerCore, held: dict[tuple[str, int], int], rng: random.Random,
             name: str, eid: int, a: int) -> None:
    r = rng.random()
    if r < 0.3:
        value = rng.random() if rng.random() < 0.95 else math.nan
        core.partial(name, eid, a, value, {"epoch": rng.randint(0, 9)})
        return
    del held[(name, eid)]
    if r < 0.8:
        core.completed(name, eid, a, rng.uniform(-5, 5) if rng.random() < 0.97 else math.inf)
    elif r < 0.95:
        core.failed(name, eid, a, "boom")
    else:
        core.killed(name, eid, a, "worker killed it")


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, Record) and isinstance(b, Record):
        return all(_same(getattr(a, f), getattr(b, f)) for f in Record.__slots__)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return bool(a == b)


@pytest.mark.parametrize("block", range(N_SCHEDULES // 25))
def test_replayed_prefix_equals_live_state_at_every_seq(block: int) -> None:
    kinds: set[str] = set()
    for seed in range(block * 25, (block + 1) * 25):
        journal = run_schedule(seed)
        folded = RunState(SPACE, 0)
        for seq, line in enumerate(journal.lines):
            ev = parse_event(json.loads(line), f"seed {seed} seq {seq}")
            kinds.add(ev.kind)
            folded.apply(ev)
            want, got = journal.live[seq], folded.snapshot()
            for key in want:
                assert _same(want[key], got[key]), (seed, seq, key, want[key], got[key])
    # the schedules really exercise every event kind and the fault paths
    assert kinds >= {"run_started", "proposed", "started", "partial", "completed", "failed",
                     "killed", "lost", "requeued", "worker_joined", "worker_left",
                     "run_finished"}


def test_fault_paths_are_reached() -> None:
    reasons: set[str] = set()
    adopted = 0
    for seed in range(40):
        for line in run_schedule(seed).lines:
            e = json.loads(line)
            reasons.add(str(e.get("reason", e.get("error", ""))).split(" (")[0])
            adopted += bool(e.get("adopted"))
    assert {"worker lost", "dispatch refused by the transport", "chaos kill", "goodbye",
            "boom", "lost", "reconnected"} <= reasons
    assert any(r.startswith("eval_timeout") for r in reasons)
    assert adopted > 0


def test_a_resumed_core_replays_into_the_same_state() -> None:
    for seed in range(20):
        journal = run_schedule(seed)
        cut = len(journal.lines) // 2
        core = ControllerCore(SPACE, Chaotic(seed), RunSettings(budget=30), RecordingJournal(),
                              Clock())
        core.replay(json.loads(line) for line in journal.lines[:cut])
        got = core.state.snapshot()
        for key, value in journal.live[cut - 1].items():
            assert _same(value, got[key]), (seed, key)
        assert all(r.status in (Status.PENDING, Status.RUNNING) for r in core.view.pending())
