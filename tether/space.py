"""Box-bounded continuous search spaces."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tether.errors import ConfigError

FloatArray = np.ndarray


@dataclass(frozen=True)
class Space:
    """An ordered box: one ``(low, high)`` interval per named variable."""

    names: tuple[str, ...]
    lower: tuple[float, ...]
    upper: tuple[float, ...]

    def __post_init__(self) -> None:
        if not self.names:
            raise ConfigError("[space] defines no variables")
        if not (len(self.names) == len(self.lower) == len(self.upper)):
            raise ConfigError("space names and bounds differ in length")
        if len(set(self.names)) != len(self.names):
            raise ConfigError("space has duplicate variable names")
        for n, lo, hi in zip(self.names, self.lower, self.upper):
            if not (math.isfinite(lo) and math.isfinite(hi)):
                raise ConfigError(f"space variable {n!r} has non-finite bounds")
            if not lo < hi:
                raise ConfigError(f"space variable {n!r} has empty bounds [{lo}, {hi}]")

    @classmethod
    def from_mapping(cls, table: Mapping[str, Any]) -> Space:
        """Build from a ``{name: [low, high]}`` table, keeping its order."""
        names, lo, hi = [], [], []
        for name, bounds in table.items():
            ok = (
                isinstance(bounds, (list, tuple))
                and len(bounds) == 2
                and all(isinstance(b, (int, float)) and not isinstance(b, bool) for b in bounds)
            )
            if not ok:
                raise ConfigError(f"[space] {name} must be [low, high] numbers, got {bounds!r}")
            names.append(str(name))
            lo.append(float(bounds[0]))
            hi.append(float(bounds[1]))
        return cls(tuple(names), tuple(lo), tuple(hi))

    @classmethod
    def unit(cls, dim: int) -> Space:
        return cls(tuple(f"x{i}" for i in range(dim)), (0.0,) * dim, (1.0,) * dim)

    @property
    def dim(self) -> int:
        return len(self.names)

    @property
    def lo(self) -> FloatArray:
        return np.asarray(self.lower, dtype=float)

    @property
    def hi(self) -> FloatArray:
        return np.asarray(self.upper, dtype=float)

    def to_unit(self, x: Sequence[float] | FloatArray) -> FloatArray:
        """Map points of the box onto [0, 1]^d (works on 1-D and 2-D arrays)."""
        return (np.asarray(x, dtype=float) - self.lo) / (self.hi - self.lo)

    def from_unit(self, u: Sequence[float] | FloatArray) -> FloatArray:
        u = np.asarray(u, dtype=float)
        return np.clip(self.lo + u * (self.hi - self.lo), self.lo, self.hi)

    def contains(self, x: Sequence[float] | FloatArray) -> bool:
        a = np.asarray(x, dtype=float)
        return bool(
            a.shape == (self.dim,)
            and np.all(np.isfinite(a))
            and np.all(a >= self.lo)
            and np.all(a <= self.hi)
        )

    def check_point(self, x: Sequence[float]) -> str:
        """Why ``x`` cannot be evaluated in this space, or ``""`` when it can."""
        # plain Python: for a handful of coordinates numpy's call overhead dominates.
        # One pass for the common case (every coordinate within its finite bounds, which
        # also rules out NaN and infinities); the reason is worked out only on failure.
        if len(x) == self.dim:
            for v, lo, hi in zip(x, self.lower, self.upper):
                if not lo <= v <= hi:
                    break
            else:
                return ""
        if len(x) != self.dim:
            return f"point has {len(x)} coordinates, space has {self.dim}"
        if not all(math.isfinite(v) for v in x):
            return "point has non-finite coordinates"
        if any(v < lo or v > hi for v, lo, hi in zip(x, self.lower, self.upper)):
            return "point is outside the bounds"
        return ""

    def to_json(self) -> list[dict[str, Any]]:
        return [
            {"name": n, "low": lo, "high": hi}
            for n, lo, hi in zip(self.names, self.lower, self.upper)
        ]

    @classmethod
    def from_json(cls, items: Sequence[Mapping[str, Any]]) -> Space:
        return cls(
            tuple(str(i["name"]) for i in items),
            tuple(float(i["low"]) for i in items),
            tuple(float(i["high"]) for i in items),
        )

    def as_params(self, x: Sequence[float] | FloatArray) -> dict[str, float]:
        return {n: float(v) for n, v in zip(self.names, x)}
