"""CURVE on real sockets and real processes over 127.0.0.1: who gets in, who gets nothing."""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq

from tests.contract import check_log
from tests.integration.harness import TETHER, Cluster, events_of, wait_for
from tether import keys
from tether.protocol import codec
from tether.protocol import messages as m

pytestmark = pytest.mark.timeout(120)
OBJECTIVE = "tests.integration.objectives:quadratic"
SILENCE = 3.0  # seconds a refused peer is watched for any message at all


class Sockets:
    """Sockets of one context, closed by the test's end; then the context is terminated
    (``destroy`` would close the ZAP handler's sockets from this thread: not thread-safe)."""

    def __init__(self) -> None:
        self.ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self.made: list[zmq.Socket[bytes]] = []

    def socket(self, kind: int) -> zmq.Socket[bytes]:
        s = self.ctx.socket(kind)
        s.linger = 0
        self.made.append(s)
        return s

    def close(self) -> None:
        for s in self.made:
            s.close(0)
        self.ctx.term()  # the ZAP thread sees ETERM, closes its own sockets and ends


@pytest.fixture
def socks() -> Iterator[Sockets]:
    s = Sockets()
    yield s
    s.close()


def secrets_in(directory: Path) -> list[str]:
    out = []
    for p in directory.rglob("*" + keys.SECRET):
        out += [ln.split('"')[1] for ln in p.read_text().splitlines() if "secret-key" in ln]
    return out


def mixed_pair(tmp: Path, name: str, worker_from: Path, controller_from: Path) -> Path:
    """A worker key directory with one directory's worker pair and another's controller key."""
    d = tmp / name
    d.mkdir(mode=0o700)
    shutil.copy2(worker_from / "worker.key_secret", d / "worker.key_secret")
    shutil.copy2(controller_from / "controller.key", d / "controller.key")
    return d


def dealer(socks: Sockets, endpoint: str, key_dir: Path | None, name: str,
           slots: int = 0) -> zmq.Socket[bytes]:
    """A raw DEALER that says a valid hello (asking for no work) with the keys of ``key_dir``."""
    s = socks.socket(zmq.DEALER)
    keys.configure_client(s, key_dir)
    s.connect(endpoint)
    s.send(codec.encode(m.Hello(name, f"session-{name}", slots=slots)))  # queued until connected
    return s


def spawn_worker(cluster: Cluster, name: str, key_dir: Path | None) -> None:
    """A real worker process, verbose so that it would say 'joined controller' on a welcome."""
    extra = ["--keys", str(key_dir)] if key_dir else []
    argv = [*TETHER, "-v", "worker", "--address-file", str(cluster.addr), "--name", name,
            "--python", OBJECTIVE, *extra]
    cluster.workers.append(cluster._spawn(argv, name))


def test_only_allowed_workers_get_anything(cluster: Cluster, tmp_path: Path,
                                           socks: Sockets) -> None:
    kd, other = tmp_path / "keys", tmp_path / "other"
    keys.generate(kd, workers=2)
    keys.generate(other)
    w1, w2 = kd / "workers" / "worker-1", kd / "workers" / "worker-2"
    # an unknown pair that knows the right controller key; an allowed pair that does not
    stranger = mixed_pair(tmp_path, "stranger", other / "workers" / "worker", kd)
    wrong_server = mixed_pair(tmp_path, "wrong-server", w2, other)
    cfg = cluster.config(budget=6, run=f'keys = "{kd}"')  # [run] keys, as in a config file
    t0 = time.monotonic()
    ctl = cluster.start_controller(config=cfg)
    endpoint = cluster.addr.read_text().strip()
    bad = {"nokeys": None, "stranger": stranger, "wrongserver": wrong_server}
    for name, d in bad.items():
        spawn_worker(cluster, name, d)
    probes = {name: dealer(socks, endpoint, d, f"probe-{name}") for name, d in bad.items()}
    good = dealer(socks, endpoint, w2, "probe-ok")

    # the allowed key is answered: the silence of the others is not a dead controller
    assert good.poll(20_000), "the allowed probe got no welcome"
    assert isinstance(codec.decode(good.recv(), m.CONTROLLER_MESSAGES), m.Welcome)
    deadline = time.monotonic() + SILENCE
    poller = zmq.Poller()
    for s in probes.values():
        poller.register(s, zmq.POLLIN)
    while (left := deadline - time.monotonic()) > 0:
        heard = dict(poller.poll(int(left * 1000) + 1))
        assert not heard, f"a refused peer received a message: {heard}"
    out = lambda: cluster.output("controller")  # noqa: E731
    wait_for(lambda: "refused a connection from 127.0.0.1" in out(), 20, "an unknown-key refusal")
    wait_for(lambda: "no CURVE, or not this controller's public key" in out(), 20,
             "a failed-handshake refusal")

    spawn_worker(cluster, "honest", w1)
    assert cluster.wait_controller() == 0
    check_log(cluster.log, completed=6)
    joined = {e["worker"] for e in events_of(cluster.log, "worker_joined")}
    assert joined <= {"honest", "probe-ok"} and "honest" in joined
    workers = {e["worker"] for e in events_of(cluster.log) if e["event"] in ("started", "completed")}
    assert workers == {"honest"}  # no evaluation was handed to anyone else
    for name in bad:
        assert "joined the controller" not in cluster.output(name), cluster.output(name)
    assert all(w.poll() is None for w in cluster.workers[:3])  # still waiting, never answered
    assert "joined the controller" in cluster.output("honest")
    assert ctl.returncode == 0
    text = cluster.output("controller")
    for secret in secrets_in(kd) + secrets_in(other):
        assert secret not in text
    # the refused peers kept retrying; the controller said so once a minute at most
    per_minute = 1 + int((time.monotonic() - t0) // keys.REFUSAL_LOG_INTERVAL)
    assert 1 <= text.count("refused a connection from 127.0.0.1") <= per_minute
    assert 1 <= text.count("refused a connection from an address libzmq") <= per_minute
    assert keys.fingerprint(keys.load_client(stranger).public) in text  # who was refused


def test_key_added_while_running_is_accepted(cluster: Cluster, tmp_path: Path) -> None:
    kd = tmp_path / "keys"
    keys.generate(kd)
    keys.generate(kd, add_worker="late")
    parked = tmp_path / "late.key"
    (kd / "authorized" / "late.key").rename(parked)  # not allowed yet
    fp = keys.fingerprint(keys.load_client(kd / "workers" / "late").public)
    ctl = cluster.start_controller("--keys", str(kd), config=cluster.config(budget=3))
    spawn_worker(cluster, "late", kd / "workers" / "late")
    out = lambda: cluster.output("controller")  # noqa: E731
    wait_for(lambda: fp in out(), 30, "the late worker's refusal")
    assert not events_of(cluster.log, "worker_joined")

    reloads = out().count(" key(s) (+")  # the line an allow-list (re-)read logs
    os.kill(ctl.pid, signal.SIGHUP)  # re-read on request; the controller stays up
    wait_for(lambda: out().count(" key(s) (+") > reloads, 20, "the allow-list reload on SIGHUP")
    assert ctl.poll() is None

    parked.rename(kd / "authorized" / "late.key")  # no restart, no signal: noticed by itself
    assert cluster.wait_controller(timeout=90) == 0
    check_log(cluster.log, completed=3)
    assert {e["worker"] for e in events_of(cluster.log, "worker_joined")} == {"late"}
    assert cluster.workers[0].wait(timeout=30) == 0


def test_connection_key_is_visible_to_the_server(tmp_path: Path,
                                                 socks: Sockets) -> None:
    """The API the controller uses to bind a worker name to a key (User-Id, X-Tether-Key)."""
    kd = tmp_path / "keys"
    keys.generate(kd, workers=2)
    router = socks.socket(zmq.ROUTER)
    keys.configure_server(router, kd)
    # fail closed: without it libzmq lets any key in whenever no ZAP handler answers
    assert router.getsockopt(zmq.ZAP_ENFORCE_DOMAIN) == 1
    port = router.bind_to_random_port("tcp://127.0.0.1")
    plain = socks.socket(zmq.ROUTER)
    plain_port = plain.bind_to_random_port("tcp://127.0.0.1")

    d = dealer(socks, f"tcp://127.0.0.1:{port}", kd / "workers" / "worker-2", "w2", slots=1)
    assert router.poll(20_000)
    frames = router.recv_multipart(copy=False)
    public = keys.load_client(kd / "workers" / "worker-2").public.decode()
    assert keys.peer_key(frames[0]) == public == keys.peer_key(frames[1])
    assert keys.peer_key_name(frames[1]) == "worker-2"
    assert keys.peer_fingerprint(frames[1]) == keys.fingerprint(public)
    assert codec.decode(frames[1].bytes) == m.Hello("w2", "session-w2", slots=1)

    dealer(socks, f"tcp://127.0.0.1:{plain_port}", None, "nokeys")
    assert plain.poll(20_000)
    nf = plain.recv_multipart(copy=False)
    assert keys.peer_key(nf[1]) is None and keys.peer_fingerprint(nf[1]) is None
    assert keys.refusals(plain) == {}

    dealer(socks, f"tcp://127.0.0.1:{port}", None, "refused")  # no CURVE: refused, counted
    wait_for(lambda: keys.refusals(router).get("handshake"), 20, "a counted refusal")
    assert not router.poll(0)
    assert d.poll(0) == 0


def test_routing_id_takeover_is_refused(tmp_path: Path, socks: Sockets) -> None:
    """An allowed peer that copies another's routing id gets neither its traffic nor its voice."""
    kd = tmp_path / "keys"
    keys.generate(kd, workers=2)
    router = socks.socket(zmq.ROUTER)
    keys.configure_server(router, kd)
    endpoint = f"tcp://127.0.0.1:{router.bind_to_random_port('tcp://127.0.0.1')}"
    a = dealer(socks, endpoint, kd / "workers" / "worker-1", "a")
    assert router.poll(20_000)
    frames, key_a = keys.recv_with_key(router, zmq.NOBLOCK)
    rid = frames[0]
    assert key_a == keys.load_client(kd / "workers" / "worker-1").public.decode()

    b = socks.socket(zmq.DEALER)
    b.routing_id = rid  # claims a's routing id
    keys.configure_client(b, kd / "workers" / "worker-2")
    b.connect(endpoint)
    b.send(codec.encode(m.Result(1, 0, -1e9)))
    a.send(codec.encode(m.Heartbeat()))  # a is still heard, under its own key
    assert router.poll(20_000)
    frames, key = keys.recv_with_key(router, zmq.NOBLOCK)
    assert frames == [rid, codec.encode(m.Heartbeat())] and key == key_a
    router.send_multipart([rid, codec.encode(m.Evaluate(1, 0, (0.5,)))])
    assert a.poll(20_000) and isinstance(codec.decode(a.recv()), m.Evaluate)
    assert not router.poll(int(SILENCE * 1000)), "the impostor's message arrived"
    assert b.poll(0) == 0
