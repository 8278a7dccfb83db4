"""Streaming the typed events of a log fast, following a growing one, and its last lines.

Every event still goes through :func:`tether.events.parse_event` (the one meaning of an
event); what differs from :func:`tether.log.journal.iter_events` is the cost around it:

- the JSON decoder is ``orjson`` when it is installed (about 6x faster than ``json`` on
  log lines, which makes a summary of a million-event log about as fast as a bare
  ``json.loads`` loop over it); without it the standard library's ``json`` is used and
  the results are the same;
- no lookahead per line: a line that does not decode is remembered, and it is an error
  only if another non-empty line follows (a torn last line is ignored, as in journal.py).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tether.errors import LogError
from tether.events import Event, parse_event

try:  # optional: the same objects, faster (see the module docstring)
    import orjson

    _fast_loads: Callable[[bytes], Any] | None = orjson.loads
    DECODER = f"orjson {orjson.__version__}"
except ImportError:  # pragma: no cover - depends on the environment
    _fast_loads = None
    DECODER = "json (stdlib)"


def _std_loads(line: bytes) -> Any:
    # as journal.iter_lines: undecodable bytes are replaced, not fatal
    return json.loads(line.decode("utf-8", errors="replace"))


def _decode(line: bytes) -> Any:
    """Decode one line; raises ValueError if it is not JSON."""
    if _fast_loads is not None:
        try:
            return _fast_loads(line)
        except ValueError:
            pass  # orjson refuses invalid UTF-8 that json (with replacement) accepts
    return _std_loads(line)


def open_log(path: str | Path) -> Path:
    p = Path(path)
    if not p.exists():
        raise LogError(f"no such log: {p}")
    if not p.is_file():
        raise LogError(f"not a file: {p}")
    return p


def stream_events(path: str | Path) -> Iterator[Event]:
    """The typed events of a finished or growing log, in file order, streamed.

    A torn last line is ignored; an undecodable line with more lines after it, a line that
    is not an event, or an event that breaks the model raises :class:`LogError`.
    """
    p = open_log(path)
    loads = _fast_loads or _std_loads
    torn: int | None = None  # line number of an undecodable line seen last
    with open(p, "rb") as fh:
        for lineno, line in enumerate(fh, 1):
            if torn is not None:
                if not line.strip():
                    continue
                raise LogError(f"{p}:{torn}: not JSON (is this a tether log?)")
            try:
                obj = loads(line)
            except ValueError:
                if not line.strip():
                    continue
                try:
                    obj = _decode(line)
                except ValueError:
                    if not line.endswith(b"\n"):
                        return  # being written now: what follows is its rest, not a line
                    torn = lineno
                    continue
            try:
                yield parse_event(obj)
            except LogError:  # name the line only now: formatting it for every line costs
                parse_event(obj, f"{p}:{lineno}")
                raise


def stream_lines(path: str | Path) -> Iterator[tuple[bytes, int | None, Event]]:
    """As :func:`stream_events`, with each event's line as written and its ``seq``."""
    p = open_log(path)
    torn: int | None = None
    with open(p, "rb") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            if torn is not None:
                raise LogError(f"{p}:{torn}: not JSON (is this a tether log?)")
            try:
                obj = _decode(line)
            except ValueError:
                if not line.endswith(b"\n"):
                    return  # being written now (see stream_events)
                torn = lineno
                continue
            seq = obj.get("seq") if isinstance(obj, dict) else None
            yield line.rstrip(b"\r\n"), seq if isinstance(seq, int) else None, \
                parse_event(obj, f"{p}:{lineno}")


def decode_line(text: bytes | str, where: str) -> tuple[int | None, Event]:
    """One complete line (with or without its newline): its ``seq`` and typed event."""
    raw = text.encode("utf-8", errors="replace") if isinstance(text, str) else text
    try:
        obj = _decode(raw)
    except ValueError:
        raise LogError(f"{where}: not JSON (is this a tether log?)") from None
    seq = obj.get("seq") if isinstance(obj, dict) else None
    return seq if isinstance(seq, int) else None, parse_event(obj, where)


def last_lines(path: str | Path, n: int, block: int = 1 << 16) -> tuple[list[bytes], int]:
    """The last ``n`` complete non-empty lines and the offset just after the last newline.

    Reads backwards from the end in blocks, so ``tail -n 10`` of a gigabyte log is instant.
    A torn last line (no newline yet) is left out: a follower picks it up once it is done.
    """
    p = open_log(path)
    with open(p, "rb") as fh:
        end = fh.seek(0, os.SEEK_END)
        data = b""
        pos = end
        while True:
            step = min(block, pos)
            pos -= step
            fh.seek(pos)
            data = fh.read(step) + data
            cut = data.rfind(b"\n") + 1  # complete lines end at the last newline
            lines = [ln for ln in data[:cut].split(b"\n") if ln.strip()]
            if pos > 0 and lines and not data.startswith(b"\n"):
                lines = lines[1:]  # the first one may have begun before this block
            if pos == 0 or (len(lines) >= n and cut > 0):
                break
            block *= 2  # few passes even for a large n
    return (lines[-n:] if n > 0 else []), end - (len(data) - cut)


def follow_lines(path: str | Path, offset: int, poll: float = 0.25,
                 stop: Callable[[], bool] = lambda: False) -> Iterator[bytes]:
    """Yield every complete line written after ``offset``.

    Polls the file like ``tail -f``: no deadline, it ends only when ``stop()`` is true or
    the caller stops iterating (Ctrl-C). A line is yielded only once its newline is there,
    so a line the controller is still writing is never read half-way. If the file shrinks
    (a new log was started in its place) it is read again from the start.
    """
    p = open_log(path)
    buf = b""
    fh = open(p, "rb")  # noqa: SIM115 - closed in the finally below
    try:
        fh.seek(offset)
        while not stop():
            chunk = fh.read()
            if chunk:
                buf += chunk
                *done, buf = buf.split(b"\n")
                for ln in done:
                    if ln.strip():
                        yield ln
                continue
            if p.exists() and p.stat().st_size < fh.tell():
                fh.close()
                fh = open(p, "rb")  # noqa: SIM115
                buf = b""
                continue
            time.sleep(poll)
    finally:
        fh.close()
