"""What a newcomer sees first: ``tether`` alone, ``--help`` everywhere, ``--version``."""

from __future__ import annotations

import argparse
import subprocess
import sys
from dataclasses import fields

import pytest

import tether
from tether.cli import _parser, main
from tether.cli_help import _subparsers, add_examples
from tether.controller.settings import RunSettings
from tether.strategies import BUILTIN


def all_parsers() -> dict[str, argparse.ArgumentParser]:
    top = add_examples(_parser())
    found = {"tether": top}
    for name, p in _subparsers(top).items():
        found[f"tether {name}"] = p
        for sub, sp in _subparsers(p).items():
            found[f"tether {name} {sub}"] = sp
    return found


def test_no_arguments_prints_the_overview_with_examples(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: tether")
    assert "examples:" in err and "tether worker --address-file" in err
    for cmd in ("controller", "worker", "launch", "log"):
        assert cmd in err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"tether {tether.__version__}"


def test_every_help_has_examples_that_name_its_command() -> None:
    parsers = all_parsers()
    assert {"tether controller", "tether worker", "tether launch", "tether log summary",
            "tether log plot"} <= set(parsers)
    for name, p in parsers.items():
        text = p.format_help()
        assert "examples:" in text, name
        # raw formatting: the example lines keep their own line breaks and columns
        assert isinstance(p.formatter_class, type)
        assert issubclass(p.formatter_class, argparse.RawDescriptionHelpFormatter), name
        if name != "tether":
            assert name in text.split("examples:", 1)[1], name


def test_controller_help_lists_strategies_and_run_keys() -> None:
    text = all_parsers()["tether controller"].format_help()
    for strategy in BUILTIN:
        assert strategy in text, strategy
    tail = text.split("[run] keys:", 1)[1]
    for f in fields(RunSettings):
        assert f.name in tail, f.name
    for code in ("75", "130", "2 usage"):
        assert code in text


@pytest.mark.timeout(60)
def test_help_through_the_console_entry_exits_0() -> None:
    r = subprocess.run([sys.executable, "-m", "tether", "worker", "--help"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "examples:" in r.stdout and "--max-wait" in r.stdout
    r = subprocess.run([sys.executable, "-m", "tether"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "examples:" in r.stderr
