"""The affine map y = x Wᵀ + b, forward and backward.

    y  = x @ W.T + b            x (..., in), W (out, in), b (out,), y (..., out)
    dx = dy @ W                 (..., in)
    dW = dyᵀ x                  (out, in), summed over every leading axis
    db = Σ dy                   (out,)
"""

from __future__ import annotations

import numpy as np


def linear_forward(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None):
    """Return ``(y, cache)`` with ``y = x @ weight.T + bias``.

    Shapes: x (..., in), weight (out, in), bias (out,) or None -> y (..., out).
    """
    y = x @ weight.T  # (..., out)
    if bias is not None:
        y += bias
    return y, (x, weight, bias is not None)


def linear_backward(grad_y: np.ndarray, cache):
    """Return ``(grad_x, grad_weight, grad_bias)``; ``grad_bias`` is None without bias.

    Shapes: grad_y (..., out) -> grad_x (..., in), grad_weight (out, in), grad_bias (out,).
    """
    x, weight, has_bias = cache
    out_features, in_features = weight.shape
    dy2 = grad_y.reshape(-1, out_features)  # (M, out), M = product of leading axes
    x2 = x.reshape(-1, in_features)  # (M, in)
    grad_x = grad_y @ weight  # (..., in)
    grad_weight = outer_sum(dy2, x2)  # (out, in)
    grad_bias = dy2.sum(axis=0) if has_bias else None
    return grad_x, grad_weight, grad_bias


def outer_sum(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """aᵀ b for a (M, P), b (M, Q) -> (P, Q): the weight-gradient GEMM.

    With M == 1 this is an outer product, which OpenBLAS runs as a GEMM with an
    inner dimension of 1, orders of magnitude slower than a broadcast multiply.
    """
    if a.shape[0] == 1:
        return a[0][:, None] * b[0][None, :]
    return a.T @ b
