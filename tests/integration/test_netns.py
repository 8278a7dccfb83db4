"""A network cut longer than the liveness window (issue 4, test 3).

One worker runs in its own network namespace, joined to the controller by a veth pair;
another runs on the host. The controller binds the host end's address and both workers
dial it. Mid-run the link goes down for longer than the liveness window: the controller
must log the cut worker ``lost`` and re-queue its evaluation to the other worker; when
the link comes back the cut worker reconnects by itself, joins again, and the result it
finished while cut off is counted at most once. Everything is asserted from the log.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from tests.contract import check_log, load
from tests.integration.harness import TETHER, Cluster, events_of, wait_for

pytestmark = [pytest.mark.netns, pytest.mark.timeout(180)]

OBJECTIVE = "tests.integration.test_netns:one_second"
HEARTBEAT, LIVENESS = 0.5, 3  # liveness window 1.5 s
CUT = 6.0  # seconds the link stays down: well past the window and one evaluation


def one_second(x: np.ndarray) -> float:
    time.sleep(1.0)
    return float(np.sum((x - 0.3) ** 2))


def _ip(*args: str, ns: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    argv = ["ip", *(["netns", "exec", ns, "ip"] if ns else []), *args]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {r.stderr.strip()}")
    return r


@pytest.fixture
def netns() -> Iterator[tuple[str, str, str]]:
    """A namespace joined to the host by a veth pair: (namespace, host link, host IP)."""
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    if shutil.which("ip") is None:
        pytest.skip("iproute2 is not installed (apt-get install iproute2)")
    tag = f"{os.getpid() % 10000}{random.randrange(100)}"
    ns, host_if, ns_if = f"tether{tag}", f"tvh{tag}", f"tvn{tag}"
    net = f"10.{random.randrange(100, 250)}.{random.randrange(256)}"
    try:
        _ip("netns", "add", ns)
        _ip("link", "add", host_if, "type", "veth", "peer", "name", ns_if)
        _ip("link", "set", ns_if, "netns", ns)
        _ip("addr", "add", f"{net}.1/24", "dev", host_if)
        _ip("link", "set", host_if, "up")
        _ip("addr", "add", f"{net}.2/24", "dev", ns_if, ns=ns)
        _ip("link", "set", ns_if, "up", ns=ns)
        _ip("link", "set", "lo", "up", ns=ns)
        yield ns, host_if, f"{net}.1"
    finally:
        _ip("link", "del", host_if, check=False)  # takes its peer with it
        _ip("netns", "del", ns, check=False)


def test_network_cut_longer_than_liveness(cluster: Cluster, netns: tuple[str, str, str]) -> None:
    ns, host_if, ip = netns
    # one evaluation per worker at a time, so the cut strands exactly one
    cfg = cluster.config(budget=60, run=f"heartbeat = {HEARTBEAT}\nliveness = {LIVENESS}\nprefetch = 0")
    # bind every interface: the host worker dials 127.0.0.1, the namespaced one the
    # veth address (taking a link down also takes away its local address on the host)
    cluster.start_controller("--bind", "tcp://0.0.0.0:0", config=cfg)
    port = cluster.addr.read_text().strip().rsplit(":", 1)[1]
    worker = [*TETHER, "worker", "--python", OBJECTIVE]
    cut_worker = cluster._spawn(["ip", "netns", "exec", ns, *worker, "--connect",
                                 f"tcp://{ip}:{port}", "--name", "cut"], "cut")
    cluster._spawn([*worker, "--connect", f"tcp://127.0.0.1:{port}", "--name", "host"], "host")

    def cut_holds() -> dict[str, Any] | None:  # an evaluation the cut worker is running right now
        done = {e["eval_id"] for e in events_of(cluster.log)
                if e["event"] in ("completed", "failed", "killed", "requeued")}
        mine = [e for e in events_of(cluster.log, "started")
                if e["worker"] == "cut" and e["eval_id"] not in done]
        return mine[-1] if mine else None

    wait_for(lambda: len(events_of(cluster.log, "completed")) >= 4, 60, "the run to get going")
    held = wait_for(cut_holds, 30, "the namespaced worker to start an evaluation")
    eval_id = held["eval_id"]
    _ip("link", "set", host_if, "down")
    t_cut = time.time()
    try:
        lost = wait_for(lambda: [e for e in events_of(cluster.log, "lost")
                                 if e["eval_id"] == eval_id], CUT, "the controller to see the cut")
        # keep the link down until the host worker has finished the re-queued evaluation
        wait_for(lambda: [e for e in events_of(cluster.log, "completed")
                          if e["eval_id"] == eval_id], CUT + 60, "the host to finish it")
    finally:
        _ip("link", "set", host_if, "up")
    t_up = time.time()

    def rejoined() -> bool:
        return sum(e["worker"] == "cut" for e in events_of(cluster.log, "worker_joined")) >= 2

    wait_for(rejoined, 60, "the cut worker to reconnect by itself and join again")
    t_rejoin = next(e["t"] for e in events_of(cluster.log, "worker_joined")[::-1]
                    if e["worker"] == "cut")
    assert cluster.wait_controller(120) == 0, cluster.output("controller")
    assert cut_worker.wait(timeout=30) == 0, cluster.output("cut")

    counts = check_log(cluster.log, completed=60)  # also: one terminal event per evaluation
    events = load(cluster.log)
    # noticed once the liveness window passed since the last message (heartbeats: 0.5 s)
    lost_t = lost[0]["t"]
    took = lost_t - t_cut
    assert HEARTBEAT * (LIVENESS - 1) - 0.1 <= took < HEARTBEAT * LIVENESS + 2.0, took
    left = [e for e in events if e["event"] == "worker_left" and e["worker"] == "cut"]
    assert left and left[0]["reason"] == "lost", left
    # ... re-queued the evaluation at once and handed it to the host worker
    requeued = [e for e in events if e["event"] == "requeued" and e["eval_id"] == eval_id]
    assert requeued and requeued[0]["seq"] > lost[0]["seq"], requeued
    assert requeued[0]["attempt"] == lost[0]["attempt"] + 1
    again = [e for e in events if e["event"] == "started" and e["eval_id"] == eval_id
             and e["seq"] > requeued[0]["seq"]]
    assert again and again[0]["worker"] == "host", again
    # the evaluation finished on both sides of the cut, and counted exactly once
    done = [e for e in events if e["event"] == "completed" and e["eval_id"] == eval_id]
    assert len(done) == 1, done
    assert counts["lost"] == 1 and counts["failed"] == 0
    # the cut worker came back by itself and worked again after rejoining
    assert any(e["event"] == "completed" and e["worker"] == "cut" and e["t"] > t_rejoin
               for e in events), "the rejoined worker did no work"
    print(f"\nnetwork cut: lost after {lost_t - t_cut:.2f} s, rejoined {t_rejoin - t_up:.2f} s "
          f"after the link came back; eval {eval_id} completed by {done[0]['worker']}")



def _peers_of(port: str) -> list[str]:
    """Remote addresses of the host's established TCP connections on local ``port``."""
    r = subprocess.run(["ss", "-Htn", "state", "established", f"( sport = :{port} )"],
                       capture_output=True, text=True, timeout=30, check=True)
    return [line.split()[-1] for line in r.stdout.splitlines() if line.strip()]


def test_the_connection_of_a_vanished_worker_is_freed(cluster: Cluster,
                                                      netns: tuple[str, str, str]) -> None:
    """A worker that vanishes without a FIN (its node died, its link went for good) must
    not hold a connection at the controller for ever. The controller sends no ZMTP pings
    (at 10,000 connections libzmq's timer bookkeeping for them cost half its CPU), so
    this is the kernel's job: keepalive and TCP_USER_TIMEOUT, set from the heartbeat."""
    if shutil.which("ss") is None:
        pytest.skip("ss (iproute2) is not installed")
    ns, host_if, ip = netns
    ns_ip = ip.rsplit(".", 1)[0] + ".2"
    # heartbeat 0.2 s: probes every 2 s, given up after 3 of them (6 s)
    cfg = cluster.config(budget=10_000, run="heartbeat = 0.2\nliveness = 3\nprefetch = 0")
    cluster.start_controller("--bind", "tcp://0.0.0.0:0", config=cfg)
    port = cluster.addr.read_text().strip().rsplit(":", 1)[1]
    cut = cluster._spawn(["ip", "netns", "exec", ns, *TETHER, "worker", "--python", OBJECTIVE,
                          "--connect", f"tcp://{ip}:{port}", "--name", "cut"], "cut")
    wait_for(lambda: any(e["worker"] == "cut" for e in events_of(cluster.log, "started")), 60,
             "the namespaced worker to start an evaluation")
    assert any(p.startswith(f"{ns_ip}:") for p in _peers_of(port)), _peers_of(port)
    # the worker dies behind a dead link: its FIN never arrives, and nothing ever answers
    _ip("link", "set", host_if, "down")
    os.killpg(cut.pid, 9)
    cut.wait(timeout=30)
    _ip("link", "del", host_if)
    t0 = time.monotonic()
    wait_for(lambda: [e for e in events_of(cluster.log, "lost") if e["worker"] == "cut"], 30,
             "the controller to declare the worker lost")
    wait_for(lambda: not any(p.startswith(f"{ns_ip}:") for p in _peers_of(port)), 60,
             "the controller's kernel to free the dead connection", every=0.2)
    print(f"\nvanished worker: connection freed {time.monotonic() - t0:.1f} s after the cut")
    assert cluster.controller is not None and cluster.controller.poll() is None
