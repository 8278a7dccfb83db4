"""Process groups for the benchmark scripts: start a command in its own session with its
output in a file, and stop it with everything it started (a worker's evaluation child,
a simulator's sockets), even when the benchmark is interrupted.

Imported by the sibling scripts as ``procs`` (they run as ``python benchmarks/X.py``, so
this directory is first on ``sys.path``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path

_LIVE: list[subprocess.Popen[bytes]] = []


def spawn(cmd: list[str], out: Path, cwd: Path | None = None, env: dict[str, str] | None = None,
          pipes: bool = False) -> subprocess.Popen[bytes]:
    """Start ``cmd`` in its own session, stderr (and stdout unless ``pipes``) to ``out``;
    with ``pipes`` its stdin and stdout are pipes for the caller."""
    with open(out, "wb") as fh:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE if pipes else fh, stderr=fh,
                                stdin=subprocess.PIPE if pipes else subprocess.DEVNULL,
                                cwd=cwd, env=env, start_new_session=True)
    _LIVE.append(proc)
    return proc


def kill_group(proc: subprocess.Popen[bytes], grace: float = 1.0) -> None:
    """SIGTERM the process's group, SIGKILL it after ``grace`` seconds (at once if 0); reap."""
    if proc.poll() is None and grace > 0:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace)
    # the leader may be gone while its children (e.g. an evaluation child) live on
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired, ChildProcessError):
        proc.wait(timeout=10)
    if proc in _LIVE:
        _LIVE.remove(proc)


def kill_all(grace: float = 1.0) -> None:
    """Stop every process started here that is still tracked."""
    for proc in list(_LIVE):
        kill_group(proc, grace)
