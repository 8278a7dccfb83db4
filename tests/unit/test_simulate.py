"""``tether simulate``: the table, the JSON, the logs, duration specs and errors."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.contract import check_log, load
from tether.cli import main
from tether.problems import BRANIN_MIN

ROOT = Path(__file__).resolve().parents[2]
HERE = "tests.unit.test_simulate"
pytestmark = pytest.mark.timeout(120)


# stand-ins the simulations below import by name ---------------------------------
def one_plus_x0(x: np.ndarray) -> float:
    return 1.0 + float(x[0])


def negative(x: np.ndarray) -> float:
    return -1.0


def streams(x: np.ndarray, report: Any) -> float:
    for step in range(2):
        report(10.0 - step, step=step)
    return float(np.sum(x))


def fails_left(x: np.ndarray) -> float:
    if x[0] < 0.3:
        raise ValueError("left of 0.3")
    return float(x[0])


def config(tmp: Path, strategy: str = "random", budget: int = 12, opts: str = "") -> Path:
    p = tmp / "sim.toml"
    p.write_text(f'[space]\nx0 = [0.0, 1.0]\nx1 = [0.0, 1.0]\n\n[strategy]\nname = "{strategy}"\n'
                 f"{opts}\n\n[run]\nbudget = {budget}\n")
    return p


def run_cli(cfg: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "tether", "simulate", str(cfg), *args],
                          capture_output=True, text=True, env=env, cwd=cwd, timeout=100)


def test_end_to_end_table_json_and_logs_that_every_log_command_reads(tmp_path: Path) -> None:
    cfg = config(tmp_path, "dycors", budget=25)
    out, logs = tmp_path / "runs.json", tmp_path / "logs"
    p = run_cli(cfg, "--python", "tether.problems:branin", "--workers", "3", "--durations",
                "uniform:0.5:2", "--seeds", "3", "--first", "5", "--jobs", "2",
                "--fmin", repr(BRANIN_MIN), "--json", str(out), "--logs", str(logs), cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    runs = json.loads(out.read_text())
    assert [r["seed"] for r in runs] == [5, 6, 7]
    for r in runs:
        assert {"seed", "best_value", "best_x", "regret", "evaluations", "wall", "busy"} <= set(r)
        log = logs / f"seed-{r['seed']}.jsonl"
        check_log(log, completed=25)
        events = load(log)
        done = [e for e in events if e["event"] == "completed"]
        best = min(done, key=lambda e: e["value"])
        assert r["best_value"] == best["value"] and r["evaluations"] == 25
        (prop,) = [e for e in events if e["event"] == "proposed" and e["eval_id"] == best["eval_id"]]
        assert r["best_x"] == prop["x"]
        assert r["regret"] == pytest.approx(best["value"] - BRANIN_MIN, abs=1e-15)
        assert 0 < r["busy"] <= 1 and r["wall"] > 0
        start = events[0]
        assert start["strategy"]["options"]["seed"] == r["seed"]
        assert start["simulated"]["durations"] == "uniform:0.5:2"
        # simulated seconds: the log's span is the run's simulated wall time
        assert events[-1]["t"] - start["t"] == pytest.approx(r["wall"], abs=1e-5)
        assert all(0.5 - 1e-5 <= d <= 2 + 1e-5 for d in durations(events))
    lines = p.stdout.splitlines()
    assert lines[0].startswith("tether simulate: 3 run(s), seeds 5-7, strategy dycors, 3 workers")
    regret_row = next(ln for ln in lines if ln.startswith("regret"))
    med = float(regret_row.split()[1])
    assert med == pytest.approx(float(np.median([r["regret"] for r in runs])), rel=1e-3)
    near = sum(r["regret"] <= 1e-3 for r in runs)
    far = sum(r["regret"] >= 0.05 for r in runs)
    assert f"runs within 0.001 of fmin: {near} of 3; runs >= 0.05 above fmin: {far} of 3" in lines
    log = str(logs / "seed-6.jsonl")
    cmds = [["summary", "--json", log], ["best", log], ["show", log, "0"], ["tail", log],
            ["export", log, "--format", "json"]]
    if importlib.util.find_spec("matplotlib") is not None:  # the plot extra
        cmds.append(["plot", log, "--out", str(tmp_path / "conv.png")])
    for cmd in cmds:
        q = subprocess.run([sys.executable, "-m", "tether", "log", *cmd], capture_output=True,
                           text=True, cwd=tmp_path, timeout=60)
        assert q.returncode == 0, (cmd, q.stderr)
    summary = json.loads(subprocess.run([sys.executable, "-m", "tether", "log", "summary", "--json",
                                         log], capture_output=True, text=True).stdout)
    assert summary["completed"] == 25 and summary["best_value"] == runs[1]["best_value"]
    shared = ROOT.parent / "shared" / "contract" / "checklog.py"
    if shared.exists():  # the contract's own checker, where the shared folder is beside us
        q = subprocess.run([sys.executable, str(shared), log, "--completed", "25"],
                           capture_output=True, text=True, timeout=60)
        assert q.returncode == 0, q.stdout + q.stderr


def durations(events: list[dict[str, Any]]) -> list[float]:
    started = {e["eval_id"]: e["t"] for e in events if e["event"] == "started"}
    return [e["t"] - started[e["eval_id"]] for e in events if e["event"] == "completed"]


def test_same_seeds_same_results_whatever_jobs(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    cfg = config(tmp_path, "dycors", budget=15)
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    common = ["simulate", str(cfg), "--python", "tether.problems:branin", "--workers", "4",
              "--durations", "lognormal:0:1", "--seeds", "3"]
    assert main([*common, "--json", str(a)]) == 0
    assert main([*common, "--json", str(b), "--jobs", "3"]) == 0
    assert json.loads(a.read_text()) == json.loads(b.read_text())
    other = [r["best_value"] for r in json.loads(a.read_text())]
    assert len(set(other)) == 3  # and the seeds do differ


def test_const_durations_busy_share_and_wall(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r.json"
    code = main(["simulate", str(config(tmp_path, budget=10)), "--python", "tether.problems:branin",
                 "--workers", "4", "--durations", "const:2.5", "--json", str(out)])
    assert code == 0
    (r,) = json.loads(out.read_text())
    # 10 evaluations of 2.5 s on 4 workers: rounds of 4, 4, 2 -> 7.5 s, 25 of 30 worker-s
    assert r["wall"] == pytest.approx(7.5) and r["busy"] == pytest.approx(25 / 30)
    assert r["regret"] is None
    table = capsys.readouterr().out
    assert "give --fmin" in table


def test_busy_share_counts_running_not_waiting_in_a_prefetch_queue(tmp_path: Path) -> None:
    # 10 evaluations of 2.5 s on 4 workers, 2 queued behind each: the same rounds and
    # the same 25 worker-seconds of 30 as without prefetch, though `started` comes early
    cfg = config(tmp_path, budget=10)
    cfg.write_text(cfg.read_text() + "prefetch = 2\n")
    out = tmp_path / "r.json"
    assert main(["simulate", str(cfg), "--python", "tether.problems:branin", "--workers", "4",
                 "--durations", "const:2.5", "--json", str(out)]) == 0
    (r,) = json.loads(out.read_text())
    assert r["wall"] == pytest.approx(7.5) and r["busy"] == pytest.approx(25 / 30)


def test_default_const_is_one_second_and_function_durations(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str],
                                                            ) -> None:
    logs = tmp_path / "logs"
    assert main(["simulate", str(config(tmp_path, budget=6)), "--python", "tether.problems:branin",
                 "--workers", "3", "--logs", str(logs)]) == 0
    assert durations(load(logs / "seed-0.jsonl")) == pytest.approx([1.0] * 6)
    logs2 = tmp_path / "logs2"
    assert main(["simulate", str(config(tmp_path, budget=8)), "--python", "tether.problems:branin",
                 "--workers", "2", "--durations", f"{HERE}:one_plus_x0", "--logs", str(logs2)]) == 0
    events = load(logs2 / "seed-0.jsonl")
    x0 = {e["eval_id"]: e["x"][0] for e in events if e["event"] == "proposed"}
    done = [e for e in events if e["event"] == "completed"]
    started = {e["eval_id"]: e["t"] for e in events if e["event"] == "started"}
    for e in done:
        assert e["t"] - started[e["eval_id"]] == pytest.approx(1.0 + x0[e["eval_id"]], abs=1e-5)


def test_partials_and_failures_reach_the_log(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    logs, out = tmp_path / "logs", tmp_path / "r.json"
    assert main(["simulate", str(config(tmp_path, budget=8)), "--python", f"{HERE}:streams",
                 "--workers", "2", "--logs", str(logs)]) == 0
    counts = check_log(logs / "seed-0.jsonl", completed=8)
    assert counts["partial"] == 16
    assert main(["simulate", str(config(tmp_path, budget=8)), "--python", f"{HERE}:fails_left",
                 "--workers", "2", "--logs", str(tmp_path / "l2"), "--json", str(out)]) == 0
    counts = check_log(tmp_path / "l2" / "seed-0.jsonl", completed=8)
    (r,) = json.loads(out.read_text())
    assert counts["failed"] == r["failed"] > 0 and r["evaluations"] == 8
    assert r["best_value"] >= 0.3


@pytest.mark.parametrize("spec, says", [
    ("uniform:2:1", "A <= B"), ("uniform:1", "expected"), ("lognormal:0:-1", "SIGMA"),
    ("const:0", "> 0"), ("const:abc", "not a number"), ("gauss", "expected"),
    ("uniform:0:nan", "finite"), ("nosuchmodule_xyz:f", "cannot import"),
    (f"{HERE}:no_such_function", "has no"), (f"{HERE}:negative", ">= 0"),
])
def test_bad_duration_specs_exit_2_with_one_line(tmp_path: Path, spec: str, says: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["simulate", str(config(tmp_path)), "--python", "tether.problems:branin",
                 "--workers", "2", "--durations", spec])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and says in err and err.startswith("tether: error: --durations")


@pytest.mark.parametrize("args, says", [
    (["--workers", "0"], "--workers must be >= 1"),
    (["--workers", "2", "--seeds", "0"], "--seeds must be >= 1"),
    (["--workers", "2", "--fmin", "inf"], "--fmin"),
    (["--workers", "2", "--python", "tether.problems"], "module:function"),
    (["--workers", "2", "--python", "tether.problems:nope"], "has no"),
    (["--workers", "2", "--json", "/no/such/dir/out.json"], "no such directory"),
])
def test_usage_errors_exit_2_with_one_line(tmp_path: Path, args: list[str], says: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    base = ["simulate", str(config(tmp_path)), "--python", "tether.problems:branin"]
    assert main(base + args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and says in err


def test_config_errors_exit_2_before_any_run(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    cfg = config(tmp_path, "dycors", opts="colour = 3")
    assert main(["simulate", str(cfg), "--python", "tether.problems:branin", "--workers", "2"]) == 2
    assert "colour" in capsys.readouterr().err
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "seed-1.jsonl").write_text("")
    assert main(["simulate", str(config(tmp_path)), "--python", "tether.problems:branin",
                 "--workers", "2", "--seeds", "2", "--logs", str(logs)]) == 2
    err = capsys.readouterr().err
    assert "seed-1.jsonl already exists" in err and err.count("\n") == 1
    assert not (logs / "seed-0.jsonl").exists()  # nothing ran


def test_bad_spec_from_the_command_line_has_no_traceback(tmp_path: Path) -> None:
    p = run_cli(config(tmp_path), "--python", "tether.problems:branin", "--workers", "2",
                "--durations", "lognormal:1", cwd=tmp_path)
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.strip().count("\n") == 0 and "Traceback" not in p.stderr


def test_a_stand_in_from_the_working_directory(tmp_path: Path) -> None:
    (tmp_path / "standin_mod.py").write_text("def f(x):\n    return float(x[0])\n")
    p = run_cli(config(tmp_path, budget=5), "--python", "standin_mod:f", "--workers", "2",
                "--fmin", "0", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "completed" in p.stdout and math.isfinite(float(p.stdout.split("regret")[1].split()[0]))


def test_dycors_regret_bound_on_several_seeds(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """The figures a user reads are the strategy's: DYCORS beats random search by far.

    Random search with 40 points on scaled Branin (``tether simulate`` with
    ``name = "random"``, seeds 0-299) has a median regret of 1.9e-2 and ends below 1e-3
    in 11 of 300 runs: six seeds all below 1e-3 by luck is a 1e-8 chance."""
    out = tmp_path / "r.json"
    assert main(["simulate", str(config(tmp_path, "dycors", budget=40)), "--python",
                 "tether.problems:branin", "--workers", "3", "--durations", "uniform:0.5:2",
                 "--seeds", "6", "--first", "100", "--fmin", repr(BRANIN_MIN),
                 "--json", str(out)]) == 0
    regrets = [r["regret"] for r in json.loads(out.read_text())]
    assert max(regrets) < 1e-3, regrets


def always_fails(x: np.ndarray) -> float:
    raise RuntimeError("broken stand-in")


def test_a_stand_in_that_always_fails_ends_each_run(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    out, logs = tmp_path / "r.json", tmp_path / "logs"
    assert main(["simulate", str(config(tmp_path, budget=5)), "--python", f"{HERE}:always_fails",
                 "--workers", "2", "--seeds", "2", "--json", str(out), "--logs", str(logs)]) == 0
    runs = json.loads(out.read_text())
    for r in runs:
        assert r["best_value"] is None and r["evaluations"] == 0
        # [run] max_failures' default: 3 x 2 worker slots + 10 failures in a row
        assert r["failed"] == 16 and r["finished"] == "too many failures"
        check_log(logs / f"seed-{r['seed']}.jsonl", completed=0)
    assert "runs with no completed evaluation: 2 of 2" in capsys.readouterr().out
