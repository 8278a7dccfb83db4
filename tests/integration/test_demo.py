"""The demo (``scripts/demo`` runs ``python -m tether.demo``): real processes, a real run."""

from __future__ import annotations

import fcntl
import importlib.util
import os
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from tests.contract import check_log
from tests.integration.harness import TETHER, env, events_of
from tether.problems import BRANIN_MIN

HAS_BO = importlib.util.find_spec("gpflow") is not None
HAS_PLOT = importlib.util.find_spec("matplotlib") is not None
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def demo(tmp: Path, *args: str, timeout: float = 400) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tether.demo", "--log", str(tmp / "demo.jsonl"),
                           *args], cwd=tmp, env=env(), capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def field(out: str, name: str) -> str:
    found = re.search(rf"^{name} +(.+)$", out, re.MULTILINE)
    assert found, f"no '{name}' line in:\n{out}"
    return found.group(1)


@pytest.mark.bo
@pytest.mark.timeout(420)
@pytest.mark.skipif(not HAS_BO, reason="needs the bo extra (gpflow, tensorflow)")
def test_demo_runs_async_bo_and_reports_what_the_log_says(tmp_path: Path) -> None:
    r = demo(tmp_path, "--budget", "10")
    assert r.returncode == 0, r.stdout + r.stderr
    log = tmp_path / "demo.jsonl"
    check_log(log, completed=10)
    assert events_of(log, "run_started")[0]["strategy"]["name"] == "async-bo"
    done = events_of(log, "completed")
    # the three workers all took part, under the names the plot's timeline shows
    assert {e["worker"] for e in done} == {"demo-0", "demo-1", "demo-2"}
    best = min(done, key=lambda e: e["value"])
    x = {e["eval_id"]: e["x"] for e in events_of(log, "proposed")}[best["eval_id"]]
    assert float(field(r.stdout, "best value")) == pytest.approx(best["value"], abs=1e-6)
    assert field(r.stdout, "best point") == f"x0={x[0]:.6f}, x1={x[1]:.6f}"
    regret = float(field(r.stdout, "regret").split()[0])
    assert regret == pytest.approx(best["value"] - BRANIN_MIN, rel=1e-2)
    assert field(r.stdout, "log") == "demo.jsonl"
    # the controller's own output (what it loads, where it listens, progress) is the demo's
    assert "tether controller listening on" in r.stderr and "Traceback" not in r.stderr
    if HAS_PLOT:
        png = tmp_path / "demo.png"
        assert field(r.stdout, "plot").startswith("demo.png")
        assert png.read_bytes()[:8] == PNG_MAGIC


@pytest.mark.timeout(180)
def test_demo_fails_cleanly_when_the_controller_cannot_start(tmp_path: Path) -> None:
    r = demo(tmp_path, "--strategy", "no-such-strategy", timeout=150)
    assert r.returncode == 1
    assert "unknown strategy 'no-such-strategy'" in r.stderr
    assert "demo failed" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.timeout(180)
def test_demo_without_the_model_library(tmp_path: Path) -> None:
    """Any strategy runs through the same demo: a quick check that needs no TensorFlow."""
    r = demo(tmp_path, "--strategy", "random", "--budget", "6", "--no-plot", timeout=150)
    assert r.returncode == 0, r.stdout + r.stderr
    check_log(tmp_path / "demo.jsonl", completed=6)
    assert "completed  6 evaluations" in r.stdout and "regret" in r.stdout
    assert not (tmp_path / "demo.png").exists()


def read_pty(master: int, proc: subprocess.Popen[bytes], timeout: float) -> str:
    """Everything written to the terminal until the process exits and the pty drains."""
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the other side is closed
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    return b"".join(chunks).decode("utf-8", "replace")


@pytest.mark.timeout(180)
def test_on_a_terminal_the_live_line_leaves_the_startup_lines_whole(tmp_path: Path) -> None:
    """What a newcomer sees: the live progress line (tqdm) on a pseudo-terminal."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    addr = tmp_path / "addr"
    ctl = subprocess.Popen([*TETHER, "controller", "--budget", "5", "--bind", "tcp://127.0.0.1:0",
                            "--address-file", str(addr), "--log", str(tmp_path / "run.jsonl")],
                           stdin=slave, stdout=slave, stderr=slave, env=env(), cwd=tmp_path)
    os.close(slave)
    worker = subprocess.Popen([*TETHER, "worker", "--address-file", str(addr), "--python",
                               "tests.integration.objectives:sleepy"], env=env(), cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        screen = read_pty(master, ctl, 150)
        assert ctl.wait(timeout=30) == 0 and worker.wait(timeout=30) == 0
    finally:
        os.close(master)
        for p in (ctl, worker):
            if p.poll() is None:
                p.kill()
    lines = [ln.split("\r")[-1] for ln in screen.replace("\r\n", "\n").split("\n")]
    assert any(ln.startswith("tether controller listening on tcp://127.0.0.1:") for ln in lines), screen
    assert "5/5" in screen and "%|" in screen, screen  # the bar, drawn to the end
    assert "run finished (budget): 5 completed" in screen
