"""The trainer's fields of a checkpoint (metrics summary, data RNG state), validated.

The digest proves a file unchanged since it was written, not who wrote it, so each
field is checked for its type and range, and a bad one is a CheckpointError that
names it rather than a ValueError, TypeError or OverflowError deep in the resume.
"""

from __future__ import annotations

import math

import numpy as np

from ..io import CheckpointError

__all__ = ["checked_metrics", "data_rng_from"]

_U128 = 1 << 128
_U32 = 1 << 32


def _number(path, name, value, *, allow_none, minimum=None):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CheckpointError(f"{path}: metrics {name!r} must be a number, got {str(value)[:40]!r}")
    try:
        value = float(value)
    except OverflowError:
        value = math.inf
    if not math.isfinite(value) or (minimum is not None and value < minimum):
        raise CheckpointError(f"{path}: metrics {name!r} must be a finite number"
                              f"{'' if minimum is None else f' >= {minimum}'}, got {value!r}")
    return value


def checked_metrics(path, metrics: dict, step: int) -> dict:
    """{"loss", "best_loss", "best_step", "seconds"} of a checkpoint, checked."""
    out = {"loss": _number(path, "loss", metrics.get("loss"), allow_none=True),
           "best_loss": _number(path, "best_loss", metrics.get("best_loss"), allow_none=True),
           "seconds": _number(path, "seconds", metrics.get("seconds", 0.0), allow_none=False,
                              minimum=0.0)}
    best_step = metrics.get("best_step")
    if best_step is not None and (isinstance(best_step, bool) or not isinstance(best_step, int)
                                  or not 0 <= best_step <= step):
        raise CheckpointError(f"{path}: metrics 'best_step' must be an int in [0, {step}], "
                              f"got {str(best_step)[:40]!r}")
    out["best_step"] = best_step
    return out


def _uint(path, name, value, bound):
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < bound:
        raise CheckpointError(f"{path}: rng {name!r} must be an integer in [0, 2^"
                              f"{bound.bit_length() - 1}), got {str(value)[:40]}")
    return value


def data_rng_from(path, state) -> np.random.Generator:
    """A Generator in the saved PCG64 ``bit_generator.state``, every field checked."""
    if not isinstance(state, dict) or state.get("bit_generator") != "PCG64":
        raise CheckpointError(f"{path}: rng: expected a PCG64 state, got {str(state)[:80]}")
    if set(state) != {"bit_generator", "state", "has_uint32", "uinteger"}:
        raise CheckpointError(f"{path}: rng: expected the keys bit_generator, state, "
                              f"has_uint32, uinteger, got {sorted(state)[:6]}")
    inner = state["state"]
    if not isinstance(inner, dict) or set(inner) != {"state", "inc"}:
        raise CheckpointError(f"{path}: rng 'state' must be {{'state': int, 'inc': int}}, "
                              f"got {str(inner)[:80]}")
    _uint(path, "state", inner["state"], _U128)
    _uint(path, "inc", inner["inc"], _U128)
    if inner["inc"] % 2 == 0:
        raise CheckpointError(f"{path}: rng 'inc' must be odd (PCG64 keeps it so), "
                              f"got {inner['inc']}")
    _uint(path, "has_uint32", state["has_uint32"], 2)
    _uint(path, "uinteger", state["uinteger"], _U32)
    rng = np.random.default_rng()
    rng.bit_generator.state = state
    return rng
