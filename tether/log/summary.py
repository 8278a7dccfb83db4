"""Reading a log into one row per evaluation, and the summaries ``tether log`` prints."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

TERMINAL = ("completed", "failed", "killed")


@dataclass
class EvalRow:
    eval_id: int
    x: list[float]
    status: str = "pending"
    value: float | None = None
    worker: str | None = None
    attempts: int = 1
    error: str | None = None
    partials: list[float] = field(default_factory=list)
    t_proposed: float | None = None
    t_started: float | None = None
    t_finished: float | None = None

    def as_dict(self, names: list[str]) -> dict[str, Any]:
        row: dict[str, Any] = {"eval_id": self.eval_id}
        row.update({n: v for n, v in zip(names, self.x)})
        row.update(status=self.status, value=self.value, worker=self.worker,
                   attempts=self.attempts, partials=len(self.partials),
                   t_proposed=self.t_proposed, t_started=self.t_started,
                   t_finished=self.t_finished,
                   duration=(self.t_finished - self.t_started)
                   if self.t_finished is not None and self.t_started is not None else None,
                   error=self.error)
        return row


@dataclass
class LogTable:
    names: list[str]
    rows: dict[int, EvalRow]
    events: list[dict[str, Any]]

    def best(self) -> EvalRow | None:
        done = [r for r in self.rows.values() if r.status == "completed" and r.value is not None]
        return min(done, key=lambda r: r.value or 0.0) if done else None


def tabulate(events: list[dict[str, Any]]) -> LogTable:
    names: list[str] = []
    rows: dict[int, EvalRow] = {}
    for ev in events:
        kind = ev.get("event")
        if kind == "run_started" and not names:
            names = [str(s.get("name")) for s in ev.get("space", [])]
        if "eval_id" not in ev:
            continue
        eid = int(ev["eval_id"])
        if kind == "proposed":
            rows[eid] = EvalRow(eid, list(ev.get("x", [])), t_proposed=ev.get("t"))
            continue
        row = rows.get(eid)
        if row is None:
            continue
        if kind == "started":
            row.status, row.worker, row.t_started = "running", ev.get("worker"), ev.get("t")
            row.attempts = int(ev.get("attempt", 0)) + 1
        elif kind == "partial":
            row.partials.append(float(ev["value"]))
        elif kind == "requeued":
            row.status = "pending"
        elif kind in TERMINAL:
            row.status, row.t_finished = str(kind), ev.get("t")
            row.worker = ev.get("worker", row.worker)
            row.value = ev.get("value")
            row.error = ev.get("error")
    if not names and rows:
        dim = len(next(iter(rows.values())).x)
        names = [f"x{i}" for i in range(dim)]
    return LogTable(names, rows, events)


def summary(table: LogTable) -> dict[str, Any]:
    counts = Counter(r.status for r in table.rows.values())
    ev_counts = Counter(e.get("event") for e in table.events)
    best = table.best()
    ts = [e["t"] for e in table.events if isinstance(e.get("t"), (int, float))]
    finished = [e for e in table.events if e.get("event") == "run_finished"]
    return {
        "evaluations": len(table.rows),
        "completed": counts.get("completed", 0),
        "failed": counts.get("failed", 0),
        "killed": counts.get("killed", 0),
        "in_flight": counts.get("pending", 0) + counts.get("running", 0),
        "lost": ev_counts.get("lost", 0),
        "requeued": ev_counts.get("requeued", 0),
        "partials": ev_counts.get("partial", 0),
        "workers": len({e.get("worker") for e in table.events if e.get("event") == "worker_joined"}),
        "wall_time": (max(ts) - min(ts)) if ts else 0.0,
        "finished": finished[-1].get("reason") if finished else None,
        "best_value": best.value if best else None,
        "best_x": dict(zip(table.names, best.x)) if best else None,
        "best_eval_id": best.eval_id if best else None,
    }


def format_summary(s: dict[str, Any], path: str) -> str:
    lines = [
        f"log        {path}",
        f"evals      {s['evaluations']} proposed: {s['completed']} completed, {s['failed']} failed, "
        f"{s['killed']} killed, {s['in_flight']} in flight",
        f"faults     {s['lost']} lost, {s['requeued']} requeued",
        f"partials   {s['partials']}",
        f"workers    {s['workers']} joined",
        f"wall time  {s['wall_time']:.1f} s" + (f" (finished: {s['finished']})" if s["finished"] else
                                                 " (not finished)"),
    ]
    if s["best_value"] is not None:
        point = ", ".join(f"{k}={v:.6g}" for k, v in s["best_x"].items())
        lines.append(f"best       {s['best_value']:.6g} at {point} (eval {s['best_eval_id']})")
    else:
        lines.append("best       none completed")
    return "\n".join(lines)

