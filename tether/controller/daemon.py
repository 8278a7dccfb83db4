"""``tether controller``: assemble config, log, strategy and server; resume from a log."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import os
import signal
import socket
import struct
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from tether import __version__, gcpolicy, keys
from tether.addressfile import write_address
from tether.controller.core import ControllerCore
from tether.controller.detach import hold_pidfile
from tether.controller.progress import Progress
from tether.controller.server import ControllerServer
from tether.controller.settings import Config, RunSettings, load_config, parse_config
from tether.errors import ConfigError, LogError
from tether.log.journal import JournalWriter, iter_events, iter_lines, repair
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
    advertise: str | None = None  # host written to the address file instead of a guess
    keys: str | None = None


@dataclass
class LogHead:
    """What --resume needs before it replays a log: found in one cheap pass."""

    path: str
    n_events: int
    last_start: dict[str, Any]
    last_mark: dict[str, Any]  # the last run_started or run_finished


def scan_log(path: str) -> LogHead:
    """Count a log's events and decode only its run_started/run_finished lines.

    The full, validated replay streams the file again (``iter_events``); this pass keeps
    nothing per event, so memory does not grow with the log.
    """
    n = 0
    start: dict[str, Any] | None = None
    mark: dict[str, Any] = {}
    for lineno, text, is_last in iter_lines(path):
        if '"run_' in text[:30]:  # the writer puts "event" first: cheap to spot
            try:
                obj = json.loads(text)
            except ValueError:
                if is_last:
                    break
                raise ConfigError(f"--resume: {path}:{lineno}: not JSON") from None
            if obj.get("event") == "run_started":
                start = mark = obj
            elif obj.get("event") == "run_finished":
                mark = obj
        n += 1
    if start is None:
        raise ConfigError("the log has no run_started event to resume from")
    return LogHead(path, n, start, mark)


def config_from_log(head: LogHead) -> Config:
    """The configuration a run was started with, read back from its ``run_started``."""
    start = head.last_start
    strat = dict(start.get("strategy") or {})
    name = strat.pop("name", "random")
    space = Space.from_json(start["space"])
    run = RunSettings(**{k: v for k, v in (start.get("run") or {}).items()
                         if k in RunSettings.__dataclass_fields__})
    return Config(space, name, strat.get("options", {}), run)


def build(args: ControllerArgs) -> tuple[Config, LogHead | None]:
    """Resolve the effective configuration; on --resume also the log to replay."""
    head: LogHead | None = None
    config = load_config(args.config) if args.config else None
    log_path = args.log or (config.run.log if config else RunSettings().log)
    if args.resume:
        if not Path(log_path).is_file():
            raise ConfigError(f"--resume: no log at {log_path}")
        repair(log_path)
        head = scan_log(log_path)
        if config is None:
            config = config_from_log(head)
        elif config.space != config_from_log(head).space:
            raise ConfigError("--resume: the config's [space] differs from the log's")
    elif Path(log_path).is_file() and Path(log_path).stat().st_size > 0:
        raise ConfigError(f"log {log_path} already exists: use --resume, or another --log")
    if config is None:
        config = parse_config(DEFAULT_CONFIG)
    config = config.with_overrides(strategy=args.strategy, bind=args.bind, log=log_path,
                                   budget=args.budget, keys=args.keys)
    return config, head


def run_info(config: Config) -> dict[str, Any]:
    return {
        "space": config.space.to_json(),
        "strategy": {"name": config.strategy, "options": config.strategy_options},
        "run": config.run.to_json(),
        "tether": __version__,
        "host": socket.gethostname(),
        "pid": os.getpid(),
    }


# ------------------------------------------------ the address written for workers
WILDCARDS = ("*", "0.0.0.0", "::", "[::]", "")


def _is_loopback(addr: str) -> bool:
    try:
        return ipaddress.ip_address(addr.split("%")[0]).is_loopback
    except ValueError:
        return False


def _resolves_beyond_loopback(name: str) -> bool:
    """True if ``name`` resolves, and to at least one address that is not loopback."""
    try:
        infos = socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return False
    return any(not _is_loopback(str(info[4][0])) for info in infos)


def _interface_addresses() -> list[str]:
    """This host's IPv4 interface addresses, default-route interface first (Linux ioctl)."""
    try:
        import fcntl
        names = [name for _, name in socket.if_nameindex()]
    except (ImportError, OSError):
        return []
    try:  # the interface holding the default route is the likeliest to reach other nodes
        routes = Path("/proc/net/route").read_text().splitlines()[1:]
        default = {r.split()[0] for r in routes if r.split()[1:2] == ["00000000"]}
    except OSError:
        default = set()
    names.sort(key=lambda n: n not in default)
    found = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for name in names:
            try:  # SIOCGIFADDR; no packet is sent
                raw = fcntl.ioctl(s.fileno(), 0x8915, struct.pack("256s", name[:15].encode()))
            except OSError:
                continue  # no IPv4 address on this interface
            found.append(socket.inet_ntoa(raw[20:24]))
    return found


def reachable_host(names: list[str] | None = None,
                   interfaces: list[str] | None = None) -> tuple[str, bool]:
    """A name or address of this host that other nodes can dial, and whether it is one.

    The host's name only if it resolves beyond loopback (on many clusters the fully
    qualified name maps to 127.0.1.1 in /etc/hosts); else the first non-loopback,
    non-link-local interface address; else ``127.0.0.1`` and False. ``names`` and
    ``interfaces`` default to this host's (given, they make the choice testable).
    """
    if names is None:
        names = list(dict.fromkeys((socket.getfqdn(), socket.gethostname())))
    for name in names:
        if name and _resolves_beyond_loopback(name):
            return name, True
    for addr in _interface_addresses() if interfaces is None else interfaces:
        ip = ipaddress.ip_address(addr)
        if not (ip.is_loopback or ip.is_link_local or ip.is_unspecified):
            return addr, True
    return "127.0.0.1", False


def advertised(endpoint: str, host: str | None = None) -> str:
    """The address to give workers for a bound ``endpoint`` (``tcp://HOST:PORT``).

    ``host`` (``--advertise``) replaces the host part as given; otherwise a wildcard
    bind becomes :func:`reachable_host`, with a warning when only loopback is known.
    A specific bound host is kept: the user chose it.
    """
    scheme, sep, rest = endpoint.partition("://")
    bound, colon, port = rest.rpartition(":")
    if not (sep and colon):
        return endpoint  # not host:port (e.g. ipc://): nothing to choose
    if host is None:
        if bound not in WILDCARDS:
            return endpoint
        host, routable = reachable_host()
        if not routable:
            log.warning("only a loopback address is known for this host: workers on other "
                        "nodes cannot reach tcp://%s:%s; give --advertise HOST", host, port)
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 literal
    return f"{scheme}://{host}:{port}"


def check_advertise(host: str | None) -> None:
    """Reject what cannot be a bare host name or address (exit 2)."""
    if host is None:
        return
    bad = not host or "/" in host or any(c.isspace() for c in host)
    if not bad and ":" in host:  # only an IPv6 literal may hold colons (no port here)
        try:
            ipaddress.IPv6Address(host.strip("[]"))
        except ValueError:
            bad = True
    if bad:
        raise ConfigError(f"--advertise wants a host name or address (no port), got {host!r}")


#: reasons a run ends with that a --resume retries (the user may have fixed the cause)
RETRYABLE = ("strategy error", "too many failures")


def already_finished(head: LogHead, budget: int) -> str | None:
    """The reason a logged run finished, unless a larger budget asks for more."""
    last = head.last_mark
    if last.get("event") != "run_finished":
        return None
    reason = str(last.get("reason"))
    completed = int(last.get("completed") or 0)
    if reason == "budget" and budget > completed:
        return None  # the run is being extended
    if reason.startswith(RETRYABLE):
        return None
    return reason


#: exit status of a controller stopped by SIGTERM: interrupted, continue with --resume
EXIT_RESUMABLE = 75
EXIT_INTERRUPTED = 130


def run_controller(args: ControllerArgs, pidfile: str | None = None) -> int:
    with hold_pidfile(pidfile):  # from before the (slow) strategy import to the very end
        return _run_controller(args)


def _run_controller(args: ControllerArgs) -> int:
    gcpolicy.tune()
    check_advertise(args.advertise)
    config, head = build(args)
    if config.run.keys is not None:
        keys.load_server(config.run.keys)  # unusable keys: exit 2 before any work
    if head is not None and (reason := already_finished(head, config.run.budget)):
        print(f"the run in {config.run.log} already finished ({reason}); nothing to do "
              "(raise --budget to extend it)", flush=True)
        return 0
    if args.config is None and head is None:
        print(f"no config given: a 2-D unit box (x0, x1), strategy {config.strategy}, budget "
              f"{config.run.budget} (see docs/cli.md for a config file)", file=sys.stderr,
              flush=True)
    if config.strategy in ("async-bo", "batch-bo"):
        print("loading the model library (TensorFlow, GPflow) ...", file=sys.stderr, flush=True)
    strategy = create(config.strategy, config.space, config.run.budget, config.strategy_options)
    # prior data is not in this run's log: on --resume it comes from the same old log again
    warm = args.warm_start or (head.last_start.get("warm_start") if head else None)
    info = run_info(config)
    if warm:
        info["warm_start"] = str(Path(warm).resolve())
        info["warm_start_records"] = apply_warm_start(strategy, warm, config.space)
    journal = JournalWriter(config.run.log, start_seq=head.n_events if head else 0,
                            fsync=config.run.fsync)
    progress = Progress(config.run.budget, config.run.progress)
    server = ControllerServer(config.space, strategy, config.run, journal, info,
                              progress=progress)
    try:
        where = advertised(server.endpoint, args.advertise)
        print(f"tether controller listening on {where}, log {config.run.log}", file=sys.stderr,
              flush=True)
        if warning := keys.open_warning(server.endpoint, config.run.keys):
            print(f"tether: {warning}", file=sys.stderr, flush=True)
        try:
            server.start(iter_events(head.path) if head else None)
        except LogError as exc:
            raise ConfigError(f"--resume: {exc}") from None
        if head is not None:
            print(resumed_line(server.core), file=sys.stderr, flush=True)
        if args.address_file:
            write_address(args.address_file, where)
        with stop_on_signals(server):
            reason = server.run()
    finally:
        server.close()
    if server.stop_requested is not None:
        st = server.core.state
        print(f"controller {server.stop_requested}: {st.view.n_completed} completed, "
              f"{st.view.n_in_flight} in flight; the log {config.run.log} is intact: "
              "continue with --resume", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED if server.stop_requested == "interrupted" else EXIT_RESUMABLE
    if args.address_file and not reason.startswith(RETRYABLE):
        write_address(args.address_file, where, finished=reason)
    return report_end(server.core, config)


def resumed_line(core: ControllerCore) -> str:
    v = core.view
    running = sum(1 for r in v.pending() if r.worker)
    left = max(0, core.settings.budget - v.n_completed)
    return (f"resumed: {v.n_completed} completed so far, {core.state.n_failed} failed, "
            f"{running} in flight (waiting for their workers), {left} of the budget left")


@contextlib.contextmanager
def stop_on_signals(server: ControllerServer) -> Iterator[None]:
    """SIGTERM (a batch job's end) and Ctrl-C stop the loop cleanly, log flushed."""

    def handler(signum: int, frame: FrameType | None) -> None:
        server.stop_requested = "interrupted" if signum == signal.SIGINT else "stopped (SIGTERM)"

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def report_end(core: ControllerCore, config: Config) -> int:
    """Print how the run ended; exit status 1 when it ended on an error."""
    st, best = core.state, core.view.best
    counts = f"{core.view.n_completed} completed"
    if st.n_failed:
        counts += f", {st.n_failed} failed"
    reason = core.finished or ""
    print(f"run finished ({reason}): {counts}", flush=True)
    if best is not None:
        point = ", ".join(f"{n}={v!r}" for n, v in zip(config.space.names, best.x))
        print(f"best value {best.value!r} at {point}", flush=True)
    print(f"log: {config.run.log}", flush=True)
    if reason.startswith(RETRYABLE):
        hint = "fix it, then --resume" if reason.startswith("strategy") else \
            "see the failures with 'tether log summary'; fix the objective, then --resume"
        print(f"tether controller: {reason} ({hint})", file=sys.stderr, flush=True)
        return 1
    return 0
