"""The messages a worker and a controller exchange (see docs/protocol.md).

Each message is a slotted dataclass, not frozen (a frozen one costs four times as much to
build, and several are built per evaluation): treat them as immutable. On the wire it is
a msgpack map with ``v`` (protocol version), ``t`` (type) and the dataclass fields under
their names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PROTOCOL_VERSION = 1

EvalRef = tuple[int, int]  # (eval_id, attempt)


# ----------------------------------------------------------------- worker -> controller
@dataclass(slots=True)
class Hello:
    """First message on every (re)connection; says what the worker still holds."""

    name: str
    session: str  # random per worker process: a restarted worker is a new session
    slots: int = 1
    running: tuple[EvalRef, ...] = ()
    host: str = ""
    pid: int = 0
    job: str = ""  # batch job id when inside Slurm/PBS


@dataclass(slots=True)
class Partial:
    eval_id: int
    attempt: int
    value: float
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Running:
    """A prefetched evaluation left the worker's queue and started: its timeout starts now."""

    eval_id: int
    attempt: int


@dataclass(slots=True)
class Result:
    eval_id: int
    attempt: int
    value: float
    seconds: float = 0.0


@dataclass(slots=True)
class Failure:
    eval_id: int
    attempt: int
    error: str
    seconds: float = 0.0


@dataclass(slots=True)
class Killed:
    eval_id: int
    attempt: int
    reason: str = ""


@dataclass(slots=True)
class Drain:
    """The worker takes no new work (its walltime is near) but finishes what it runs."""

    remaining: float = 0.0


@dataclass(slots=True)
class Goodbye:
    """The worker is leaving; ``abandoned`` evaluations should be re-queued at once."""

    reason: str
    abandoned: tuple[EvalRef, ...] = ()


# ----------------------------------------------------------------- controller -> worker
@dataclass(slots=True)
class Welcome:
    epoch: str  # random per controller process: a change means the controller restarted
    heartbeat: float
    liveness: int
    names: tuple[str, ...] = ()  # the space's variable names, for TETHER_PARAMS and templates


@dataclass(slots=True)
class Evaluate:
    eval_id: int
    attempt: int
    x: tuple[float, ...]
    timeout: float = 0.0  # 0: none


@dataclass(slots=True)
class Ack:
    """The controller has the outcome of (eval_id, attempt) in its log: forget it."""

    eval_id: int
    attempt: int


@dataclass(slots=True)
class Kill:
    eval_id: int
    attempt: int
    reason: str = ""


@dataclass(slots=True)
class Terminate:
    """The run is over: finish up and exit 0."""

    reason: str = ""


@dataclass(slots=True)
class Drained:
    """The controller has read the worker's ``Drain`` (or its Hello with no slots) and
    sends it no more work; whatever it dispatched before arrives ahead of this."""


@dataclass(slots=True)
class Rehello:
    """The controller does not know this connection (e.g. it restarted): say Hello again,
    ``after`` seconds from now (0: at once). A hello refused by the controller's
    ``hello_rate`` is answered with the moment its turn comes, so a connection storm of
    thousands of workers is admitted at that rate instead of retried blindly."""

    after: float = 0.0


@dataclass(slots=True)
class Status:
    """Answer to ``status_query``: a snapshot of the run (see ControllerSession.status)."""

    data: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------- observers
@dataclass(slots=True)
class StatusQuery:
    """From ``tether status``: an observer that never says hello and is never given work."""


# ----------------------------------------------------------------- both ways
@dataclass(slots=True)
class Heartbeat:
    pass


Message = (
    Hello | Partial | Running | Result | Failure | Killed | Drain | Goodbye
    | Welcome | Evaluate | Ack | Kill | Terminate | Drained | Rehello | Heartbeat
    | Status | StatusQuery
)

WORKER_MESSAGES = (Hello, Partial, Running, Result, Failure, Killed, Drain, Goodbye, Heartbeat,
                   StatusQuery)
CONTROLLER_MESSAGES = (Welcome, Evaluate, Ack, Kill, Terminate, Drained, Rehello, Heartbeat,
                       Status)
