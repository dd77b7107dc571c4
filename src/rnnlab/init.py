"""Initialisers. Each takes an explicit numpy Generator, so that runs are reproducible."""

from __future__ import annotations

import numpy as np


def as_generator(rng) -> np.random.Generator:
    """A Generator from None (fresh entropy), an int seed, or a Generator."""
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or isinstance(rng, (int, np.integer)):
        return np.random.default_rng(rng)
    raise TypeError(f"rng must be a numpy Generator, an int seed or None, got {type(rng).__name__}")


def uniform(shape, bound: float, rng: np.random.Generator, dtype) -> np.ndarray:
    """An array of ``shape`` drawn from U(-bound, bound), in ``dtype``.

    Drawn in float64 and rounded, so that float32 and float64 layers built
    from the same seed hold the same values up to rounding.
    """
    return rng.uniform(-bound, bound, size=shape).astype(dtype)
