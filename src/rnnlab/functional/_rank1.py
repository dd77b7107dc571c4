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

from .backend import lazy_kernel


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


def outer_into(grad: np.ndarray, a: np.ndarray, b: np.ndarray, add: bool) -> None:
    """grad (P, Q) += a ⊗ b if ``add``, else grad = a ⊗ b; a (P,), b (Q,), same dtype as grad."""
    kernel = _kernel()
    if kernel is not None and grad.flags.c_contiguous:
        kernel(a, b, grad, add)
    elif add:
        grad += a[:, None] * b[None, :]
    else:
        np.multiply(a[:, None], b[None, :], out=grad)
