"""Run a compiled job on NumPy's own BLAS threads: OpenBLAS's thread pool.

Why: a training step alternates the per-step products of a recurrent loop
with large BLAS calls (the input projection, the weight gradients). After
every multi-threaded call OpenBLAS's idle worker spins on the other core for
~0.1 s, so a second thread pool (numba's OpenMP, Python threads) fights it
for that core and loses: measured 1.3-15x *slower* products. The products
can use both cores only on OpenBLAS's own workers, which are awake then.

How: OpenBLAS exports ``blas_level1_thread``, which its level-1 routines use
to split ``m`` parts of a job over its threads. It calls the job once per
thread as ``job(m, n, k, alpha, a, lda, b, ldb, c, ldc, sb)`` (the "legacy"
real-precision convention), with ``m`` the thread's count of parts and ``a``
advanced by ``lda`` elements per part. With ``a = 0`` and ``lda = 1``, ``a``
is the thread's first part times the element size; :func:`run` passes the
log2 of that size to the job as ``c[0]``, so that the job's parts are
``[a >> c[0], (a >> c[0]) + m)``. The rest of ``c`` is the job's own context.

This is OpenBLAS's internal interface, not its public API, so it is checked
before use, twice: :func:`prove` first runs the probe job in a child process
(see :mod:`rnnlab.kernels.probes`: a wrong calling convention may crash it,
never the user's process), and only then does :func:`threads` run it here
once; it returns 1 (no pool) unless both saw exactly the calls expected. NumPy built on another
BLAS, or an OpenBLAS without ``blas_level1_thread``, likewise gets 1, and so
does a process started with ``RNNLAB_BLAS_POOL=0`` (everything then runs on
the calling thread, as before the pool existed). A job that returns means
every part ran; results do not depend on the thread count when each part
writes only its own output.
"""

from __future__ import annotations

import ctypes
import os
import threading
from functools import lru_cache

import numpy as np

__all__ = ["job_signature", "numpy_openblas", "threads", "prove", "run", "bound_run", "run_chunks",
           "try_run_chunks", "job_helpers", "MIN_ELEMENTS"]

_lock = threading.Lock()
# Filled once: "controller" (threadpoolctl's, or None), then "entry", "mode", "shift",
# "alpha" when the probe passed, or "failed" when it did not.
_state: dict = {}


def job_signature():
    """The numba signature of a job: ``void(m, n, k, alpha, a, lda, b, ldb, c, ldc, sb)``."""
    from numba import types
    return types.void(types.int64, types.int64, types.int64, types.float32, types.int64, types.int64,
                      types.voidptr, types.int64, types.voidptr, types.int64, types.voidptr)


def numpy_openblas():
    """threadpoolctl's controller of the OpenBLAS that NumPy's matmul calls, or None.

    A wheel of NumPy carries its own copy in ``numpy.libs`` (SciPy carries
    another, with its own threads, in ``scipy.libs``: taking that one would
    leave both pools spinning on the cores). A NumPy built against a system
    OpenBLAS is served when that is the only OpenBLAS loaded.
    """
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover - a dependency of rnnlab
        return None
    candidates = [c for c in ThreadpoolController().lib_controllers
                  if c.internal_api == "openblas" and getattr(c, "threading_layer", "") == "pthreads"]
    numpy_dir = os.path.realpath(os.path.dirname(np.__file__))  # .../numpy; its libs: .../numpy.libs
    own = [c for c in candidates
           if os.path.realpath(c.filepath).startswith((numpy_dir + os.sep, numpy_dir + ".libs" + os.sep))]
    if len(own) == 1:
        return own[0]
    return candidates[0] if not own and len(candidates) == 1 else None


def _probe_job():
    """A job that records, for each thread, its ``a`` and ``n·1000 + k`` at index ``m``."""
    import numba as nb
    from numba import carray

    @nb.cfunc(job_signature(), nopython=True, cache=True)
    def probe(m, n, k, alpha, a, lda, b, ldb, c, ldc, sb):
        log = carray(c, (8,), np.int64)
        if 0 < m < 4:
            log[m] = a
            log[4 + m] = n * 1000 + k

    return probe


def _bind(controller):
    """The entry point and the checked calling convention, or None."""
    lib = controller.dynlib
    try:
        entry = lib.blas_level1_thread
    except AttributeError:
        return None
    entry.restype = ctypes.c_int
    entry.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p,
                      ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_int64,
                      ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_int]
    alpha = np.zeros(2, dtype=np.float64)  # read (not used) by OpenBLAS: must be a valid address
    probe = _probe_job()
    log = np.zeros(8, dtype=np.int64)
    # Single real precision is 0x2 since OpenBLAS grew bfloat16 types (0.3.10), 0x0 before.
    for mode in (0x2, 0x0):
        log[:] = 0
        # 3 parts on 2 threads: 2 parts from a = 0, then 1 part from a = 2 elements.
        entry(mode, 3, 7, 5, alpha.ctypes.data, None, 1, None, 0, log.ctypes.data, 0,
              probe.address, 2)
        size = int(log[1]) // 2
        if (log[2] == 0 and log[5] == 7005 and log[6] == 7005 and size in (4, 8)
                and not log[3] and not log[7]):
            return {"entry": entry, "mode": mode, "shift": size.bit_length() - 1, "alpha": alpha,
                    "alpha_address": alpha.ctypes.data}
    return None


def threads() -> int:
    """How many threads :func:`run` splits a job over: OpenBLAS's current thread count
    (it follows ``threadpoolctl.threadpool_limits``), or 1 without a usable pool."""
    if "controller" not in _state:
        with _lock:
            if "controller" not in _state:
                from ..functional.backend import numba_available
                # The jobs are compiled: without numba, no pool.
                wanted = (os.environ.get("RNNLAB_BLAS_POOL", "1").strip() != "0"
                          and numba_available())
                _state["controller"] = numpy_openblas() if wanted else None
    controller = _state["controller"]
    if controller is None or "failed" in _state:
        return 1
    count = controller.get_num_threads()
    if count < 2:
        return 1
    if "entry" not in _state:
        # Probed only now: seeing the stride of ``a`` takes 2 threads, and asking OpenBLAS for
        # more threads than its pool has is not safe.
        with _lock:
            if "entry" not in _state and "failed" not in _state:
                from .probes import proven
                bound = _bind(controller) if proven("blas_pool") else None
                _state.update(bound if bound is not None else {"failed": True})
        if "failed" in _state:
            return 1
    return count


def prove() -> dict:
    """The pool's check, run in a child process by :mod:`rnnlab.kernels.probes`: bind
    ``blas_level1_thread`` on 2 threads (the probe job) and run a chunked job over it."""
    controller = numpy_openblas()
    if controller is None:
        return {"ok": False, "detail": "NumPy's BLAS is not a pthreads OpenBLAS"}
    if controller.get_num_threads() < 2:
        return {"ok": None, "detail": "one BLAS thread here: nothing to split"}
    controller.set_num_threads(2)
    bound = _bind(controller)
    if bound is None:
        return {"ok": False, "detail": "blas_level1_thread missing or not called as expected"}
    _state.update(controller=controller, **bound)
    import numba
    from numba import carray
    pointer, chunk_range = job_helpers()

    @numba.cfunc(job_signature(), nopython=True)
    def mark(m, n, k, alpha, a, lda, b, ldb, c, ldc, sb):  # out[i] = i + 1 on the job's share
        ctx = carray(c, (4,), np.int64)
        lo, hi = chunk_range(ctx, a, m)
        out = carray(pointer(ctx[3], np.int64), (ctx[1],))
        for i in range(lo, hi):
            out[i] = i + 1

    out = np.zeros(1000, dtype=np.int64)
    run_chunks(mark.address, out.size, [out.ctypes.data], 2)
    if not np.array_equal(out, np.arange(1, out.size + 1)):
        return {"ok": False, "detail": "a chunked job left elements unwritten or wrong"}
    return {"ok": True, "detail": f"mode {bound['mode']:#x}, parts of {1 << bound['shift']} bytes"}


def _arguments(job_address: int, parts: int, context: np.ndarray, count: int) -> tuple:
    """The arguments of ``blas_level1_thread`` for a job, after checking the pool and the context."""
    if "entry" not in _state or count < 2:
        raise RuntimeError(f"no BLAS thread pool to run on (count={count}); ask threads() first")
    if context.dtype != np.int64 or not context.flags.c_contiguous:
        raise TypeError(f"context must be a C-contiguous int64 array, got {context.dtype}")
    context[0] = _state["shift"]
    return (_state["mode"], parts, 0, 0, _state["alpha_address"], None, 1, None, 0,
            context.ctypes.data, 0, job_address, count)


def bound_run(job_address: int, parts: int, context: np.ndarray, count: int):
    """A callable with no arguments doing ``run(job_address, parts, context, count)``, for a
    loop that runs one job many times: the arguments are converted to C once (a call then
    costs ~2 µs). The caller keeps ``context`` alive and may change its values, not its
    address."""
    values = _arguments(job_address, parts, context, count)  # checks first
    entry = _state["entry"]
    args = [c_type(value) for c_type, value in zip(entry.argtypes, values)]
    return lambda: entry(*args)


def run(job_address: int, parts: int, context: np.ndarray, count: int) -> None:
    """Run the job at ``job_address`` over ``parts`` parts on ``count`` threads.

    ``count`` must come from :func:`threads` (> 1: the pool was probed).
    context: C-contiguous int64 array; its element 0 is set to the shift that
    turns the job's ``a`` into its first part (see the module docstring). It
    must stay alive until this returns, as it does.
    """
    _state["entry"](*_arguments(job_address, parts, context, count))


# Elementwise work is split over the pool from this many elements with RNNLAB_PLAN=off:
# handing a job over cost ~10 µs, and a memory-bound pass over 2^18 float32 elements
# ~50-80 µs, on the machine this was measured on. Else the crossover is timed on the
# user's machine (rnnlab.kernels.calibrate), from _FLOOR elements up.
MIN_ELEMENTS = 1 << 18
_FLOOR = 1 << 14


def run_chunks(job_address: int, size: int, fields, count: int) -> None:
    """Run a chunked job over ``size`` elements (or rows) on ``count`` threads.

    The job's context is int64 ``[shift, size, chunk, *fields]``; the job's
    ``chunk_range(context, a, m)`` (see :func:`job_helpers`) gives its elements.
    Chunks are whole multiples of 16 elements (one 64-byte line of float32), so
    that two threads share at most the line a chunk boundary falls in.
    """
    chunk = -(-size // (16 * count)) * 16
    context = np.array([0, size, chunk, *fields], dtype=np.int64)
    run(job_address, -(-size // chunk), context, count)


def try_run_chunks(jobs, dtype, elements: int, size: int, fields) -> bool:
    """Run ``jobs()[dtype]`` with :func:`run_chunks` over ``size`` rows or elements, if the
    work (``elements``) reaches the machine's crossover (see rnnlab.kernels.calibrate;
    MIN_ELEMENTS with RNNLAB_PLAN=off) and there is a pool; False when it did not run.

    jobs: a getter of {dtype: compiled job} (built on first use, None without numba);
    fields: a callable returning the context fields, called only when the job runs
    (addresses cost ~2 µs each to look up, too much for every small parameter).
    """
    if elements < _FLOOR:
        return False
    count = threads()
    if count < 2:
        return False
    from .calibrate import pool_min_elements  # timed on this machine, once
    built = jobs() if elements >= pool_min_elements(count) else None
    if built is None or dtype not in built:
        return False
    run_chunks(built[dtype].address, size, fields(), count)
    return True


@lru_cache(maxsize=None)
def job_helpers():
    """``(pointer, chunk_range)`` for writing a job in numba.

    - ``pointer(address, np.float32)``: a typed pointer to an address from the
      context, for ``numba.carray``;
    - ``chunk_range(context, a, m)``: the elements ``[lo, hi)`` of a job started
      by :func:`run_chunks`.
    """
    from numba import njit, types
    from numba.extending import intrinsic

    @intrinsic
    def pointer(typingctx, address, dtype):
        target = types.CPointer(dtype.dtype if isinstance(dtype, types.DType) else dtype.instance_type)

        def codegen(context, builder, signature, args):
            return builder.inttoptr(args[0], context.get_value_type(target))

        return target(address, dtype), codegen

    @njit(inline="always")
    def chunk_range(context, a, m):
        first = a >> context[0]
        size, chunk = context[1], context[2]
        return first * chunk, min(size, (first + m) * chunk)

    return pointer, chunk_range
