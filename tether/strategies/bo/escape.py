"""Escape from a converged basin: search where the global model is blind.

On Hartmann6 a run ends in whichever of two basins held the deeper point early (docs/bo.md,
Known limits). The ARD fit then models that basin: its lengthscales are long along the
axes the basin ignores, and the other basin, narrow along those axes, looks like the flat
bulk, so log-EI never goes back there. Once the incumbent has stalled (improvements
below ``STALL_TOL`` of the value spread for a window of results), two asks in three are
*escape asks*: log-EI of a second GP fitted only to the points the global kernel treats
as unrelated to the incumbent (scaled distance above ``FAR``), maximized outside the
incumbent's neighbourhood. The second GP's lengthscales are not set by the dense cluster
around the incumbent. If an escape ask finds a better point, the incumbent is no longer
stalled and the global GP takes over there.

The decision is read from the view at each ask (stall, ask count), so a resumed run
continues as the original would have.
"""

from __future__ import annotations

import numpy as np

TAG = "async-bo:escape"
FAR = 2.0  # scaled distance beyond which the global kernel's correlation is below 0.15


def scaled_dist(x: np.ndarray, p: np.ndarray, ls: np.ndarray) -> np.ndarray:
    """Distances of the rows of ``x`` from ``p`` in units of the lengthscales."""
    return np.sqrt((((x - p) / ls) ** 2).sum(-1))


def far_data(x: np.ndarray, y: np.ndarray, ls: np.ndarray) -> np.ndarray:
    """Indices of the points the global kernel treats as unrelated to the incumbent."""
    return np.flatnonzero(scaled_dist(x, x[int(np.argmin(y))], ls) > FAR)
