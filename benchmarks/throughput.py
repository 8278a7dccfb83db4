#!/usr/bin/env python3
"""End-to-end throughput of tether against two baselines measured in the same run.

Reproduce (from the repository root; the POAP environment is made on first use by
``benchmarks/peer_env.sh poap``)::

    PYTHONPATH=$PWD .venv/bin/python benchmarks/throughput.py --json out.json
    PYTHONPATH=$PWD .venv/bin/python benchmarks/throughput.py --quick   # smoke run

Configurations (``--workers 1 4 16 64``, plus ``--agent-slots 16``):

- **tether**: the real controller process (``python -m tether controller CONFIG
  --address-file F``, strategy ``random``, log and heartbeats on) and N real worker
  processes (``python -m tether worker --address-file F --python
  tether.problems:trivial``). The workers are started first and the controller only once
  they are idle (imports done, polling for the address file), so the start-up of many
  Python processes on a small machine does not eat into the measurement. Each log must
  pass ``tests/contract.py LOG --completed BUDGET`` (the repository's log checker). The
  rate is read from the
  log: completions after the later of the first 10 % and the last ``worker_joined``,
  divided by the time from there to the last completion.
- **tether, one agent with 16 slots**: one ``tether worker --slots 16`` process; reported
  as n/a when ``tether worker --help`` offers no ``--slots``. Its ratios use the raw and
  POAP figures of 16 clients from the same repeat.
- **tether, N in-process workers** (``--in-process N``, default 16): N ``tether worker
  --in-process`` processes, the objective called in the worker itself (no child process,
  no pipe); with the strategy's prefetch (``"auto"`` for ``random``: up to 64 queued per
  worker) and batched frames, so it may exceed the raw bound, which pays one round trip
  per evaluation. Ratios against the
  baselines of N clients from the same repeat.
- **raw**: the bound for this machine, now: a pyzmq ROUTER process and N DEALER client
  processes in closed-loop ping-pong with msgpack, each client doing the same numpy work
  as the objective (``float(numpy.asarray(x)[0])``) in its own process; no tether.
- **POAP**: POAP 0.1.26's ``ThreadedTCPServer`` with a ``FixedSampleStrategy`` of random
  points and N ``SimpleSocketWorker`` processes with the same objective, run in POAP's own
  environment (``benchmarks/.venv-poap``), never a dependency of tether. The rate is read
  from completion times recorded in the controller, with the same warm-up rule.

Configurations are interleaved across repeats (1, 4, 16, 64, agent, 1, 4, ...) so slow
phases of a shared machine hit all of them alike; the table gives the median and range
of the repeats and the ratios tether/raw and tether/POAP of the medians.

    --workers N...   --agent-slots K (0: off)   --in-process N... (none: off)
    --seconds S   --repeats R   --quick
    --budget N (fixed, no pilot)   --no-raw   --no-poap   --json OUT   --keep DIR
    --cprofile OUT.prof | --py-spy OUT.raw   --timeout S

Every subprocess runs in its own process group (session) with a timeout; all groups are
killed on failure, timeout or Ctrl-C. Only stdlib is imported at the top, because the
same file also runs POAP's roles inside POAP's environment.
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

from procs import kill_all, kill_group, spawn  # benchmarks/procs.py, a sibling

HERE = Path(__file__).resolve().parent
# the repository's own log-contract checker, as a command
_REPO_CHECKER = str(Path(__file__).resolve().parent.parent / "tests" / "contract.py")
CHECKLOG = Path(os.environ.get("TETHER_CHECKLOG", _REPO_CHECKER))
PEER_ENV = HERE / "peer_env.sh"
POAP_PY = HERE / ".venv-poap" / "bin" / "python"
OBJECTIVE = "tether.problems:trivial"
WARMUP_FRACTION = 0.10
TARGET_16 = 20_000  # issue 13 target, evals/s at 16 workers
CLK_TCK = os.sysconf("SC_CLK_TCK")


class BenchError(Exception):
    """Something the benchmark cannot carry on from (a failed process, a bad log)."""


# --------------------------------------------------------------------------- processes

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


def sessions_cpu(sids: set[int]) -> float:
    """CPU seconds (user + system) used so far by every live process in these sessions."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as fh:
                stat = fh.read()
        except OSError:
            continue
        rest = stat[stat.rindex(")") + 2:].split()
        if int(rest[3]) in sids:  # field 6, session id
            total += int(rest[11]) + int(rest[12])  # fields 14 and 15, utime and stime
    return total / CLK_TCK


def settle(procs: list[subprocess.Popen[bytes]], limit: float, what: str) -> float:
    """Wait until ``procs`` (and their children) are idle: start-up imports finished.

    Idle means less than 2 % of a core per process, plus 5 %, over half a second. Returns
    the seconds waited; raises if a process exits or ``limit`` passes.
    """
    sids = {p.pid for p in procs}
    t0 = time.monotonic()
    last = sessions_cpu(sids)
    time.sleep(0.5)
    while True:
        for p in procs:
            if p.poll() is not None:
                raise BenchError(f"{what}: a process exited during start-up (code {p.returncode})")
        now_cpu = sessions_cpu(sids)
        if now_cpu - last < 0.5 * (0.02 * len(procs) + 0.05):
            return time.monotonic() - t0
        if time.monotonic() - t0 > limit:
            raise BenchError(f"{what}: still busy starting after {limit:.0f} s")
        last = now_cpu
        time.sleep(0.5)


def wait_file(path: Path, deadline: float) -> str:
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(str(path))
        time.sleep(0.01)
    return path.read_text().strip()


def _on_sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def has_slots_option(py: str, option: str = "--slots") -> bool:
    """Whether this tether's ``worker`` command offers ``option``."""
    res = subprocess.run([py, "-m", "tether", "worker", "--help"], capture_output=True, text=True,
                         timeout=120)
    return option in res.stdout


def config_shape(key: str, agent_slots: int) -> tuple[int, int, bool]:
    """(clients the baselines use, --slots of one agent or 0, --in-process) of a key:
    ``16`` worker processes, ``agent16`` one agent with 16 slots, ``inproc16`` 16
    in-process worker processes."""
    if key.startswith("agent"):
        return agent_slots, agent_slots, False
    if key.startswith("inproc"):
        return int(key[len("inproc"):]), 0, True
    return int(key), 0, False


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


def steady_rate(done: list[float], ready: float) -> tuple[float, float, int]:
    """(rate, measured seconds, completions counted) after warm-up.

    Warm-up is the first 10 % of ``done`` (sorted completion times), and anything before
    ``ready`` (all workers there).
    """
    n = len(done)
    k = max(1, math.ceil(WARMUP_FRACTION * n))
    while k < n and done[k - 1] < ready:
        k += 1
    span = done[-1] - done[k - 1]
    return ((n - k) / span if span > 0 else math.nan), span, n - k


def rate_from_log(path: Path) -> dict[str, Any]:
    events = read_log(path)
    started = [e["t"] for e in events if e["event"] == "started"]
    joined = [e["t"] for e in events if e["event"] == "worker_joined"]
    done = sorted(e["t"] for e in events if e["event"] == "completed")
    n = len(done)
    if n < 10 or not started:
        raise BenchError(f"{path}: only {n} completed evaluations, too few to measure a rate")
    rate, span, counted = steady_rate(done, max(joined, default=0.0))
    if counted == 0:
        raise BenchError(f"{path}: no completion after all workers joined; raise --seconds")
    full_span = done[-1] - min(started)
    if counted < 0.3 * n:
        print(f"  warning: only {counted} of {n} completions after all workers joined "
              f"({span:.2f} s measured)", file=sys.stderr)
    return {
        "completed": n,
        "rate": rate,  # steady state, warm-up excluded
        "rate_all": n / full_span if full_span > 0 else math.inf,  # first start..last completion
        "measured_s": span,
        "counted": counted,
        "join_span_s": (max(joined) - min(joined)) if joined else None,
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


def run_tether(n: int, budget: int, work: Path, tag: str, timeout: float, slots: int = 0,
               cprofile: str | None = None, pyspy: str | None = None,
               keys: Path | None = None, in_process: bool = False) -> dict[str, Any]:
    """N worker processes (``slots`` 0), or one agent with ``slots`` slots (``n`` ignored);
    ``in_process``: the workers run the objective themselves (``--in-process``)."""
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
        workers = []
        nproc = 1 if slots else n
        for i in range(nproc):
            cmd = [py, "-m", "tether", "worker", "--address-file", str(addr), "--python", OBJECTIVE,
                   "--name", f"w{i}", *(["--keys", str(keys)] if keys else [])]
            if slots:
                cmd += ["--slots", str(slots)]
            if in_process:
                cmd.append("--in-process")
            w = spawn(cmd, d / f"w{i}.out", d)
            procs.append(w)
            workers.append(w)
        startup = settle(workers, max(60.0, 2.0 * nproc), f"tether workers ({tag})")
        startup_cpu = sessions_cpu({w.pid for w in workers})
        t_ctl = time.monotonic()
        ctl = spawn(ctl_cmd, d / "controller.out", d)
        procs.append(ctl)
        code, ctl_cpu = wait_rusage(ctl, deadline + startup, f"controller ({tag})", d / "controller.out")
        wall = time.monotonic() - t_ctl
        if code != 0:
            raise BenchError(f"controller ({tag}) exited {code}:\n{tail(d / 'controller.out')}")
        # the controller tells every worker that the run is over: they must exit 0
        workers_cpu = 0.0  # whole lives (start-up imports included: see workers_startup_cpu_s)
        for i, w in enumerate(workers):
            wcode, wcpu = wait_rusage(w, time.monotonic() + 30, f"worker w{i} ({tag})",
                                      d / f"w{i}.out")
            workers_cpu += wcpu
            if wcode != 0:
                raise BenchError(f"worker w{i} ({tag}) exited {wcode}:\n{tail(d / f'w{i}.out')}")
    finally:
        for p in procs:
            kill_group(p, grace=2.0)
    check = checklog(log, budget)
    res = rate_from_log(log)
    res.update({"workers": n, "slots": slots, "in_process": in_process, "budget": budget,
                "wall_s": wall,
                "workers_startup_s": startup, "controller_cpu_s": ctl_cpu,
                "workers_cpu_s": workers_cpu - startup_cpu, "workers_startup_cpu_s": startup_cpu,
                "checklog": json.loads(check) if check.startswith("{") else check, "log": str(log)})
    return res


# --------------------------------------------------------------------------- raw bound

def raw_server(a: argparse.Namespace) -> int:
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


def raw_client(a: argparse.Namespace) -> int:
    import msgpack
    import numpy as np
    import zmq

    try:
        endpoint = wait_file(Path(a.address_file), time.monotonic() + 600)
    except TimeoutError:
        return 1
    ctx = zmq.Context()
    ctx.linger = 0
    sock = ctx.socket(zmq.DEALER)
    sock.rcvtimeo = 30_000  # a vanished server must not leave clients behind
    sock.connect(endpoint)
    packb, unpackb = msgpack.packb, msgpack.unpackb
    asarray = np.asarray
    sock.send(packb({"v": 1, "t": "hello", "name": a.name}))
    try:
        while True:
            m = unpackb(sock.recv())
            if m["t"] == "stop":
                break
            value = float(asarray(m["x"], dtype=float)[0])  # the objective's numpy work
            sock.send(packb({"v": 1, "t": "result", "eid": m["eid"], "value": value}))
    except zmq.Again:
        return 1
    finally:
        sock.close()
        ctx.term()
    return 0


def run_raw(n: int, seconds: float, work: Path, tag: str, timeout: float) -> dict[str, Any]:
    d = work / tag
    d.mkdir(parents=True)
    addr = d / "address"
    me = [sys.executable, str(Path(__file__).resolve())]
    warmup = max(0.5, 0.1 * seconds)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        clients = [spawn(me + ["--_role", "raw-client", "--_address-file", str(addr),
                               "--_name", f"c{i}"], d / f"c{i}.out", d) for i in range(n)]
        procs.extend(clients)
        settle(clients, max(60.0, 2.0 * n), f"raw clients ({tag})")
        t0 = time.monotonic()
        srv = spawn(me + ["--_role", "raw-server", "--_clients", str(n), "--_address-file", str(addr),
                          "--seconds", str(seconds), "--_warmup", str(warmup)], d / "server.out", d)
        procs.append(srv)
        code = wait_for(srv, t0 + timeout, f"raw server ({tag})", d / "server.out")
        if code != 0:
            raise BenchError(f"raw server ({tag}) exited {code}:\n{tail(d / 'server.out')}")
        for i, c in enumerate(clients):
            ccode = wait_for(c, time.monotonic() + 30, f"raw client c{i} ({tag})", d / f"c{i}.out")
            if ccode != 0:
                raise BenchError(f"raw client c{i} ({tag}) exited {ccode}:\n{tail(d / f'c{i}.out')}")
    finally:
        for p in procs:
            kill_group(p, grace=2.0)
    r = json.loads((d / "server.out").read_text().strip().splitlines()[-1])
    return {"workers": n, "rate": r["count"] / r["seconds"], "count": r["count"], "seconds": r["seconds"]}


# --------------------------------------------------------------------------- POAP

def poap_server(a: argparse.Namespace) -> int:
    """POAP's TCP controller over ``--budget`` random points (runs in POAP's environment)."""
    from poap.strategy import FixedSampleStrategy
    from poap.tcpserve import ThreadedTCPServer

    rnd = random.Random(a.seed)
    points = [[rnd.random(), rnd.random()] for _ in range(a.budget)]
    clock = time.perf_counter
    done: list[float] = []
    workers: list[float] = []

    def on_update(rec: Any) -> None:
        if rec.is_completed:
            done.append(clock())

    def on_feval(rec: Any) -> None:
        rec.add_callback(on_update)

    # socketserver listens with a backlog of 5: 64 workers connecting at once would be
    # refused and retry a second later, so the backlog is raised (a configuration change)
    ThreadedTCPServer.request_queue_size = max(128, a.clients)
    server = ThreadedTCPServer(("127.0.0.1", 0), FixedSampleStrategy(points))
    server.daemon_threads = True
    server.controller.add_feval_callback(on_feval)
    add_worker = server.controller.add_worker
    seen: set[int] = set()

    def counting_add_worker(worker: Any) -> None:  # the first add of a handler = it connected
        if id(worker) not in seen:
            seen.add(id(worker))
            workers.append(clock())
        add_worker(worker)

    server.controller.add_worker = counting_add_worker  # type: ignore[method-assign]
    host, port = server.sockname[:2]
    tmp = Path(a.address_file + ".tmp")
    tmp.write_text(f"{host}:{port}\n")
    tmp.replace(a.address_file)
    t0 = clock()
    server.run()
    wall = clock() - t0
    server.server_close()
    done.sort()
    ready = workers[a.clients - 1] if len(workers) >= a.clients else math.inf
    rate, span, counted = steady_rate(done, ready)
    print(json.dumps({"completed": len(done), "rate": rate, "measured_s": span, "counted": counted,
                      "workers_seen": len(workers), "wall_s": wall}), flush=True)
    return 0


def poap_client(a: argparse.Namespace) -> int:
    import numpy as np
    from poap.tcpserve import SimpleSocketWorker

    try:
        where = wait_file(Path(a.address_file), time.monotonic() + 600)
    except TimeoutError:
        return 1
    host, port = where.rsplit(":", 1)
    asarray = np.asarray

    def objective(x: list[float]) -> float:
        return float(asarray(x, dtype=float)[0])  # the same numpy work as the others

    SimpleSocketWorker(objective, (host, int(port)), retries=30).run()
    return 0


def poap_python() -> str:
    """The POAP environment's python, made by ``peer_env.sh poap`` if missing."""
    res = subprocess.run(["bash", str(PEER_ENV), "poap"], capture_output=True, text=True, timeout=900)
    if res.returncode != 0:
        raise BenchError(f"peer_env.sh poap failed:\n{res.stdout}{res.stderr}")
    return res.stdout.strip().splitlines()[-1]


def run_poap(py: str, n: int, budget: int, work: Path, tag: str, timeout: float) -> dict[str, Any]:
    d = work / tag
    d.mkdir(parents=True)
    addr = d / "address"
    me = [py, str(Path(__file__).resolve())]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    procs: list[subprocess.Popen[bytes]] = []
    try:
        clients = [spawn(me + ["--_role", "poap-client", "--_address-file", str(addr)],
                         d / f"c{i}.out", d, env) for i in range(n)]
        procs.extend(clients)
        settle(clients, max(60.0, 2.0 * n), f"POAP workers ({tag})")
        t0 = time.monotonic()
        srv = spawn(me + ["--_role", "poap-server", "--_clients", str(n), "--_address-file", str(addr),
                          "--budget", str(budget), "--_seed", str(random.randrange(2**31))],
                    d / "server.out", d, env)
        procs.append(srv)
        code = wait_for(srv, t0 + timeout, f"POAP server ({tag})", d / "server.out")
        if code != 0:
            raise BenchError(f"POAP server ({tag}) exited {code}:\n{tail(d / 'server.out')}")
        end = time.monotonic() + 10
        for c in clients:  # POAP's workers exit on 'terminate'; stragglers are killed below
            with contextlib.suppress(subprocess.TimeoutExpired):
                c.wait(timeout=max(0.1, end - time.monotonic()))
    finally:
        for p in procs:
            kill_group(p, grace=2.0)
    r = json.loads((d / "server.out").read_text().strip().splitlines()[-1])
    if r["completed"] != budget:
        raise BenchError(f"POAP ({tag}) completed {r['completed']} of {budget}")
    if not r["counted"]:
        raise BenchError(f"POAP ({tag}): only {r['workers_seen']} of {n} workers connected before the end")
    r.update({"workers": n, "budget": budget})
    return r


# --------------------------------------------------------------------------- report

def per_eval_us(r: dict[str, Any]) -> str:
    """CPU per evaluation, controller and workers (whole run after start-up, so the
    controller's own start-up and the run's tail are in it)."""
    b = max(1, r["budget"])
    return (f"{1e6 * r['controller_cpu_s'] / b:.0f} + {1e6 * r['workers_cpu_s'] / b:.0f} "
            "µs CPU per evaluation")


def summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def fmt(x: float) -> str:
    return f"{x:,.0f}"


def cell(s: dict[str, float] | None) -> str:
    return f"{fmt(s['median'])} ({fmt(s['min'])}–{fmt(s['max'])})" if s else "—"


def ratio(a: dict[str, float] | None, b: dict[str, float] | None, pct: bool,
          pairs: list[float] | None = None) -> str:
    """Ratio of the medians; with ``pairs`` (the ratios within each repeat), their range."""
    if not a or not b or not b["median"]:
        return "—"
    r = a["median"] / b["median"]

    def f(x: float) -> str:
        return f"{x:.1%}" if pct else f"{x:.2f}x"
    if pairs and len(pairs) > 1:
        return f"{f(r)} ({f(min(pairs))}–{f(max(pairs))})"
    return f(r)


def paired(results: dict[str, Any], key: str, base: str, kind: str) -> list[float]:
    """tether / ``kind`` within each repeat (the two ran minutes apart at most)."""
    t = [r["rate"] for r in results["tether"].get(key, [])]
    b = [r["rate"] for r in results[kind].get(base, [])]
    return [x / y for x, y in zip(t, b) if y]


def table(results: dict[str, Any]) -> str:
    rows = ["| configuration | tether evals/s | raw evals/s | POAP evals/s | tether / raw "
            "(range over repeats) | tether / POAP (range) |", "|---|---:|---:|---:|---:|---:|"]
    for key in results["configs"]:
        s = results["summary"][key]
        base = s.get("baseline_of", key)
        raw = results["summary"].get(base, {}).get("raw")
        poap = results["summary"].get(base, {}).get("poap")
        label = s["label"]
        if s["tether"] is None:
            rows.append(f"| {label} | n/a ({s.get('why', '')}) | — | — | — | — |")
            continue
        rows.append(f"| {label} | {cell(s['tether'])} | {cell(raw)} | {cell(poap)} | "
                    f"{ratio(s['tether'], raw, True, paired(results, key, base, 'raw'))} | "
                    f"{ratio(s['tether'], poap, False, paired(results, key, base, 'poap'))} |")
    return "\n".join(rows)


# --------------------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 4, 16, 64], metavar="N")
    ap.add_argument("--agent-slots", type=int, default=16, metavar="K",
                    help="also one agent with K slots (tether worker --slots K); 0: off")
    ap.add_argument("--in-process", type=int, nargs="*", default=[16], metavar="N",
                    dest="in_process", help="also N workers with --in-process (default 16; "
                    "none: off)")
    ap.add_argument("--seconds", type=float, default=6.0,
                    help="target length of the measured part of each run (default 6)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: --workers 1 4 --agent-slots 4 --seconds 2 --repeats 1 --budget 2000")
    ap.add_argument("--json", metavar="OUT", help="write all figures here")
    ap.add_argument("--budget", type=int, help="fixed budget for every configuration (no pilot runs)")
    ap.add_argument("--keep", metavar="DIR", help="keep logs and outputs in DIR (default: a temp dir, "
                    "removed on success)")
    ap.add_argument("--no-raw", action="store_true", help="skip the raw pyzmq bound")
    ap.add_argument("--no-poap", action="store_true", help="skip POAP")
    ap.add_argument("--cprofile", metavar="OUT.prof",
                    help="run the controller under cProfile (use with one --workers value, --repeats 1)")
    ap.add_argument("--py-spy", metavar="OUT.raw",
                    help="run the controller under py-spy record (collapsed stacks; pip install py-spy)")
    ap.add_argument("--timeout", type=float, help="per-run timeout in seconds (default 10 x --seconds + 60)")
    ap.add_argument("--report", metavar="JSON", help="only print the table of an earlier run's --json")
    # internal: the baselines' own processes
    ap.add_argument("--_role", choices=["raw-server", "raw-client", "poap-server", "poap-client"],
                    help=argparse.SUPPRESS)
    ap.add_argument("--_clients", dest="clients", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--_address-file", dest="address_file", help=argparse.SUPPRESS)
    ap.add_argument("--_warmup", dest="warmup", type=float, help=argparse.SUPPRESS)
    ap.add_argument("--_name", dest="name", help=argparse.SUPPRESS)
    ap.add_argument("--_seed", dest="seed", type=int, default=0, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    roles = {"raw-server": raw_server, "raw-client": raw_client, "poap-server": poap_server,
             "poap-client": poap_client}
    if a._role:
        return roles[a._role](a)
    if a.report:
        print(table(json.loads(Path(a.report).read_text())))
        return 0
    if a.quick:
        a.workers, a.agent_slots, a.seconds, a.repeats = [1, 4], 4, 2.0, 1
        a.in_process = [4]
        a.budget = a.budget or 2000

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
    import zmq  # only here: the POAP roles above run without pyzmq

    slots_ok = a.agent_slots > 0 and has_slots_option(sys.executable)
    configs = [str(n) for n in a.workers]
    agent_key = f"agent{a.agent_slots}" if a.agent_slots > 0 else None
    if agent_key:
        configs.append(agent_key)
    inproc_ok = bool(a.in_process) and has_slots_option(sys.executable, "--in-process")
    configs += [f"inproc{n}" for n in (a.in_process or [])]
    results: dict[str, Any] = {
        "date": started.isoformat(timespec="seconds"), "nproc": os.cpu_count(),
        "loadavg_start": load0, "python": platform.python_version(), "platform": platform.platform(),
        "pyzmq": zmq.pyzmq_version(), "libzmq": zmq.zmq_version(),
        "command": " ".join([Path(sys.executable).name, *sys.argv]), "workers": a.workers,
        "agent_slots": a.agent_slots, "slots_option": slots_ok, "configs": configs,
        "in_process": a.in_process, "in_process_option": inproc_ok,
        "seconds": a.seconds, "repeats": a.repeats, "warmup_fraction": WARMUP_FRACTION,
        "objective": OBJECTIVE, "pilot": {}, "tether": {k: [] for k in configs},
        "raw": {k: [] for k in configs}, "poap": {k: [] for k in configs}, "target_16": TARGET_16,
    }
    which = "import tether; print(tether.__version__, tether.__file__)"
    probe = subprocess.run([sys.executable, "-c", which], capture_output=True, text=True, timeout=60,
                           cwd=work)
    results["tether_version"] = probe.stdout.strip() or probe.stderr.strip()[-300:]
    print(f"# tether throughput — {results['date']}, nproc {results['nproc']}, "
          f"load average {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}; tether {results['tether_version']}; "
          f"worker --slots: {'yes' if slots_ok else 'no'}", file=sys.stderr)
    ok = False
    try:
        poap_py = None if a.no_poap else poap_python()
        budgets: dict[str, int] = {}
        poap_budgets: dict[str, int] = {}  # sized from POAP's previous repeat
        for key in configs:
            if (key == agent_key and not slots_ok) or (key.startswith("inproc") and not inproc_ok):
                continue
            if a.budget:
                budgets[key] = a.budget
                continue
            n, slots, inproc = config_shape(key, a.agent_slots)
            pilot_budget = 1000 if n == 1 else 3000
            r = run_tether(n, pilot_budget, work, f"pilot-{key}", timeout, slots=slots,
                           in_process=inproc)
            # room for the warm-up share plus the target measured time, 1000 at least
            budgets[key] = max(1000, int(round(r["rate"] * a.seconds / (1 - WARMUP_FRACTION), -2)))
            results["pilot"][key] = {"budget": pilot_budget, "rate": r["rate"], "wall_s": r["wall_s"]}
            print(f"pilot {key}: {r['rate']:,.0f} evals/s -> budget {budgets[key]:,}", file=sys.stderr)
        for rep in range(a.repeats):
            for key in configs:
                n, slots, inproc = config_shape(key, a.agent_slots)
                # agents and in-process workers use the baselines of as many clients
                derived = key != str(n)
                if key in budgets:
                    r = run_tether(n, budgets[key], work, f"tether-{key}-r{rep}", timeout,
                                   slots, a.cprofile, a.py_spy, in_process=inproc)
                    results["tether"][key].append(r)
                    print(f"rep {rep + 1}/{a.repeats} {key:>7}: tether {r['rate']:>9,.0f} evals/s "
                          f"(measured {r['measured_s']:.1f} s, controller wall {r['wall_s']:.1f} s, "
                          f"CPU {r['controller_cpu_s']:.1f} s, workers' CPU "
                          f"{r['workers_cpu_s']:.1f} s, {per_eval_us(r)}, checklog ok)",
                          file=sys.stderr)
                if derived and str(n) in configs:
                    continue  # its baselines are those of as many clients, from this repeat
                if not a.no_raw:
                    c = run_raw(n, a.seconds, work, f"raw-{key}-r{rep}", timeout)
                    results["raw"][key].append(c)
                    print(f"rep {rep + 1}/{a.repeats} {key:>7}: raw    {c['rate']:>9,.0f} evals/s",
                          file=sys.stderr)
                if poap_py:
                    pb = poap_budgets.get(key) or a.budget or 2 * budgets.get(key, 2500)
                    p = run_poap(poap_py, n, pb, work, f"poap-{key}-r{rep}", timeout)
                    results["poap"][key].append(p)
                    if not a.budget:
                        poap_budgets[key] = max(1000, int(round(p["rate"] * a.seconds
                                                                / (1 - WARMUP_FRACTION), -2)))
                    print(f"rep {rep + 1}/{a.repeats} {key:>7}: POAP   {p['rate']:>9,.0f} evals/s "
                          f"(measured {p['measured_s']:.1f} s)", file=sys.stderr)
        results["loadavg_end"] = os.getloadavg()
        summ: dict[str, Any] = {}
        for key in configs:
            def med(kind: str, k: str = key) -> dict[str, float] | None:
                vals = [r["rate"] for r in results[kind][k]]
                return summary(vals) if vals else None
            agent = key == agent_key
            n, _, inproc = config_shape(key, a.agent_slots)
            plural = "es" if n != 1 else ""
            label = (f"1 agent, {a.agent_slots} slots" if agent
                     else f"{n} in-process worker{plural[1:]}" if inproc
                     else f"{key} worker process{plural}")
            s: dict[str, Any] = {"label": label, "tether": med("tether"), "raw": med("raw"),
                                 "poap": med("poap")}
            if key != str(n) and str(n) in configs:
                s["baseline_of"] = str(n)
            if agent and not slots_ok:
                s["why"] = "tether worker has no --slots"
            if inproc and not inproc_ok:
                s["why"] = "tether worker has no --in-process"
            summ[key] = s
        results["summary"] = summ
        md = table(results)
        print(md)
        t16 = summ.get("16", {}).get("tether")
        if t16:
            print(f"\ntarget >= {TARGET_16:,} evals/s at 16 workers: median {t16['median']:,.0f} "
                  f"({t16['median'] / TARGET_16:.1%} of target)")
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
