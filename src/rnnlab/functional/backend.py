"""Which implementation runs the per-step time loops: "numba" (fused, compiled) or "numpy".

Both compute the same equations (see :mod:`rnnlab.functional.recurrent`) and
both are tested against torch. The NumPy loops are the readable reference:
a handful of NumPy calls per step, each costing about a microsecond of
overhead plus a full pass over memory. The numba loops fuse each step's
elementwise work into one pass and run the whole time loop in compiled code,
which is what makes small sequences as fast as torch's fused LSTM.

"auto" (the default when numba imports) uses numba for steps of at most
``AUTO_NUMBA_MAX_UNITS`` batch × hidden units, where per-call overhead
dominates, and NumPy above, where vectorised ufuncs and BLAS threads win
(see benchmarks/backend_crossover.py). The environment variable
``RNNLAB_BACKEND`` (auto, numpy or numba) overrides the default.
"""

from __future__ import annotations

import importlib.util
import os
from contextlib import contextmanager

BACKENDS = ("auto", "numpy", "numba")

# Measured crossover on a 2-core AVX-512 machine: below it the compiled loop is
# 2-4x faster per step, above it NumPy is up to 3x faster.
AUTO_NUMBA_MAX_UNITS = 256


def numba_available() -> bool:
    return importlib.util.find_spec("numba") is not None


def _default() -> str:
    requested = os.environ.get("RNNLAB_BACKEND", "").strip().lower()
    if requested:
        if requested not in BACKENDS:
            raise ValueError(f"RNNLAB_BACKEND must be one of {BACKENDS}, got {requested!r}")
        if requested != "numpy" and not numba_available():
            raise ValueError(f"RNNLAB_BACKEND={requested}, but numba is not installed")
        return requested
    return "auto" if numba_available() else "numpy"


_current = _default()


def get_backend() -> str:
    """The backend setting: "auto", "numpy" or "numba"."""
    return _current


def loops_for(batch: int, hidden: int) -> str:
    """The implementation that runs a step of ``batch`` × ``hidden`` units now: "numpy" or "numba"."""
    if _current == "auto":
        return "numba" if batch * hidden <= AUTO_NUMBA_MAX_UNITS else "numpy"
    return _current


def set_backend(name: str) -> None:
    """Choose the backend for every later forward and backward."""
    global _current
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {name!r}")
    if name != "numpy" and not numba_available():
        raise ValueError(f"the {name} backend needs numba installed (pip install numba)")
    _current = name


@contextmanager
def use_backend(name: str):
    """Run a block with another backend, then restore the previous one."""
    previous = get_backend()
    set_backend(name)
    try:
        yield
    finally:
        set_backend(previous)
