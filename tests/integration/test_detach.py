"""``tether controller --detach --pidfile``: real background controllers, real signals."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.contract import check_log
from tests.integration.harness import TETHER, env, events_of, wait_for
from tether.controller.detach import strip_detach

CONFIG = """\
[space]
x0 = [0.0, 1.0]
x1 = [0.0, 1.0]

[strategy]
name = "{strategy}"

[run]
budget = {budget}
bind = "tcp://127.0.0.1:0"
log = "run.jsonl"
heartbeat = 0.2
liveness = 3
progress = 0.5
"""


def tether(tmp: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*TETHER, *args], cwd=tmp, env=env(), capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def alive(pid: int) -> bool:
    """Running, not a zombie (the detached controller is not our child: init reaps it)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


@pytest.fixture
def background(tmp_path: Path) -> Iterator[list[int]]:
    """Pids to SIGKILL at the end whatever happens: detached processes outlive a test."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)  # its own session and process group


def start_detached(tmp: Path, pids: list[int], *extra: str) -> int:
    r = tether(tmp, "controller", "c.toml", "--detach", "--pidfile", "ctl.pid", *extra)
    assert r.returncode == 0, r.stdout + r.stderr
    pid = int((tmp / "ctl.pid").read_text())
    pids.append(pid)
    assert f"pid {pid}" in r.stdout and "tcp://127.0.0.1:" in r.stdout
    assert alive(pid)
    # it returned once the controller listens: the address file is there already
    assert (tmp / "run.jsonl.address").read_text().startswith("tcp://127.0.0.1:")
    return pid


@pytest.mark.timeout(240)
def test_detach_sigterm_resume_completes_the_budget(tmp_path: Path,
                                                    background: list[int]) -> None:
    (tmp_path / "c.toml").write_text(CONFIG.format(strategy="random", budget=30))
    pid = start_detached(tmp_path, background)
    log = tmp_path / "run.jsonl"
    out = tmp_path / "run.jsonl.out"
    worker = subprocess.Popen([*TETHER, "worker", "--address-file", "run.jsonl.address",
                               "--python", "tests.integration.objectives:sleepy", "--name", "w"],
                              cwd=tmp_path, env=env(), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    background.append(worker.pid)
    wait_for(lambda: len(events_of(log, "completed")) >= 3, 90, "three completed evaluations")
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not alive(pid), 60, "the controller to stop on SIGTERM")
    assert not (tmp_path / "ctl.pid").exists()  # removed by the controller on its way out
    assert "stopped (SIGTERM)" in out.read_text() and "--resume" in out.read_text()
    done_before = len(events_of(log, "completed"))
    assert done_before < 30 and not events_of(log, "run_finished")

    pid2 = start_detached(tmp_path, background, "--resume")
    assert pid2 != pid
    # the same worker finds the resumed controller (a new port) through the address file
    wait_for(lambda: events_of(log, "run_finished"), 120, "the resumed run to finish")
    assert worker.wait(timeout=60) == 0
    wait_for(lambda: not alive(pid2), 30, "the resumed controller to exit")
    check_log(log, completed=30)
    assert len(events_of(log, "run_started")) == 2
    assert events_of(log, "run_finished")[-1]["reason"] == "budget"
    assert not (tmp_path / "ctl.pid").exists()
    assert (tmp_path / "run.jsonl.address").read_text().splitlines()[1] == "finished budget"


@pytest.mark.timeout(120)
def test_detach_bad_config_exits_2_with_the_controllers_line(tmp_path: Path) -> None:
    # found by the controller in the background: an unknown strategy
    (tmp_path / "c.toml").write_text(CONFIG.format(strategy="no-such-strategy", budget=4))
    r = tether(tmp_path, "controller", "c.toml", "--detach", "--pidfile", "ctl.pid")
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown strategy 'no-such-strategy'" in lines[0], r.stderr
    assert "Traceback" not in (tmp_path / "run.jsonl.out").read_text()
    assert not (tmp_path / "ctl.pid").exists()
    # found before anything starts: an unknown [run] key
    (tmp_path / "c.toml").write_text(CONFIG.format(strategy="random", budget=4) + "colour = 1\n")
    r = tether(tmp_path, "controller", "c.toml", "--detach", "--pidfile", "ctl.pid")
    assert r.returncode == 2
    assert r.stderr.strip() == "tether: error: unknown key in [run]: colour"


@pytest.mark.timeout(120)
def test_detach_refuses_a_live_pidfile_and_needs_one(tmp_path: Path,
                                                     background: list[int]) -> None:
    (tmp_path / "c.toml").write_text(CONFIG.format(strategy="random", budget=4))
    r = tether(tmp_path, "controller", "c.toml", "--detach")
    assert r.returncode == 2 and "--pidfile" in r.stderr and len(r.stderr.splitlines()) == 1
    pid = start_detached(tmp_path, background)  # no worker: it waits
    # the same log: the refused controller appends to the .out the live one writes to
    r = tether(tmp_path, "controller", "c.toml", "--detach", "--pidfile", "ctl.pid")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        f"tether: error: pidfile ctl.pid names a running tether process ({pid}): stop it, "
        "or give another --pidfile"]
    assert (tmp_path / "ctl.pid").read_text().strip() == str(pid)  # left alone
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not alive(pid), 60, "the controller to stop")
    # a stale pidfile (its process is gone) is taken over
    (tmp_path / "ctl.pid").write_text(f"{pid}\n")
    start_detached(tmp_path, background, "--resume")


def test_strip_detach_removes_every_spelling() -> None:
    argv = ["controller", "c.toml", "--det", "--pidfile", "p", "--detach", "--d", "--log", "x"]
    assert strip_detach(argv) == ["controller", "c.toml", "--pidfile", "p", "--log", "x"]
