"""``tether log``: summary, best, show, tail, export, plot."""

from __future__ import annotations

import csv
import json
import sys
import time
from pathlib import Path
from typing import IO, Any

from tether.errors import ConfigError
from tether.log.journal import iter_lines, read_events
from tether.log.summary import format_summary, summary, tabulate


def cmd_summary(path: str, as_json: bool = False) -> int:
    s = summary(tabulate(read_events(path)))
    print(json.dumps(s) if as_json else format_summary(s, path))
    return 0


def cmd_best(path: str) -> int:
    table = tabulate(read_events(path))
    best = table.best()
    if best is None:
        print("no completed evaluation", file=sys.stderr)
        return 1
    point = " ".join(f"{n}={v!r}" for n, v in zip(table.names, best.x))
    print(f"{best.value!r} {point} eval_id={best.eval_id}")
    return 0


def cmd_show(path: str, eval_id: int) -> int:
    events = [e for e in read_events(path) if e.get("eval_id") == eval_id]
    if not events:
        raise ConfigError(f"no evaluation {eval_id} in {path}")
    for e in events:
        print(json.dumps(e))
    return 0


def cmd_tail(path: str, follow: bool, lines: int = 10) -> int:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"no such log: {path}")
    for _, text, _ in list(iter_lines(p))[-lines:]:
        print(text, flush=True)
    if not follow:
        return 0
    with open(p, encoding="utf-8") as fh:
        fh.seek(0, 2)
        buf = ""
        while True:  # like tail -f: poll the file for appended lines
            chunk = fh.read()
            if chunk:
                buf += chunk
                *done, buf = buf.split("\n")
                for ln in done:
                    if ln.strip():
                        print(ln, flush=True)
            else:
                time.sleep(0.2)


def cmd_export(path: str, fmt: str, out: str | None) -> int:
    table = tabulate(read_events(path))
    rows = [r.as_dict(table.names) for r in sorted(table.rows.values(), key=lambda r: r.eval_id)]
    fh: IO[str] = open(out, "w", newline="", encoding="utf-8") if out else sys.stdout  # noqa: SIM115
    try:
        if fmt == "json":
            json.dump(rows, fh, indent=1)
            fh.write("\n")
        else:
            cols = list(rows[0]) if rows else ["eval_id"]
            w = csv.DictWriter(fh, fieldnames=cols)
            w.writeheader()
            w.writerows(rows)
    finally:
        if out:
            fh.close()
    return 0


def cmd_plot(path: str, out: str) -> int:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigError("tether log plot needs matplotlib: pip install 'tether[plot]'") from None
    table = tabulate(read_events(path))
    done = sorted((r for r in table.rows.values() if r.status == "completed"),
                  key=lambda r: r.t_finished or 0.0)
    if not done:
        raise ConfigError(f"{path} has no completed evaluation to plot")
    t0 = min(e["t"] for e in table.events)
    ts = [(r.t_finished or t0) - t0 for r in done]
    vals = [r.value for r in done]
    best: list[Any] = []
    for v in vals:
        best.append(v if not best or v < best[-1] else best[-1])
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    a1.plot(range(1, len(vals) + 1), vals, ".", alpha=0.5, label="value")
    a1.plot(range(1, len(vals) + 1), best, "-", label="best so far")
    a1.set_xlabel("completed evaluations")
    a1.set_ylabel("objective")
    a1.legend()
    a2.step(ts, best, where="post")
    a2.set_xlabel("seconds since start")
    a2.set_ylabel("best so far")
    fig.suptitle(Path(path).name)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    print(out)
    return 0
