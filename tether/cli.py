"""Command line: parse, call the library, map errors to exit codes (0 ok, 2 usage, 1 other)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from tether.errors import ConfigError, LogError, TetherError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tether", description="Asynchronous black-box "
                                "optimization: a controller daemon and worker agents.")
    p.add_argument("-v", "--verbose", action="store_true", help="log more to stderr")
    sub = p.add_subparsers(dest="cmd", required=True)

    c = sub.add_parser("controller", help="run the controller daemon")
    c.add_argument("config", nargs="?", help="TOML file with [space], [strategy], [run]")
    c.add_argument("--bind", help="ZeroMQ endpoint to bind (default tcp://*:5555)")
    c.add_argument("--log", help="evaluation log path (default run.jsonl)")
    c.add_argument("--resume", action="store_true", help="replay the log and carry on")
    c.add_argument("--budget", type=int, help="completed evaluations to collect")
    c.add_argument("--strategy", help="strategy name or module:factory")
    c.add_argument("--warm-start", metavar="OLD.jsonl", help="prior data from another run's log")
    c.add_argument("--address-file", metavar="PATH", help="write the endpoint workers should dial")

    w = sub.add_parser("worker", help="run a worker agent")
    where = w.add_mutually_exclusive_group(required=True)
    where.add_argument("--connect", metavar="tcp://HOST:PORT")
    where.add_argument("--address-file", metavar="PATH", help="read the endpoint from this file")
    what = w.add_mutually_exclusive_group(required=True)
    what.add_argument("--python", metavar="module:function")
    what.add_argument("--command", metavar="TEMPLATE", help='e.g. "prog {x0} {x1}" (no shell)')
    w.add_argument("--walltime", type=float, metavar="SECONDS",
                   help="leave after this long (default: the Slurm/PBS job's limit, if any)")
    w.add_argument("--drain", type=float, default=0.0, metavar="SECONDS",
                   help="take no new work when less walltime than this remains")
    w.add_argument("--name", help="worker name in the log (default host:pid)")

    from tether.log.cli import add_parser as add_log_parser

    add_log_parser(sub)
    return p


def _dispatch(a: argparse.Namespace) -> int:
    if a.cmd == "controller":
        from tether.controller.daemon import ControllerArgs, run_controller

        return run_controller(ControllerArgs(a.config, a.bind, a.log, a.resume, a.budget,
                                             a.strategy, a.warm_start, a.address_file))
    if a.cmd == "worker":
        from tether.worker.main import run_worker

        return run_worker(a)
    from tether.log.cli import run as run_log

    return run_log(a)


def main(argv: Sequence[str] | None = None) -> int:
    a = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if a.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        return _dispatch(a)
    except (ConfigError, LogError) as exc:
        print(f"tether: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except TetherError as exc:
        print(f"tether: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
