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
    """Logistic sigmoid ``1 / (1 + exp(-x))``, without overflow warnings.

    For very negative x, exp(-x) overflows to inf and 1/(1+inf) = 0, which is
    the correctly rounded answer; the overflow warning is silenced because it
    flags nothing wrong. ``out`` may be ``x`` itself (in place).

    Shape: any; the result has the shape and dtype of ``x``.
    """
    with np.errstate(over="ignore"):
        out = np.negative(x, out=out)
        np.exp(out, out=out)
    out += 1
    return np.reciprocal(out, out=out)


def sigmoid_backward(grad_y: np.ndarray, y: np.ndarray) -> np.ndarray:
    """dL/dx = dL/dy * y * (1 - y), with ``y = sigmoid(x)``. Shapes: any, equal."""
    return grad_y * y * (1 - y)


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
