"""Objective evaluators: a Python function in a child process, or an external program.

Both run the objective outside the agent's thread and expose file descriptors the
agent polls next to its socket, so a long evaluation never blocks heartbeats and a kill
request can always be obeyed (the child is terminated; the program's process group is
signalled).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shlex
import shutil
import signal
import string
import subprocess
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from tether.errors import ConfigError
from tether.worker.parsers import LineParser, checked

KILL_GRACE = 5.0  # seconds between SIGTERM and SIGKILL


@dataclass(frozen=True, slots=True)
class PartialOut:
    value: float
    info: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Done:
    ok: bool
    value: float = math.nan
    error: str = ""
    killed: bool = False
    signal: int = 0  # the program died of this signal, sent by someone else


Output = PartialOut | Done


class Running(Protocol):
    """One evaluation in progress."""

    def fds(self) -> list[int]: ...

    def due(self) -> bool:
        """True when :meth:`poll` has work now, without waiting on any of :meth:`fds`."""

    def poll(self, now: float) -> list[Output]: ...

    def kill(self, now: float, hard: bool = False) -> None:
        """SIGTERM (then SIGKILL after a grace period); ``hard``: SIGKILL now."""

    def reaped(self) -> bool: ...


class Evaluator(Protocol):
    def start(self, eval_id: int, x: Sequence[float], names: Sequence[str]) -> Running: ...

    def close(self) -> None: ...


def parse_number(text: str) -> float | None:
    try:
        v = float(text.strip())
    except ValueError:
        return None
    return v


# ----------------------------------------------------------------- external programs
class CommandEvaluator:
    """Runs an argv template per evaluation; no shell is involved."""

    def __init__(self, template: str, kill_grace: float = KILL_GRACE,
                 parser: LineParser | None = None) -> None:
        self.parser = parser  # None: `tether:` lines and the last-float rule
        try:
            self.argv = shlex.split(template)
        except ValueError as exc:
            raise ConfigError(f"--command cannot be parsed: {exc}") from None
        if not self.argv:
            raise ConfigError("--command is empty")
        self.fields = {f for a in self.argv for _, f, _, _ in string.Formatter().parse(a) if f}
        self.kill_grace = kill_grace
        _check_program(self.argv[0])

    def check_names(self, names: Sequence[str]) -> str:
        unknown = self.fields - set(names) - {"eval_id"}
        return f"--command uses unknown field(s) {sorted(unknown)}" if unknown else ""

    def start(self, eval_id: int, x: Sequence[float], names: Sequence[str]) -> Running:
        values: dict[str, Any] = {n: repr(float(v)) for n, v in zip(names, x)}
        problem = self.check_names(names)
        if problem:
            return _Failed(problem)
        values["eval_id"] = str(eval_id)
        argv = [a.format_map(values) for a in self.argv]
        env = dict(os.environ)
        env["TETHER_PARAMS"] = json.dumps({n: float(v) for n, v in zip(names, x)})
        env["TETHER_EVAL_ID"] = str(eval_id)
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, env=env, start_new_session=True)
        except OSError as exc:
            return _Failed(f"cannot start {argv[0]!r}: {exc.strerror or exc}")
        return _CommandRun(proc, self.kill_grace, self.parser)

    def close(self) -> None:
        pass


class _Failed:
    def __init__(self, error: str) -> None:
        self.error = error
        self.reported = False

    def fds(self) -> list[int]:
        return []

    def due(self) -> bool:
        return not self.reported

    def poll(self, now: float) -> list[Output]:
        if self.reported:
            return []
        self.reported = True
        return [Done(False, error=self.error)]

    def kill(self, now: float, hard: bool = False) -> None:
        self.reported = True

    def reaped(self) -> bool:
        return True


class _CommandRun:
    def __init__(self, proc: subprocess.Popen[bytes], kill_grace: float,
                 parser: LineParser | None = None) -> None:
        self.proc = proc
        self.parser = parser
        self.parser_error = ""  # set: the parser raised; the program is being stopped
        self.kill_grace = kill_grace
        assert proc.stdout is not None and proc.stderr is not None
        self.out_fd, self.err_fd = proc.stdout.fileno(), proc.stderr.fileno()
        # closed through their file objects: a raw os.close would leave the objects to
        # close the same numbers again when collected, by then another run's pipes
        self.files = {self.out_fd: proc.stdout, self.err_fd: proc.stderr}
        for fd in (self.out_fd, self.err_fd):
            os.set_blocking(fd, False)
        self.open = {self.out_fd, self.err_fd}
        self.buf = {self.out_fd: b"", self.err_fd: b""}
        self.value: float | None = None
        self.last_line = ""
        self.stderr_tail: deque[str] = deque(maxlen=10)
        self.done = False
        self.killed_at: float | None = None
        self.hard_killed = False
        self.reap_waited = False

    def fds(self) -> list[int]:
        return sorted(self.open)

    def due(self) -> bool:
        return False

    def poll(self, now: float) -> list[Output]:
        out: list[Output] = []
        for fd in list(self.open):
            self._read(fd, out)
        if self.parser_error and self.killed_at is None:
            # its output can no longer be understood: stop the program now, not hours later
            self.killed_at = now
            self._signal(signal.SIGTERM)
        if self.killed_at is not None and not self.hard_killed and now - self.killed_at > self.kill_grace:
            self._signal(signal.SIGKILL)
            self.hard_killed = True
        if not self.done and not self.open and not self.reap_waited:
            # both pipes just closed: the program is exiting, usually within a millisecond,
            # and nothing else would wake the agent before its next poll timeout (100 ms
            # added to every evaluation, measured in benchmarks/daemon_vs_sim.py). Wait for
            # it briefly, once: a program that closes its pipes and goes on is polled as before
            self.reap_waited = True
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=0.02)
        if not self.done and not self.open and self.proc.poll() is not None:
            self.done = True
            if self.killed_at is None or self.parser_error:
                out.append(self._outcome())
        return out

    def _read(self, fd: int, out: list[Output]) -> None:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            return
        if not chunk:
            self.open.discard(fd)
            self.files[fd].close()
            lines = [self.buf[fd]] if self.buf[fd] else []
        else:
            data = self.buf[fd] + chunk
            *lines, self.buf[fd] = data.split(b"\n")
        for raw in lines:
            self._line(fd, raw.decode("utf-8", "replace").rstrip("\r"), out)

    def _line(self, fd: int, line: str, out: list[Output]) -> None:
        if fd == self.err_fd:
            if line.strip():
                self.stderr_tail.append(line)
            return
        if self.parser is not None:
            self._parse(line, out)
        elif line.startswith("tether:partial"):
            v = parse_number(line[len("tether:partial"):])
            if v is not None and math.isfinite(v):
                out.append(PartialOut(v, {}))
        elif line.startswith("tether:value"):
            self.value = parse_number(line[len("tether:value"):])
            if self.value is None:
                self.value = math.nan
        elif line.strip():
            self.last_line = line.strip()

    def _parse(self, line: str, out: list[Output]) -> None:
        if self.parser_error or self.parser is None:
            return
        try:
            got = checked(self.parser(line))
        except Exception as exc:  # the user's parser may raise anything: it fails this run
            self.parser_error = f"parser {_name(self.parser)} failed: {type(exc).__name__}: {exc}"
            return
        if got is None:
            return
        kind, v = got
        if kind == "value":
            self.value = v
        elif math.isfinite(v):
            out.append(PartialOut(v, {}))

    def _outcome(self) -> Done:
        code = self.proc.returncode
        tail = "\n".join(self.stderr_tail)
        if self.parser_error:
            return Done(False, error=_with_tail(self.parser_error, tail))
        if self.parser is not None and self.value is None and code == 0:
            return Done(False, error=_with_tail("parser found no value", tail))
        value = self.value if self.value is not None else parse_number(self.last_line)
        if code != 0:
            how = f"killed by signal {-code}" if code < 0 else f"exit status {code}"
            return Done(False, error=_with_tail(f"program failed ({how})", tail),
                        signal=-code if code < 0 else 0)
        if value is None:
            return Done(False, error=_with_tail("program printed no value", tail))
        if not math.isfinite(value):
            return Done(False, error=_with_tail(f"program value is not finite: {value}", tail))
        return Done(True, value)

    def reaped(self) -> bool:
        return self.done

    def kill(self, now: float, hard: bool = False) -> None:
        if self.done:
            return
        self.parser_error = ""  # the agent's kill wins: it expects no outcome
        if self.killed_at is None:
            self.killed_at = now
            self._signal(signal.SIGTERM)
        if hard and not self.hard_killed:
            self._signal(signal.SIGKILL)
            self.hard_killed = True

    def _signal(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)


def _check_program(prog: str) -> None:
    """A program that cannot run would fail every evaluation: say so before connecting."""
    if "{" in prog:
        return  # chosen per evaluation
    path = prog if os.sep in prog else shutil.which(prog)
    if path is None or not os.path.exists(path):
        raise ConfigError(f"--command: program {prog!r} not found")
    if os.path.isdir(path) or not os.access(path, os.X_OK):
        raise ConfigError(f"--command: program {prog!r} is not executable")


def _name(parser: LineParser) -> str:
    return getattr(parser, "__qualname__", None) or repr(parser)


def _with_tail(msg: str, tail: str) -> str:
    return f"{msg}; stderr ends:\n{tail}" if tail else msg
