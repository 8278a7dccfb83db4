"""The address a controller writes for its workers (issue 16: the address-file problem).

The choice is tested by calling the functions and by reading the address file, never by
connecting to this machine's other addresses: controllers here bind 127.0.0.1, or a
wildcard only inside a fresh network namespace whose one interface is loopback.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from tests.integration.harness import TETHER, Cluster, env, wait_for
from tether.controller.daemon import advertised, check_advertise, reachable_host
from tether.errors import ConfigError

pytestmark = pytest.mark.timeout(90)


def _loopback_only(name: str) -> bool:
    try:
        infos = socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)
    except OSError:
        return True
    return all(ipaddress.ip_address(str(i[4][0]).split("%")[0]).is_loopback for i in infos)


# ------------------------------------------------------------------ the choice itself
def test_a_name_that_resolves_beyond_loopback_is_kept() -> None:
    # an address literal resolves to itself without any lookup on the network
    assert reachable_host(["localhost", "192.0.2.77"], ["10.1.2.3"]) == ("192.0.2.77", True)


def test_a_name_that_resolves_to_loopback_gives_way_to_an_interface() -> None:
    host, ok = reachable_host(["localhost", "127.0.1.1"],
                              ["127.0.0.1", "169.254.3.4", "10.20.30.40", "10.9.9.9"])
    assert (host, ok) == ("10.20.30.40", True)  # link-local skipped, first usable wins


def test_only_loopback_known_says_so() -> None:
    assert reachable_host(["localhost"], ["127.0.0.1"]) == ("127.0.0.1", False)
    assert reachable_host([], []) == ("127.0.0.1", False)


def test_this_machine_gets_a_routable_choice_when_it_has_one() -> None:
    host, ok = reachable_host()
    name = socket.gethostname()
    if ok:
        assert not _loopback_only(host), f"{host} only reaches this host itself"
        if _loopback_only(name) and _loopback_only(socket.getfqdn()):
            ipaddress.ip_address(host)  # the names are useless here: an interface address
    else:
        assert host == "127.0.0.1"
    where = advertised("tcp://0.0.0.0:5555")
    assert where == f"tcp://{host}:5555"


def test_advertised_endpoints() -> None:
    assert advertised("tcp://127.0.0.1:41000") == "tcp://127.0.0.1:41000"  # bound: kept
    assert advertised("tcp://0.0.0.0:41000", "node7.example") == "tcp://node7.example:41000"
    assert advertised("tcp://127.0.0.1:41000", "10.0.0.5") == "tcp://10.0.0.5:41000"
    assert advertised("tcp://[::]:41000", "fd00::5") == "tcp://[fd00::5]:41000"
    assert advertised("ipc:///tmp/tether.sock") == "ipc:///tmp/tether.sock"


@pytest.mark.parametrize("bad", ["", "tcp://node7:5555", "node7:5555", "two words"])
def test_check_advertise_rejects_what_is_not_a_host(bad: str) -> None:
    with pytest.raises(ConfigError, match="--advertise"):
        check_advertise(bad)
    check_advertise("node7.cluster.example")
    check_advertise("fd00::5")


# ------------------------------------------------------------------ real controllers
def test_advertise_is_written_to_the_address_file(tmp_path: Path) -> None:
    c = Cluster(tmp_path)
    try:
        c.start_controller("--advertise", "node7.example", config=c.config(budget=2))
        text = c.addr.read_text()
        assert re.fullmatch(r"tcp://node7\.example:\d+\n", text), text
    finally:
        c.close()


def test_workers_follow_an_advertised_loopback_address(tmp_path: Path) -> None:
    c = Cluster(tmp_path)
    try:
        c.start_controller("--advertise", "127.0.0.1", config=c.config(budget=3))
        assert re.fullmatch(r"tcp://127\.0\.0\.1:\d+\n", c.addr.read_text())
        c.start_worker(python="tests.integration.objectives:quadratic")
        assert c.wait_controller(60) == 0, c.output("controller")
    finally:
        c.close()


def test_bad_advertise_exits_2_with_one_line(tmp_path: Path) -> None:
    r = subprocess.run([*TETHER, "controller", "--bind", "tcp://127.0.0.1:0",
                        "--log", str(tmp_path / "run.jsonl"), "--advertise", "tcp://x:1"],
                       capture_output=True, text=True, env=env(), timeout=60)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "--advertise" in r.stderr, r.stderr


def test_wildcard_on_a_loopback_only_host_warns(tmp_path: Path) -> None:
    """A wildcard bind where loopback is all there is: a fresh network namespace."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare(1) for a private network namespace")
    addr = tmp_path / "address"
    argv = ["unshare", "-n", *TETHER, "controller", "--bind", "tcp://*:0", "--budget", "1",
            "--log", str(tmp_path / "run.jsonl"), "--address-file", str(addr)]
    with open(tmp_path / "controller.out", "w") as out:
        p = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env(), text=True)
    try:
        wait_for(lambda: addr.exists() or p.poll() is not None, 30, "the address file")
        assert addr.exists(), (tmp_path / "controller.out").read_text()
        assert re.fullmatch(r"tcp://127\.0\.0\.1:\d+\n", addr.read_text())
        said = wait_for(lambda: "only a loopback address" in (tmp_path / "controller.out")
                        .read_text(), 10, "the warning")
        assert said
    finally:
        p.kill()
        p.wait(timeout=10)
