"""The affine map y = x Wᵀ + b, forward and backward.

    y  = x @ W.T + b            x (..., in), W (out, in), b (out,), y (..., out)
    dx = dy @ W                 (..., in)
    dW = dyᵀ x                  (out, in), summed over every leading axis
    db = Σ dy                   (out,)
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

# A module, not its function: importing rnnlab.kernels.rank1 first imports this package
# (through functional.backend), so its outer_into is not defined yet while this runs.
from ..kernels import rank1


# For a batch of this many rows and a weight of at least this many elements, OpenBLAS
# (SkylakeX kernels, 2 threads) runs the product 1.3-2x faster feature-major, W · xᵀ
# -> (out, rows), than batch-major, x · Wᵀ; the transposed copy back costs less than
# that. Outside this range the batch-major product is as fast or faster. Measured on
# this project's machine (see benchmarks/linear_layout.py).
FEATURE_MAJOR_ROWS = (8, 32)
FEATURE_MAJOR_MIN_WEIGHT = 1 << 15


def _feature_major_pays(rows: int, weight: np.ndarray) -> bool:
    return (FEATURE_MAJOR_ROWS[0] <= rows <= FEATURE_MAJOR_ROWS[1]
            and weight.size >= FEATURE_MAJOR_MIN_WEIGHT)


def linear_forward(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None):
    """Return ``(y, cache)`` with ``y = x @ weight.T + bias``, y C-contiguous.

    Shapes: x (..., in), weight (out, in), bias (out,) or None -> y (..., out).
    """
    out_features, in_features = weight.shape
    x2 = x.reshape(-1, in_features)  # (rows, in)
    rows = x2.shape[0]
    if _feature_major_pays(rows, weight):
        y_t = weight @ x2.T  # (out, rows)
        y = np.empty((rows, out_features), dtype=y_t.dtype)
        if bias is None:
            np.copyto(y, y_t.T)
        else:
            np.add(y_t.T, bias, out=y)  # the transpose and the bias in one pass
        y = y.reshape(*x.shape[:-1], out_features)
    else:
        y = x @ weight.T  # (..., out)
        if bias is not None:
            y += bias
    return y, (x, weight, bias is not None)


def linear_backward(grad_y: np.ndarray, cache, input_grad=True, grad_weight=None, grad_bias=None,
                    overwrite=(False, False)):
    """Return ``(grad_x, grad_weight, grad_bias)``; ``grad_bias`` is None without bias.

    Shapes: grad_y (..., out) -> grad_x (..., in), grad_weight (out, in), grad_bias (out,).
    With ``input_grad=False`` grad_x is None (its GEMM is skipped). Given
    ``grad_weight``/``grad_bias`` arrays, the gradients are *added* into them
    (see :func:`accumulate_outer`) and those arrays are returned; ``overwrite``
    (one flag for each) says which of them hold stale values standing for
    zero, to be written instead of added into.
    """
    x, weight, has_bias = cache
    out_features, in_features = weight.shape
    dy2 = grad_y.reshape(-1, out_features)  # (M, out), M = product of leading axes
    x2 = x.reshape(-1, in_features)  # (M, in)
    grad_x = grad_y @ weight if input_grad else None  # (..., in)
    if grad_weight is None:
        grad_weight = outer_sum(dy2, x2)  # (out, in)
    else:
        accumulate_outer(grad_weight, dy2, x2, overwrite[0])
    if has_bias:
        db = column_sum(dy2)
        if grad_bias is None:
            grad_bias = db
        else:
            add_into(grad_bias, db, overwrite[1])
    return grad_x, grad_weight, grad_bias


# The input gradient of a Linear that reads an activation's output h is taken a block of
# rows at a time, each block's dL/dpre written over h's rows: then dL/dh never exists
# whole next to h (a training step's peak drops by up to h's size). Up to 8 blocks of at
# least 64 KiB each: a block costs ~5 µs in calls, while the work of 64 KiB of h takes
# about as long; for h of 512 KiB the 8 blocks were faster than one (90 against 107 µs,
# the blocks stay in cache), for 128 KiB two blocks cost 26 against 17 µs.
ROW_BLOCK_MIN_BYTES = 1 << 16
ROW_BLOCKS = 8


def _row_blocks(h: np.ndarray, weight: np.ndarray) -> int:
    """How many row blocks: up to 8 of at least 64 KiB, for a Linear with a small weight.

    Each block's GEMM packs the whole weight again, so a large weight takes one block.
    """
    if ROW_BLOCKS * weight.size > h.size:
        return 1
    return int(min(ROW_BLOCKS, max(1, h.nbytes // ROW_BLOCK_MIN_BYTES)))


def input_grad_through_activation(grad_y: np.ndarray, weight: np.ndarray, h: np.ndarray,
                                  activation_backward) -> np.ndarray:
    """dL/dpre for ``y = h Wᵀ + b`` with ``h = act(pre)``, written over ``h``.

        dL/dh   = dL/dy W                           (rows, in)
        dL/dpre = activation_backward(dL/dh, h)     e.g. dL/dh ⊙ h ⊙ (1 - h) for σ

    The caller owns ``h`` and no longer needs it (the Linear's weight gradient is
    already taken). For a large h, the rows go in blocks (see ``_row_blocks``), so
    only a block of dL/dh is ever allocated.

    Shapes: grad_y (..., out), weight (out, in), h (..., in) C-contiguous -> h.
    ``activation_backward(grad_h, h, out=h)`` is a backward of
    :data:`rnnlab.functional.activations.ACTIVATIONS`. A non-contiguous h is left
    alone and a new array is returned.
    """
    if not h.flags.c_contiguous:
        return activation_backward(grad_y @ weight, h)
    out_features, in_features = weight.shape
    dy2 = grad_y.reshape(-1, out_features)  # (rows, out)
    h2 = h.reshape(-1, in_features)  # (rows, in), a view
    rows = h2.shape[0]
    block_rows = max(1, -(-rows // _row_blocks(h, weight)))
    grad_h = np.empty((min(block_rows, rows), in_features), dtype=h.dtype)  # (block, in)
    for start in range(0, rows, block_rows):
        stop = min(start + block_rows, rows)
        grad_block, h_block = grad_h[:stop - start], h2[start:stop]
        np.matmul(dy2[start:stop], weight, out=grad_block)
        activation_backward(grad_block, h_block, out=h_block)
    return h


def add_into(grad: np.ndarray, value: np.ndarray, overwrite: bool = False) -> None:
    """grad += value, or grad[...] = value when ``overwrite`` (grad's contents stand for zero)."""
    if overwrite:
        np.copyto(grad, value)
    else:
        grad += value


def accumulate_outer(grad: np.ndarray, a: np.ndarray, b: np.ndarray, overwrite: bool = False) -> None:
    """grad (P, Q) += aᵀ b, for a (M, P), b (M, Q), without a (P, Q) temporary when it can.

    With ``overwrite`` grad's contents are stale and stand for zero (see
    :meth:`rnnlab.nn.Parameter.grad_sink`): the product is written straight
    into it. Without, a zero ``grad`` is still detected: the check reads it
    once and stops at its first non-zero element, far cheaper than a
    full-size temporary and a second pass to add it.
    """
    if a.shape[0] == 0:  # no rows (the steps from a zero state): aᵀb = 0
        if overwrite:  # a fill: OpenBLAS's GEMM with K = 0 wrote the zeros ~6x slower
            grad.fill(0)
        return
    if a.shape[0] == 1:  # an outer product: never a GEMM with an inner dimension of 1
        rank1.outer_into(grad, a[0], b[0], add=not overwrite)
    elif overwrite or not grad.any():
        np.matmul(a.T, b, out=grad)
    else:
        grad += a.T @ b


@lru_cache(maxsize=16)
def _ones(length: int, dtype: str) -> np.ndarray:
    ones = np.ones(length, dtype=dtype)
    ones.flags.writeable = False
    return ones


def column_sum(a: np.ndarray) -> np.ndarray:
    """Σ over the rows of a (M, P) -> (P,): the bias gradient.

    As the product 1ᵀ a (a GEMV): BLAS runs it on every core at memory speed,
    2-4x faster here than NumPy's one-threaded ``a.sum(axis=0)`` (a (16384, 2048)
    float32 sum: 12 ms against 3 ms). The order of the additions differs, so
    the result may differ from NumPy's by rounding.
    """
    return _ones(a.shape[0], a.dtype.str) @ a


def outer_sum(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """aᵀ b for a (M, P), b (M, Q) -> (P, Q): the weight-gradient GEMM.

    With M == 1 this is an outer product, which OpenBLAS runs as a GEMM with an
    inner dimension of 1, orders of magnitude slower than a broadcast multiply.
    """
    if a.shape[0] == 1:
        return a[0][:, None] * b[0][None, :]
    return a.T @ b
