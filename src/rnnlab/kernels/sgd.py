"""The SGD update of one parameter in one compiled pass, on one thread or OpenBLAS's.

:class:`rnnlab.optim.SGD` writes the update as NumPy calls, 2-6 passes over the
parameter. :func:`compiled_update` runs the same arithmetic element by element,
in the same order, in one pass (when numba imports and the backend is not
"numpy"); from ``blas_pool.MIN_ELEMENTS`` elements it splits the parameter
over NumPy's BLAS threads (see :mod:`rnnlab.kernels.blas_pool`). Each
element is computed by the same compiled code either way, so the result is the
same bit for bit on any thread count.
"""

from __future__ import annotations

import numpy as np

from . import blas_pool
from ..functional import backend
from ..functional.backend import lazy_kernel

__all__ = ["compiled_update"]


def _build_fused_sgd():
    """g += wd*p; buf = m*buf + (1-dampening)*g; g = g + m*buf (nesterov) or buf; p -= lr*g,
    with momentum 0 as plain p -= lr*g: SGD.step's arithmetic, one element at a time."""
    import numba

    @numba.njit(cache=True, nogil=True)
    def sgd_update(d, g, buf, lr, momentum, keep, weight_decay, nesterov):
        for i in range(d.size):
            gi = g[i]
            if weight_decay != 0:
                gi = gi + weight_decay * d[i]
            if momentum != 0:
                b = momentum * buf[i] + keep * gi
                buf[i] = b
                gi = gi + momentum * b if nesterov else b
            d[i] = d[i] - lr * gi

    return sgd_update


_fused_sgd_kernel = lazy_kernel(_build_fused_sgd)


def _build_pooled_sgd():
    """Jobs (one per float dtype) running the fused update over a chunk of a parameter on
    one of NumPy's BLAS threads."""
    import numba
    from numba import carray

    pointer, chunk_range = blas_pool.job_helpers()
    sgd_update = _fused_sgd_kernel()

    def build(dtype):
        @numba.cfunc(blas_pool.job_signature(), nopython=True)
        def job(m, n, k, alpha, a, lda, b, ldb, c, ldc, sb):
            ctx = carray(c, (9,), np.int64)  # [shift, size, chunk, d, g, buf, hyper, nesterov, -]
            lo, hi = chunk_range(ctx, a, m)
            size = ctx[1]
            d = carray(pointer(ctx[3], dtype), (size,))
            g = carray(pointer(ctx[4], dtype), (size,))
            buf = carray(pointer(ctx[5], dtype), (size,))
            h = carray(pointer(ctx[6], dtype), (4,))  # lr, momentum, 1 - dampening, weight_decay
            sgd_update(d[lo:hi], g[lo:hi], buf[lo:hi], h[0], h[1], h[2], h[3], ctx[7] != 0)

        return job

    return {np.dtype(np.float32): build(np.float32), np.dtype(np.float64): build(np.float64)}


_pooled_sgd_jobs = lazy_kernel(_build_pooled_sgd)


def _pooled_sgd(flat, hyper, nesterov) -> bool:
    """The fused update of one parameter split over NumPy's BLAS threads, if it is large
    enough to pay (``MIN_ELEMENTS``) and there is a pool; False when it did not run.

    flat: (d, g, buf) C-contiguous 1-D views of one dtype; hyper: (lr, momentum,
    1 - dampening, weight_decay) scalars of that dtype.
    """
    d = flat[0]
    hyper_array = []  # kept alive here until the jobs return

    def fields():
        hyper_array.append(np.array(hyper, dtype=d.dtype))
        return [a.ctypes.data for a in flat] + [hyper_array[0].ctypes.data, int(nesterov), 0]

    return blas_pool.try_run_chunks(_pooled_sgd_jobs, d.dtype, d.size, d.size, fields)


def compiled_update(d, g, buf, scratch, lr, momentum, dampening, weight_decay, nesterov) -> bool:
    """p (d) updated in place by SGD from g, in one compiled pass; False (nothing done) when
    it cannot run or would not pay: no numba or the "numpy" backend, fewer elements than
    this machine's crossover (:mod:`.crossover`), a first momentum step (``buf`` None
    with momentum: the buffer is created by the NumPy path), or an array that is not
    C-contiguous. Shapes: d, g, buf (the momentum buffer or None), scratch (used as the
    buffer argument without momentum): one shape and dtype."""
    fused = _fused_sgd_kernel()
    if fused is None or (momentum != 0 and buf is None) or d.size < backend.compiled_from(
            "sgd_momentum" if momentum != 0 else "sgd") or not (
            d.flags.c_contiguous and g.flags.c_contiguous
            and (buf is None or buf.flags.c_contiguous)):  # reshape(-1) must be a view
        return False
    c = d.dtype.type  # float32 constants keep float32 arithmetic, as NumPy does
    flat = (d.reshape(-1), g.reshape(-1), (scratch if buf is None else buf).reshape(-1))
    hyper = (c(lr), c(momentum), c(1 - dampening), c(weight_decay))
    if not _pooled_sgd(flat, hyper, nesterov):
        fused(*flat, *hyper, nesterov)
    return True
