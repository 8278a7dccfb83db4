"""Journal writer and reader.

One JSON object per line; every line has ``event``, ``t`` and ``seq`` (gap-free from 0).
The writer buffers lines and the controller calls :meth:`JournalWriter.flush` once per
loop turn, before it sends any acknowledgement, so an ACKed result is always in the
file (the kernel's page cache survives a SIGKILL of the controller; ``fsync=True``
also survives a machine crash, at a throughput cost).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from tether.errors import LogError
from tether.events import Event, to_json_obj

try:  # the `fast` extra: about 15x cheaper per event than json.dumps, a sixth of the
    # controller's CPU per evaluation at high rates (docs/benchmarks.md)
    import orjson

    _ORJSON_OPTS = orjson.OPT_SERIALIZE_NUMPY
except ImportError:  # pragma: no cover - exercised where orjson is not installed
    orjson = None  # type: ignore[assignment]


def _clean(value: Any) -> Any:
    # JSON has no NaN/inf; the log must stay loadable by any JSON reader
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    return value


def encode_line(line: dict[str, Any]) -> bytes:
    """One log line, compact JSON in UTF-8, NaN and infinities written as null."""
    if orjson is not None:
        try:
            return orjson.dumps(line, option=_ORJSON_OPTS)  # NaN/inf become null
        except TypeError:  # what orjson does not take (an int past 64 bits): the slow path
            pass
    try:
        text = json.dumps(line, separators=(",", ":"), allow_nan=False)
    except ValueError:  # a NaN or infinity somewhere: rare, so cleaned only then
        text = json.dumps(_clean(line), separators=(",", ":"), allow_nan=False)
    return text.encode("utf-8")


class JournalWriter:
    """Appends events to a JSONL file, continuing ``seq`` from ``start_seq``."""

    def __init__(self, path: str | Path, start_seq: int = 0, fsync: bool = False) -> None:
        self.path = Path(path)
        self.seq = start_seq
        self.fsync = fsync
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh: IO[bytes] = open(self.path, "ab")  # noqa: SIM115
        self._buf: list[bytes] = []

    def append(self, ev: Event) -> None:
        self._buf.append(encode_line(ev.line(self.seq)))  # (to_json_obj is ev.line)
        self.seq += 1

    def flush(self) -> None:
        if not self._buf:
            return
        self._buf.append(b"")  # the last line's newline
        self._fh.write(b"\n".join(self._buf))
        self._buf.clear()
        self._fh.flush()
        if self.fsync:
            os.fsync(self._fh.fileno())

    def close(self) -> None:
        self.flush()
        self._fh.close()


class MemoryJournal:
    """The same interface, kept in a list: for tests and the in-process controllers."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.typed: list[Event] = []

    def append(self, ev: Event) -> None:
        self.typed.append(ev)
        self.events.append(to_json_obj(ev, len(self.events)))

    def flush(self) -> None:
        pass

    def of(self, event: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == event]


def iter_lines(path: str | Path) -> Iterator[tuple[int, str, bool]]:
    """Yield (line number, text, is_last) for the non-empty lines, streaming the file."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        held: tuple[int, str] | None = None  # one line of lookahead tells which is last
        for i, ln in enumerate(fh, 1):
            if not ln.strip():
                continue
            if held is not None:
                yield held[0], held[1], False
            held = (i, ln)
        if held is not None:
            yield held[0], held[1], True


def iter_raw(path: str | Path) -> Iterator[dict[str, Any]]:
    """The decoded JSON objects of a log, streamed; a torn last line is ignored."""
    p = Path(path)
    if not p.is_file():
        raise LogError(f"no such log: {p}")
    loads = json.loads
    for lineno, text, is_last in iter_lines(p):
        try:
            obj = loads(text)
        except json.JSONDecodeError:
            if is_last:
                return
            raise LogError(f"{p}:{lineno}: not JSON") from None
        if not isinstance(obj, dict) or "event" not in obj:
            raise LogError(f"{p}:{lineno}: not an event object")
        obj["_line"] = lineno
        yield obj


def iter_events(path: str | Path) -> Iterator[Event]:
    """The typed events of a log, streamed and validated (see tether.events); the one
    reader that ``--resume`` and ``tether log`` share (tether/log/read.py)."""
    from tether.log.read import stream_events

    return stream_events(path)


def read_events(path: str | Path) -> list[dict[str, Any]]:
    """All events of a log as dicts; a torn (unparsable) last line is ignored."""
    out = []
    for obj in iter_raw(path):
        del obj["_line"]
        out.append(obj)
    return out


def repair(path: str | Path) -> int:
    """Cut a torn last line off the file; return the number of bytes removed."""
    p = Path(path)
    data = p.read_bytes()
    if not data:
        return 0
    keep = len(data)
    if not data.endswith(b"\n"):
        keep = data.rfind(b"\n") + 1
    else:
        tail = data[: -1].rsplit(b"\n", 1)[-1]
        try:
            json.loads(tail)
        except ValueError:
            keep = len(data) - len(tail) - 1
    if keep < len(data):
        with open(p, "r+b") as fh:
            fh.truncate(keep)
    return len(data) - keep
