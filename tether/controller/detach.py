"""``tether controller --detach --pidfile PATH``: run the controller in the background.

The foreground command re-executes ``python -m tether controller ...`` without
``--detach`` in a new session (so closing the terminal or logging out does not reach it),
with its output appended to ``<log>.out``, and waits until the controller listens: the
address file is written only then. It returns 0 with the endpoint and the pid, or 2 with
the controller's own last line when the controller exits first (a bad config, a log that
already exists, a port in use ...). The background controller writes and removes the
pidfile itself (:func:`hold_pidfile`), so the file names a live controller or none.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from tether.addressfile import read_address
from tether.controller.settings import RunSettings, load_config
from tether.errors import ConfigError

#: how long the foreground waits for the controller to listen; importing TensorFlow for
#: async-bo alone can take a minute on a busy login node
START_TIMEOUT = 300.0
POLL = 0.05


def strip_detach(argv: list[str]) -> list[str]:
    """``argv`` without ``--detach``, however argparse let it be abbreviated (``--det``)."""
    return [a for a in argv if not (a.startswith("--d") and "--detach".startswith(a))]


def log_path_of(config: str | None, log: str | None) -> str:
    """The log the controller will write, resolved as ``daemon.build`` does (no side effect)."""
    if log:
        return log
    return load_config(config).run.log if config else RunSettings().log


def _stamp(path: Path) -> tuple[int, int, int] | None:
    """Identity of the file's current version: the controller replaces it atomically."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def _last_line(out: Path, offset: int) -> str:
    """The child's error line: the last ``tether: error:`` line after ``offset`` (.out is
    appended to, maybe by a live controller of the same log too), else the last line."""
    try:
        with out.open("rb") as fh:
            fh.seek(offset)
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("tether: error:")]
    return (errors or lines or [""])[-1]


def detach(argv: list[str], config: str | None, log: str | None, address_file: str | None,
           pidfile: str | None) -> int:
    """Start the controller of ``argv`` (``tether``'s own arguments) in the background."""
    if not pidfile:
        raise ConfigError("--detach needs --pidfile PATH (how you find the controller to stop it)")
    log_path = log_path_of(config, log)
    out = Path(log_path + ".out")
    addr = Path(address_file or log_path + ".address")
    child_argv = [sys.executable, "-m", "tether", *strip_detach(argv)]
    if address_file is None:  # the address file is how we learn that it listens
        child_argv += ["--address-file", str(addr)]
    before = _stamp(addr)
    try:  # the controller would make the log's directory: the .out file goes there first
        out.parent.mkdir(parents=True, exist_ok=True)
        sink = out.open("ab")
    except OSError as exc:
        raise ConfigError(f"cannot write {out}: {exc.strerror or exc}") from None
    offset = sink.tell()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with open(os.devnull, "rb") as devnull, sink:
        child = subprocess.Popen(child_argv, stdin=devnull, stdout=sink, stderr=subprocess.STDOUT,
                                 start_new_session=True, env=env, close_fds=True)
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        now = _stamp(addr)
        if now is not None and now != before:
            return _started(child.pid, addr, log_path, out, pidfile)
        rc = child.poll()
        if rc is not None:
            return _exited_early(rc, out, offset)
        if time.monotonic() > deadline:
            print(f"tether: error: the controller (pid {child.pid}) is not listening after "
                  f"{START_TIMEOUT:.0f} s; it is left running: see {out}", file=sys.stderr)
            return 1
        time.sleep(POLL)


def _started(pid: int, addr: Path, log_path: str, out: Path, pidfile: str) -> int:
    where = read_address(str(addr)).endpoint or "?"
    print(f"tether controller running in the background, pid {pid} (in {pidfile})")
    print(f"listening on {where}; workers: tether worker --address-file {addr} ...")
    print(f"log {log_path}, output {out}")
    print(f"stop: kill $(cat {pidfile})   (exit 75; --resume continues the run)", flush=True)
    return 0


def _exited_early(rc: int, out: Path, offset: int) -> int:
    line = _last_line(out, offset)
    if rc == 0:  # e.g. "the run ... already finished; nothing to do"
        if line:
            print(line)
        return 0
    print(line or f"tether: error: the controller exited with status {rc} before listening "
          f"(see {out})", file=sys.stderr)
    return 2


# ------------------------------------------------------------ the controller's side
def _running_pid(path: Path) -> int | None:
    """The pid in ``path`` if that process is alive and a tether (a stale file names a dead
    process, or after a reboot an unrelated one that got the same number)."""
    try:
        pid = int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    if pid == os.getpid():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # alive, someone else's
    with contextlib.suppress(OSError):  # no /proc: trust the pid
        if b"tether" not in Path(f"/proc/{pid}/cmdline").read_bytes():
            return None
    return pid


@contextlib.contextmanager
def hold_pidfile(path: str | None) -> Iterator[None]:
    """Write this process's pid to ``path`` for its lifetime; refuse if a live one is there."""
    if not path:
        yield
        return
    p = Path(path)
    other = _running_pid(p)
    if other is not None:
        raise ConfigError(f"pidfile {path} names a running tether process ({other}): stop it, "
                          "or give another --pidfile")
    tmp = p.with_name(p.name + ".tmp")
    try:
        tmp.write_text(f"{os.getpid()}\n")
        tmp.replace(p)  # atomic: a reader never sees half a pid
    except OSError as exc:
        raise ConfigError(f"cannot write pidfile {path}: {exc.strerror or exc}") from None
    try:
        yield
    finally:
        with contextlib.suppress(OSError):  # only our own: another may have taken it over
            if p.read_text().split()[:1] == [str(os.getpid())]:
                p.unlink()
