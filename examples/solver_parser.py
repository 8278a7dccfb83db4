"""The parser for examples/solver.py: ``tether worker ... --parser solver_parser:parse``.

tether calls ``parse`` with every line the program writes on stdout, without its newline.
It returns None (nothing to report), ``("partial", r)`` to stream a partial result, or
``("value", v)`` for the final value (the last one returned counts). An exception here
fails the evaluation with its message.
"""

from __future__ import annotations


def parse(line: str) -> tuple[str, float] | None:
    words = line.split()
    if len(words) == 4 and words[0] == "iter" and words[2] == "residual":
        return "partial", float(words[3])  # how far the solver still is from converged
    if words[:2] == ["objective", "="] and len(words) == 3:
        return "value", float(words[2])
    return None
