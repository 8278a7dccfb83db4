"""What ``tether log summary`` and ``best`` say about a run, as a dict and as text."""

from __future__ import annotations

from collections import Counter
from typing import Any

from tether.log.table import EvalRow, LogTable, Tabulator, tabulate

__all__ = ["EvalRow", "LogTable", "Tabulator", "best_dict", "format_best", "format_summary",
           "summary", "tabulate"]

TOP_ERRORS = 10  # error groups listed; the rest are counted together


def _first_line(text: str | None) -> str:
    return (text or "").strip().split("\n", 1)[0].strip() or "(no message)"


def _groups(rows: list[EvalRow]) -> list[dict[str, Any]]:
    """Evaluations grouped by the first line of their error, most frequent first."""
    counts: Counter[str] = Counter()
    first: dict[str, list[int]] = {}
    for r in rows:
        key = _first_line(r.error)
        counts[key] += 1
        ids = first.setdefault(key, [])
        if len(ids) < 3:
            ids.append(r.eval_id)
    return [{"error": k, "count": n, "eval_ids": first[k]} for k, n in counts.most_common()]


def _workers(table: LogTable) -> dict[str, dict[str, Any]]:
    out = {}
    for name in sorted(table.workers):
        w = table.workers[name]
        capacity = w.connected * w.slots
        out[name] = {"attempts": w.attempts, "slots": w.slots, "busy_s": round(w.busy, 3),
                     "connected_s": round(w.connected, 3),
                     "busy_share": round(min(1.0, w.busy / capacity), 4) if capacity > 0 else None}
    return out


def best_dict(table: LogTable) -> dict[str, Any] | None:
    best = table.best()
    if best is None:
        return None
    return {"eval_id": best.eval_id, "value": best.value, "x": dict(zip(table.names, best.x)),
            "worker": best.worker, "duration": best.duration, "end": best.t_finished}


def summary(table: LogTable) -> dict[str, Any]:
    """The summary of a (finished or growing) log as one JSON-able dict."""
    rows = list(table.rows.values())
    status = Counter(r.status for r in rows)
    c = table.counts
    best = table.best()
    wall = table.wall_time
    fin = table.finished
    busy = sum(w.busy for w in table.workers.values())
    capacity = sum(w.connected * w.slots for w in table.workers.values())
    done = status.get("completed", 0)
    return {
        "strategy": table.strategy,
        "events": sum(c.values()),
        "event_counts": dict(c),
        "evaluations": len(rows),
        "completed": done,
        "failed": status.get("failed", 0),
        "killed": status.get("killed", 0),
        "running": status.get("running", 0),
        "pending": status.get("pending", 0),
        "in_flight": status.get("pending", 0) + status.get("running", 0),
        "lost": c.get("lost", 0),
        "requeued": c.get("requeued", 0),
        "partials": c.get("partial", 0),
        "workers": len(table.workers),
        "resumes": table.resumes,
        "wall_time": wall,
        "evals_per_hour": round(done * 3600.0 / wall, 3) if wall > 0 else None,
        "utilization": round(min(1.0, busy / capacity), 4) if capacity > 0 else None,
        "finished": fin.reason if fin else None,
        "run_finished": dict(fin.extra) if fin else None,
        "best_value": best.value if best else None,
        "best_x": dict(zip(table.names, best.x)) if best else None,
        "best_eval_id": best.eval_id if best else None,
        "best_worker": best.worker if best else None,
        "busy": _workers(table),
        "failures": _groups([r for r in rows if r.status == "failed"]),
        "kills": _groups([r for r in rows if r.status == "killed"]),
    }


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


def _finished_extra(s: dict[str, Any]) -> list[str]:
    """Counters and messages the controller added to run_finished (refused, dropped, ...)."""
    extra = dict(s.get("run_finished") or {})
    extra.pop("failed", None)
    extra.pop("killed", None)
    tb = extra.pop("traceback", None)
    lines = [f"run_finished {k}: {v}" for k, v in sorted(extra.items())]
    if tb:
        last = [ln for ln in str(tb).strip().split("\n") if ln.strip()]
        lines.append(f"strategy error: {last[-1].strip() if last else ''}")
    return lines


def _error_lines(title: str, groups: list[dict[str, Any]]) -> list[str]:
    if not groups:
        return []
    out = [f"{title} by message:"]
    for g in groups[:TOP_ERRORS]:
        ids = ", ".join(str(i) for i in g["eval_ids"])
        out.append(f"  {g['count']:>6}  {g['error'][:100]}  (e.g. eval {ids})")
    rest = sum(g["count"] for g in groups[TOP_ERRORS:])
    if rest:
        out.append(f"  {rest:>6}  ... {len(groups) - TOP_ERRORS} other messages")
    return out


def format_summary(s: dict[str, Any], path: str) -> str:
    """The summary as a person reads it in a terminal."""
    finished = f"finished: {s['finished']}" if s["finished"] else "not finished"
    rate = f", {s['evals_per_hour']:.1f} completed/hour" if s["evals_per_hour"] else ""
    lines = [
        f"log          {path}" + (f"  (strategy {s['strategy']})" if s["strategy"] else ""),
        f"evaluations  {s['evaluations']} proposed: {s['completed']} completed, {s['failed']} "
        f"failed, {s['killed']} killed, {s['in_flight']} in flight",
        f"faults       {s['lost']} lost, {s['requeued']} requeued" +
        (f", {s['resumes']} controller restarts" if s["resumes"] else ""),
        f"partials     {s['partials']}",
        f"wall time    {_duration(s['wall_time'])} ({finished}){rate}",
    ]
    if s["best_value"] is not None:
        point = ", ".join(f"{k}={v:.6g}" for k, v in s["best_x"].items())
        lines.append(f"best         {s['best_value']:.6g} at {point} (eval {s['best_eval_id']}, "
                     f"worker {s['best_worker']})")
    else:
        lines.append("best         none completed")
    util = f", busy {100 * s['utilization']:.0f} % of the time they were connected" \
        if s["utilization"] is not None else ""
    lines.append(f"workers      {s['workers']}{util}")
    for name, w in s["busy"].items():
        share = "-" if w["busy_share"] is None else f"{100 * w['busy_share']:.0f} %"
        slots = f" x{w['slots']} slots" if w["slots"] > 1 else ""
        lines.append(f"  {name:<24} busy {share:>5}  {w['attempts']:>6} attempts  "
                     f"{_duration(w['busy_s'])} of {_duration(w['connected_s'])}{slots}")
    lines += _error_lines("failures", s["failures"])
    lines += _error_lines("kills", s["kills"])
    lines += _finished_extra(s)
    return "\n".join(lines)


def format_best(b: dict[str, Any]) -> str:
    point = "  ".join(f"{k}={v!r}" for k, v in b["x"].items())
    dur = "" if b["duration"] is None else f"  ({b['duration']:.3g} s)"
    return f"{b['value']!r}  {point}  eval {b['eval_id']} on {b['worker']}{dur}"
