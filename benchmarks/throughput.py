#!/usr/bin/env python3
"""End-to-end throughput of tether: evaluations per second with a trivial objective.

For each worker count N (``--workers 1 4 16``) this starts the real controller process
(``python -m tether controller CONFIG --address-file F``, strategy ``random``) and N real
worker processes (``python -m tether worker --address-file F --python
tether.problems:trivial``), waits for the budget to complete, checks the log with
``/work/shared/contract/checklog.py --completed BUDGET`` (a failure aborts the benchmark)
and measures the rate *from the log itself*: completions after the first 10 % (warm-up)
divided by the time from the 10 %-th completion to the last one, so process start-up is
excluded. Wall time (controller launch to controller exit) is reported too.

In the same run it measures a ceiling for this machine, now: a raw pyzmq ROUTER process
and N DEALER client processes playing closed-loop ping-pong with msgpack encode/decode
only (no tether), and reports tether / ceiling.

Budgets: a pilot run per N estimates the rate, then the budget is chosen so the measured
part lasts about ``--seconds``. Configurations are interleaved across repeats (1, 4, 16,
1, 4, 16, ...) so slow phases of a shared machine hit all of them alike.

    python benchmarks/throughput.py [--workers 1 4 16] [--seconds 6] [--repeats 3]
                                    [--json OUT] [--budget N] [--keep DIR] [--no-ceiling]
                                    [--cprofile OUT.prof | --py-spy OUT.raw]

Every subprocess runs in its own process group with a timeout; all groups are killed on
failure, timeout or Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import json
import math
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

CHECKLOG = Path(os.environ.get("TETHER_CHECKLOG", "/work/shared/contract/checklog.py"))
OBJECTIVE = "tether.problems:trivial"
WARMUP_FRACTION = 0.10
TARGET_16 = 20_000  # product target, evals/s at 16 workers (issue on performance)


class BenchError(Exception):
    """Something the benchmark cannot carry on from (a failed process, a bad log)."""


# --------------------------------------------------------------------------- processes

_LIVE: list[subprocess.Popen[bytes]] = []


def spawn(cmd: list[str], out: Path, cwd: Path) -> subprocess.Popen[bytes]:
    """Start ``cmd`` in its own process group, stdout+stderr to ``out``."""
    with open(out, "wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=cwd, start_new_session=True)
    _LIVE.append(proc)
    return proc


def kill_group(proc: subprocess.Popen[bytes], grace: float = 2.0) -> None:
    """SIGTERM the process's group, then SIGKILL it after ``grace`` seconds; reap."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace)
    # the leader may be gone while its children (e.g. evaluation child) live on
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)
    if proc in _LIVE:
        _LIVE.remove(proc)


def kill_all() -> None:
    for proc in list(_LIVE):
        kill_group(proc, grace=1.0)


def wait_for(proc: subprocess.Popen[bytes], deadline: float, what: str, out: Path) -> int:
    """Wait until ``proc`` exits or ``deadline`` (monotonic) passes; raise on timeout."""
    try:
        return proc.wait(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        raise BenchError(f"{what} still running at its timeout; output in {out}:\n{tail(out)}") from None


def wait_rusage(proc: subprocess.Popen[bytes], deadline: float, what: str,
                out: Path) -> tuple[int, float]:
    """Like :func:`wait_for`, also returning the process's own CPU seconds (user + sys)."""
    while True:
        pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return proc.returncode, ru.ru_utime + ru.ru_stime
        if time.monotonic() > deadline:
            raise BenchError(f"{what} still running at its timeout; output in {out}:\n{tail(out)}")
        time.sleep(0.02)


def tail(path: Path, n: int = 15) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no output)"
    return "\n".join("    " + line for line in lines[-n:])


def _on_sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


# --------------------------------------------------------------------------- tether run

CONFIG = """\
[space]
x0 = [0.0, 1.0]
x1 = [0.0, 1.0]

[strategy]
name = "random"
seed = {seed}

[run]
budget = {budget}
bind = "tcp://127.0.0.1:0"
log = "{log}"
"""


def read_log(path: Path) -> list[dict[str, Any]]:
    events = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            # a torn last line is skipped; checklog has judged the file already
            if line.strip():
                with contextlib.suppress(json.JSONDecodeError):
                    events.append(json.loads(line))
    return events


def rate_from_log(path: Path) -> dict[str, Any]:
    events = read_log(path)
    started = [e["t"] for e in events if e["event"] == "started"]
    done = sorted(e["t"] for e in events if e["event"] == "completed")
    n = len(done)
    if n < 10 or not started:
        raise BenchError(f"{path}: only {n} completed evaluations, too few to measure a rate")
    k = max(1, math.ceil(WARMUP_FRACTION * n))  # completions 1..k are warm-up
    span = done[-1] - done[k - 1]
    full_span = done[-1] - min(started)
    return {
        "completed": n,
        "rate": (n - k) / span if span > 0 else math.inf,  # steady state, warm-up excluded
        "rate_all": n / full_span if full_span > 0 else math.inf,  # first start..last completion
        "measured_s": span,
        "log_span_s": events[-1]["t"] - events[0]["t"],
        "events": len(events),
    }


def checklog(path: Path, budget: int) -> str:
    cmd = [sys.executable, str(CHECKLOG), str(path), "--completed", str(budget)]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        raise BenchError(f"checklog timed out on {path}") from None
    if res.returncode != 0:
        raise BenchError(f"checklog FAILED on {path}:\n{res.stdout}{res.stderr}")
    return res.stdout.strip()


def run_tether(n: int, budget: int, work: Path, tag: str, timeout: float,
               cprofile: str | None = None, pyspy: str | None = None,
               keys: Path | None = None) -> dict[str, Any]:
    d = work / tag
    d.mkdir(parents=True)
    log = d / "run.jsonl"
    addr = d / "address"
    cfg = d / "config.toml"
    cfg.write_text(CONFIG.format(seed=random.randrange(2**31), budget=budget, log=log)
                   + (f'keys = "{keys}"\n' if keys else ""))  # CURVE (benchmarks/curve_cost.py)
    py = sys.executable
    ctl_cmd = [py, "-m", "tether", "controller", str(cfg), "--address-file", str(addr)]
    if cprofile:
        ctl_cmd = [py, "-m", "cProfile", "-o", cprofile] + ctl_cmd[1:]
    if pyspy:  # sampling profiler, collapsed stacks; --idle keeps the time spent waiting in poll
        exe = shutil.which("py-spy") or str(Path(py).with_name("py-spy"))
        ctl_cmd = [exe, "record", "--idle", "-r", "200", "-f", "raw", "-o", pyspy, "--"] + ctl_cmd
    procs: list[subprocess.Popen[bytes]] = []
    t0 = time.monotonic()
    deadline = t0 + timeout
    try:
        ctl = spawn(ctl_cmd, d / "controller.out", d)
        procs.append(ctl)
        workers = []
        for i in range(n):
            w = spawn([py, "-m", "tether", "worker", "--address-file", str(addr), "--python", OBJECTIVE,
                       "--name", f"w{i}", *(["--keys", str(keys)] if keys else [])], d / f"w{i}.out", d)
            procs.append(w)
            workers.append(w)
        code, ctl_cpu = wait_rusage(ctl, deadline, f"controller ({tag})", d / "controller.out")
        wall = time.monotonic() - t0
        if code != 0:
            raise BenchError(f"controller ({tag}) exited {code}:\n{tail(d / 'controller.out')}")
        # the controller tells every worker that the run is over: they must exit 0
        for i, w in enumerate(workers):
            wcode = wait_for(w, min(deadline, time.monotonic() + 30), f"worker w{i} ({tag})",
                             d / f"w{i}.out")
            if wcode != 0:
                raise BenchError(f"worker w{i} ({tag}) exited {wcode}:\n{tail(d / f'w{i}.out')}")
        wall_all = time.monotonic() - t0
    finally:
        for p in procs:
            kill_group(p)
    check = checklog(log, budget)
    res = rate_from_log(log)
    res.update({"workers": n, "budget": budget, "wall_s": wall, "controller_cpu_s": ctl_cpu,
                "wall_all_exit_s": wall_all,
                "checklog": json.loads(check) if check.startswith("{") else check, "log": str(log)})
    return res


# --------------------------------------------------------------------------- ceiling

def ceiling_server(a: argparse.Namespace) -> int:
    import msgpack
    import zmq

    ctx = zmq.Context()
    ctx.linger = 0
    sock = ctx.socket(zmq.ROUTER)
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    tmp = Path(a.address_file + ".tmp")
    tmp.write_text(f"tcp://127.0.0.1:{port}\n")
    tmp.replace(a.address_file)
    packb, unpackb = msgpack.packb, msgpack.unpackb
    ids: list[bytes] = []
    give_up = time.monotonic() + 120
    while len(ids) < a.clients:  # every client says hello before the clock starts
        if time.monotonic() > give_up:
            print(f"only {len(ids)} of {a.clients} clients said hello", file=sys.stderr)
            return 1
        if sock.poll(1000):
            rid, msg = sock.recv_multipart()
            unpackb(msg)
            ids.append(rid)
    rnd = random.random
    eid = 0
    for rid in ids:
        sock.send_multipart([rid, packb({"v": 1, "t": "eval", "eid": eid, "x": [rnd(), rnd()]})])
        eid += 1
    clock = time.perf_counter
    t0 = clock()
    warm_end = t0 + a.warmup
    end = warm_end + a.seconds
    count = 0
    c0 = None
    t_start = t0
    now = t0
    while True:
        rid, msg = sock.recv_multipart()
        unpackb(msg)
        now = clock()
        count += 1
        if c0 is None and now >= warm_end:
            c0, t_start = count, now
        if now >= end:
            break
        sock.send_multipart([rid, packb({"v": 1, "t": "eval", "eid": eid, "x": [rnd(), rnd()]})])
        eid += 1
    for rid in ids:
        sock.send_multipart([rid, packb({"v": 1, "t": "stop"})])
    print(json.dumps({"count": count - (c0 or 0), "seconds": now - t_start}), flush=True)
    sock.close()
    ctx.term()
    return 0


def ceiling_client(a: argparse.Namespace) -> int:
    import msgpack
    import zmq

    give_up = time.monotonic() + 60
    while not os.path.exists(a.address_file):
        if time.monotonic() > give_up:
            return 1
        time.sleep(0.01)
    endpoint = Path(a.address_file).read_text().strip()
    ctx = zmq.Context()
    ctx.linger = 0
    sock = ctx.socket(zmq.DEALER)
    sock.rcvtimeo = 30_000  # a vanished server must not leave clients behind
    sock.connect(endpoint)
    packb, unpackb = msgpack.packb, msgpack.unpackb
    sock.send(packb({"v": 1, "t": "hello", "name": a.name}))
    try:
        while True:
            m = unpackb(sock.recv())
            if m["t"] == "stop":
                break
            sock.send(packb({"v": 1, "t": "result", "eid": m["eid"], "value": float(m["x"][0])}))
    except zmq.Again:
        return 1
    finally:
        sock.close()
        ctx.term()
    return 0


def run_ceiling(n: int, seconds: float, work: Path, tag: str, timeout: float) -> dict[str, Any]:
    d = work / tag
    d.mkdir(parents=True)
    addr = d / "address"
    me = [sys.executable, str(Path(__file__).resolve())]
    warmup = max(0.5, 0.1 * seconds)
    procs: list[subprocess.Popen[bytes]] = []
    t0 = time.monotonic()
    try:
        srv = spawn(me + ["--_role", "ceiling-server", "--_clients", str(n), "--_address-file", str(addr),
                          "--seconds", str(seconds), "--_warmup", str(warmup)], d / "server.out", d)
        procs.append(srv)
        clients = [spawn(me + ["--_role", "ceiling-client", "--_address-file", str(addr),
                               "--_name", f"c{i}"], d / f"c{i}.out", d) for i in range(n)]
        procs.extend(clients)
        code = wait_for(srv, t0 + timeout, f"ceiling server ({tag})", d / "server.out")
        if code != 0:
            raise BenchError(f"ceiling server ({tag}) exited {code}:\n{tail(d / 'server.out')}")
        for i, c in enumerate(clients):
            ccode = wait_for(c, time.monotonic() + 30, f"ceiling client c{i} ({tag})", d / f"c{i}.out")
            if ccode != 0:
                raise BenchError(f"ceiling client c{i} ({tag}) exited {ccode}:\n{tail(d / f'c{i}.out')}")
    finally:
        for p in procs:
            kill_group(p)
    line = (d / "server.out").read_text().strip().splitlines()[-1]
    r = json.loads(line)
    return {"workers": n, "rate": r["count"] / r["seconds"], "count": r["count"], "seconds": r["seconds"]}


# --------------------------------------------------------------------------- report

def summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def fmt(x: float) -> str:
    return f"{x:,.0f}"


def table(results: dict[str, Any]) -> str:
    rows = ["| workers | budget | tether evals/s, median (min–max) | wall s, median | "
            "ceiling msgs/s, median (min–max) | tether / ceiling |",
            "|---:|---:|---:|---:|---:|---:|"]
    for n in results["workers"]:
        t = results["tether"][str(n)]
        ts = summary([r["rate"] for r in t])
        wall = statistics.median(r["wall_s"] for r in t)
        budget = t[0]["budget"]
        c = results["ceiling"].get(str(n))
        if c:
            cs = summary([r["rate"] for r in c])
            ceil = f"{fmt(cs['median'])} ({fmt(cs['min'])}–{fmt(cs['max'])})"
            ratio = f"{ts['median'] / cs['median']:.1%}"
        else:
            ceil, ratio = "—", "—"
        rows.append(f"| {n} | {budget:,} | {fmt(ts['median'])} ({fmt(ts['min'])}–{fmt(ts['max'])}) | "
                    f"{wall:.1f} | {ceil} | {ratio} |")
    return "\n".join(rows)


# --------------------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 4, 16], metavar="N")
    ap.add_argument("--seconds", type=float, default=6.0,
                    help="target length of the measured part of each run (default 6)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", metavar="OUT", help="write all figures here")
    ap.add_argument("--budget", type=int, help="fixed budget for every configuration (no pilot runs)")
    ap.add_argument("--keep", metavar="DIR", help="keep logs and outputs in DIR (default: a temp dir, "
                    "removed on success)")
    ap.add_argument("--no-ceiling", action="store_true", help="skip the raw pyzmq baseline")
    ap.add_argument("--cprofile", metavar="OUT.prof",
                    help="run the controller under cProfile (use with one --workers value, --repeats 1)")
    ap.add_argument("--py-spy", metavar="OUT.raw",
                    help="run the controller under py-spy record (collapsed stacks; pip install py-spy)")
    ap.add_argument("--timeout", type=float, help="per-run timeout in seconds (default 10 x --seconds + 60)")
    # internal: the baseline's own processes
    ap.add_argument("--_role", choices=["ceiling-server", "ceiling-client"], help=argparse.SUPPRESS)
    ap.add_argument("--_clients", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--_address-file", dest="address_file", help=argparse.SUPPRESS)
    ap.add_argument("--_warmup", dest="warmup", type=float, help=argparse.SUPPRESS)
    ap.add_argument("--_name", dest="name", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a._role == "ceiling-server":
        a.clients = a._clients
        return ceiling_server(a)
    if a._role == "ceiling-client":
        return ceiling_client(a)

    if not CHECKLOG.is_file():
        print(f"error: contract checker not found at {CHECKLOG} (set TETHER_CHECKLOG)", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _on_sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with SIGINT ignored
    timeout = a.timeout or 10 * a.seconds + 60
    if a.keep:
        work = Path(a.keep).resolve()
        work.mkdir(parents=True, exist_ok=True)
    else:
        work = Path(tempfile.mkdtemp(prefix="tether-throughput-"))
    started = _dt.datetime.now(_dt.timezone.utc)
    load0 = os.getloadavg()
    results: dict[str, Any] = {
        "date": started.isoformat(timespec="seconds"), "nproc": os.cpu_count(),
        "loadavg_start": load0, "python": platform.python_version(), "platform": platform.platform(),
        "command": " ".join([Path(sys.executable).name, *sys.argv]), "workers": a.workers,
        "seconds": a.seconds, "repeats": a.repeats, "warmup_fraction": WARMUP_FRACTION,
        "objective": OBJECTIVE, "pilot": {}, "tether": {str(n): [] for n in a.workers},
        "ceiling": {}, "target_16": TARGET_16,
    }
    which = "import tether; print(tether.__version__, tether.__file__)"
    probe = subprocess.run([sys.executable, "-c", which], capture_output=True, text=True, timeout=60,
                           cwd=work)
    results["tether_version"] = probe.stdout.strip() or probe.stderr.strip()[-300:]
    print(f"# tether throughput — {results['date']}, nproc {results['nproc']}, "
          f"load average {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}; tether {results['tether_version']}",
          file=sys.stderr)
    ok = False
    try:
        budgets: dict[int, int] = {}
        for n in a.workers:
            if a.budget:
                budgets[n] = a.budget
                continue
            pilot_budget = 1000 if n == 1 else 3000
            r = run_tether(n, pilot_budget, work, f"pilot-n{n}", timeout, None)
            # room for the warm-up share plus the target measured time, 1000 at least
            budgets[n] = max(1000, int(round(r["rate"] * a.seconds / (1 - WARMUP_FRACTION), -2)))
            results["pilot"][str(n)] = {"budget": pilot_budget, "rate": r["rate"], "wall_s": r["wall_s"]}
            print(f"pilot n={n}: {r['rate']:,.0f} evals/s -> budget {budgets[n]:,}", file=sys.stderr)
        if not a.no_ceiling:
            results["ceiling"] = {str(n): [] for n in a.workers}
        for rep in range(a.repeats):
            for n in a.workers:
                r = run_tether(n, budgets[n], work, f"tether-n{n}-r{rep}", timeout,
                               a.cprofile, a.py_spy)
                results["tether"][str(n)].append(r)
                print(f"rep {rep + 1}/{a.repeats} n={n:>2}: tether {r['rate']:>9,.0f} evals/s "
                      f"(measured {r['measured_s']:.1f} s, wall {r['wall_s']:.1f} s, "
                      f"controller CPU {r['controller_cpu_s']:.1f} s, checklog ok)",
                      file=sys.stderr)
                if not a.no_ceiling:
                    c = run_ceiling(n, a.seconds, work, f"ceiling-n{n}-r{rep}", timeout)
                    results["ceiling"][str(n)].append(c)
                    print(f"rep {rep + 1}/{a.repeats} n={n:>2}: ceiling {c['rate']:>8,.0f} msgs/s",
                          file=sys.stderr)
        results["loadavg_end"] = os.getloadavg()
        results["summary"] = {
            str(n): {"tether": summary([r["rate"] for r in results["tether"][str(n)]]),
                     "ceiling": (summary([r["rate"] for r in results["ceiling"][str(n)]])
                                 if results["ceiling"] else None)}
            for n in a.workers}
        md = table(results)
        print(md)
        if "16" in results["summary"]:
            med = results["summary"]["16"]["tether"]["median"]
            print(f"\ntarget >= {TARGET_16:,} evals/s at 16 workers: median {med:,.0f} "
                  f"({med / TARGET_16:.1%} of target)")
        results["table_md"] = md
        if a.json:
            Path(a.json).write_text(json.dumps(results, indent=2) + "\n")
        ok = True
    except BenchError as exc:
        print(f"\nBENCHMARK FAILED: {exc}", file=sys.stderr)
        print(f"(outputs kept in {work})", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\ninterrupted; outputs kept in {work}", file=sys.stderr)
        return 130
    finally:
        kill_all()
        if ok and not a.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
