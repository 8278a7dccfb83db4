"""Custom output parsers (issue 16, part 2): the parsers alone, then the command evaluator
running real programs (examples/solver.py and small inline ones) through them."""

from __future__ import annotations

import math
import select
import shlex
import sys
import time
from pathlib import Path

import pytest

from tether.errors import ConfigError
from tether.worker.evaluators import CommandEvaluator, Done, Output, PartialOut
from tether.worker.main import make_evaluator
from tether.worker.parsers import RegexParser, checked, load_parser

pytestmark = pytest.mark.timeout(60)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SOLVER = f"{shlex.quote(sys.executable)} {EXAMPLES / 'solver.py'} {{x0}} {{x1}}"
SOLVER_RE = r"re:^(?:iter \d+ residual (?P<partial>\S+)|objective = (?P<value>\S+))$"


def branin(x0: float, x1: float) -> float:
    a, b = 15.0 * x0 - 5.0, 15.0 * x1
    raw = (b - 5.1 / (4 * math.pi**2) * a**2 + 5.0 / math.pi * a - 6.0) ** 2
    return (raw + (10.0 - 10.0 / (8 * math.pi)) * math.cos(a) - 44.81) / 51.95


# parsers the tests load by module:function (this module is importable as tests.unit...)
def words_parser(line: str) -> tuple[str, float] | None:
    if line.startswith("loss"):
        return "partial", float(line.split()[1])
    if line.startswith("final"):
        return "value", float(line.split()[1])
    return None


def exploding_parser(line: str) -> tuple[str, float] | None:
    if line.startswith("objective"):
        raise ValueError("no idea what 'objective' means")
    return None


def sloppy_parser(line: str) -> object:
    return "value" if line.startswith("objective") else None


def run(ev: CommandEvaluator, x: tuple[float, ...], timeout: float = 30.0) -> list[Output]:
    """Start one evaluation and poll it to its end, waiting on its pipes (no sleeps)."""
    running = ev.start(0, x, [f"x{i}" for i in range(len(x))])
    outs: list[Output] = []
    deadline = time.monotonic() + timeout
    while not any(isinstance(o, Done) for o in outs):
        assert time.monotonic() < deadline, f"no outcome within {timeout} s: {outs}"
        fds = running.fds()
        if fds:
            select.select(fds, [], [], 0.2)
        else:  # pipes closed, process not yet reaped
            time.sleep(0.01)
        outs += running.poll(time.monotonic())
    return outs


def inline(code: str) -> str:
    return f"{shlex.quote(sys.executable)} -c {shlex.quote(code)}"


# ------------------------------------------------------------------ the parsers alone
def test_regex_value_and_partial_groups() -> None:
    p = RegexParser(SOLVER_RE[3:])
    assert p("iter 3 residual 1.5e-03") == ("partial", 1.5e-3)
    assert p("objective = -0.25") == ("value", -0.25)
    assert p("solver 1.0: x0=0.1 x1=0.2") is None
    assert RegexParser(r"E=(?P<value>\S+)")("step 9 E=2.5 done") == ("value", 2.5)  # search


def test_regex_with_a_non_number_raises() -> None:
    with pytest.raises(ValueError):
        RegexParser(r"^result (?P<value>\S+)")("result pending")


@pytest.mark.parametrize("spec, message", [
    ("re:(?P<x>\\d+)", "named group"),
    ("re:(unclosed", "bad pattern"),
    ("no_colon_here", "module:function"),
    ("tests.unit.no_such_module:f", "cannot load"),
    ("tests.unit.test_parsers:no_such_function", "cannot load"),
    ("tests.unit.test_parsers:SOLVER", "not callable"),
])
def test_bad_parser_specs_are_config_errors(spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_parser(spec)


def test_checked_accepts_the_three_shapes_and_nothing_else() -> None:
    assert checked(None) is None
    assert checked(("partial", 1)) == ("partial", 1.0)
    assert checked(("value", "2.5")) == ("value", 2.5)
    for bad in ["value", ("final", 1.0), ("value", 1.0, 2.0), ("value", "abc"), 3.0]:
        with pytest.raises(ValueError, match="parser returned"):
            checked(bad)


def test_parser_needs_a_command() -> None:
    with pytest.raises(ConfigError, match="needs --command"):
        make_evaluator("tests.integration.objectives:quadratic", None, "re:(?P<value>.*)")


# ------------------------------------------------------------------ real programs
@pytest.mark.parametrize("spec", ["solver_parser:parse", SOLVER_RE])
def test_the_solver_example_with_its_parser(spec: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(EXAMPLES)  # as documented: the parser module beside the program
    monkeypatch.syspath_prepend(str(EXAMPLES))
    outs = run(make_evaluator(None, SOLVER, spec), (0.25, 0.75))  # type: ignore[arg-type]
    partials = [o.value for o in outs if isinstance(o, PartialOut)]
    done = outs[-1]
    assert isinstance(done, Done) and done.ok, done
    assert done.value == pytest.approx(branin(0.25, 0.75), abs=1e-9)
    assert len(partials) > 10 and partials == sorted(partials, reverse=True)  # converging


def test_the_last_value_wins_and_tether_lines_are_ignored() -> None:
    code = ("print('tether:value 99'); print('loss 3'); print('final 7'); "
            "print('loss 2'); print('final 5'); print('1234')")
    outs = run(CommandEvaluator(inline(code), parser=words_parser), ())
    assert [o.value for o in outs if isinstance(o, PartialOut)] == [3.0, 2.0]
    assert outs[-1] == Done(True, 5.0)


def test_exit_0_without_a_value_fails() -> None:
    outs = run(CommandEvaluator(inline("print('loss 1'); print('42.0')"),
                                parser=words_parser), ())
    done = outs[-1]
    assert isinstance(done, Done) and not done.ok and done.error == "parser found no value"


def test_a_failing_program_keeps_its_exit_status_in_the_error() -> None:
    outs = run(make_evaluator(None, SOLVER, SOLVER_RE), (2.0, 0.5))
    done = outs[-1]
    assert isinstance(done, Done) and not done.ok and "exit status 3" in done.error, done


def test_a_raising_parser_fails_with_its_message_and_stops_the_program() -> None:
    # the program would run for a minute after its bad line: it is stopped instead
    code = "import time; print('objective = 1', flush=True); time.sleep(60); print('x')"
    outs = run(CommandEvaluator(inline(code), parser=exploding_parser, kill_grace=1.0), (),
               timeout=30)
    done = outs[-1]
    assert isinstance(done, Done) and not done.ok
    assert "no idea what 'objective' means" in done.error and "ValueError" in done.error
    assert done.signal == 0  # a failure of its own, not a batch system's signal


def test_a_parser_returning_nonsense_fails_the_evaluation() -> None:
    outs = run(CommandEvaluator(inline("print('objective = 1')"), parser=sloppy_parser), ())
    done = outs[-1]
    assert isinstance(done, Done) and not done.ok and "parser returned 'value'" in done.error


def test_a_non_finite_value_fails() -> None:
    outs = run(CommandEvaluator(inline("print('final nan')"), parser=words_parser), ())
    done = outs[-1]
    assert isinstance(done, Done) and not done.ok and "not finite" in done.error
