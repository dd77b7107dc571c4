"""Elementwise nonlinearities, each with its forward and its backward.

The backward of each is written in terms of the forward's *output* ``y``, which
is what the layers keep for backpropagation:

    sigmoid:  y = 1 / (1 + exp(-x))       dy/dx = y * (1 - y)
    tanh:     y = tanh(x)                 dy/dx = 1 - y**2
    relu:     y = max(x, 0)               dy/dx = 1[y > 0]

All functions keep the dtype of their input and work on any shape.
"""

from __future__ import annotations

import numpy as np


def sigmoid(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Logistic sigmoid ``1 / (1 + exp(-x))``, computed as ``(1 + tanh(x / 2)) / 2``.

    The two are the same function; the tanh form costs one transcendental
    pass instead of exp plus a division, and it cannot overflow. (For very
    negative x its absolute error is one rounding of 1/2, as for any σ near
    0 seen next to values near 1.) ``out`` may be ``x`` itself (in place).

    Shape: any; the result has the shape and dtype of ``x``.
    """
    half = x.dtype.type(0.5)  # a Python float would be fine too; this keeps float32 explicit
    out = np.multiply(x, half, out=out)
    np.tanh(out, out=out)
    out *= half
    out += half
    return out


def sigmoid_backward(grad_y: np.ndarray, y: np.ndarray) -> np.ndarray:
    """dL/dx = dL/dy * y * (1 - y), with ``y = sigmoid(x)``. Shapes: any, equal."""
    grad_x = np.subtract(1, y)
    grad_x *= y
    grad_x *= grad_y
    return grad_x


def tanh(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Hyperbolic tangent. Shape: any."""
    return np.tanh(x, out=out)


def tanh_backward(grad_y: np.ndarray, y: np.ndarray) -> np.ndarray:
    """dL/dx = dL/dy * (1 - y**2), with ``y = tanh(x)``. Shapes: any, equal."""
    return grad_y * (1 - y * y)


def relu(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """max(x, 0). Shape: any."""
    return np.maximum(x, 0, out=out)


def relu_backward(grad_y: np.ndarray, y: np.ndarray) -> np.ndarray:
    """dL/dx = dL/dy * 1[y > 0]; the derivative at 0 is taken as 0, as in torch."""
    return grad_y * (y > 0)


ACTIVATIONS = {
    "sigmoid": (sigmoid, sigmoid_backward),
    "tanh": (tanh, tanh_backward),
    "relu": (relu, relu_backward),
}
"""Name -> (forward, backward-from-output). The names the layers accept."""
