"""The rank-1 weight gradient grad (P, Q) = a (P,) ⊗ b (Q,), written or added in one pass.

A batch of one makes the weight gradient an outer product. As a GEMM it has
an inner dimension of 1, which OpenBLAS runs far below its speed (~600 µs for
(512, 1) @ (1, 512)); NumPy's broadcast multiply is better but still ~5x
slower than one compiled pass (~380 µs against ~70 µs for a 512 × 1024
float32 gradient), and adding it into a non-zero gradient would cost a
full-size temporary. The compiled kernel is used when numba is installed and
the backend is not "numpy".
"""

from __future__ import annotations

import numpy as np

from . import blas_pool
from ..functional import backend
from ..functional.backend import lazy_kernel


def _build():
    import numba

    @numba.njit(cache=True, nogil=True, error_model="numpy")
    def outer_into(a, b, grad, add):
        for i in range(a.shape[0]):
            a_i, row = a[i], grad[i]
            if add:
                for j in range(b.shape[0]):
                    row[j] += a_i * b[j]
            else:
                for j in range(b.shape[0]):
                    row[j] = a_i * b[j]

    return outer_into


_kernel = lazy_kernel(_build)


def _build_pooled():
    """Jobs (one per float dtype) writing a chunk of rows of the outer product on one of
    NumPy's BLAS threads (see blas_pool)."""
    import numba
    from numba import carray

    from .blas_pool import job_helpers, job_signature

    pointer, chunk_range = job_helpers()
    kernel = _kernel()

    def build(dtype):
        @numba.cfunc(job_signature(), nopython=True)
        def job(m, n, k, alpha, a, lda, b, ldb, c, ldc, sb):
            ctx = carray(c, (8,), np.int64)  # [shift, rows, chunk, a, b, grad, columns, add]
            lo, hi = chunk_range(ctx, a, m)
            rows, columns = ctx[1], ctx[6]
            a_vec = carray(pointer(ctx[3], dtype), (rows,))
            b_vec = carray(pointer(ctx[4], dtype), (columns,))
            grad = carray(pointer(ctx[5], dtype), (rows, columns))
            kernel(a_vec[lo:hi], b_vec, grad[lo:hi], ctx[7] != 0)

        return job

    return {np.dtype(np.float32): build(np.float32), np.dtype(np.float64): build(np.float64)}


_pooled_jobs = lazy_kernel(_build_pooled)


def outer_into(grad: np.ndarray, a: np.ndarray, b: np.ndarray, add: bool) -> None:
    """grad (P, Q) += a ⊗ b if ``add``, else grad = a ⊗ b; a (P,), b (Q,), same dtype as grad.

    From ``blas_pool.MIN_ELEMENTS`` elements the rows are split over NumPy's BLAS
    threads (the pass is memory-bound: 2 threads write 8 MB in ~0.2 against ~0.35 ms);
    every element is computed by the same compiled code either way. Below this machine's
    crossover (:mod:`rnnlab.kernels.crossover`) NumPy's form runs: the same bits.
    """
    kernel = _kernel()
    if kernel is not None and grad.flags.c_contiguous and grad.size >= backend.compiled_from("outer"):
        readable = (a.dtype == b.dtype == grad.dtype and a.shape == grad.shape[:1]
                    and b.shape == grad.shape[1:] and a.flags.c_contiguous
                    and b.flags.c_contiguous)  # the job reads raw rows of grad's dtype
        if not (readable and blas_pool.try_run_chunks(
                _pooled_jobs, grad.dtype, grad.size, grad.shape[0],
                lambda: [a.ctypes.data, b.ctypes.data, grad.ctypes.data, grad.shape[1], int(add)])):
            kernel(a, b, grad, add)
    elif add:
        grad += a[:, None] * b[None, :]
    else:
        np.multiply(a[:, None], b[None, :], out=grad)
