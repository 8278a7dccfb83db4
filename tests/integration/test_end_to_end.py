"""A real controller and real worker processes over 127.0.0.1 (issue 3's list)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.contract import check_log
from tests.integration.harness import TETHER, Cluster, env, events_of

PROG = Path(__file__).parent / "progs" / "objective.py"
pytestmark = pytest.mark.timeout(120)


def command(mode: str) -> str:
    return f"{sys.executable} {PROG} {mode} {{x0}} {{x1}}"


def test_python_objective_three_workers(cluster: Cluster) -> None:
    cfg = cluster.config(budget=20, strategy="lhs")
    cluster.start_controller(config=cfg)
    for _ in range(3):
        cluster.start_worker(python="tests.integration.objectives:quadratic")
    assert cluster.wait_controller() == 0
    counts = check_log(cluster.log, completed=20)
    assert counts["worker_joined"] >= 1
    for w in cluster.workers:  # the run is over: every worker was told and exits 0
        assert w.wait(timeout=30) == 0
    out = cluster.output("controller")
    assert "best value" in out and str(cluster.log) in out
    values = [e["value"] for e in events_of(cluster.log, "completed")]
    xs = {e["eval_id"]: e["x"] for e in events_of(cluster.log, "proposed")}
    for e in events_of(cluster.log, "completed"):  # the value belongs to the point proposed
        x = xs[e["eval_id"]]
        assert e["value"] == pytest.approx((x[0] - 0.3) ** 2 + (x[1] - 0.3) ** 2, rel=1e-12)
    assert len(values) == 20


@pytest.mark.parametrize("mode", ["value", "last", "env"])
def test_subprocess_objective(cluster: Cluster, mode: str) -> None:
    cluster.start_controller(config=cluster.config(budget=6))
    cluster.start_worker(command=command(mode))
    cluster.start_worker(command=command(mode))
    assert cluster.wait_controller() == 0
    check_log(cluster.log, completed=6)
    xs = {e["eval_id"]: e["x"] for e in events_of(cluster.log, "proposed")}
    for e in events_of(cluster.log, "completed"):
        x = xs[e["eval_id"]]  # full float precision crossed argv: values match exactly
        assert e["value"] == (x[0] - 0.3) ** 2 + (x[1] - 0.3) ** 2


@pytest.mark.parametrize("how", ["python", "command"])
def test_partials_reach_the_log(cluster: Cluster, how: str) -> None:
    cluster.start_controller(config=cluster.config(budget=4))
    if how == "python":
        cluster.start_worker(python="tests.integration.objectives:streaming")
    else:
        cluster.start_worker(command=command("partial"))
    assert cluster.wait_controller() == 0
    counts = check_log(cluster.log, completed=4)
    assert counts["partial"] == 12
    partials = events_of(cluster.log, "partial")
    finals = {e["eval_id"]: e["value"] for e in events_of(cluster.log, "completed")}
    for e in partials:  # streamed in order, before the final value: v+3, v+2, v+1
        assert e["value"] - finals[e["eval_id"]] in (pytest.approx(3), pytest.approx(2),
                                                     pytest.approx(1))


def test_objective_that_raises_fails_record_and_run_goes_on(cluster: Cluster) -> None:
    cluster.start_controller(config=cluster.config(budget=8))
    cluster.start_worker(python="tests.integration.objectives:raises_left")
    cluster.start_worker(python="tests.integration.objectives:raises_left")
    assert cluster.wait_controller() == 0
    counts = check_log(cluster.log, completed=8)
    assert counts["failed"] >= 1
    for e in events_of(cluster.log, "failed"):
        assert "left half is forbidden" in e["error"]
        assert "Traceback" in e["error"]  # the traceback is in the log too
    for e in events_of(cluster.log, "completed"):
        assert e["value"] >= 0.5


@pytest.mark.parametrize("mode, needle", [("exit3", "exit status 3"),
                                          ("novalue", "no value"),
                                          ("nan", "not finite")])
def test_subprocess_failures(cluster: Cluster, mode: str, needle: str) -> None:
    cfg = cluster.config(budget=3, run="max_time = 60")
    cluster.start_controller(config=cfg)
    cluster.start_worker(command=command(mode))
    # every evaluation fails, so the budget is never met: watch the failures, then stop
    from tests.integration.harness import wait_for

    wait_for(lambda: len(events_of(cluster.log, "failed")) >= 3, 60, "three failed records")
    failed = events_of(cluster.log, "failed")
    assert all(needle in e["error"] for e in failed), failed[0]["error"]
    if mode == "exit3":
        assert failed[0]["error"].endswith("something went wrong in the solver")
    cluster.kill(cluster.controller)  # type: ignore[arg-type]
    check_log(cluster.log)


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*TETHER, *args], capture_output=True, text=True, env=env(), cwd=cwd,
                          timeout=60)


@pytest.mark.parametrize("text, needle", [
    ("[space]\nx0 = [1.0, 1.0]\n", "empty bounds"),
    ("[space]\nx0 = [0.0, 1.0]\n[run]\nbudgett = 3\n", "budgett"),
    ("[space]\nx0 = [0.0, 1.0]\n[run]\nbudget = \"3\"\n", "budget"),
    ("[space]\nx0 = [0.0, 1.0]\n[strategy]\nname = \"nope\"\n", "nope"),
    ("[space]\nx0 = [0.0, 1.0]\n[strategy]\nname = \"random\"\nsed = 1\n", "sed"),
    ("[space\n", "TOML"),
    ("[run]\nbudget = 3\n", "[space]"),
])
def test_bad_config_exits_2_with_one_line(tmp_path: Path, text: str, needle: str) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    r = run_cli("controller", str(cfg), "--bind", "tcp://127.0.0.1:0", cwd=tmp_path)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "run.jsonl").exists()  # nothing half-started


def test_existing_log_is_not_overwritten(cluster: Cluster) -> None:
    cluster.log.write_text('{"event":"run_started","t":0,"seq":0}\n')
    r = run_cli("controller", str(cluster.config(budget=2)), cwd=cluster.tmp)
    assert r.returncode == 2 and "--resume" in r.stderr
    assert cluster.log.read_text() == '{"event":"run_started","t":0,"seq":0}\n'


def test_worker_bad_arguments_exit_2(tmp_path: Path) -> None:
    r = run_cli("worker", "--connect", "tcp://127.0.0.1:1", "--python", "no_such_mod:fn",
                cwd=tmp_path)
    assert r.returncode == 2 and "no_such_mod" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_log_commands_on_a_real_log(cluster: Cluster) -> None:
    cluster.start_controller(config=cluster.config(budget=5))
    cluster.start_worker(python="tests.integration.objectives:quadratic")
    assert cluster.wait_controller() == 0
    s = run_cli("log", "summary", str(cluster.log), cwd=cluster.tmp)
    assert s.returncode == 0 and "5 completed" in s.stdout
    best = min(e["value"] for e in events_of(cluster.log, "completed"))
    b = run_cli("log", "best", str(cluster.log), cwd=cluster.tmp)
    assert b.returncode == 0 and b.stdout.split()[0] == repr(best)
    e = run_cli("log", "export", str(cluster.log), cwd=cluster.tmp)
    assert e.returncode == 0 and len(e.stdout.strip().splitlines()) == 6
    sh = run_cli("log", "show", str(cluster.log), "0", cwd=cluster.tmp)
    assert sh.returncode == 0 and "eval 0" in sh.stdout and "started on w0" in sh.stdout


def test_malformed_messages_never_crash_the_controller(cluster: Cluster) -> None:
    import msgpack
    import zmq

    cluster.start_controller(config=cluster.config(budget=5))
    endpoint = cluster.addr.read_text().strip()
    ctx = zmq.Context()
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 1000)
    s.connect(endpoint)
    bad = [b"", b"\xc1", b"not msgpack at all", msgpack.packb([1, 2, 3]),
           msgpack.packb({"v": 99, "t": "hello"}), msgpack.packb({"v": 1, "t": "evaluate"}),
           msgpack.packb({"v": 1, "t": "result", "eval_id": "zero", "attempt": 0, "value": 1.0}),
           msgpack.packb({"v": 1, "t": ["hello"]}), msgpack.packb({"v": 1, "t": "hello"}),
           msgpack.packb({"v": 1, "t": "result", "eval_id": 12345, "attempt": 0, "value": 1.0})]
    for frame in bad:
        s.send(frame)
    s.send_multipart([b"two", b"frames"])
    s.send(b"x" * (2 << 20))  # over MAXMSGSIZE: libzmq drops the connection
    s.close()
    ctx.term()
    cluster.start_worker(python="tests.integration.objectives:quadratic")
    assert cluster.wait_controller() == 0
    check_log(cluster.log, completed=5)
    assert "dropped a message" in cluster.output("controller")


def test_log_plot_writes_a_png(cluster: Cluster) -> None:
    pytest.importorskip("matplotlib")
    cluster.start_controller(config=cluster.config(budget=4))
    cluster.start_worker(python="tests.integration.objectives:quadratic")
    assert cluster.wait_controller() == 0
    out = cluster.tmp / "plot.png"
    r = run_cli("log", "plot", str(cluster.log), "--out", str(out), cwd=cluster.tmp)
    assert r.returncode == 0, r.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
