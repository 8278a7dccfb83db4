"""Output parsers for external programs that cannot print ``tether:`` lines.

``tether worker --command ... --parser SPEC`` feeds every stdout line (a ``str`` without
its newline) to a parser, which returns ``None``, ``("partial", float)`` or
``("value", float)``. SPEC is ``module:function`` (any callable of one line), or
``re:PATTERN``: a line matching PATTERN's named group ``value`` gives the final value,
one matching its named group ``partial`` a partial.

Parsers run inside the worker agent, between its heartbeats: they must be quick.
"""

from __future__ import annotations

import importlib
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tether.errors import ConfigError

Parsed = tuple[str, float] | None
LineParser = Callable[[str], Any]
KINDS = ("partial", "value")


class RegexParser:
    """``re:PATTERN``: ``re.search`` on each line; named groups ``value`` / ``partial``."""

    def __init__(self, pattern: str) -> None:
        try:
            self.regex = re.compile(pattern)
        except re.error as exc:
            raise ConfigError(f"--parser re:{pattern}: bad pattern: {exc}") from None
        self.groups = [g for g in KINDS if g in self.regex.groupindex]
        if not self.groups:
            raise ConfigError(f"--parser re:{pattern}: needs a named group "
                              "(?P<value>...) or (?P<partial>...)")
        self.pattern = pattern

    def __call__(self, line: str) -> Parsed:
        found = self.regex.search(line)
        if found is None:
            return None
        # "value" first: one pattern with both groups reports the final value when it
        # is the one that took part in the match
        for kind in reversed(self.groups):
            text = found.group(kind)
            if text is not None:
                return kind, float(text)
        return None

    def __repr__(self) -> str:
        return f"re:{self.pattern}"


def _import(spec: str) -> LineParser:
    mod_name, _, attr = spec.partition(":")
    if not mod_name or not attr:
        raise ConfigError(f"--parser needs module:function or re:PATTERN, got {spec!r}")
    # like `python -m`: a parser module next to where the worker was started is found
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        obj: Any = importlib.import_module(mod_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except Exception as exc:  # the user's module may raise anything while importing
        raise ConfigError(f"--parser {spec}: cannot load: {type(exc).__name__}: {exc}") from None
    if not callable(obj):
        raise ConfigError(f"--parser {spec}: not callable")
    return obj


def load_parser(spec: str) -> LineParser:
    """The parser SPEC names; ConfigError (exit 2) when it cannot be had."""
    if spec.startswith("re:"):
        return RegexParser(spec[3:])
    return _import(spec)


def checked(result: Any) -> Parsed:
    """A parser's return value, validated; ValueError says what was wrong with it."""
    if result is None:
        return None
    if not (isinstance(result, tuple) and len(result) == 2 and result[0] in KINDS):
        raise ValueError(f"parser returned {result!r}: want None, ('partial', float) "
                         "or ('value', float)")
    try:
        return result[0], float(result[1])
    except (TypeError, ValueError):
        raise ValueError(f"parser returned a {result[0]} that is not a number: "
                         f"{result[1]!r}") from None
