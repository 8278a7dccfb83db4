"""``tether controller``: assemble config, log, strategy and server; resume from a log."""

from __future__ import annotations

import logging
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tether import __version__, keys
from tether.controller.server import ControllerServer
from tether.controller.settings import Config, RunSettings, load_config, parse_config
from tether.errors import ConfigError, LogError
from tether.log.journal import JournalWriter, read_events, repair
from tether.space import Space
from tether.strategies import create
from tether.strategies.warmstart import apply_warm_start

log = logging.getLogger("tether.controller")

DEFAULT_CONFIG: dict[str, Any] = {"space": {"x0": [0.0, 1.0], "x1": [0.0, 1.0]}}


@dataclass
class ControllerArgs:
    config: str | None = None
    bind: str | None = None
    log: str | None = None
    resume: bool = False
    budget: int | None = None
    strategy: str | None = None
    warm_start: str | None = None
    address_file: str | None = None
    keys: str | None = None


def last_start(events: list[dict[str, Any]]) -> dict[str, Any]:
    """The last ``run_started`` event: a resume may have changed settings (e.g. --budget)."""
    start = next((e for e in reversed(events) if e.get("event") == "run_started"), None)
    if start is None:
        raise ConfigError("the log has no run_started event to resume from")
    return start


def config_from_log(events: list[dict[str, Any]]) -> Config:
    """The configuration a run was started with, read back from its ``run_started``."""
    start = last_start(events)
    strat = dict(start.get("strategy") or {})
    name = strat.pop("name", "random")
    space = Space.from_json(start["space"])
    run = RunSettings(**{k: v for k, v in (start.get("run") or {}).items()
                         if k in RunSettings.__dataclass_fields__})
    return Config(space, name, strat.get("options", {}), run)


def build(args: ControllerArgs) -> tuple[Config, list[dict[str, Any]] | None]:
    """Resolve the effective configuration; on --resume also the events to replay."""
    events: list[dict[str, Any]] | None = None
    config = load_config(args.config) if args.config else None
    log_path = args.log or (config.run.log if config else RunSettings().log)
    if args.resume:
        if not Path(log_path).is_file():
            raise ConfigError(f"--resume: no log at {log_path}")
        repair(log_path)
        try:
            events = read_events(log_path)
        except LogError as exc:
            raise ConfigError(f"--resume: {exc}") from None
        if config is None:
            config = config_from_log(events)
        elif config.space != config_from_log(events).space:
            raise ConfigError("--resume: the config's [space] differs from the log's")
    elif Path(log_path).is_file() and Path(log_path).stat().st_size > 0:
        raise ConfigError(f"log {log_path} already exists: use --resume, or another --log")
    if config is None:
        config = parse_config(DEFAULT_CONFIG)
    config = config.with_overrides(strategy=args.strategy, bind=args.bind, log=log_path,
                                   budget=args.budget, keys=args.keys)
    return config, events


def run_info(config: Config) -> dict[str, Any]:
    return {
        "space": config.space.to_json(),
        "strategy": {"name": config.strategy, "options": config.strategy_options},
        "run": config.run.to_json(),
        "tether": __version__,
        "host": socket.gethostname(),
        "pid": os.getpid(),
    }


def advertised(endpoint: str) -> str:
    """Turn a wildcard bind address into one a worker on another node can dial."""
    return endpoint.replace("0.0.0.0", socket.getfqdn()).replace("*", socket.getfqdn())


def already_finished(events: list[dict[str, Any]], budget: int) -> str | None:
    """The reason a logged run finished, unless a larger budget asks for more."""
    last = next((e for e in reversed(events)
                 if e.get("event") in ("run_started", "run_finished")), None)
    if last is None or last["event"] != "run_finished":
        return None
    completed = int(last.get("completed") or 0)
    if last.get("reason") == "budget" and budget > completed:
        return None  # the run is being extended
    return str(last.get("reason"))


def run_controller(args: ControllerArgs) -> int:
    config, events = build(args)
    if config.run.keys is not None:
        keys.load_server(config.run.keys)  # unusable keys: exit 2 before any work
    if events is not None and (reason := already_finished(events, config.run.budget)):
        print(f"the run in {config.run.log} already finished ({reason}); nothing to do "
              "(raise --budget to extend it)", flush=True)
        return 0
    strategy = create(config.strategy, config.space, config.run.budget, config.strategy_options)
    # prior data is not in this run's log: on --resume it comes from the same old log again
    warm = args.warm_start or (last_start(events).get("warm_start") if events else None)
    info = run_info(config)
    if warm:
        info["warm_start"] = str(Path(warm).resolve())
        info["warm_start_records"] = apply_warm_start(strategy, warm, config.space)
    journal = JournalWriter(config.run.log, start_seq=len(events) if events else 0)
    server = ControllerServer(config.space, strategy, config.run, journal, info)
    try:
        where = advertised(server.endpoint)
        print(f"tether controller listening on {where}, log {config.run.log}", file=sys.stderr,
              flush=True)
        if warning := keys.open_warning(server.endpoint, config.run.keys):
            print(f"tether: {warning}", file=sys.stderr, flush=True)
        if args.address_file:
            tmp = Path(args.address_file + ".tmp")
            tmp.write_text(where + "\n")
            tmp.replace(args.address_file)  # atomic: a worker never reads half an address
        server.start(events)
        reason = server.run()
    finally:
        server.close()
    best = server.core.view.best
    print(f"run finished ({reason}): {server.core.view.n_completed} completed", flush=True)
    if best is not None:
        point = ", ".join(f"{n}={v!r}" for n, v in zip(config.space.names, best.x))
        print(f"best value {best.value!r} at {point}", flush=True)
    print(f"log: {config.run.log}", flush=True)
    return 0
