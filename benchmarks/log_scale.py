#!/usr/bin/env python3
"""Large evaluation logs: write rate, ``--resume``, ``tether log summary`` and ``export``.

Reproduce (from the repository root)::

    PYTHONPATH=$PWD .venv/bin/python benchmarks/log_scale.py --json out.json
    PYTHONPATH=$PWD .venv/bin/python benchmarks/log_scale.py --quick          # smoke run
    PYTHONPATH=$PWD .venv/bin/python benchmarks/log_scale.py --replay-only    # in-process

1. **Generate** a log in the contract format (DESIGN.md, "Evaluation log") through
   ``tether.log.journal.JournalWriter``: ``--evaluations`` (default 250,000) evaluations
   of 2 variables, each ``proposed``, ``started``, one ``partial`` and ``completed``
   (1,000,000 evaluation events), 16 workers with 16 evaluations in flight, between a
   ``run_started`` made by the controller's own ``run_info`` (so the log explains itself
   exactly like a real one) and a ``run_finished`` (reason ``budget``). One ``flush``
   per evaluation, about what one controller loop turn writes. The write rate is events
   per second of that loop, formatting included.
2. **Baseline**: a plain standard-library loop, ``json.loads`` on every line of the same
   file (nothing kept), in a fresh process.
3. ``tether log summary LOG`` and ``tether log export LOG --out F.csv``: wall time, CPU time
   and peak RSS of the process (``ru_maxrss`` from ``wait4``; it starts at the size of this
   script's process, about 45 MB, which the child inherits through the spawn).
4. ``tether controller --resume --log COPY --budget EVALUATIONS+1 --bind
   tcp://127.0.0.1:0 --address-file F`` on a fresh copy of the log (the budget one above
   the finished run's, so it carries on instead of saying it finished): time to the
   address file (it is listening), time until its resumed ``run_started`` reaches the log
   (the replay is over and it serves), and peak RSS then (``VmHWM`` in
   ``/proc/PID/status``); then its process group is killed.

Steps 2-4 are repeated ``--repeats`` times, interleaved; the report gives median and range.

``--replay-only`` times an in-process replay instead: the streamed events of the file
folded into a fresh controller core (:func:`replay`), with peak RSS of the process.

    --evaluations N   --log PATH (reuse, or generate there)   --repeats R   --quick
    --replay-only   --check (run checklog.py on the generated log)   --json OUT   --keep DIR
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import platform
import random
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from procs import kill_all, kill_group, spawn  # benchmarks/procs.py, a sibling

# the repository's own log-contract checker, as a command
_REPO_CHECKER = str(Path(__file__).resolve().parent.parent / "tests" / "contract.py")
CHECKLOG = Path(os.environ.get("TETHER_CHECKLOG", _REPO_CHECKER))
WORKERS = 16

CONFIG: dict[str, Any] = {
    "space": {"x0": [0.0, 1.0], "x1": [0.0, 1.0]},
    "strategy": {"name": "random", "seed": 0},
    "run": {"bind": "tcp://127.0.0.1:0", "log": "run.jsonl"},
}


class BenchError(Exception):
    """Something the benchmark cannot carry on from."""


# --------------------------------------------------------------------------- processes

def _on_sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def timed(cmd: list[str], out: Path, timeout: float) -> dict[str, float]:
    """Run ``cmd`` to its end: wall seconds, CPU seconds and peak RSS (MB) of the process."""
    t0 = time.perf_counter()
    proc = spawn(cmd, out)
    try:
        while True:
            pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                proc.returncode = os.waitstatus_to_exitcode(status)
                break
            if time.perf_counter() - t0 > timeout:
                raise BenchError(f"{' '.join(cmd[:5])}... still running after {timeout:.0f} s")
            time.sleep(0.005)
    finally:
        kill_group(proc, grace=0)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise BenchError(f"{' '.join(cmd)} exited {proc.returncode}:\n{out.read_text()[-2000:]}")
    return {"s": wall, "cpu_s": ru.ru_utime + ru.ru_stime, "rss_mb": ru.ru_maxrss / 1024}


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) of a live process so far."""
    with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
        stat = fh.read()
    rest = stat[stat.rindex(")") + 2:].split()
    return (int(rest[11]) + int(rest[12])) / os.sysconf("SC_CLK_TCK")


def vm_hwm_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return math.nan


# --------------------------------------------------------------------------- generate

def run_started_info() -> dict[str, Any]:
    """``run_started`` fields exactly as ``tether controller`` writes them."""
    from tether.controller.daemon import run_info
    from tether.controller.settings import parse_config

    config = parse_config(json.loads(json.dumps(CONFIG)))
    return run_info(config)


def _put(j: Any, kind: str, t: float, **fields: Any) -> None:
    """Write one event through the typed event model, as the controller does."""
    from tether.events import parse_event

    j.append(parse_event({"event": kind, "t": t, **fields}))


def generate(path: Path, evaluations: int) -> dict[str, Any]:
    """Write the log through JournalWriter; return the write figures."""
    from tether.log.journal import JournalWriter

    info = run_started_info()
    info["run"]["budget"] = evaluations
    info["run"]["log"] = str(path)
    rnd = random.Random(1)
    t = time.time() - 86_400.0
    if path.exists():
        path.unlink()
    j = JournalWriter(path)
    clock = time.perf_counter
    t0 = clock()
    _put(j, "run_started", t, **info)
    for w in range(WORKERS):
        _put(j, "worker_joined", t, worker=f"w{w}", slots=1)
    j.flush()
    best = (math.inf, [0.0, 0.0])
    xs: dict[int, list[float]] = {}

    def finish(eid: int, now: float) -> None:
        nonlocal best
        x = xs.pop(eid)
        value = x[0] + x[1]
        worker = f"w{eid % WORKERS}"
        _put(j, "partial", now, eval_id=eid, worker=worker, value=value + 0.5, step=0)
        _put(j, "completed", now, eval_id=eid, worker=worker, value=value)
        if value < best[0]:
            best = (value, x)

    for eid in range(evaluations):
        t += 1e-3
        x = [rnd.random(), rnd.random()]
        xs[eid] = x
        _put(j, "proposed", t, eval_id=eid, x=x)
        _put(j, "started", t, eval_id=eid, worker=f"w{eid % WORKERS}", attempt=0)
        if eid >= WORKERS:
            finish(eid - WORKERS, t)
        j.flush()  # one flush per loop turn
    for eid in sorted(xs):
        t += 1e-3
        finish(eid, t)
        j.flush()
    _put(j, "run_finished", t, reason="budget", completed=evaluations, best_value=best[0],
             best_x=best[1])
    j.close()
    wall = clock() - t0
    events = j.seq
    size = path.stat().st_size
    return {"events": events, "bytes": size, "write_s": wall, "events_per_s": events / wall,
            "mb_per_s": size / wall / 1e6, "flushes": evaluations + WORKERS + 2}


def write_rate_fsync(path: Path, evaluations: int) -> dict[str, Any]:
    """The same loop with ``fsync=True`` (power-loss durability), on a small log."""
    from tether.log.journal import JournalWriter

    j = JournalWriter(path, fsync=True)
    clock = time.perf_counter
    t0 = clock()
    for eid in range(evaluations):
        _put(j, "proposed", 0.0, eval_id=eid, x=[0.5, 0.5])
        _put(j, "started", 0.0, eval_id=eid, worker="w0", attempt=0)
        _put(j, "partial", 0.0, eval_id=eid, worker="w0", value=1.0, step=0)
        _put(j, "completed", 0.0, eval_id=eid, worker="w0", value=1.0)
        j.flush()
    j.close()
    wall = clock() - t0
    path.unlink()
    return {"events": 4 * evaluations, "write_s": wall, "events_per_s": 4 * evaluations / wall,
            "flushes_per_s": evaluations / wall}


# --------------------------------------------------------------------------- measured steps

def json_loop(a: argparse.Namespace) -> int:
    """The baseline: stdlib json.loads over every line, nothing kept."""
    loads = json.loads
    n = 0
    with open(a.path, "rb") as fh:
        for line in fh:
            if line.strip():
                loads(line)
                n += 1
    # VmHWM of this process's own memory: wait4's ru_maxrss starts at the parent's size
    print(json.dumps({"lines": n, "rss_mb": vm_hwm_mb(os.getpid())}))
    return 0


def replay(path: Path) -> dict[str, Any]:
    """Stream a log into a fresh controller core, as ``--resume`` does.

    This is the one place that knows the replay API: ``scan_log`` (one cheap pass for
    the configuration and the event count), then ``ControllerCore.resume`` over the
    streamed typed events (``iter_events``), holding nothing per event.
    """
    from tether.controller.core import ControllerCore
    from tether.controller.daemon import config_from_log, run_info, scan_log
    from tether.log.journal import MemoryJournal, iter_events
    from tether.strategies import create

    clock = time.perf_counter
    t0 = clock()
    head = scan_log(str(path))
    t_read = clock() - t0
    config = config_from_log(head)
    strategy = create(config.strategy, config.space, config.run.budget + 1, config.strategy_options)
    core = ControllerCore(config.space, strategy, config.run, MemoryJournal(), time.time,
                          run_info(config))
    t1 = clock()
    n = core.resume(iter_events(path), config.run.resume_grace)
    t_replay = clock() - t1
    return {"events": n, "read_s": t_read, "replay_s": t_replay, "total_s": t_read + t_replay,
            "completed": core.view.n_completed}


def replay_role(a: argparse.Namespace) -> int:
    r = replay(Path(a.path))
    ru = resource.getrusage(resource.RUSAGE_SELF)
    r["rss_mb"] = ru.ru_maxrss / 1024
    r["process_cpu_s"] = ru.ru_utime + ru.ru_stime
    print(json.dumps(r))
    return 0


def resume(log: Path, work: Path, tag: str, evaluations: int, timeout: float) -> dict[str, Any]:
    copy = work / f"{tag}.jsonl"
    shutil.copyfile(log, copy)
    size0 = copy.stat().st_size
    addr = work / f"{tag}.address"
    cmd = [sys.executable, "-m", "tether", "controller", "--resume", "--log", str(copy),
           "--budget", str(evaluations + 1), "--bind", "tcp://127.0.0.1:0", "--address-file", str(addr)]
    out = work / f"{tag}.out"
    clock = time.perf_counter
    t0 = clock()
    proc = spawn(cmd, out)
    t_listen = t_ready = math.nan
    hwm = cpu = math.nan
    try:
        with open(copy, "rb") as fh:
            while True:
                now = clock()
                if now - t0 > timeout:
                    raise BenchError(f"--resume not ready after {timeout:.0f} s:\n{out.read_text()[-2000:]}")
                if proc.poll() is not None:
                    raise BenchError(f"--resume exited {proc.returncode}:\n{out.read_text()[-2000:]}")
                if math.isnan(t_listen) and addr.exists():
                    t_listen = now - t0
                if math.isnan(t_ready) and os.path.getsize(copy) > size0:
                    fh.seek(size0)
                    if b'"resumed":true' in fh.read():
                        t_ready = clock() - t0
                        hwm = vm_hwm_mb(proc.pid)
                        cpu = proc_cpu(proc.pid)
                # both, in either order: the address file is renamed into place a few
                # milliseconds after the resumed event, and stopping between the two
                # left "listening" unmeasured
                if not math.isnan(t_ready) and not math.isnan(t_listen):
                    break
                time.sleep(0.005)
    finally:
        kill_group(proc, grace=0)
        copy.unlink(missing_ok=True)
    return {"listening_s": t_listen, "ready_s": t_ready, "rss_mb": hwm, "cpu_s": cpu}


# --------------------------------------------------------------------------- report

def summ(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def cell(s: dict[str, float], digits: int = 1) -> str:
    return f"{s['median']:,.{digits}f} ({s['min']:,.{digits}f}–{s['max']:,.{digits}f})"


def table(res: dict[str, Any]) -> str:
    rows = ["| step | wall s | CPU s | peak RSS, MB | wall vs json.loads loop | CPU vs loop |",
            "|---|---:|---:|---:|---:|---:|"]
    base = res["summary"].get("json_loads", {}).get("s")
    base_cpu = res["summary"].get("json_loads", {}).get("cpu_s")
    labels = {"json_loads": "stdlib `json.loads` loop (baseline)", "summary": "`tether log summary`",
              "export": "`tether log export --out F.csv`",
              "resume_listening": "`tether controller --resume`: address file written",
              "resume_ready": "`tether controller --resume`: replayed, resumed `run_started` logged",
              "replay": "in-process `read_events` + `ControllerCore.resume`"}
    for key, label in labels.items():
        s = res["summary"].get(key)
        if not s:
            continue
        ratio = f"{s['s']['median'] / base['median']:.2f}x" if base else "—"
        cpu = cell(s["cpu_s"], 2) if "cpu_s" in s else "—"
        cratio = f"{s['cpu_s']['median'] / base_cpu['median']:.2f}x" if base_cpu and "cpu_s" in s else "—"
        rss = cell(s["rss_mb"], 0) if "rss_mb" in s else "—"
        rows.append(f"| {label} | {cell(s['s'], 2)} | {cpu} | {rss} | {ratio} | {cratio} |")
    return "\n".join(rows)


# --------------------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--evaluations", type=int, default=250_000,
                    help="evaluations in the log, 4 events each (default 250,000: 1,000,000 events)")
    ap.add_argument("--log", metavar="PATH", help="use this log if it exists, else generate it there")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="smoke run: --evaluations 25000 --repeats 1")
    ap.add_argument("--replay-only", action="store_true", help="only time an in-process replay")
    ap.add_argument("--check", action="store_true", help="run checklog.py on the log first")
    ap.add_argument("--fsync-evaluations", type=int, default=2000,
                    help="evaluations written with fsync=True to time that mode (0: skip)")
    ap.add_argument("--timeout", type=float, default=600.0, help="per-step timeout in seconds")
    ap.add_argument("--json", metavar="OUT")
    ap.add_argument("--keep", metavar="DIR", help="work in DIR and keep it (default: a temp dir)")
    ap.add_argument("--report", metavar="JSON", help="only print the table of an earlier run's --json")
    ap.add_argument("--_role", choices=["json-loop", "replay"], help=argparse.SUPPRESS)
    ap.add_argument("--_path", dest="path", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a._role == "json-loop":
        return json_loop(a)
    if a._role == "replay":
        return replay_role(a)
    if a.report:
        print(table(json.loads(Path(a.report).read_text())))
        return 0
    if a.quick:
        a.evaluations, a.repeats = 25_000, 1

    signal.signal(signal.SIGTERM, _on_sigterm)
    work = Path(a.keep or tempfile.mkdtemp(prefix="tether-logscale-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    log = Path(a.log).resolve() if a.log else work / "big.jsonl"
    import zmq

    res: dict[str, Any] = {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "nproc": os.cpu_count(), "loadavg_start": os.getloadavg(), "python": platform.python_version(),
        "platform": platform.platform(), "pyzmq": zmq.pyzmq_version(), "libzmq": zmq.zmq_version(),
        "command": " ".join([Path(sys.executable).name, *sys.argv]), "evaluations": a.evaluations,
        "repeats": a.repeats, "runs": {}, "summary": {},
    }
    ok = False
    me = [sys.executable, str(Path(__file__).resolve())]
    try:
        if log.exists():
            res["log"] = {"reused": str(log), "bytes": log.stat().st_size}
        else:
            g = generate(log, a.evaluations)
            res["write"] = g
            print(f"generated {g['events']:,} events, {g['bytes'] / 1e6:,.0f} MB in {g['write_s']:.1f} s: "
                  f"{g['events_per_s']:,.0f} events/s, {g['mb_per_s']:.1f} MB/s "
                  f"(JournalWriter, one flush per evaluation)", file=sys.stderr)
        if a.fsync_evaluations > 0 and not a.replay_only:
            f = write_rate_fsync(work / "fsync.jsonl", a.fsync_evaluations)
            res["write_fsync"] = f
            print(f"fsync=True: {f['events_per_s']:,.0f} events/s ({f['flushes_per_s']:,.0f} flushes/s)",
                  file=sys.stderr)
        if a.check:
            chk = subprocess.run([sys.executable, str(CHECKLOG), str(log), "--completed",
                                  str(a.evaluations)], capture_output=True, text=True, timeout=a.timeout)
            if chk.returncode != 0:
                raise BenchError(f"checklog failed on {log}:\n{chk.stdout}{chk.stderr}")
            res["checklog"] = chk.stdout.strip()
            print(f"checklog: {chk.stdout.strip()}", file=sys.stderr)
        steps = ["json_loads", "replay"] if a.replay_only else ["json_loads", "summary", "export", "resume"]
        runs: dict[str, list[dict[str, float]]] = {k: [] for k in steps}
        for rep in range(a.repeats):
            for step in steps:
                out = work / f"{step}-r{rep}.out"
                if step == "json_loads":
                    r = timed(me + ["--_role", "json-loop", "--_path", str(log)], out, a.timeout)
                    r["rss_mb"] = json.loads(out.read_text().strip().splitlines()[-1])["rss_mb"]
                elif step == "summary":
                    r = timed([sys.executable, "-m", "tether", "log", "summary", str(log)], out, a.timeout)
                elif step == "export":
                    csv = work / "export.csv"
                    r = timed([sys.executable, "-m", "tether", "log", "export", str(log), "--out", str(csv)],
                              out, a.timeout)
                    csv.unlink(missing_ok=True)
                elif step == "replay":
                    timed(me + ["--_role", "replay", "--_path", str(log)], out, a.timeout)
                    r = json.loads(out.read_text().strip().splitlines()[-1])
                    r["s"] = r["total_s"]
                else:
                    r = resume(log, work, f"resume-r{rep}", a.evaluations, a.timeout)
                runs[step].append(r)
                shown = ", ".join(f"{k} {v:,.2f}" for k, v in r.items() if isinstance(v, float))
                print(f"rep {rep + 1}/{a.repeats} {step}: {shown}", file=sys.stderr)
        res["runs"] = runs
        for step, rs in runs.items():
            if step == "resume":
                res["summary"]["resume_listening"] = {"s": summ([r["listening_s"] for r in rs])}
                res["summary"]["resume_ready"] = {"s": summ([r["ready_s"] for r in rs]),
                                                  "rss_mb": summ([r["rss_mb"] for r in rs])}
                if "cpu_s" in rs[0]:
                    res["summary"]["resume_ready"]["cpu_s"] = summ([r["cpu_s"] for r in rs])
            else:
                res["summary"][step] = {"s": summ([r["s"] for r in rs])}
                for k in ("rss_mb", "cpu_s"):
                    if k in rs[0]:
                        res["summary"][step][k] = summ([r[k] for r in rs])
        res["loadavg_end"] = os.getloadavg()
        md = table(res)
        res["table_md"] = md
        print(md)
        if a.json:
            Path(a.json).write_text(json.dumps(res, indent=2) + "\n")
        ok = True
    except BenchError as exc:
        print(f"\nBENCHMARK FAILED: {exc}\n(outputs kept in {work})", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\ninterrupted; outputs kept in {work}", file=sys.stderr)
        return 130
    finally:
        kill_all(grace=0)
        if ok and not a.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
