"""``tether log tail`` and ``show``: events as lines a person reads."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

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
)
from tether.log.read import decode_line, follow_lines, last_lines, stream_lines


def _g(v: float | None) -> str:
    return "none" if v is None or v != v else f"{v:.6g}"


def _first(text: str) -> str:
    return text.strip().split("\n", 1)[0]


def _run_started(ev: RunStarted) -> str:
    d = ev.data
    strat = d.get("strategy")
    name = strat.get("name") if isinstance(strat, dict) else strat
    space = ", ".join(f"{s.get('name')} [{s.get('low')}, {s.get('high')}]"
                      for s in d.get("space", []) if isinstance(s, dict))
    run: dict[str, Any] = d["run"] if isinstance(d.get("run"), dict) else {}
    text = f"run started: strategy {name}, budget {run.get('budget')}, space {space}"
    if d.get("resumed"):
        text = f"run resumed (replayed {d.get('replayed')} events): strategy {name}, " \
               f"budget {run.get('budget')}"
    return text


def _eval_text(ev: Event) -> str:
    if isinstance(ev, Proposed):
        x = ", ".join(_g(c) for c in ev.x)
        return f"eval {ev.eval_id} proposed [{x}]" + (f" ({ev.tag})" if ev.tag else "")
    if isinstance(ev, Started):
        extra = (f" (attempt {ev.attempt})" if ev.attempt else "") + \
            (" (adopted)" if ev.adopted else "")
        return f"eval {ev.eval_id} started on {ev.worker}{extra}"
    if isinstance(ev, Partial):
        info = "".join(f" {k}={v}" for k, v in ev.info.items())
        return f"eval {ev.eval_id} partial {_g(ev.value)} (step {ev.step}{info}) on {ev.worker}"
    if isinstance(ev, Completed):
        return f"eval {ev.eval_id} completed {_g(ev.value)} on {ev.worker}"
    if isinstance(ev, (Failed, Killed)):
        on = f" on {ev.worker}" if ev.worker else ""
        return f"eval {ev.eval_id} {ev.kind}{on}: {_first(ev.error)}"
    if isinstance(ev, Lost):
        return f"eval {ev.eval_id} lost with {ev.worker} (attempt {ev.attempt}): {ev.reason}"
    if isinstance(ev, Requeued):
        return f"eval {ev.eval_id} requeued (next attempt {ev.attempt}): {ev.reason}"
    return ev.kind


def describe(ev: Event) -> str:
    """One line for one event, without its time."""
    if isinstance(ev, RunStarted):
        return _run_started(ev)
    if isinstance(ev, WorkerJoined):
        return f"worker {ev.worker} joined ({ev.slots} slot{'s' if ev.slots != 1 else ''})"
    if isinstance(ev, WorkerLeft):
        return f"worker {ev.worker} left: {ev.reason}"
    if isinstance(ev, RunFinished):
        x = "" if ev.best_x is None else " at [" + ", ".join(_g(c) for c in ev.best_x) + "]"
        counts = "".join(f", {ev.extra[k]} {k}" for k in ("failed", "killed") if k in ev.extra)
        return f"run finished ({ev.reason}): {ev.completed} completed{counts}; " \
               f"best {_g(ev.best_value)}{x}"
    return _eval_text(ev)


def stamp(t: float) -> str:
    if t != t:
        return "--:--:--.---"
    lt = time.localtime(t)
    return time.strftime("%Y-%m-%d %H:%M:%S", lt) + f".{int((t % 1) * 1000):03d}"


def format_line(ev: Event, seq: int | None) -> str:
    return f"{stamp(ev.t)}  {'' if seq is None else seq:>7}  {describe(ev)}"


def _emit(out: TextIO, raw: bytes, where: str, as_raw: bool) -> None:
    if as_raw:
        out.write(raw.decode("utf-8", errors="replace") + "\n")
        return
    seq, ev = decode_line(raw, where)
    out.write(format_line(ev, seq) + "\n")


def tail(path: str | Path, n: int = 10, follow: bool = False, as_raw: bool = False,
         out: TextIO | None = None, poll: float = 0.25,
         stop: Callable[[], bool] = lambda: False) -> int:
    """Print the last ``n`` events; with ``follow``, keep printing new ones until Ctrl-C."""
    try:
        return _tail(path, n, follow, as_raw, out or sys.stdout, poll, stop)
    except KeyboardInterrupt:
        # Ctrl-C is how a follow ends, wherever it lands (also between two writes):
        # no traceback, exit 0
        if follow:
            return 0
        raise


def _tail(path: str | Path, n: int, follow: bool, as_raw: bool, out: TextIO, poll: float,
          stop: Callable[[], bool]) -> int:
    if follow and not Path(path).exists():
        # started next to a controller that has not written its log yet: wait for it,
        # as `tail -F` does, instead of failing
        print(f"tether: waiting for {path} to appear (Ctrl-C to stop)", file=sys.stderr)
        while not Path(path).exists():
            if stop():
                return 0
            time.sleep(poll)
    lines, offset = last_lines(path, n)
    for i, ln in enumerate(lines):
        try:
            _emit(out, ln, f"{path}", as_raw)
        except LogError:
            if i < len(lines) - 1:
                raise  # a garbled last line is a torn write, as for every reader
    out.flush()
    if not follow:
        return 0
    for ln in follow_lines(path, offset, poll=poll, stop=stop):
        try:
            _emit(out, ln, f"{path}", as_raw)
        except LogError as exc:  # one bad line should not end a follow
            print(f"tether: skipped a line: {exc}", file=sys.stderr)
        out.flush()
    return 0


def show(path: str | Path, eval_id: int, as_json: bool = False,
         out: TextIO | None = None) -> int:
    """Every event of one evaluation, proposal to outcome, partials included."""
    out = out or sys.stdout
    found: list[tuple[bytes, int | None, Event]] = []
    names: list[str] = []
    for raw, seq, ev in stream_lines(path):
        if isinstance(ev, RunStarted) and not names:
            names = [str(s.get("name")) for s in ev.data.get("space", []) if isinstance(s, dict)]
        if getattr(ev, "eval_id", None) == eval_id:
            found.append((raw, seq, ev))
    if not found:
        raise LogError(f"no evaluation {eval_id} in {path}")
    if as_json:
        for raw, _, _ in found:
            out.write(raw.decode("utf-8", errors="replace") + "\n")
        return 0
    out.write(_show_header(eval_id, names, [ev for _, _, ev in found]) + "\n")
    t0 = found[0][2].t
    for _, seq, ev in found:
        rel = ev.t - t0
        out.write(f"  +{rel:9.3f} s  {'' if seq is None else seq:>7}  {describe(ev)}\n")
        if isinstance(ev, (Failed, Killed)) and "\n" in ev.error.strip():
            for ln in ev.error.rstrip().split("\n")[1:]:
                out.write(f"      | {ln}\n")
    return 0


def _show_header(eval_id: int, names: list[str], evs: list[Event]) -> str:
    head: list[Any] = [f"eval {eval_id}"]
    for ev in evs:
        if isinstance(ev, Proposed):
            ns = names if len(names) == len(ev.x) else [f"x{i}" for i in range(len(ev.x))]
            head.append(", ".join(f"{k}={v!r}" for k, v in zip(ns, ev.x)))
            if ev.tag:
                head.append(f"tag {ev.tag}")
    ends = [ev for ev in evs if isinstance(ev, (Completed, Failed, Killed))]
    attempts = sum(isinstance(ev, Started) for ev in evs)
    status: str = ends[-1].kind if ends else ("running" if attempts else "pending")
    if ends and isinstance(ends[-1], Completed):
        status += f" {_g(ends[-1].value)}"
    head.append(f"{status}, {attempts} attempt{'s' if attempts != 1 else ''}")
    head.append(stamp(evs[0].t))
    return "  ".join(head)
