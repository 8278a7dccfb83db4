"""The heavy-tailed scenario's objective: Hartmann 6-D taking a lognormal time.

Evaluation number ``index`` of run ``seed`` takes ``scale * exp(mu + sigma * z)``
seconds, with ``z`` a standard normal draw computed from a hash of ``(seed, index)``.
Keying the duration on the evaluation's number, not on its point, is what makes a
real-daemon run and its simulated-time twin comparable: both hand evaluation *k* the
same duration whatever points the strategy chose, so the two wall times differ only by
what the daemon adds (asks, messages, process starts), even if a few milliseconds of
jitter reorder two completions and the strategy's later points drift apart. Under a
greedy asynchronous schedule or a batch schedule the wall time is a continuous
function of the durations and of such delays, so small overheads cost small time.

Standard library only, so that it starts in tens of milliseconds as a program run per
evaluation by ``tether worker --command`` (a Python objective does not learn its
evaluation id; a command gets it as ``{eval_id}``)::

    tether worker --address-file addr --command \
        "python -I -S /path/to/tether/heavy.py SEED {eval_id} {x0} {x1} {x2} {x3} {x4} {x5}"

The program subtracts its own start-up (from the fork, read from /proc) from the
sleep, so an evaluation lasts its duration from the moment the worker spawned it.
"""

from __future__ import annotations

import hashlib
import math
import os
import sys
import time
from collections.abc import Sequence
from statistics import NormalDist

MU, SIGMA = 0.0, 1.0  # the scenario's lognormal: median 1 s, mean exp(1/2) = 1.65 s

_A = ((10, 3, 17, 3.5, 1.7, 8), (0.05, 10, 17, 0.1, 8, 14),
      (3, 3.5, 1.7, 10, 17, 8), (17, 8, 0.05, 10, 0.1, 14))
_P = ((1312, 1696, 5569, 124, 8283, 5886), (2329, 4135, 8307, 3736, 1004, 9991),
      (2348, 1451, 3522, 2883, 3047, 6650), (4047, 8828, 8732, 5743, 1091, 381))
_ALPHA = (1.0, 1.2, 3.0, 3.2)
_NORMAL = NormalDist()


def duration(seed: int, index: int, mu: float = MU, sigma: float = SIGMA,
             scale: float = 1.0) -> float:
    """Seconds evaluation ``index`` of run ``seed`` takes (deterministic, any platform)."""
    digest = hashlib.sha256(f"tether-heavy:{int(seed)}:{int(index)}".encode()).digest()
    # 53 bits -> u strictly inside (0, 1), so inv_cdf never sees 0 or 1
    u = ((int.from_bytes(digest[:8], "big") >> 11) + 0.5) / 2.0**53
    return scale * math.exp(mu + sigma * _NORMAL.inv_cdf(u))


def hartmann6(x: Sequence[float]) -> float:
    """Hartmann 6-D on [0,1]^6 (as ``tether.problems.hartmann6``, without numpy)."""
    return -sum(alpha * math.exp(-sum(a * (xi - p * 1e-4) ** 2 for a, xi, p in zip(row, x, prow)))
                for alpha, row, prow in zip(_ALPHA, _A, _P))


def _since_fork() -> float:
    """Seconds since this process was forked (0 where /proc is not there)."""
    try:
        with open("/proc/self/stat") as f:
            fields = f.read().rpartition(")")[2].split()
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        # field 22 of stat (starttime, in clock ticks after boot); fields[0] here is field 3
        return max(0.0, uptime - int(fields[19]) / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return 0.0


def main(argv: Sequence[str]) -> int:
    """``SEED EVAL_ID X0..X5 [SCALE]``: sleep the duration, print the value."""
    if len(argv) not in (8, 9):
        print("usage: heavy.py SEED EVAL_ID X0 X1 X2 X3 X4 X5 [SCALE]", file=sys.stderr)
        return 2
    seed, index = int(argv[0]), int(argv[1])
    x = [float(v) for v in argv[2:8]]
    scale = float(argv[8]) if len(argv) == 9 else 1.0
    time.sleep(max(0.0, duration(seed, index, scale=scale) - _since_fork()))
    print(repr(hartmann6(x)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
