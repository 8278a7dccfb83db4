"""A stand-in for a training job: prints a learning curve as tether partial results.

Usage: python examples/learning_curve.py X0 X1 [--epochs N] [--delay SECONDS]

Each epoch prints ``tether:partial <loss>``; the end prints ``tether:value <loss>``.
The final loss is the scaled Branin function of (X0, X1) in [0, 1]^2, approached from
above like a learning curve, so bad points are recognisable after a few epochs.
"""

from __future__ import annotations

import argparse
import math
import sys
import time


def final_loss(x0: float, x1: float) -> float:
    a, b = 15.0 * x0 - 5.0, 15.0 * x1
    raw = (b - 5.1 / (4 * math.pi**2) * a**2 + 5.0 / math.pi * a - 6.0) ** 2
    return (raw + (10.0 - 10.0 / (8 * math.pi)) * math.cos(a) - 44.81) / 51.95


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("x0", type=float)
    ap.add_argument("x1", type=float)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--delay", type=float, default=0.02)
    args = ap.parse_args(argv)
    target = final_loss(args.x0, args.x1)
    loss = target
    for epoch in range(args.epochs):
        loss = target + 2.0 / (epoch + 1)
        print(f"tether:partial {loss!r}", flush=True)
        time.sleep(args.delay)
    print(f"tether:value {target!r}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
