"""From how many elements an elementwise pass pays on OpenBLAS's threads, timed here.

The SGD update and the rank-1 weight gradient are memory-bound passes that
:mod:`rnnlab.kernels.blas_pool` can split over NumPy's BLAS threads. Handing
a job over costs ~10 µs on one machine and more on another, while a pass over
2^18 float32 elements took 50-80 µs on the machine the old constant
(``blas_pool.MIN_ELEMENTS``) was measured on. So the crossover is timed here,
once per machine, versions and thread count: the SGD pass over 2^14 .. 2^21
float32 elements, on one thread and on the pool, each the fastest of a few
repeats. The pool is taken from the smallest size from which it is at least
the planner's MARGIN faster at that size and every larger one (never, if at
none). Kept in ``calibration.json`` beside the plans; ``RNNLAB_PLAN`` rules it
as it rules the plans (``off``: the constant; ``cached``: the cache or the
constant).
"""

from __future__ import annotations

import time

import numpy as np

from . import cache, planner, timing

__all__ = ["SIZES", "NEVER", "pool_min_elements", "cached_crossover", "threshold"]

SIZES = tuple(1 << k for k in range(14, 22))
NEVER = 1 << 62
_FILE = "calibration.json"
_memo: dict[int, int] = {}


def pool_min_elements(threads: int) -> int:
    """The element count from which a pass goes to the pool of ``threads`` threads."""
    found = _memo.get(threads)
    if found is not None:
        return found
    from . import blas_pool

    def measure():
        timed = _measure(threads)
        return None if timed is None else (threshold(*timed),
                                           {"one_thread": timed[0], "pool": timed[1]})

    found = cached_crossover(f"elementwise pool threads={threads}", measure,
                             blas_pool.MIN_ELEMENTS)
    _memo[threads] = found
    return found


def cached_crossover(key: str, measure, default: int, *, redo_busy: bool = False) -> int:
    """A crossover (elements) kept under ``key`` in ``calibration.json``, as ``RNNLAB_PLAN``
    says: the stored one (not with ``off``); else, with ``measure``, timed now by
    ``measure()`` -> (elements, timings to store beside them), or None when there is
    nothing to time; else ``default``, not stored. ``redo_busy``: a crossover stored
    while the machine was busier than its cores is timed again once it is quieter."""
    how = planner.mode()
    stored = cache.read_json(_FILE).get(key) if how != "off" else None
    usable = isinstance(stored, dict) and isinstance(stored.get("min_elements"), int)
    if usable and not (redo_busy and how == "measure" and planner._busy(stored.get("load"))
                       and not planner._busy()):
        return stored["min_elements"]
    timed = measure() if how == "measure" else None
    if timed is None:
        return default
    found, timings = timed
    cache.update_json(_FILE, {key: {"min_elements": found, **timings, "load": planner._load()}})
    return found


def threshold(one: dict, pool: dict) -> int:
    """The smallest size (a key of both: size -> seconds) from which the pool is at least
    MARGIN faster there and at every larger size; NEVER if it is not at the largest."""
    found = NEVER
    for size in sorted(one, reverse=True):
        if pool[size] > (1 - timing.MARGIN) * one[size]:
            break
        found = size
    return found


def _measure(threads: int):
    """({size: seconds on one thread}, {size: seconds on the pool}), or None without a pool."""
    from . import blas_pool
    from .sgd import _fused_sgd_kernel, _pooled_sgd_jobs
    kernel, jobs = _fused_sgd_kernel(), _pooled_sgd_jobs()
    if kernel is None or jobs is None or threads < 2 or blas_pool.threads() < 2:
        return None
    job = jobs[np.dtype(np.float32)].address
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal(SIZES[-1]).astype(np.float32) for _ in range(3)]
    hyper = np.array([1e-3, 0.9, 1.0, 0.0], dtype=np.float32)  # lr, momentum, 1 - damp, wd
    one, pool = {}, {}
    for size in SIZES:
        d, g, buf = (a[:size] for a in arrays)
        scalars = [hyper.dtype.type(h) for h in hyper]
        fields = [d.ctypes.data, g.ctypes.data, buf.ctypes.data, hyper.ctypes.data, 0, 0]
        runs = {"one": lambda: kernel(d, g, buf, *scalars, False),
                "pool": lambda: blas_pool.run_chunks(job, size, fields, threads)}
        for run in runs.values():
            run()  # warm: compiled, pages touched
        times = {name: min(timing._timed(run, time.perf_counter) for _ in range(3))
                 for name, run in runs.items()}
        one[size], pool[size] = round(times["one"], 8), round(times["pool"], 8)
    return one, pool
