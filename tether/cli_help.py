"""Examples for every ``--help`` and for ``tether`` with no arguments.

Kept apart from ``cli.py`` so the parser stays readable: :func:`add_examples` walks the
finished parser and gives each (sub)command without an epilog of its own the examples
below. The controller's help also lists the strategy names and every ``[run]`` key, read
from the code so the help cannot drift from it.
"""

from __future__ import annotations

import argparse
from dataclasses import fields

TOP = """examples:
  scripts/demo                                          the whole thing on this machine
  tether controller run.toml --address-file addr        terminal 1: the controller
  tether worker --address-file addr --python mymod:f    terminals 2, 3, ...: workers
  tether log summary run.jsonl                          how is it going / how did it go
  tether controller run.toml --detach --pidfile ctl.pid in the background
  tether launch slurm --nodes 4 --time 02:00:00 -- --address-file addr --python mymod:f

Every command has --help with examples; docs/cli.md has them all.
exit codes: 0 done, 1 error, 2 usage or configuration error (one line)"""

CONTROLLER = """examples:
  tether controller run.toml                      bind, print the endpoint, run to the budget
  tether controller run.toml --address-file addr  workers find it with --address-file addr
  tether controller run.toml --resume             continue after a crash, Ctrl-C or SIGTERM
  tether controller run.toml --detach --pidfile ctl.pid     in the background (output in LOG.out)
  kill $(cat ctl.pid)                             stops it cleanly (exit 75); --resume continues
  tether controller --strategy async-bo --budget 50 --bind tcp://*:5600

a config file (TOML):
  [space]                 x0 = [0.0, 1.0]  (one line per variable, in order)
  [strategy]              name = "async-bo", plus the strategy's options (docs/strategies.md)
  [run]                   budget = 30, log = "run.jsonl", ... (keys below)

strategies: {strategies}, or module:factory
[run] keys: {run_keys}

exit codes: 0 done (budget or another stop), 1 error (strategy error, too many failures),
  2 usage or configuration error, 75 stopped by SIGTERM (resumable), 130 Ctrl-C (resumable)"""

WORKER = """examples:
  tether worker --address-file addr --python mymod:objective
  tether worker --connect tcp://login1:5555 --command "./simulate --a {x0} --b {x1}"
  tether worker --connect tcp://login1:5555 --command "./solver {x0}" --parser 're:^cost=(?P<value>\\S+)'
  tether worker --address-file addr --python mymod:f --slots auto --walltime 3600 --drain 600
  tether worker --address-file addr --python mymod:cheap --in-process   microsecond objectives

exit codes: 0 the run is over (or walltime/SIGTERM/Ctrl-C: left cleanly), 2 usage or
  configuration error (e.g. --command program not found), 3 no controller within --max-wait"""

LAUNCH = """examples:
  tether launch slurm --nodes 4 --time 02:00:00 --eval-time 300 -- --address-file addr --python mymod:f
  tether launch pbs --nodes 2 --time 01:00:00 --cpus-per-node 32 -- --address-file addr --command "./sim {x0}"
  tether launch slurm --nodes 1 --time 00:30:00 --dry-run -- --address-file addr --python mymod:f

prints the job id(s) on stdout, one a line (see docs/cluster.md)"""

STATUS = """examples:
  tether status tcp://login1:5555          workers, budget, rate, best so far
  tether status addr --watch 5             refresh every 5 s (the address file works too)
  tether status tcp://login1:5555 --json"""

KEYS = """examples:
  tether keys generate keys --workers 4    a controller pair, 4 worker pairs, the allow-list
  tether controller run.toml --keys keys
  tether worker --keys keys/workers/worker-1 --address-file addr --python mymod:f"""

SIMULATE = """examples:
  tether simulate run.toml --python tether.problems:branin --workers 8 --durations uniform:1:5
  tether simulate run.toml --python mymod:f --workers 16 --seeds 10 --fmin -1.0474 --json out.json"""

LOG = """examples:
  tether log summary run.jsonl
  tether log best run.jsonl
  tether log tail -f run.jsonl
  tether log export run.jsonl --format csv > evals.csv
  tether log plot run.jsonl --out run.png"""

SUB = {
    "log summary": "tether log summary run.jsonl\n  tether log summary run.jsonl --json",
    "log best": "tether log best run.jsonl",
    "log show": "tether log show run.jsonl 42",
    "log tail": "tether log tail run.jsonl -n 20\n  tether log tail -f run.jsonl",
    "log export": "tether log export run.jsonl > evals.csv\n"
                  "  tether log export run.jsonl --format json --out evals.json",
    "log plot": "tether log plot run.jsonl --out run.png",
    "keys generate": "tether keys generate keys --workers 4\n"
                     "  tether keys generate keys --add-worker node7",
}

BY_COMMAND = {"controller": CONTROLLER, "worker": WORKER, "launch": LAUNCH, "status": STATUS,
              "keys": KEYS, "simulate": SIMULATE, "log": LOG}


def controller_epilog() -> str:
    from tether.controller.settings import RunSettings
    from tether.strategies import BUILTIN

    keys = ", ".join(f.name for f in fields(RunSettings))
    return CONTROLLER.format(strategies=" | ".join(BUILTIN), run_keys=_wrap(keys, 12))


def _wrap(text: str, indent: int, width: int = 88) -> str:
    """Wrap a comma-separated list under a label ``indent`` characters wide."""
    lines, line = [], ""
    for word in text.split(" "):
        if line and indent + len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    lines.append(line)
    return ("\n" + " " * indent).join(lines)


def _subparsers(p: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in p._actions:  # argparse keeps no public list of subcommands
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _set(p: argparse.ArgumentParser, epilog: str) -> None:
    if not p.epilog:  # a command that brings its own examples keeps them
        p.epilog = epilog
        p.formatter_class = argparse.RawDescriptionHelpFormatter


def add_examples(top: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Give ``top`` and every subcommand an examples epilog (raw, so columns stay aligned)."""
    _set(top, TOP)
    for name, p in _subparsers(top).items():
        _set(p, controller_epilog() if name == "controller" else
             BY_COMMAND.get(name, f"examples:\n  tether {name} --help"))
        for sub_name, sp in _subparsers(p).items():
            text = SUB.get(f"{name} {sub_name}", f"tether {name} {sub_name} --help")
            _set(sp, f"examples:\n  {text}")
    return top
