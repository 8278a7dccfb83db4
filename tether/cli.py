"""Command line: parse, call the library, map errors to exit codes (0 ok, 2 usage, 1 other)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from tether import __version__
from tether.cli_help import add_examples
from tether.errors import ConfigError, LogError, TetherError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tether", description="Asynchronous black-box "
                                "optimization: a controller daemon and worker agents.")
    p.add_argument("-v", "--verbose", action="store_true", help="log more to stderr")
    p.add_argument("--version", action="version", version=f"tether {__version__}")
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
    c.add_argument("--advertise", metavar="HOST", help="host name or address workers should "
                   "dial (default: this host's name if it resolves beyond loopback, else an "
                   "interface address)")
    c.add_argument("--keys", metavar="DIR", help="CURVE keys: let in only workers in DIR/authorized")
    c.add_argument("--detach", action="store_true", help="run in the background: return once "
                   "it listens (output in LOG.out; needs --pidfile)")
    c.add_argument("--pidfile", metavar="PATH", help="write the controller's pid here (removed "
                   "when it exits); stop it with kill $(cat PATH)")

    w = sub.add_parser("worker", help="run a worker agent")
    where = w.add_mutually_exclusive_group(required=True)
    where.add_argument("--connect", metavar="tcp://HOST:PORT")
    where.add_argument("--address-file", metavar="PATH", help="read the endpoint from this file")
    what = w.add_mutually_exclusive_group(required=True)
    what.add_argument("--python", metavar="module:function")
    what.add_argument("--command", metavar="TEMPLATE", help='e.g. "prog {x0} {x1}" (no shell)')
    w.add_argument("--parser", metavar="module:function|re:PATTERN",
                   help="read --command's stdout with this parser instead of tether: lines "
                   "(re: named groups value / partial)")
    w.add_argument("--walltime", type=float, metavar="SECONDS",
                   help="leave after this long (default: the Slurm/PBS job's limit, if any)")
    w.add_argument("--drain", type=float, default=0.0, metavar="SECONDS",
                   help="take no new work when less walltime than this remains")
    w.add_argument("--name", help="worker name in the log (default host:pid)")
    w.add_argument("--slots", default="1", metavar="N|auto",
                   help="evaluations at once over one connection (auto: the job's cores)")
    w.add_argument("--in-process", action="store_true",
                   help="run the --python objective in this process, one evaluation at a "
                   "time: no child process (for cheap trusted objectives; a running "
                   "evaluation cannot be interrupted)")
    w.add_argument("--max-wait", type=float, metavar="SECONDS",
                   help="exit 3 after this long without a controller (default: 600 in a "
                        "Slurm/PBS job, else wait forever; 0: forever)")

    la = sub.add_parser("launch", help="submit a batch job of worker agents (one per node)",
                        usage="tether launch {slurm,pbs} --nodes N --time HH:MM:SS [options] "
                        "[--dry-run] -- WORKER OPTIONS")
    la.add_argument("system", choices=["slurm", "pbs"])
    la.add_argument("--nodes", type=int, required=True, help="nodes, one worker agent each")
    la.add_argument("--time", required=True, metavar="HH:MM:SS", help="the job's walltime")
    la.add_argument("--partition", "--queue", metavar="P", help="Slurm partition / PBS queue")
    la.add_argument("--account", metavar="A", help="account to charge")
    la.add_argument("--eval-time", type=float, metavar="SECONDS", help="the longest one "
                    "evaluation takes: workers stop taking work that long (+90 s) before the end")
    la.add_argument("--cpus-per-node", type=int, metavar="C",
                    help="CPUs per node (default on Slurm: whole nodes, --exclusive)")
    la.add_argument("--job-name", default="tether-workers", help="job and worker name prefix")
    la.add_argument("--directive", action="append", default=[], metavar="TEXT",
                    help="extra #SBATCH/#PBS line, e.g. --directive=--mem=8G (repeatable)")
    la.add_argument("--tether-cmd", metavar="CMD", help="how compute nodes run tether "
                    "(default: this Python -m tether)")
    la.add_argument("--dry-run", action="store_true", help="print the job script, submit nothing")

    st = sub.add_parser("status", help="live view of a running controller (never given work)")
    st.add_argument("where", metavar="tcp://HOST:PORT|ADDRESS_FILE")
    st.add_argument("--keys", metavar="DIR", help="the worker keys, when the controller uses --keys")
    st.add_argument("--json", action="store_true", help="one JSON object per refresh")
    st.add_argument("--watch", type=float, metavar="SECONDS", help="refresh every SECONDS")
    st.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for an answer")
    w.add_argument("--keys", metavar="DIR", help="CURVE keys: this worker's pair and the "
                   "controller's public key (DIR or DIR/workers/NAME)")

    k = sub.add_parser("keys", help="CURVE key pairs for the controller and workers")
    ks = k.add_subparsers(dest="keys_command", required=True)
    kg = ks.add_parser("generate", help="a controller pair, worker pairs and the allow-list")
    kg.add_argument("dir", metavar="DIR")
    kn = kg.add_mutually_exclusive_group()
    kn.add_argument("--workers", type=int, default=1, metavar="N", help="worker pairs (default 1)")
    kn.add_argument("--add-worker", metavar="NAME", help="add one worker pair to DIR")

    from tether.log.cli import add_parser as add_log_parser

    add_log_parser(sub)

    from tether.simulate import add_subparser as add_simulate

    add_simulate(sub)
    return p


def _dispatch(a: argparse.Namespace) -> int:
    if a.cmd == "controller":
        from tether.controller.daemon import ControllerArgs, run_controller

        if a.detach:
            from tether.controller.detach import detach

            return detach(a.argv, a.config, a.log, a.address_file, a.pidfile)
        return run_controller(ControllerArgs(a.config, a.bind, a.log, a.resume, a.budget,
                                             a.strategy, a.warm_start, a.address_file,
                                             a.advertise, a.keys), pidfile=a.pidfile)
    if a.cmd == "launch":
        return _launch(a)
    if a.cmd == "worker":
        from tether.worker.main import run_worker

        return run_worker(a)
    if a.cmd == "status":
        from tether.status import run_status

        return run_status(a.where, a.keys, a.json, a.watch, a.timeout)
    if a.cmd == "keys":
        from tether.keys import generate

        for line in generate(a.dir, a.workers, a.add_worker):
            print(line)
        print(f"controller: tether controller --keys {a.dir}; each worker: tether worker --keys "
              f"{a.dir}/workers/NAME (copy only that directory to the worker's node)")
        return 0
    if a.cmd == "simulate":
        from tether.simulate import run_simulate

        return run_simulate(a)
    from tether.log.cli import run as run_log

    return run_log(a)


def _launch(a: argparse.Namespace) -> int:
    from tether.launch import LaunchOptions, launch

    if a.worker:  # the worker's own parser checks its options now, not on a compute node
        _parser().parse_args(["worker", *a.worker])
    launch(LaunchOptions(a.system, a.nodes, a.time, a.worker, a.partition, a.account,
                         a.eval_time, a.cpus_per_node, a.job_name, a.directive, a.tether_cmd,
                         a.dry_run))
    return 0


def _split_launch(argv: list[str]) -> tuple[list[str], list[str]]:
    """``tether launch ... -- WORKER OPTIONS``: the worker's options, set apart."""
    if "--" in argv and "launch" in argv[:argv.index("--")]:
        i = argv.index("--")
        return argv[:i], argv[i + 1:]
    return argv, []


def main(argv: Sequence[str] | None = None) -> int:
    argv, worker = _split_launch(list(sys.argv[1:] if argv is None else argv))
    parser = add_examples(_parser())
    if not argv:  # a newcomer's first try: the overview with examples, not an error
        parser.print_help(sys.stderr)
        return 2
    a = parser.parse_args(argv)
    a.worker, a.argv = worker, argv
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
