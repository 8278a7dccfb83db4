"""Start real controller and worker processes on 127.0.0.1 and clean them up."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
TETHER = [sys.executable, "-m", "tether"]


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(ROOT) + os.pathsep + e.get("PYTHONPATH", "")
    return e


def wait_for(cond: Callable[[], Any], timeout: float, what: str, every: float = 0.02) -> Any:
    """Poll ``cond`` until it returns something truthy, or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)


class Cluster:
    """One controller and any number of workers, all real processes, in one directory."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.addr = tmp / "address"
        self.log = tmp / "run.jsonl"
        self.procs: list[subprocess.Popen[str]] = []
        self.controller: subprocess.Popen[str] | None = None
        self.workers: list[subprocess.Popen[str]] = []
        self.worker_args: list[str] = []  # added to every worker (e.g. --slots 3)
        self.run_extra = ""  # added to every config's [run] (e.g. prefetch = 2)

    def config(self, budget: int = 10, strategy: str = "random", dim: int = 2,
               run: str = "", strategy_opts: str = "") -> Path:
        space = "\n".join(f"x{i} = [0.0, 1.0]" for i in range(dim))
        text = (f"[space]\n{space}\n\n[strategy]\nname = \"{strategy}\"\n{strategy_opts}\n\n"
                f"[run]\nbudget = {budget}\nbind = \"tcp://127.0.0.1:0\"\nlog = \"{self.log}\"\n"
                f"{run}\n{self.run_extra}\n")
        path = self.tmp / "config.toml"
        path.write_text(text)
        return path

    def _spawn(self, argv: list[str], name: str) -> subprocess.Popen[str]:
        out = open(self.tmp / f"{name}.out", "a")  # noqa: SIM115 - closed with the process
        p = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env(), cwd=self.tmp,
                             text=True, start_new_session=True)
        self.procs.append(p)
        return p

    def start_controller(self, *args: str, config: Path | None = None) -> subprocess.Popen[str]:
        if self.addr.exists():
            self.addr.unlink()
        argv = [*TETHER, "controller"]
        if config is not None:
            argv.append(str(config))
        argv += ["--address-file", str(self.addr), *args]
        self.controller = self._spawn(argv, "controller")
        wait_for(lambda: self.addr.exists() or self.controller.poll() is not None, 30,
                 "the controller's address file")
        return self.controller

    def start_worker(self, *args: str, name: str | None = None,
                     python: str | None = None, command: str | None = None) -> subprocess.Popen[str]:
        name = name or f"w{len(self.workers)}"
        what = ["--python", python] if python else ["--command", command or ""]
        where = [] if "--connect" in args else ["--address-file", str(self.addr)]
        argv = [*TETHER, "worker", *where, "--name", name, *what, *self.worker_args, *args]
        w = self._spawn(argv, name)
        self.workers.append(w)
        return w

    def wait_controller(self, timeout: float = 60) -> int:
        assert self.controller is not None
        return self.controller.wait(timeout=timeout)

    def output(self, name: str) -> str:
        p = self.tmp / f"{name}.out"
        return p.read_text() if p.exists() else ""

    def kill(self, p: subprocess.Popen[str], sig: int = signal.SIGKILL) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, sig)
        if sig == signal.SIGKILL:
            p.wait(timeout=10)

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                self.kill(p)


def events_of(log: Path, kind: str | None = None) -> list[dict[str, Any]]:
    import json

    if not log.exists():
        return []
    out = []
    for ln in log.read_text().split("\n"):
        try:
            e = json.loads(ln)
        except ValueError:
            continue
        if kind is None or e.get("event") == kind:
            out.append(e)
    return out
