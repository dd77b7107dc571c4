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
- "auto" (the default): the paths are chosen per step shape by
  :mod:`rnnlab.kernels.planner`, by timing them on this machine (or, with
  ``RNNLAB_PLAN=off``, by the size rule below); without numba, "numpy".

The environment variable ``RNNLAB_BACKEND`` overrides the default.

Whether numba can be used is decided by importing it (once, on first need, so
that ``import rnnlab`` stays fast): a numba that is installed but does not
import (e.g. one built for an older NumPy) counts as absent, and so does any
numba when ``RNNLAB_NUMBA=0``. Without numba everything runs "numpy".
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from functools import lru_cache

BACKENDS = ("auto", "numpy", "numba", "fused")

# Measured crossover on a 2-core AVX-512 machine (benchmarks/backend_crossover.py):
# below it the whole compiled loop is 2-4x faster per step than NumPy, above it
# NumPy's vectorised ufuncs and threaded BLAS win.
WHOLE_LOOP_MAX_UNITS = 256


@lru_cache(maxsize=None)
def numba_available() -> bool:
    """Whether numba imports here (and ``RNNLAB_NUMBA`` is not 0); decided once."""
    if os.environ.get("RNNLAB_NUMBA", "").strip() == "0":
        return False
    try:
        import numba  # noqa: F401 - importing is the test: "Numba needs NumPy 2.0 or less"
    except Exception:  # noqa: BLE001 - any failure to import means: no numba
        return False
    return True


def _default() -> str:
    requested = os.environ.get("RNNLAB_BACKEND", "").strip().lower()
    if requested:
        if requested not in BACKENDS:
            raise ValueError(f"RNNLAB_BACKEND must be one of {BACKENDS}, got {requested!r}")
        if requested not in ("numpy", "auto") and not numba_available():
            raise ValueError(f"RNNLAB_BACKEND={requested}, but numba is not installed")
        return requested
    return "auto"


_current = _default()


def get_backend() -> str:
    """The backend setting: "auto", "numpy", "numba" or "fused" ("numpy" when "auto"
    has no choice: no numba)."""
    return "numpy" if _current == "auto" and not numba_available() else _current


def rule_loops(batch: int, hidden: int) -> str:
    """The loops that "auto" runs without a plan (``RNNLAB_PLAN=off``): the whole compiled
    loop up to ``WHOLE_LOOP_MAX_UNITS`` batch × hidden units, the fused loops above."""
    if not numba_available():
        return "numpy"
    return "numba" if batch * hidden <= WHOLE_LOOP_MAX_UNITS else "fused"


def loops_for(batch: int, hidden: int) -> str:
    """The loops that the setting runs for a step of ``batch`` × ``hidden`` units, when no
    plan decides (see :mod:`rnnlab.kernels.planner`): "numpy", "numba" or "fused"."""
    return rule_loops(batch, hidden) if _current == "auto" else _current


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


def compiled_from(kind: str) -> int:
    """The element count from which the compiled helper pass of ``kind`` ("sgd",
    "sgd_momentum", "outer", "activation") beats its NumPy form here (0: always); timed
    once per machine by :mod:`rnnlab.kernels.crossover`, imported on first use (called
    a few times per layer and step: this stays one dict lookup after the first)."""
    global compiled_from
    from ..kernels.crossover import min_elements
    compiled_from = min_elements
    return min_elements(kind)


def set_backend(name: str) -> None:
    """Choose the backend for every later forward and backward."""
    global _current
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {name!r}")
    if name not in ("numpy", "auto") and not numba_available():
        raise ValueError(f"the {name} backend needs numba installed (pip install numba)")
    _current = name


@contextmanager
def use_backend(name: str):
    """Run a block with another backend, then restore the previous one."""
    previous = _current
    set_backend(name)
    try:
        yield
    finally:
        set_backend(previous)
