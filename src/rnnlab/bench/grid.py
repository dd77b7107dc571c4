"""The benchmark grids: full (issue 3), small (under a minute) and tiny (tests)."""

from __future__ import annotations

import itertools

from ..analysis.complexity import MODELS
from .models import Point

__all__ = ["GRIDS", "K", "grid_points"]

K = 10  # outputs of every model

# full: every combination, per model.
FULL_D = (1, 32, 256)
FULL_N = (8, 64)
FULL_M = (32, 128, 512)
FULL_T = (1, 16, 64)

# small: six (d, n, m, T) points that span the regimes of the full grid:
# per-step overhead (d=1, T=64), T=1 with d=1, the middle, and big GEMMs.
SMALL = [
    (1, 8, 32, 64),
    (1, 64, 512, 1),
    (32, 8, 128, 16),
    (32, 64, 512, 16),
    (256, 64, 128, 64),
    (256, 64, 512, 16),
]

# tiny: two cheap points, for the end-to-end tests.
TINY = [
    (1, 8, 16, 4),
    (4, 8, 32, 8),
]

GRIDS = ("tiny", "small", "full")


def grid_points(grid: str, models=MODELS) -> list[Point]:
    """The points of a named grid for the given models, model-major."""
    if grid == "full":
        shapes = list(itertools.product(FULL_D, FULL_N, FULL_M, FULL_T))
    elif grid == "small":
        shapes = SMALL
    elif grid == "tiny":
        shapes = TINY
    else:
        raise ValueError(f"grid must be one of {GRIDS}, got {grid!r}")
    for model in models:
        if model not in MODELS:
            raise ValueError(f"model must be one of {MODELS}, got {model!r}")
    return [Point(model, d, n, m, T, K) for model in models for d, n, m, T in shapes]
