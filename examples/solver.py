"""A stand-in for a simulation code with its own output format (no ``tether:`` lines).

Usage: python examples/solver.py X0 X1 [--tol T] [--delay SECONDS]

It "solves" for the scaled Branin function of (X0, X1) in [0, 1]^2 by a damped
fixed-point iteration, printing one ``iter N residual R`` line per iteration and, at the
end, ``objective = V``, the way many solvers report. Read it with the parser beside it::

    cd examples
    tether worker --address-file ../tether.address \\
        --command "python solver.py {x0} {x1}" --parser solver_parser:parse

or, without any Python, with the regular-expression shorthand::

    --parser 're:^(?:iter \\d+ residual (?P<partial>\\S+)|objective = (?P<value>\\S+))$'

A point with X0 above 1 makes it diverge: it prints ``diverged`` and exits 3.
"""

from __future__ import annotations

import argparse
import math
import sys
import time


def branin(x0: float, x1: float) -> float:
    a, b = 15.0 * x0 - 5.0, 15.0 * x1
    raw = (b - 5.1 / (4 * math.pi**2) * a**2 + 5.0 / math.pi * a - 6.0) ** 2
    return (raw + (10.0 - 10.0 / (8 * math.pi)) * math.cos(a) - 44.81) / 51.95


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("x0", type=float)
    ap.add_argument("x1", type=float)
    ap.add_argument("--tol", type=float, default=1e-10)
    ap.add_argument("--delay", type=float, default=0.0, help="seconds per iteration")
    args = ap.parse_args(argv)
    print(f"solver 1.0: x0={args.x0} x1={args.x1}", flush=True)  # a banner the parser skips
    if args.x0 > 1.0:
        print("diverged", flush=True)
        return 3
    target, estimate = branin(args.x0, args.x1), 0.0
    for it in range(1, 200):
        estimate += 0.5 * (target - estimate)
        residual = abs(target - estimate)
        print(f"iter {it} residual {residual:.6e}", flush=True)
        if residual < args.tol:
            break
        time.sleep(args.delay)
    print(f"objective = {estimate!r}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
