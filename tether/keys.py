"""CURVE keys: generation, loading with permission checks, and the controller's ZAP handler.

Layout of a key directory (``tether keys generate DIR``; details in docs/security.md)::

    DIR/controller.key, DIR/controller.key_secret    the controller's pair
    DIR/authorized/NAME.key                          allow-list: workers let in
    DIR/workers/NAME/worker.key_secret, controller.key   what worker NAME needs

Files use the ZPL certificate format of ``zmq.auth``. The controller runs one ZAP
handler thread per ZeroMQ context (ZAP has one fixed inproc address per context): it
re-reads the allow-list when it changes or on SIGHUP, sets ``User-Id`` of an accepted
connection to the worker's z85 public key and ``X-Tether-Key`` to its file's name, and
logs refusals at a bounded rate. It ends by itself when the context terminates (ETERM).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import ipaddress
import logging
import os
import re
import signal
import stat
import struct
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import zmq
from zmq.auth import load_certificate
from zmq.utils import z85
from zmq.utils.monitor import parse_monitor_message

from tether.errors import ConfigError
from tether.keymeta import (
    KEY_NAME_PROPERTY,
    fingerprint,
    peer_fingerprint,
    peer_key,
    peer_key_name,
    recv_with_key,
)

__all__ = ["fingerprint", "peer_fingerprint", "peer_key", "peer_key_name", "recv_with_key"]

log = logging.getLogger("tether.keys")

CONTROLLER = "controller"
WORKER = "worker"
AUTHORIZED = "authorized"
WORKERS = "workers"
PUBLIC = ".key"
SECRET = ".key_secret"
REFUSAL_LOG_INTERVAL = 60.0  # seconds between two refusal lines for one peer address
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_POSIX = os.name == "posix"


# ------------------------------------------------------------------ key files
def _write_key(path: Path, name: str, public: bytes, secret: bytes | None) -> None:
    when = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    kind = "SECRET key: for its owner only (mode 600), never share it" if secret else "public key"
    lines = [f"#   tether CURVE {kind}", f"#   name {name}, made {when}",
             f"#   fingerprint {fingerprint(public)}", "metadata", "curve",
             f'    public-key = "{public.decode()}"']
    if secret:
        lines.append(f'    secret-key = "{secret.decode()}"')
    # O_EXCL: never overwrite a key; a secret is created 600, never readable for a moment
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if secret else 0o644)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write("\n".join(lines) + "\n")


def _read_key(path: Path, need_secret: bool) -> tuple[bytes, bytes | None]:
    try:
        writable = _POSIX and stat.S_IMODE(path.stat().st_mode) & 0o022
        public, secret = load_certificate(path)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read key file {path}: {exc}") from None
    if writable:  # a public key others can rewrite decides whom we trust
        raise ConfigError(f"key file {path} is writable by others: run chmod go-w {path}")
    for what, key in (("public", public), ("secret", secret)):
        if key is not None and not _valid_z85_key(key):
            raise ConfigError(f"key file {path}: the {what} key is not a 40-character z85 key")
    if need_secret and secret is None:
        raise ConfigError(f"key file {path} holds no secret key")
    return public, secret


def _valid_z85_key(key: bytes) -> bool:
    try:
        return len(key) == 40 and len(z85.decode(key)) == 32
    except (ValueError, KeyError, struct.error):
        return False


def check_secret_file(path: Path) -> None:
    """Refuse a secret key others could read or that belongs to someone else (as ssh does)."""
    try:
        st = path.stat()
    except OSError as exc:
        raise ConfigError(f"cannot read secret key {path}: {exc.strerror or exc}") from None
    if not _POSIX:
        return
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        raise ConfigError(f"secret key {path} is accessible by others (mode {mode:04o}): "
                          f"run chmod 600 {path}")
    if st.st_uid not in (os.geteuid(), 0):
        raise ConfigError(f"secret key {path} belongs to another user (uid {st.st_uid})")


def _insecure_dir_reason(path: Path, what: str = "allow-list") -> str | None:
    """Why others could change which keys the directory holds, or None if they cannot."""
    try:
        st = path.stat()
    except OSError as exc:
        return f"cannot read {path}: {exc.strerror or exc}"
    if not stat.S_ISDIR(st.st_mode):
        return f"{path} is not a directory"
    if _POSIX and stat.S_IMODE(st.st_mode) & 0o022:
        return (f"{what} {path} is writable by others (mode {stat.S_IMODE(st.st_mode):04o}): "
                f"run chmod go-w {path}")
    if _POSIX and st.st_uid not in (os.geteuid(), 0):
        return f"{what} {path} belongs to another user (uid {st.st_uid})"
    return None


# ------------------------------------------------------------------ generate
def _mkdir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)


def generate(directory: str | Path, workers: int = 1, add_worker: str | None = None) -> list[str]:
    """Create the controller pair (unless present) and worker pairs; return what was made.

    Without ``add_worker``, ``DIR`` must not hold keys yet: keys are never overwritten.
    """
    d = Path(directory)
    has_controller = (d / (CONTROLLER + SECRET)).exists()
    if has_controller and add_worker is None:
        raise ConfigError(f"{d} already holds a controller key pair: use --add-worker NAME "
                          "to add a worker, or another directory")
    if workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {workers}")
    if add_worker is not None:
        if not _NAME.fullmatch(add_worker) or add_worker == CONTROLLER:
            raise ConfigError(f"bad worker key name {add_worker!r}: use letters, digits, '.', "
                              f"'_', '-' (not {CONTROLLER!r})")
        names = [add_worker]
    else:
        names = [WORKER] if workers == 1 else [f"{WORKER}-{i}" for i in range(1, workers + 1)]
    for name in names:
        if (d / WORKERS / name).exists() or (d / AUTHORIZED / (name + PUBLIC)).exists():
            raise ConfigError(f"{d} already has a worker key named {name!r}")
    made: list[str] = []
    try:
        for sub in (d, d / AUTHORIZED, d / WORKERS):
            _mkdir(sub)
        if not has_controller:
            pub, sec = zmq.curve_keypair()
            _write_key(d / (CONTROLLER + SECRET), CONTROLLER, pub, sec)
            _write_key(d / (CONTROLLER + PUBLIC), CONTROLLER, pub, None)
            made.append(f"controller {fingerprint(pub)}: {d / (CONTROLLER + SECRET)}")
        server_public, _ = _read_key(d / (CONTROLLER + PUBLIC), need_secret=False)
        for name in names:
            wdir = d / WORKERS / name
            _mkdir(wdir)
            pub, sec = zmq.curve_keypair()
            _write_key(wdir / (WORKER + SECRET), name, pub, sec)
            _write_key(wdir / (CONTROLLER + PUBLIC), CONTROLLER, server_public, None)
            _write_key(d / AUTHORIZED / (name + PUBLIC), name, pub, None)
            made.append(f"worker {name} {fingerprint(pub)}: {wdir}")
    except OSError as exc:
        raise ConfigError(f"cannot write keys in {d}: {exc.strerror or exc}") from None
    return made


# ------------------------------------------------------------------ load
@dataclass(frozen=True)
class ClientKeys:
    public: bytes
    secret: bytes
    server_public: bytes
    where: Path


def _worker_dir(directory: Path) -> Path:
    if (directory / (WORKER + SECRET)).exists():
        return directory
    pairs = sorted(p for p in (directory / WORKERS).glob("*") if (p / (WORKER + SECRET)).exists())
    if len(pairs) == 1:
        return pairs[0]
    if not pairs:
        raise ConfigError(f"no worker key pair in {directory} (expected {WORKER + SECRET}; "
                          "make one with: tether keys generate DIR)")
    raise ConfigError(f"{directory} holds {len(pairs)} worker key pairs: give --keys "
                      f"{directory / WORKERS}/NAME")


def load_client(directory: str | Path) -> ClientKeys:
    """The worker's key pair and the controller's public key; ConfigError if unusable."""
    d = Path(directory).expanduser()  # a config file's "~/..." is not expanded by a shell
    if not d.is_dir():
        raise ConfigError(f"--keys {d}: no such directory")
    wdir = _worker_dir(d)
    # whoever can swap controller.key decides which controller this worker trusts
    if (reason := _insecure_dir_reason(wdir, "key directory")) is not None:
        raise ConfigError(reason)
    check_secret_file(wdir / (WORKER + SECRET))
    public, secret = _read_key(wdir / (WORKER + SECRET), need_secret=True)
    server, _ = _read_key(wdir / (CONTROLLER + PUBLIC), need_secret=False)
    assert secret is not None  # need_secret
    return ClientKeys(public, secret, server, wdir)


def load_server(directory: str | Path) -> tuple[bytes, bytes]:
    """The controller's key pair, after checking the pair and the allow-list directory."""
    d = Path(directory).expanduser()
    if not d.is_dir():
        raise ConfigError(f"--keys {d}: no such directory")
    path = d / (CONTROLLER + SECRET)
    check_secret_file(path)
    public, secret = _read_key(path, need_secret=True)
    assert secret is not None  # need_secret
    if (reason := _insecure_dir_reason(d / AUTHORIZED)) is not None:
        raise ConfigError(reason)
    return public, secret


def configure_client(sock: zmq.Socket[Any], directory: str | Path | None) -> None:
    """Make a worker's DEALER speak CURVE with its pair; no-op without a key directory.

    Call before ``connect``. A controller that does not accept the key never answers.
    On a ConfigError the socket is closed: an open one would keep its context from ending.
    """
    if directory is None:
        return
    try:
        k = load_client(directory)
    except ConfigError:
        sock.close(0)
        raise
    sock.curve_secretkey = k.secret
    sock.curve_publickey = k.public
    sock.curve_serverkey = k.server_public


# ------------------------------------------------------------------ allow-list
class AllowList:
    """The public keys in ``DIR/authorized/*.key``, re-read whenever the directory changes."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.keys: dict[bytes, str] = {}  # z85 public key -> key file name (stem)
        self._signature: tuple[Any, ...] | None = None
        self._dir_stamp: tuple[int, ...] | None = None

    def _stamp(self) -> tuple[int, ...]:
        with contextlib.suppress(OSError):
            st = self.directory.stat()
            return (st.st_mtime_ns, st.st_mode, st.st_uid)
        return ()

    def _scan(self) -> tuple[Any, ...]:
        # a file rewritten in place keeps its name, so size and mtime are part of it
        try:
            st = self.directory.stat()
            entries = sorted((e.name, e.stat().st_mtime_ns, e.stat().st_size, e.stat().st_mode)
                             for e in os.scandir(self.directory) if e.name.endswith(PUBLIC))
        except OSError:
            return ("missing",)
        return (st.st_mtime_ns, st.st_mode, st.st_uid, *entries)

    def refresh(self, force: bool = False) -> bool:
        """Re-read the directory if it changed (or ``force``); True if it was re-read."""
        sig = self._scan()
        if sig == self._signature and not force:
            return False
        self._signature, self._dir_stamp = sig, self._stamp()
        old = set(self.keys)
        self.keys = self._load()
        added, removed = len(set(self.keys) - old), len(old - set(self.keys))
        log.warning("allow-list %s: %d key(s) (+%d -%d)", self.directory, len(self.keys),
                    added, removed)
        return True

    def _load(self) -> dict[bytes, str]:
        reason = _insecure_dir_reason(self.directory)
        if reason is not None:  # refuse everyone rather than trust keys others may have put
            log.warning("%s; refusing every worker until that is fixed", reason)
            return {}
        keys: dict[bytes, str] = {}
        for path in sorted(self.directory.glob("*" + PUBLIC)):
            try:
                public, _ = _read_key(path, need_secret=False)
            except ConfigError as exc:  # e.g. removed while we read, or writable by others
                log.warning("ignoring %s", exc)
                continue
            keys[public] = path.name[: -len(PUBLIC)]
        return keys

    def lookup(self, public_z85: bytes) -> str | None:
        # One stat per handshake: adding, removing or renaming a file changes the directory,
        # so a new key is seen at once. Edits in place wait for the handler's scan (1 s).
        if self._stamp() != self._dir_stamp:
            self.refresh()
        return self.keys.get(public_z85)


# ------------------------------------------------------------------ refusal log
@dataclass
class RefusalLog:
    """Counts refused attempts; logs one line per peer address per ``interval`` seconds,
    so that a peer retrying many times a second cannot fill the controller's output."""

    interval: float = REFUSAL_LOG_INTERVAL
    clock: Callable[[], float] = time.monotonic
    max_peers: int = 10_000
    counts: dict[str, int] = field(default_factory=dict)  # reason -> refused attempts
    _last: dict[str, tuple[float, int]] = field(default_factory=dict)  # address -> (t, muted)

    def refused(self, address: str, reason: str, detail: str) -> bool:
        """Record one refusal; True if it was logged."""
        self.counts[reason] = self.counts.get(reason, 0) + 1
        now = self.clock()
        last = self._last.get(address)
        if last is not None and now - last[0] < self.interval:
            self._last[address] = (last[0], last[1] + 1)
            return False
        if last is None and len(self._last) >= self.max_peers:
            self._last.pop(next(iter(self._last)))  # forget the oldest peer
        muted = f" ({last[1]} more refused since the last report)" if last and last[1] else ""
        log.warning("refused a connection from %s: %s%s", address, detail, muted)
        self._last[address] = (now, 0)
        return True


# ------------------------------------------------------------------ ZAP handler
_ZAP_ENDPOINT = "inproc://zeromq.zap.01"  # fixed by the ZAP specification (RFC 27)
_HANDSHAKE_FAILED = zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL


@dataclass
class _Domain:
    allow: AllowList
    refusals: RefusalLog


class ZapHandler:
    """Answers the ZAP requests of every CURVE server socket of one context, in a thread."""

    def __init__(self, ctx: zmq.Context[Any]) -> None:
        self.ctx = ctx
        self.domains: dict[str, _Domain] = {}
        self.reload = threading.Event()  # set by SIGHUP
        self._monitors: list[tuple[str, str]] = []  # (inproc address, domain) for the thread
        self._lock = threading.Lock()
        self._zap = ctx.socket(zmq.REP)
        self._zap.linger = 0
        self._zap.bind(_ZAP_ENDPOINT)  # here, so a second handler fails loudly at once
        self._thread = threading.Thread(target=self._run, name="tether-zap", daemon=True)
        self._thread.start()

    def add_domain(self, name: str, allow: AllowList, monitor: str) -> _Domain:
        dom = _Domain(allow, RefusalLog())
        with self._lock:
            self.domains[name] = dom
            self._monitors.append((monitor, name))
        return dom

    def _run(self) -> None:
        monitors: dict[zmq.Socket[Any], str] = {}  # monitor socket -> its server's domain
        try:
            while True:
                with self._lock:
                    new, self._monitors = self._monitors, []
                for addr, domain in new:
                    mon = self.ctx.socket(zmq.PAIR)
                    mon.linger = 0
                    mon.connect(addr)
                    monitors[mon] = domain
                poller = zmq.Poller()
                for s in [self._zap, *monitors]:
                    poller.register(s, zmq.POLLIN)
                for s, _ in poller.poll(1000):
                    if s is self._zap:
                        self._answer(s.recv_multipart())
                    else:
                        self._on_events(monitors[s], s.recv_multipart())
                try:
                    self._refresh_all()
                except Exception:  # a reload bug must not end the thread
                    log.exception("re-reading the allow-list failed")
        except zmq.ContextTerminated:
            pass  # the controller is closing: let ctx.term() finish
        except Exception:  # fails closed: ZAP_ENFORCE_DOMAIN refuses everyone without us
            log.exception("the CURVE authenticator stopped; no new worker can connect")
        finally:
            for s in [self._zap, *monitors]:
                s.close(0)
            with _HANDLERS_LOCK:
                _HANDLERS.pop(self.ctx, None)

    def _refresh_all(self) -> None:
        force = self.reload.is_set()
        self.reload.clear()
        for dom in list(self.domains.values()):
            dom.allow.refresh(force)

    def _answer(self, req: list[bytes]) -> None:
        if len(req) < 6 or req[0] != b"1.0":  # a REP socket must answer before reading on
            rid = req[1] if len(req) >= 2 else b""
            self._zap.send_multipart([b"1.0", rid, b"400", b"malformed ZAP request", b"", b""])
            return
        try:
            status, user, meta = self._judge(req)
        except Exception:  # a bug here must not stall every handshake: refuse, say why
            log.exception("ZAP handler failed; refusing the connection")
            status, user, meta = b"500", b"", b""
        text = b"OK" if status == b"200" else b"refused"
        self._zap.send_multipart([b"1.0", req[1], status, text, user, meta])

    def _judge(self, req: list[bytes]) -> tuple[bytes, bytes, bytes]:
        domain = req[2].decode(errors="replace")
        address = req[3].decode(errors="replace")
        mechanism = req[5]
        dom = self.domains.get(domain)
        if dom is None:  # not one of ours: classic ZeroMQ (NULL open, nothing else)
            return (b"200" if mechanism == b"NULL" else b"400"), b"", b""
        if mechanism != b"CURVE" or len(req) != 7 or len(req[6]) != 32:
            dom.refusals.refused(address, "mechanism", f"not CURVE ({mechanism!r})")
            return b"400", b"", b""
        public = z85.encode(req[6])
        name = dom.allow.lookup(public)
        if name is None:
            dom.refusals.refused(address, "unknown_key", f"key {fingerprint(public)} is not in "
                                 f"the allow-list {dom.allow.directory}")
            return b"400", b"", b""
        return b"200", public, _property(KEY_NAME_PROPERTY, name.encode())

    def _on_events(self, domain: str, frames: list[bytes]) -> None:
        try:
            event = parse_monitor_message(frames)
        except Exception:  # not worth ending the thread over: it only feeds a log line
            return
        dom = self.domains.get(domain)
        if dom is None or not event["event"] & _HANDSHAKE_FAILED:
            return
        # libzmq names only our own endpoint here, not the peer's address
        endpoint = event["endpoint"].decode(errors="replace")
        dom.refusals.refused(f"an address libzmq does not report (on {endpoint})", "handshake",
                             "no CURVE, or not this controller's public key")


def _property(name: str, value: bytes) -> bytes:
    """One ZMTP metadata property, as a ZAP reply's metadata frame carries it."""
    raw = name.encode()
    return bytes([len(raw)]) + raw + struct.pack(">I", len(value)) + value


_HANDLERS: weakref.WeakKeyDictionary[zmq.Context[Any], ZapHandler] = weakref.WeakKeyDictionary()
_HANDLERS_LOCK = threading.Lock()
_DOMAIN_COUNTER = iter(range(1, 1 << 62))


def _handler(ctx: zmq.Context[Any]) -> ZapHandler:
    with _HANDLERS_LOCK:
        h = _HANDLERS.get(ctx)
        if h is None:
            try:
                h = ZapHandler(ctx)
            except zmq.ZMQError as exc:
                raise ConfigError(f"cannot start the CURVE authenticator: {exc} (another ZAP "
                                  "handler in this ZeroMQ context?)") from None
            _HANDLERS[ctx] = h
            _install_sighup()
        return h


def _install_sighup() -> None:
    """SIGHUP re-reads every allow-list (only from the main thread, and only if unhandled)."""
    if not hasattr(signal, "SIGHUP") or threading.current_thread() is not threading.main_thread():
        return
    if callable(signal.getsignal(signal.SIGHUP)):
        return  # someone else's handler: leave it alone (SIG_IGN, e.g. nohup, is replaced)

    def on_hup(signum: int, frame: Any) -> None:
        for h in list(_HANDLERS.values()):
            h.reload.set()

    signal.signal(signal.SIGHUP, on_hup)


def configure_server(sock: zmq.Socket[Any], directory: str | Path | None) -> None:
    """Turn on CURVE for the controller's ROUTER with the allow-list; no-op without keys.

    Call before ``bind``. A peer whose key is not in ``DIR/authorized`` (or that does not
    speak CURVE with this controller's public key) gets no message at all. On a
    ConfigError the socket is closed, as in :func:`configure_client`.
    """
    if directory is None:
        return
    d = Path(directory).expanduser()
    try:
        public, secret = load_server(d)
        handler = _handler(sock.context)
    except ConfigError:
        sock.close(0)
        raise
    allow = AllowList(d / AUTHORIZED)
    allow.refresh(force=True)
    domain = f"tether-{next(_DOMAIN_COUNTER)}"
    monitor = f"inproc://tether-handshakes-{domain}-{id(sock):x}"
    sock.monitor(monitor, _HANDSHAKE_FAILED)
    handler.add_domain(domain, allow, monitor)
    sock.zap_domain = domain.encode()
    # Without this, libzmq lets any key in when no ZAP handler answers (e.g. if ours died)
    sock.setsockopt(zmq.ZAP_ENFORCE_DOMAIN, 1)
    if sock.type == zmq.ROUTER:
        # With handover, a peer that sets its ROUTING_ID to another worker's id takes over
        # that worker's routing: it would receive its evaluations and speak in its name.
        # Workers never choose routing ids (the ROUTER assigns them), so nothing is lost.
        sock.setsockopt(zmq.ROUTER_HANDOVER, 0)
    sock.curve_server = True
    sock.curve_secretkey = secret
    sock.curve_publickey = public


def refusals(sock: zmq.Socket[Any]) -> dict[str, int]:
    """Refused connection attempts on a CURVE server socket, by reason (empty without keys).

    Reasons: ``unknown_key`` (a CURVE key not in the allow-list), ``handshake`` (no CURVE,
    or the wrong controller public key), ``mechanism`` (another security mechanism).
    """
    h = _HANDLERS.get(sock.context)
    raw = sock.getsockopt(zmq.ZAP_DOMAIN)
    domain = raw.decode() if isinstance(raw, bytes) else str(raw)
    dom = h.domains.get(domain) if h is not None else None
    return dict(dom.refusals.counts) if dom is not None else {}


# ------------------------------------------------------------------ per connection
# ------------------------------------------------------------------ open controllers
def open_warning(endpoint: str, directory: str | Path | None) -> str | None:
    """The one-line warning for a controller without keys bound beyond loopback, else None."""
    if directory is not None or not _beyond_loopback(endpoint):
        return None
    return (f"warning: {endpoint} accepts any worker: anyone who can reach this port can take "
            "part in the run (use --keys DIR, see docs/security.md)")


def _beyond_loopback(endpoint: str) -> bool:
    parts = urlsplit(endpoint)
    if parts.scheme in ("ipc", "inproc"):
        return False
    host = (parts.hostname or "").strip("[]")
    if host == "localhost":
        return False
    with contextlib.suppress(ValueError):
        return not ipaddress.ip_address(host).is_loopback
    return True  # a wildcard, an interface or a host name: reachable from elsewhere
