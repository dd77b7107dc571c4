"""Which implementation runs the per-step time loops.

All compute the same equations (see :mod:`rnnlab.functional.recurrent`) and
all are tested against torch:

- "numpy": the readable reference, a handful of in-place NumPy calls per
  step, each costing ~1 µs of overhead plus a pass over memory;
- "numba": the whole time loop compiled, one fused pass per step; fastest
  while a step is small, since it removes the per-call overhead;
- "fused": NumPy's BLAS and SIMD tanh per step, with the rest of the LSTM
  step fused into one compiled pass, and the per-step products of both cells
  on a weight packed once where that beats OpenBLAS; fastest for large steps,
  where numba's scalar exp/tanh and its single thread would lose to NumPy;
- "auto" (the default when numba imports): "numba" for steps of at most
  ``WHOLE_LOOP_MAX_UNITS`` batch × hidden units, "fused" above.

The environment variable ``RNNLAB_BACKEND`` overrides the default. Without
numba, everything runs "numpy".
"""

from __future__ import annotations

import importlib.util
import os
from contextlib import contextmanager

BACKENDS = ("auto", "numpy", "numba", "fused")

# Measured crossover on a 2-core AVX-512 machine (benchmarks/backend_crossover.py):
# below it the whole compiled loop is 2-4x faster per step than NumPy, above it
# NumPy's vectorised ufuncs and threaded BLAS win.
WHOLE_LOOP_MAX_UNITS = 256


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
    """The loops that run a step of ``batch`` × ``hidden`` units now: "numpy", "numba" or
    "fused"."""
    choice = _current
    if choice == "auto":
        choice = "numba" if batch * hidden <= WHOLE_LOOP_MAX_UNITS else "fused"
    return choice


def lazy_kernel(build):
    """A getter for a compiled helper kernel: ``build()`` (which imports numba and
    returns the jitted function) runs on first use; the getter returns None when
    numba is absent or the backend is "numpy", so the caller takes its NumPy path.
    """
    built = []

    def get():
        if _current == "numpy" or not numba_available():
            return None
        if not built:
            built.append(build())
        return built[0]

    return get


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
