"""``tether log``: summary, best, show, tail, export, plot (argument parsing and dispatch)."""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from tether.errors import LogError
from tether.events import Event, RunStarted
from tether.log.read import stream_events
from tether.log.table import LogTable, Tabulator

EXAMPLES = {
    "summary": """examples:
  tether log summary run.jsonl           counts, best, rate, busy share per worker, failures
  tether log summary run.jsonl --json    the same as one JSON object (for scripts)""",
    "best": """examples:
  tether log best run.jsonl              value  x0=...  x1=...  eval ID on WORKER
  tether log best run.jsonl --json | jq .x""",
    "show": """examples:
  tether log show run.jsonl 42           every event of evaluation 42, partials included
  tether log show run.jsonl 42 --json    the same events as the log's JSON lines""",
    "tail": """examples:
  tether log tail run.jsonl              the last 10 events, one readable line each
  tether log tail -f run.jsonl           ... and every new one as it is written (Ctrl-C ends)
  tether log tail -n 100 --raw run.jsonl | grep failed""",
    "export": """examples:
  tether log export run.jsonl > evals.csv
  tether log export run.jsonl --format json --out evals.json
  python -c "import pandas as pd; print(pd.read_csv('evals.csv').describe())\"""",
    "plot": """examples:
  tether log plot run.jsonl --out run.png                      convergence + worker timeline
  tether log plot run.jsonl --out run.png --panels timeline
  tether log plot run.jsonl --out run.png --panels convergence,timeline,partials
needs matplotlib: pip install 'tether[plot]'""",
}
PANELS = ("convergence", "timeline", "partials")


def _sub(ls: Any, name: str, help_: str) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = ls.add_parser(
        name, help=help_, description=help_, epilog=EXAMPLES[name],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("log", help="the evaluation log (JSON Lines), finished or still growing")
    return p


def add_parser(sub: Any) -> None:
    """Add ``tether log ...`` to the top-level subparsers."""
    lg = sub.add_parser("log", help="read an evaluation log: summary, best, show, tail, export, "
                        "plot", formatter_class=argparse.RawDescriptionHelpFormatter,
                        epilog="examples:\n" + "\n".join(
                            ln for v in EXAMPLES.values() for ln in v.split("\n")[1:2]))
    ls = lg.add_subparsers(dest="log_command", required=True, metavar="COMMAND")
    s = _sub(ls, "summary", "counts per status, best, rate, worker busy share, failures")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    b = _sub(ls, "best", "the best completed evaluation")
    b.add_argument("--json", action="store_true", help="print one JSON object")
    sh = _sub(ls, "show", "every event of one evaluation")
    sh.add_argument("eval_id", type=int, metavar="EVAL_ID")
    sh.add_argument("--json", action="store_true", help="print the log lines themselves")
    t = _sub(ls, "tail", "the last events, readable; -f follows a growing log")
    t.add_argument("-f", "--follow", action="store_true", help="keep printing new events")
    t.add_argument("-n", type=int, default=10, metavar="N", help="events to show first (10)")
    t.add_argument("--raw", action="store_true", help="print the JSON lines unchanged")
    e = _sub(ls, "export", "one row per evaluation as CSV or JSON (stdout by default)")
    e.add_argument("--format", choices=["csv", "json"], default="csv")
    e.add_argument("--out", metavar="FILE", help="write here instead of stdout")
    pl = _sub(ls, "plot", "convergence, worker timeline and partial results as a PNG")
    pl.add_argument("--out", required=True, metavar="FILE.png")
    pl.add_argument("--panels", default="convergence,timeline", metavar="LIST",
                    help=f"comma-separated, from {', '.join(PANELS)} (default: convergence,"
                    "timeline, plus partials when the log has any)")


def checked(path: str | Path) -> Iterator[Event]:
    """The log's events, refusing a file that is not a tether log (exit 2, one line)."""
    events = stream_events(path)
    first = next(events, None)
    if first is None:
        raise LogError(f"{path}: no events (empty, or not a tether log)")
    if not isinstance(first, RunStarted):
        raise LogError(f"{path}: first event is {first.kind}, not run_started: not a tether log")
    return itertools.chain((first,), events)  # no Python frame per event


def load(path: str, keep_partials: bool = False, keep_segments: bool = False) -> LogTable:
    return Tabulator(keep_partials, keep_segments).add_all(checked(path))


def cmd_summary(path: str, as_json: bool = False) -> int:
    from tether.log.summary import format_summary, summary

    s = summary(load(path))
    print(json.dumps({"log": path, **s}) if as_json else format_summary(s, path))
    return 0


def cmd_best(path: str, as_json: bool = False) -> int:
    from tether.log.summary import best_dict, format_best

    b = best_dict(load(path))
    if b is None:
        print(f"tether: {path} has no completed evaluation yet", file=sys.stderr)
        return 1
    print(json.dumps(b) if as_json else format_best(b))
    return 0


@contextlib.contextmanager
def _output(out: str | None) -> Iterator[TextIO]:
    if out is None:
        yield sys.stdout
        return
    with open(out, "w", newline="", encoding="utf-8") as fh:
        yield fh


def cmd_export(path: str, fmt: str, out: str | None) -> int:
    from tether.log.export import write_csv, write_json

    table = load(path)
    with _output(out) as fh:
        (write_json if fmt == "json" else write_csv)(table, fh)
    return 0


def cmd_plot(path: str, out: str, panels: str) -> int:
    from tether.log.plot import plot

    wanted = [p.strip() for p in panels.split(",") if p.strip()]
    bad = [p for p in wanted if p not in PANELS]
    if bad or not wanted:
        raise LogError(f"--panels: unknown panel {', '.join(bad) or '(none)'}; "
                       f"choose from {', '.join(PANELS)}")
    table = load(path, keep_partials=True, keep_segments=True)
    if panels == "convergence,timeline" and table.counts.get("partial"):
        wanted.append("partials")  # the default shows partial curves when there are any
    plot(table, Path(path).name, wanted, out)
    print(out)
    return 0


def _dispatch(a: argparse.Namespace) -> int:
    cmd = a.log_command
    if cmd == "summary":
        return cmd_summary(a.log, a.json)
    if cmd == "best":
        return cmd_best(a.log, a.json)
    if cmd == "show":
        from tether.log.tail import show

        return show(a.log, a.eval_id, a.json)
    if cmd == "tail":
        from tether.log.tail import tail

        return tail(a.log, a.n, a.follow, a.raw)
    if cmd == "export":
        return cmd_export(a.log, a.format, a.out)
    return cmd_plot(a.log, a.out, a.panels)


def run(a: argparse.Namespace) -> int:
    """Run one ``tether log`` command; a reader that goes away (``| head``) is not an error."""
    try:
        code = _dispatch(a)
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        # stdout's reader closed it: stop quietly, and point stdout at /dev/null so the
        # interpreter's own flush at exit does not raise again
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
