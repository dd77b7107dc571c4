"""The batch type every task returns, shuffled minibatches, and the argument checks of data/.

Layout: inputs are time-major, x (T, N, F), the layers' default
(``batch_first=False``). Targets put the batch on axis 0, y (N, ...), except
per-step targets such as copy memory's, which are time-major (T, N).

Randomness: every function that draws takes ``rng``, a ``numpy.random.Generator``,
as a keyword, and never touches NumPy's global state, so one seed gives one
set of arrays.
"""

from __future__ import annotations

import math
from typing import Iterator, NamedTuple

import numpy as np

__all__ = ["Batch", "minibatches"]

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


class Batch(NamedTuple):
    """One batch of a task: ``x`` the inputs, ``y`` the targets.

    A NamedTuple, so ``x, y = adding_problem(...)`` unpacks it.
    Float targets are regression targets; int64 targets are class indices.
    """

    x: np.ndarray
    y: np.ndarray


# --- argument checks: every message names what was expected and what came ---

def check_rng(rng) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise TypeError("rng must be a numpy.random.Generator (e.g. np.random.default_rng(0)), "
                        f"got {type(rng).__name__}")
    return rng


def check_dtype(dtype) -> np.dtype:
    """float32 or float64, the dtypes the layers take; anything else is a TypeError."""
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(f"dtype must be float32 or float64, got {dtype!r}") from exc
    if dt not in FLOAT_DTYPES:
        raise TypeError(f"dtype must be float32 or float64, got {dt}")
    return dt


def check_int(value, name: str, minimum: int = 1) -> int:
    """An integer >= ``minimum`` (bools are refused), else ValueError."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_float(value, name: str, low: float, high: float,
                low_open: bool = False, high_open: bool = False) -> float:
    """A finite real number in the interval [low, high] (ends open when asked), else ValueError."""
    lb, rb = ("(" if low_open else "["), (")" if high_open else "]")
    want = f"{name} must be a real number in {lb}{low}, {high}{rb}"
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{want}, got {value!r}")
    v = float(value)
    if (not math.isfinite(v) or v < low or v > high
            or (low_open and v == low) or (high_open and v == high)):
        raise ValueError(f"{want}, got {value!r}")
    return v


# --- minibatches ---

def minibatches(x: np.ndarray, y: np.ndarray, batch_size: int, *,
                rng: np.random.Generator, drop_last: bool = False) -> Iterator[Batch]:
    """One epoch of shuffled minibatches over time-major data.

    Every sample appears exactly once per epoch (in the last, smaller batch
    too unless ``drop_last``). Each call draws a fresh permutation from ``rng``.
    For the MLP, flatten each batch with :func:`rnnlab.data.flatten_sequences`.

    Arguments:
        x: inputs, time-major.
        y: targets with the batch on axis 0 (class indices or regression targets).
        batch_size: samples per batch, B >= 1.
        rng: draws the permutation.
        drop_last: skip the final batch when it holds fewer than ``batch_size`` samples.

    Shapes: x (T, N, F), y (N, ...) -> yields Batch(x (T, B, F), y (B, ...)).
    """
    check_rng(rng)
    batch_size = check_int(batch_size, "batch_size")
    if not isinstance(x, np.ndarray) or x.ndim != 3:
        raise ValueError("x must be a time-major 3-D array (T, N, F), got "
                         f"{type(x).__name__} with shape {getattr(x, 'shape', None)}")
    if not isinstance(y, np.ndarray) or y.ndim < 1 or y.shape[0] != x.shape[1]:
        raise ValueError(f"y must have the batch on axis 0, shape ({x.shape[1]}, ...) "
                         f"to match x {x.shape}, got shape {getattr(y, 'shape', None)}")
    n = x.shape[1]
    order = rng.permutation(n)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        idx = order[start:start + batch_size]
        yield Batch(x[:, idx], y[idx])
