"""``tether worker --command ... --parser`` end to end (issue 16, part 2): a real controller,
a real worker, and examples/solver.py, a program with its own output format."""

from __future__ import annotations

import math
import shlex
import subprocess
import sys

import pytest

from tests.contract import check_log, load
from tests.integration.harness import ROOT, TETHER, Cluster, env, events_of, wait_for

pytestmark = pytest.mark.timeout(120)

SOLVER = f"{shlex.quote(sys.executable)} {ROOT / 'examples' / 'solver.py'} {{x0}} {{x1}}"
SOLVER_RE = r"re:^(?:iter \d+ residual (?P<partial>\S+)|objective = (?P<value>\S+))$"


def branin(x0: float, x1: float) -> float:
    a, b = 15.0 * x0 - 5.0, 15.0 * x1
    raw = (b - 5.1 / (4 * math.pi**2) * a**2 + 5.0 / math.pi * a - 6.0) ** 2
    return (raw + (10.0 - 10.0 / (8 * math.pi)) * math.cos(a) - 44.81) / 51.95


def left_half_unreadable(line: str) -> tuple[str, float] | None:
    """A parser that cannot cope with half the points: it raises on their banner."""
    if line.startswith("solver ") and float(line.split("x0=")[1].split()[0]) < 0.5:
        raise ValueError("this parser does not read the left half")
    if line.startswith("objective = "):
        return "value", float(line.split("=")[1])
    return None


@pytest.mark.parametrize("parser", ["examples.solver_parser:parse", SOLVER_RE])
def test_solver_output_read_by_a_parser(cluster: Cluster, parser: str) -> None:
    cluster.start_controller(config=cluster.config(budget=5))
    cluster.start_worker("--parser", parser, command=SOLVER)
    assert cluster.wait_controller(90) == 0, cluster.output("controller") + cluster.output("w0")
    check_log(cluster.log, completed=5)
    events = load(cluster.log)
    x = {e["eval_id"]: e["x"] for e in events if e["event"] == "proposed"}
    done = [e for e in events if e["event"] == "completed"]
    for e in done:  # the value is the program's `objective = V`, read back exactly
        assert e["value"] == pytest.approx(branin(*x[e["eval_id"]]), abs=1e-9)
        partials = [p["value"] for p in events
                    if p["event"] == "partial" and p["eval_id"] == e["eval_id"]]
        assert len(partials) > 10 and partials[-1] < 1e-9, partials  # its residuals


def test_a_raising_parser_fails_those_evaluations_with_its_message(cluster: Cluster) -> None:
    cluster.start_controller(config=cluster.config(budget=6))
    cluster.start_worker("--parser", "tests.integration.test_parser_worker:left_half_unreadable",
                         command=SOLVER)
    assert cluster.wait_controller(90) == 0, cluster.output("controller") + cluster.output("w0")
    counts = check_log(cluster.log, completed=6)
    assert counts["failed"] >= 1
    x = {e["eval_id"]: e["x"] for e in events_of(cluster.log, "proposed")}
    for e in events_of(cluster.log, "failed"):
        assert "this parser does not read the left half" in e["error"], e
        assert x[e["eval_id"]][0] < 0.5
    assert all(x[e["eval_id"]][0] >= 0.5 for e in events_of(cluster.log, "completed"))


def test_a_program_that_prints_no_value_for_the_parser(cluster: Cluster) -> None:
    cluster.start_controller(config=cluster.config(budget=2, run="max_time = 60"))
    cluster.start_worker("--parser", "re:^result (?P<value>\\S+)$", command=SOLVER)
    # every evaluation fails, so the budget is never met: watch the failures, then stop
    failed = wait_for(lambda: events_of(cluster.log, "failed")[2:], 60, "three failures")
    assert all(e["error"] == "parser found no value" for e in failed), failed


@pytest.mark.parametrize("args, needle", [
    (["--parser", "re:(?P<wrong>.*)"], "named group"),
    (["--parser", "nowhere_module:parse"], "cannot load"),
    (["--python", "tests.integration.objectives:quadratic", "--parser", "re:(?P<value>.*)"],
     "needs --command"),
])
def test_bad_parser_options_exit_2_with_one_line(args: list[str], needle: str) -> None:
    what = [] if "--python" in args else ["--command", SOLVER]
    r = subprocess.run([*TETHER, "worker", "--connect", "tcp://127.0.0.1:9", *what, *args],
                       capture_output=True, text=True, env=env(), timeout=60)
    assert r.returncode == 2, r.stderr
    assert needle in r.stderr and r.stderr.strip().count("\n") == 0, r.stderr
