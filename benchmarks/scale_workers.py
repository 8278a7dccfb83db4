#!/usr/bin/env python3
"""Many connected workers: one real controller against thousands of simulated workers.

Reproduce (from the repository root)::

    PYTHONPATH=$PWD .venv/bin/python benchmarks/scale_workers.py --json out.json
    PYTHONPATH=$PWD .venv/bin/python benchmarks/scale_workers.py --quick   # smoke run

The controller is the real one (``python -m tether controller CONFIG --address-file F``,
strategy ``random``, log on, ``[run] heartbeat`` and ``liveness`` as given, defaults 1 s
and 3). The workers are simulated: DEALER sockets speaking protocol v1 (docs/protocol.md)
spread over ``--sim-procs`` processes, each process serving its sockets from one epoll
loop over their ``ZMQ_FD``s. A simulated worker says ``hello`` (``slots`` 1, or 100 for
the node-agent scenario), heartbeats when it has sent nothing for a heartbeat interval,
answers ``rehello`` with ``hello`` and ``kill`` with ``killed``, and either holds every
``evaluate`` it gets (hold phase) or answers it at once with a ``result`` (instant phase).

Scenarios (``--workers 16 1000 10000``, plus ``--agents 100 --agent-slots 100`` when
``tether worker --help`` offers ``--slots`` or with ``--force-slots``), interleaved
across ``--repeats``. For each:

1. **connect**: every simulated worker connects and says hello at once; time from the
   first connect to the last ``welcome`` (a connection storm: nothing is paced).
2. **hold**: once every slot holds an evaluation, the controller's CPU over
   ``--hold-seconds`` (utime + stime from ``/proc/PID/stat``, as a share of one core),
   while only heartbeats flow; the simulator processes' CPU beside it.
3. **instant**: every held evaluation is answered and every later one at once; the
   dispatch rate is the ``completed`` events in the log over ``--seconds`` (after 1 s of
   warm-up), with the controller's CPU. The table compares each scenario's rate with that
   of 16 simulated workers from the same repeat.
4. **lost**: ``lost`` events in the log, and ``worker_left`` with reason ``lost``, up to
   the moment the simulators are told to stop. Until then the simulated workers never
   stop heartbeating, so every one is false (the target is 0); the losses declared when
   they vanish at the end, without a goodbye, are true ones and are left out (the JSON
   has them as ``left_lost_after_stop``). A simulator process starved of a core can
   itself fall silent past the window: it counts every heartbeat it sends later than
   that (``silent_past_window``, beside the losses), and losses that follow those are
   the simulator's, not false ones.

File descriptors: every connected worker costs the controller one descriptor and each
simulator process two per socket (the TCP connection and the socket's mailbox); the
script raises its soft ``RLIMIT_NOFILE`` to the hard limit, which the controller and the
simulators inherit, and refuses a scenario that would not fit.

What limits the simulator: it is Python on the same 2 cores as the controller. Its
processes' CPU is reported beside the controller's; when they are busy the measured
rate is the simulator's, not the controller's (see the README).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import datetime as _dt
import json
import math
import os
import platform
import resource
import selectors
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import IO, Any

from procs import kill_all, kill_group, spawn  # benchmarks/procs.py, a sibling

CLK_TCK = os.sysconf("SC_CLK_TCK")
PROGRESS_EVERY = 0.5  # seconds between a simulator's progress lines
# as tether's workers on a live connection: without a welcome after 2 s, say hello again,
# doubling the wait to 30 s (tether/protocol/session.py)
HELLO_RETRY, HELLO_RETRY_MAX = 2.0, 30.0
SOCKETS_PER_CONTEXT = 1000  # simulated workers per libzmq context (I/O thread)


class BenchError(Exception):
    """Something the benchmark cannot carry on from."""


def raise_nofile() -> tuple[int, int]:
    """Raise the soft open-files limit to the hard one; return the (soft, hard) now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system, all threads) of one process so far."""
    with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
        stat = fh.read()
    rest = stat[stat.rindex(")") + 2:].split()
    return (int(rest[11]) + int(rest[12])) / CLK_TCK


# --------------------------------------------------------------------------- simulator

class Simulator:
    """``count`` simulated workers in one process; driven by commands on stdin."""

    def __init__(self, endpoint: str, prefix: str, first: int, count: int, slots: int,
                 zmtp_ping: int = 1000) -> None:
        import msgpack
        import zmq

        self.zmq = zmq
        self.packb = msgpack.packb
        self.unpackb = msgpack.unpackb
        self.endpoint = endpoint
        self.n = count
        self.slots = slots
        self.zmtp_ping = zmtp_ping
        self.names = [f"{prefix}{i}" for i in range(first, first + count)]
        self.session = uuid.uuid4().hex
        # A real worker has an I/O thread of its own; one context (one I/O thread) for
        # thousands of pinging sockets would cost the simulator O(n) per ping (libzmq's
        # cancel_timer scans all of a thread's timers), so sockets share contexts by the
        # thousand: the walk stays short, and a few I/O threads per simulator cost less
        # than many (by the hundred, 1,000 workers dispatched at 0.78x instead of 0.87x).
        self.ctxs = [zmq.Context() for _ in range(max(1, -(-count // SOCKETS_PER_CONTEXT)))]
        self.socks: list[Any] = []
        self.by_fd: dict[int, int] = {}
        self.welcomed = [False] * count
        self.last_tx = [0.0] * count
        self.last_hello = [0.0] * count
        self.hello_wait = [HELLO_RETRY] * count
        self.held: list[list[tuple[int, int]]] = [[] for _ in range(count)]
        self.n_welcomed = 0
        self.n_held = 0
        self.instant = False
        self.hb = 1.0
        self.liveness = 3
        self.due: collections.deque[tuple[float, int]] = collections.deque()
        self.heartbeat_frame = self.packb({"v": 1, "t": "heartbeat"})
        self.counts = collections.Counter[str]()
        self.t_begin = 0.0  # wall clock: first connect
        self.t_all_welcomed = 0.0
        self.t_all_held = 0.0
        self.ep = selectors.DefaultSelector()
        self.stopping = False

    def hello(self, i: int) -> bytes:
        body = {"v": 1, "t": "hello", "name": self.names[i], "session": self.session, "slots": self.slots,
                "running": [list(r) for r in self.held[i]], "host": "sim", "pid": os.getpid()}
        return self.packb(body)

    def send(self, i: int, frame: bytes, now: float) -> None:
        try:
            self.socks[i].send(frame, self.zmq.NOBLOCK)
        except self.zmq.Again:
            self.counts["send_again"] += 1
            return
        self.last_tx[i] = now
        if self.welcomed[i]:
            self.due.append((now + self.hb, i))

    def connect_all(self) -> None:
        zmq = self.zmq
        self.t_begin = time.time()
        for i in range(self.n):
            s = self.ctxs[i // SOCKETS_PER_CONTEXT].socket(zmq.DEALER)
            s.setsockopt(zmq.LINGER, 0)
            # the real worker's ZMTP pings (tether/worker/agent.py), answered by the
            # controller's I/O thread: part of what holding 10,000 workers costs it
            if self.zmtp_ping > 0:
                s.setsockopt(zmq.HEARTBEAT_IVL, self.zmtp_ping)
                s.setsockopt(zmq.HEARTBEAT_TIMEOUT, 5000)
            s.connect(self.endpoint)
            self.socks.append(s)
            fd = s.getsockopt(zmq.FD)
            self.by_fd[fd] = i
            self.ep.register(fd, selectors.EVENT_READ, i)
            now = time.monotonic()
            self.last_hello[i] = now
            self.send(i, self.hello(i), now)
            self.counts["hello"] += 1
            self.service(i, now)  # a send may have consumed the fd's wake-up

    def service(self, i: int, now: float) -> None:
        """Handle everything waiting on socket ``i`` (ZMQ_FD is edge-like: drain it)."""
        zmq = self.zmq
        s = self.socks[i]
        unpackb = self.unpackb
        while s.getsockopt(zmq.EVENTS) & zmq.POLLIN:
            try:
                frame = s.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            obj = unpackb(frame)
            # a frame holds one message (a map) or several (an array of maps)
            for msg in obj if isinstance(obj, list) else [obj]:
                self.handle(i, msg, now)

    def handle(self, i: int, msg: dict, now: float) -> None:
        """One message from the controller to simulated worker ``i``."""
        kind = msg.get("t")
        self.counts[f"rx_{kind}"] += 1
        if kind == "evaluate":
            ref = (msg["eval_id"], msg["attempt"])
            if self.instant:
                self.result(i, ref, now)
            else:
                self.held[i].append(ref)
                self.n_held += 1
                if self.n_held == self.n * self.slots:
                    self.t_all_held = time.time()
        elif kind == "welcome":
            self.hb = float(msg["heartbeat"])
            self.liveness = int(msg.get("liveness", 3))
            if not self.welcomed[i]:
                self.welcomed[i] = True
                self.n_welcomed += 1
                if self.n_welcomed == self.n:
                    self.t_all_welcomed = time.time()
            self.due.append((self.last_tx[i] + self.hb, i))
        elif kind == "rehello":
            after = float(msg.get("after", 0.0))
            if after > 0:  # told when our turn comes (hello rate): the retry loop sends it
                self.last_hello[i] = now + after - self.hello_wait[i]
            else:
                self.send(i, self.hello(i), now)
        elif kind == "kill":
            ref = (msg["eval_id"], msg["attempt"])
            if ref in self.held[i]:
                self.held[i].remove(ref)
                self.n_held -= 1
            self.send(i, self.packb({"v": 1, "t": "killed", "eval_id": ref[0], "attempt": ref[1],
                                     "reason": "killed"}), now)
        # ack, heartbeat, drained, terminate: nothing to do

    def result(self, i: int, ref: tuple[int, int], now: float) -> None:
        self.send(i, self.packb({"v": 1, "t": "result", "eval_id": ref[0], "attempt": ref[1],
                                 "value": 0.5, "seconds": 0.0}), now)
        self.counts["tx_result"] += 1

    def go_instant(self) -> None:
        self.instant = True
        now = time.monotonic()
        for i in range(self.n):
            held, self.held[i] = self.held[i], []
            for ref in held:
                self.result(i, ref, now)
            self.service(i, now)
        self.n_held = 0

    def progress(self, event: str = "progress") -> None:
        line = {"ev": event, "t": time.time(), "welcomed": self.n_welcomed, "held": self.n_held,
                "t_begin": self.t_begin,
                "t_all_welcomed": self.t_all_welcomed, "t_all_held": self.t_all_held,
                "counts": dict(self.counts)}
        sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()

    def command(self, line: str) -> None:
        cmd = line.strip()
        if cmd == "instant":
            self.go_instant()
        elif cmd in ("report", "mark"):
            self.progress(cmd)
        elif cmd in ("stop", ""):  # "" is EOF: the parent went away
            self.stopping = True

    def run(self) -> int:
        stdin_fd = sys.stdin.fileno()
        os.set_blocking(stdin_fd, False)
        self.ep.register(stdin_fd, selectors.EVENT_READ, -1)
        self.connect_all()
        pending = ""
        next_progress = time.monotonic()
        next_retry = time.monotonic() + HELLO_RETRY
        while not self.stopping:
            now = time.monotonic()
            wait = min(PROGRESS_EVERY, max(0.0, next_progress - now))
            if self.due:
                wait = min(wait, max(0.0, self.due[0][0] - now))
            for key, _ in self.ep.select(wait):
                i = key.data
                if i == -1:
                    chunk = os.read(stdin_fd, 4096).decode()
                    if not chunk:
                        self.command("")
                    pending += chunk
                    while "\n" in pending:
                        line, pending = pending.split("\n", 1)
                        self.command(line)
                else:
                    self.service(i, time.monotonic())
            now = time.monotonic()
            due = self.due
            while due and due[0][0] <= now:  # heartbeats owed (stale entries skipped)
                _, i = due.popleft()
                if self.last_tx[i] + self.hb <= now:
                    if now - self.last_tx[i] > self.hb * self.liveness:
                        # this simulator itself was silent past the window (starved of
                        # a core): the controller would be right to call this one lost
                        self.counts["silent_past_window"] += 1
                    self.send(i, self.heartbeat_frame, now)
                    self.counts["tx_heartbeat"] += 1
                    self.service(i, now)  # a send may have consumed the fd's wake-up
            if now >= next_retry:
                next_retry = now + 0.2
                if self.n_welcomed < self.n:
                    for i in range(self.n):
                        if not self.welcomed[i] and now - self.last_hello[i] > self.hello_wait[i]:
                            self.last_hello[i] = now
                            self.hello_wait[i] = min(HELLO_RETRY_MAX, 2 * self.hello_wait[i])
                            self.send(i, self.hello(i), now)
                            self.counts["hello_retry"] += 1
                            self.service(i, now)
            if now >= next_progress:
                next_progress = now + PROGRESS_EVERY
                for i in range(self.n):  # safety net for a missed wake-up: O(n) twice a second
                    self.service(i, now)
                self.progress()
        for s in self.socks:
            s.close(0)
        for ctx in self.ctxs:
            ctx.term()
        return 0


def sim_role(a: argparse.Namespace) -> int:
    raise_nofile()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    return Simulator(a.endpoint, a.prefix, a.first, a.count, a.slots, a.zmtp_ping).run()


# --------------------------------------------------------------------------- orchestrator

def _on_sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


class Sims:
    """The simulator processes of one scenario, their progress lines and commands."""

    def __init__(self, procs: list[subprocess.Popen[bytes]]) -> None:
        self.procs = procs
        self.sel = selectors.DefaultSelector()
        self.buf: dict[int, str] = {}
        self.last: dict[int, dict[str, Any]] = {}
        self.marks: dict[int, dict[str, Any]] = {}  # answers to "mark", kept apart from progress
        for k, p in enumerate(procs):
            out: IO[bytes] = p.stdout  # type: ignore[assignment]
            os.set_blocking(out.fileno(), False)
            self.sel.register(out, selectors.EVENT_READ, k)
            self.buf[k] = ""

    def pump(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            for key, _ in self.sel.select(left):
                k = key.data
                chunk = os.read(key.fd, 65536).decode()
                if not chunk:
                    self.sel.unregister(key.fileobj)
                    continue
                self.buf[k] += chunk
                while "\n" in self.buf[k]:
                    line, self.buf[k] = self.buf[k].split("\n", 1)
                    with contextlib.suppress(json.JSONDecodeError):
                        msg = json.loads(line)
                        self.last[k] = msg
                        if msg.get("ev") == "mark":
                            self.marks[k] = msg
            for p in self.procs:
                if p.poll() is not None:
                    raise BenchError(f"a simulator process exited (code {p.returncode})")

    def mark(self, timeout: float = 30.0) -> dict[int, dict[str, Any]]:
        """Ask every simulator for its counts now; wait for the answers."""
        self.marks.clear()
        self.tell("mark")
        end = time.monotonic() + timeout
        while len(self.marks) < len(self.procs):
            if time.monotonic() > end:
                raise BenchError("simulators did not answer 'mark'")
            self.pump(0.05)
        return dict(self.marks)

    def total(self, key: str) -> int:
        return sum(int(s.get(key, 0)) for s in self.last.values())

    def tell(self, cmd: str) -> None:
        for p in self.procs:
            with contextlib.suppress(BrokenPipeError):
                assert p.stdin is not None
                p.stdin.write((cmd + "\n").encode())
                p.stdin.flush()

    def cpu(self) -> float:
        total = 0.0
        for p in self.procs:
            with contextlib.suppress(OSError):
                total += proc_cpu(p.pid)
        return total


CONFIG = """\
[space]
x0 = [0.0, 1.0]
x1 = [0.0, 1.0]

[strategy]
name = "random"
seed = 0

[run]
budget = 1000000000
bind = "tcp://127.0.0.1:0"
log = "{log}"
heartbeat = {heartbeat}
liveness = {liveness}
# pinned (random's default is "auto"): the scenarios compare the controller's cost per
# event at each worker count, not the depth of queues auto prefetch gives each count
prefetch = 2
"""


def read_log(path: Path) -> list[dict[str, Any]]:
    events = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            with contextlib.suppress(json.JSONDecodeError):
                events.append(json.loads(line))
    return events


def proc_sched(pid: int) -> tuple[float, float]:
    """(CPU seconds of all threads, seconds the main thread was runnable but not running).

    The second is from ``/proc/PID/schedstat``: on a shared machine it tells a controller
    that is slow because it waits for a core from one that is slow on its own.
    """
    with open(f"/proc/{pid}/schedstat", encoding="ascii") as fh:
        wait = int(fh.read().split()[1]) / 1e9
    return proc_cpu(pid), wait


def main_thread_cpu(pid: int) -> float:
    """CPU seconds of the process's main thread alone (the Python loop); the rest of
    :func:`proc_cpu` is libzmq's I/O thread (and the reaper)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/stat", encoding="ascii", errors="replace") as fh:
            rest = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return math.nan
    return (int(rest[11]) + int(rest[12])) / os.sysconf("SC_CLK_TCK")


def stub_role(a: argparse.Namespace) -> int:
    """A minimal controller: the simulator's bound (no log, no records, no strategy).

    It welcomes every ``hello`` and sends it one ``evaluate`` per slot, answers every
    ``result`` with an ``ack`` and a new ``evaluate``, and heartbeats peers it has not
    sent anything to for a heartbeat interval, as tether does.
    """
    import msgpack
    import zmq

    raise_nofile()
    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.SNDHWM, 100_000)
    sock.setsockopt(zmq.RCVHWM, 100_000)
    # --stub-opts: tether's own socket options, one by one, to find what a cost comes from
    opts = set(filter(None, a.stub_opts.split(",")))
    if "mandatory" in opts:
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
    if "maxmsg" in opts:
        sock.setsockopt(zmq.MAXMSGSIZE, 1 << 20)
    if "backlog" in opts:
        sock.setsockopt(zmq.BACKLOG, 4096)
    if "zmtp" in opts:  # as tether's controller: a ping every 10 heartbeats
        ivl = max(1000, int(a.heartbeat * 10_000))
        sock.setsockopt(zmq.HEARTBEAT_IVL, ivl)
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, ivl * a.liveness)
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    tmp = Path(a.address_file + ".tmp")
    tmp.write_text(f"tcp://127.0.0.1:{port}\n")
    tmp.replace(a.address_file)
    packb, unpackb = msgpack.packb, msgpack.unpackb
    hb = a.heartbeat
    welcome = packb({"v": 1, "t": "welcome", "epoch": "stub", "heartbeat": hb, "liveness": a.liveness,
                     "names": ["x0", "x1"]})
    heartbeat = packb({"v": 1, "t": "heartbeat"})
    last_tx: dict[bytes, float] = {}
    eid = 0
    next_sweep = time.monotonic() + hb / 4
    send = sock.send_multipart

    def evaluate(rid: bytes) -> None:
        nonlocal eid
        send([rid, packb({"v": 1, "t": "evaluate", "eval_id": eid, "attempt": 0, "x": [0.5, 0.5],
                          "timeout": 600.0})])
        eid += 1

    while True:
        if sock.poll(int(hb * 250)):
            for _ in range(1000):
                try:
                    rid, frame = sock.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                msg = unpackb(frame)
                kind = msg.get("t")
                now = time.monotonic()
                if kind == "hello":
                    send([rid, welcome])
                    if rid not in last_tx:  # a repeated hello keeps what it holds
                        for _ in range(int(msg.get("slots", 1))):
                            evaluate(rid)
                    last_tx[rid] = now
                elif kind == "result":
                    send([rid, packb({"v": 1, "t": "ack", "eval_id": msg["eval_id"],
                                      "attempt": msg["attempt"]})])
                    evaluate(rid)
                    last_tx[rid] = now
        now = time.monotonic()
        if now >= next_sweep:
            next_sweep = now + hb / 4
            for rid, t in last_tx.items():
                if now - t >= hb:
                    send([rid, heartbeat])
                    last_tx[rid] = now


def scenario(a: argparse.Namespace, n: int, slots: int, work: Path, tag: str,
             stub: bool = False) -> dict[str, Any]:
    """One controller (tether's, or the stub) against ``n`` simulated workers of ``slots``."""
    d = work / tag
    d.mkdir(parents=True)
    log = d / "run.jsonl"
    addr = d / "address"
    cfg = d / "config.toml"
    cfg.write_text(CONFIG.format(log=log, heartbeat=a.heartbeat, liveness=a.liveness))
    py = sys.executable
    me = [py, str(Path(__file__).resolve())]
    nsim = max(1, min(a.sim_procs, n))
    res: dict[str, Any] = {"workers": n, "slots": slots, "sim_procs": nsim, "tag": tag, "stub": stub}
    procs: list[subprocess.Popen[bytes]] = []
    t_a = t_b = t_switch = math.nan
    t_stop = math.inf  # until the simulators are told to stop: every loss counts as false
    try:
        if stub:
            cmd = me + ["--_role", "stub", "--_address-file", str(addr), "--stub-opts", a.stub_opts,
                        "--heartbeat", str(a.heartbeat),
                        "--liveness", str(a.liveness)]
        else:
            cmd = [py, "-m", "tether", "controller", str(cfg), "--address-file", str(addr)]
            if a.cprofile:  # wall-clock profile of the controller, one file per scenario
                cmd[1:3] = ["-m", "cProfile", "-o", f"{a.cprofile}.{tag}", "-m", "tether"]
        ctl = spawn(cmd, d / "controller.out")
        procs.append(ctl)
        deadline = time.monotonic() + 120
        while not addr.exists():
            if ctl.poll() is not None or time.monotonic() > deadline:
                raise BenchError(f"controller did not start:\n{(d / 'controller.out').read_text()[-2000:]}")
            time.sleep(0.02)
        endpoint = addr.read_text().strip()
        sim = me + ["--_role", "sim", "--_endpoint", endpoint, "--_slots", str(slots),
                    "--zmtp-ping", str(a.zmtp_ping)]
        share = [n // nsim + (1 if k < n % nsim else 0) for k in range(nsim)]
        first = 0
        for k in range(nsim):
            procs.append(spawn(sim + ["--_prefix", "s", "--_first", str(first), "--_count", str(share[k])],
                               d / f"sim{k}.err", pipes=True))
            first += share[k]
        sims = Sims(procs[1:])

        # 1. connect: all at once
        t0 = time.monotonic()
        while sims.total("welcomed") < n and time.monotonic() - t0 < a.connect_timeout:
            sims.pump(0.2)
        st = list(sims.last.values())
        res["connected"] = sims.total("welcomed")
        res["connect_s"] = (max(s["t_all_welcomed"] for s in st) - min(s["t_begin"] for s in st)
                            if res["connected"] >= n else None)
        print(f"  {tag}: {res['connected']:,} of {n:,} welcomed"
              + (f" in {res['connect_s']:.2f} s" if res["connect_s"] is not None
                 else f" after {a.connect_timeout:.0f} s (not all)"), file=sys.stderr)

        # 2. hold: every slot holds an evaluation; only heartbeats flow
        want = n * slots
        t1 = time.monotonic()
        while sims.total("held") < want and time.monotonic() - t1 < a.fill_timeout:
            sims.pump(0.2)
        held = sims.total("held")
        res["held"] = held
        res["all_held"] = held >= want
        st = list(sims.last.values())
        res["fill_s"] = (max(s["t_all_held"] for s in st) - min(s["t_begin"] for s in st)
                         if held >= want else None)
        sims.pump(0.5)
        (c0, q0), s0, w0 = proc_sched(ctl.pid), sims.cpu(), time.monotonic()
        p0 = main_thread_cpu(ctl.pid)
        sims.pump(a.hold_seconds)
        (c1, q1), s1, w1 = proc_sched(ctl.pid), sims.cpu(), time.monotonic()
        res["hold_ctl_cpu"] = (c1 - c0) / (w1 - w0)
        res["hold_ctl_main_cpu"] = (main_thread_cpu(ctl.pid) - p0) / (w1 - w0)
        res["hold_ctl_wait"] = (q1 - q0) / (w1 - w0)
        res["hold_sim_cpu"] = (s1 - s0) / (w1 - w0)
        print(f"  {tag}: {held:,} of {want:,} slots hold work; controller CPU "
              f"{res['hold_ctl_cpu']:.0%} of a core (main thread {res['hold_ctl_main_cpu']:.0%}, "
              f"the rest libzmq's), waiting for a CPU {res['hold_ctl_wait']:.0%} "
              f"(simulators {res['hold_sim_cpu']:.0%})", file=sys.stderr)

        # 3. instant: answer everything at once
        t_switch = time.time()
        sims.tell("instant")
        sims.pump(1.0)
        m0 = sims.mark()
        (c0, q0), s0, w0 = proc_sched(ctl.pid), sims.cpu(), time.monotonic()
        t_a = time.time()
        sims.pump(a.seconds)
        t_b = time.time()
        (c1, q1), s1, w1 = proc_sched(ctl.pid), sims.cpu(), time.monotonic()
        m1 = sims.mark()
        res["instant_ctl_cpu"] = (c1 - c0) / (w1 - w0)
        res["instant_ctl_wait"] = (q1 - q0) / (w1 - w0)
        res["instant_sim_cpu"] = (s1 - s0) / (w1 - w0)
        res["sim_rate"] = sum((m1[k]["counts"].get("tx_result", 0) - m0[k]["counts"].get("tx_result", 0))
                              / (m1[k]["t"] - m0[k]["t"]) for k in m0)

        # 4. report, stop
        counts: collections.Counter[str] = collections.Counter()
        for s in m1.values():
            counts.update(s.get("counts", {}))
        res["sim_counts"] = dict(counts)
        # the simulators vanish without a goodbye: losses the controller declares after
        # this are true ones (reported apart), not false
        t_stop = time.time()
        sims.tell("stop")
    finally:
        for p in procs:
            kill_group(p, grace=10.0 if a.cprofile else 1.0)  # a profile is written on exit
    if stub:
        res["rate"] = res["sim_rate"]
        res["lost"] = res["left_lost"] = None
    else:
        events = read_log(log)
        done = [e["t"] for e in events if e.get("event") == "completed" and t_a <= e["t"] < t_b]
        res["rate"] = len(done) / (t_b - t_a)
        res["lost"] = sum(1 for e in events if e.get("event") == "lost" and e["t"] < t_stop)
        lost_all = [e["t"] for e in events if e.get("event") == "worker_left" and e.get("reason") == "lost"]
        lost_at = [t for t in lost_all if t < t_stop]
        res["left_lost"] = len(lost_at)
        res["left_lost_after_stop"] = len(lost_all) - len(lost_at)
        # only heartbeats flow before the switch; results (a burst of n*slots first) after it
        res["left_lost_before_instant"] = sum(1 for t in lost_at if t < t_switch)
        res["left_lost_instant"] = sum(1 for t in lost_at if t >= t_switch)
        res["joined"] = sum(1 for e in events if e.get("event") == "worker_joined")
        res["events"] = len(events)
    print(f"  {tag}: {res['rate']:,.0f} evals/s instant (simulators count {res['sim_rate']:,.0f}/s; "
          f"controller CPU {res['instant_ctl_cpu']:.0%}, waiting {res['instant_ctl_wait']:.0%}, "
          f"simulators {res['instant_sim_cpu']:.0%}); simulators silent past the window "
          f"{counts.get('silent_past_window', 0)} times; workers lost {res['left_lost']}, lost events "
          f"{res['lost']}, rehello {counts.get('rx_rehello', 0)}", file=sys.stderr)
    return res


def has_slots_option(py: str) -> bool:
    res = subprocess.run([py, "-m", "tether", "worker", "--help"], capture_output=True, text=True,
                         timeout=120)
    return "--slots" in res.stdout


# --------------------------------------------------------------------------- report

def summ(values: list[float | None]) -> dict[str, float] | None:
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals), "n": len(vals)}


def fmt(v: dict[str, float] | None, pct: bool = False) -> str:
    if v is None:
        return "—"
    if pct:
        return f"{v['median']:.0%} ({v['min']:.0%}–{v['max']:.0%})"
    if v["median"] < 100:
        return f"{v['median']:,.1f} ({v['min']:,.1f}–{v['max']:,.1f})"
    return f"{v['median']:,.0f} ({v['min']:,.0f}–{v['max']:,.0f})"


def table(res: dict[str, Any]) -> str:
    rows = ["| scenario | connected, s (all at once) | controller CPU, all holding work "
            "(median wait for a core) | simulators' CPU | dispatch, evals/s (instant) | vs 16 workers | "
            "controller CPU, instant (wait) | simulators' CPU, instant | false lost, all repeats: "
            "workers before / during instant, `lost` events |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    base = res["summary"].get("16", {}).get("rate")
    for key, s in res["summary"].items():
        if s.get("skipped"):
            rows.append(f"| {s['label']} | n/a ({s['skipped']}) | | | | | | | |")
            continue
        ratio = (f"{s['rate']['median'] / base['median']:.2f}x"
                 if base and key != "16" and not s["stub"] else "—")
        connect = fmt(s["connect_s"])
        if s["not_connected"]:
            connect += f"; {s['not_connected']} of {s['n']} runs: not all ({s['connected_min']:,} at least)"
        lost = ("— (stub)" if s["stub"] else
                f"{s['lost_before']} / {s['lost_instant']} / {s['lost_events']}")
        if s.get("sim_silent"):  # the simulators' own silences: such losses are true ones
            lost += f" (simulators silent past the window {s['sim_silent']:,} times)"
        hw = s["hold_ctl_wait"]["median"] if s["hold_ctl_wait"] else math.nan
        iw = s["instant_ctl_wait"]["median"] if s["instant_ctl_wait"] else math.nan
        rows.append(f"| {s['label']} | {connect} | {fmt(s['hold_ctl_cpu'], True)} (waits {hw:.0%}) | "
                    f"{fmt(s['hold_sim_cpu'], True)} | {fmt(s['rate'])} | {ratio} | "
                    f"{fmt(s['instant_ctl_cpu'], True)} (waits {iw:.0%}) | "
                    f"{fmt(s['instant_sim_cpu'], True)} | {lost} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, nargs="+", default=[16, 1000, 10000], metavar="N",
                    help="simulated worker counts (16 is the reference the others are compared with)")
    ap.add_argument("--agents", type=int, default=100, help="node agents of the slots scenario (0: off)")
    ap.add_argument("--agent-slots", type=int, default=100)
    ap.add_argument("--force-slots", action="store_true",
                    help="run the slots scenario even if tether worker has no --slots")
    ap.add_argument("--stub-workers", type=int, nargs="*", default=[1000, 10000], metavar="N",
                    help="also run these counts against a minimal stub controller: the simulator's bound")
    ap.add_argument("--stub-opts", default="", metavar="A,B",
                    help="the stub controller also sets these of tether's socket options: "
                         "mandatory (ROUTER_MANDATORY), maxmsg (MAXMSGSIZE), backlog (BACKLOG 4096), "
                         "zmtp (ZMTP pings, as the controller sent them before the sixth pass)")
    ap.add_argument("--sim-procs", type=int, default=4, help="simulator processes (default 4)")
    ap.add_argument("--cprofile", metavar="PREFIX",
                    help="profile the controller: PREFIX.<scenario> per scenario (cProfile)")
    ap.add_argument("--zmtp-ping", type=int, default=2500, metavar="MS",
                    help="simulated workers' ZMTP ping interval, as tether's workers (0: none)")
    ap.add_argument("--heartbeat", type=float, default=1.0)
    ap.add_argument("--liveness", type=int, default=3)
    ap.add_argument("--hold-seconds", type=float, default=10.0)
    ap.add_argument("--seconds", type=float, default=10.0, help="instant-phase measurement (default 10)")
    ap.add_argument("--connect-timeout", type=float, default=120.0,
                    help="give up waiting for every welcome after this long, and carry on")
    ap.add_argument("--fill-timeout", type=float, default=60.0,
                    help="give up waiting for every slot to hold work after this long, and carry on")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: --workers 16 200 --agents 4 --agent-slots 10 --force-slots "
                         "--stub-workers 200 --hold-seconds 2 --seconds 2 --repeats 1")
    ap.add_argument("--json", metavar="OUT")
    ap.add_argument("--keep", metavar="DIR")
    ap.add_argument("--report", metavar="JSON", help="only print the table of an earlier run's --json")
    ap.add_argument("--_role", choices=["sim", "stub"], help=argparse.SUPPRESS)
    ap.add_argument("--_endpoint", dest="endpoint", help=argparse.SUPPRESS)
    ap.add_argument("--_address-file", dest="address_file", help=argparse.SUPPRESS)
    ap.add_argument("--_prefix", dest="prefix", default="s", help=argparse.SUPPRESS)
    ap.add_argument("--_first", dest="first", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--_count", dest="count", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--_slots", dest="slots", type=int, default=1, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a._role == "sim":
        return sim_role(a)
    if a._role == "stub":
        return stub_role(a)
    if a.report:
        print(table(json.loads(Path(a.report).read_text())))
        return 0
    if a.quick:
        a.workers, a.agents, a.agent_slots, a.force_slots = [16, 200], 4, 10, True
        a.stub_workers, a.hold_seconds, a.seconds, a.repeats = [200], 2.0, 2.0, 1

    signal.signal(signal.SIGTERM, _on_sigterm)
    soft, hard = raise_nofile()
    import zmq

    slots_ok = has_slots_option(sys.executable)
    # (key, workers, slots, label, stub)
    scenarios: list[tuple[str, int, int, str, bool]] = [
        (str(n), n, 1, f"{n:,} workers", False) for n in a.workers]
    if "16" not in [sc[0] for sc in scenarios]:
        scenarios.insert(0, ("16", 16, 1, "16 workers", False))
    if a.agents > 0:
        scenarios.append((f"{a.agents}x{a.agent_slots}", a.agents, a.agent_slots,
                          f"{a.agents:,} agents x {a.agent_slots} slots", False))
    scenarios += [(f"stub{n}", n, 1, f"{n:,} workers, stub controller (simulator bound)", True)
                  for n in a.stub_workers]
    res: dict[str, Any] = {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "nproc": os.cpu_count(), "loadavg_start": os.getloadavg(), "python": platform.python_version(),
        "platform": platform.platform(), "pyzmq": zmq.pyzmq_version(), "libzmq": zmq.zmq_version(),
        "nofile": [soft, hard], "somaxconn": Path("/proc/sys/net/core/somaxconn").read_text().strip(),
        "command": " ".join([Path(sys.executable).name, *sys.argv]), "heartbeat": a.heartbeat,
        "liveness": a.liveness, "sim_procs": a.sim_procs, "slots_option": slots_ok,
        "runs": {sc[0]: [] for sc in scenarios}, "summary": {},
    }
    print(f"# scale_workers — {res['date']}, nproc {res['nproc']}, nofile {soft}/{hard}, "
          f"worker --slots: {'yes' if slots_ok else 'no'}", file=sys.stderr)
    work = Path(a.keep or tempfile.mkdtemp(prefix="tether-scale-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    ok = False
    try:
        for rep in range(a.repeats):
            for key, n, slots, label, stub in scenarios:
                if slots > 1 and not (slots_ok or a.force_slots):
                    continue
                per_sim = math.ceil(n / max(1, min(a.sim_procs, n)))
                if n + 64 > soft or 2 * per_sim + 64 > soft:
                    raise BenchError(f"{label}: needs about {max(n, 2 * per_sim) + 64} file descriptors "
                                     f"per process, the limit is {soft} (raise ulimit -n)")
                print(f"rep {rep + 1}/{a.repeats}: {label}", file=sys.stderr)
                res["runs"][key].append(scenario(a, n, slots, work, f"{key}-r{rep}", stub))
        for key, n, _slots, label, stub in scenarios:
            rs = res["runs"][key]
            if not rs:
                res["summary"][key] = {"label": label, "skipped": "tether worker has no --slots"}
                continue
            s: dict[str, Any] = {"label": label, "stub": stub, "n": len(rs)}
            for k in ("connect_s", "hold_ctl_cpu", "hold_ctl_wait", "hold_sim_cpu", "rate", "sim_rate",
                      "instant_ctl_cpu", "instant_ctl_wait", "instant_sim_cpu"):
                s[k] = summ([r[k] for r in rs])
            s["not_connected"] = sum(1 for r in rs if r["connected"] < n)
            s["connected_min"] = min(r["connected"] for r in rs)
            s["lost_workers"] = sum(r["left_lost"] or 0 for r in rs)
            s["lost_before"] = sum(r.get("left_lost_before_instant") or 0 for r in rs)
            s["lost_instant"] = sum(r.get("left_lost_instant") or 0 for r in rs)
            s["lost_events"] = sum(r["lost"] or 0 for r in rs)
            s["sim_silent"] = sum((r.get("sim_counts") or {}).get("silent_past_window", 0) for r in rs)
            s["all_held"] = all(r["all_held"] for r in rs)
            res["summary"][key] = s
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
        kill_all()
        if ok and not a.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
