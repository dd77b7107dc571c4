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

from . import backend
from .backend import lazy_kernel


def _build_kernels():
    """One compiled pass each for the arithmetic that NumPy would spread over 2-3 passes
    (and a temporary). Flat, C-contiguous arrays; the results equal NumPy's bit for bit
    (same operations in the same order, no FMA)."""
    import numba

    jit = numba.njit(cache=True, nogil=True, error_model="numpy")

    @jit
    def half_plus_half_(t, half):  # t = ½ + ½t, in place (one array: no aliasing to rule out)
        for k in range(t.size):
            t[k] = t[k] * half + half

    @jit
    def sigmoid_grad(grad_y, y, out, one):  # out = (1 - y) y dL/dy
        for k in range(y.size):
            out[k] = (one - y[k]) * y[k] * grad_y[k]

    @jit
    def sigmoid_grad_(grad, y, one):  # the same, written over grad
        for k in range(y.size):
            grad[k] = (one - y[k]) * y[k] * grad[k]

    @jit
    def sigmoid_grad_over_y(grad_y, y, one):  # the same, written over y
        for k in range(y.size):
            y[k] = (one - y[k]) * y[k] * grad_y[k]

    @jit
    def tanh_grad(grad_y, y, out, one):  # out = dL/dy (1 - y²)
        for k in range(y.size):
            out[k] = grad_y[k] * (one - y[k] * y[k])

    @jit
    def tanh_grad_(grad, y, one):  # the same, written over grad
        for k in range(y.size):
            grad[k] = grad[k] * (one - y[k] * y[k])

    @jit
    def tanh_grad_over_y(grad_y, y, one):  # the same, written over y
        for k in range(y.size):
            y[k] = grad_y[k] * (one - y[k] * y[k])

    # Each kernel writes one array only: with an output that may alias an input, LLVM
    # checks for overlap at run time and, finding it, runs the scalar loop (1.5x slower).
    return (half_plus_half_, (sigmoid_grad, sigmoid_grad_, sigmoid_grad_over_y),
            (tanh_grad, tanh_grad_, tanh_grad_over_y))


_kernels = lazy_kernel(_build_kernels)


def _flat_kernels(*arrays):
    """The compiled kernels if every array is C-contiguous with one dtype and they are
    large enough to pay on this machine (:mod:`rnnlab.kernels.crossover`), else None."""
    kernels = _kernels()
    if kernels is None or arrays[0].size < backend.compiled_from("activation") or not all(
            a.flags.c_contiguous and a.dtype == arrays[0].dtype for a in arrays):
        return None
    return kernels


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
    kernels = _flat_kernels(out)
    if kernels is not None:
        kernels[0](out.reshape(-1), half)
    else:
        out *= half
        out += half
    return out


def _gradient_kernels(grad_y, y, out):
    """The compiled kernels for a gradient pass whose ``out`` is None, grad_y or y (else None)."""
    if out is None or out is grad_y or out is y:
        return _flat_kernels(grad_y, y)
    return None


def _gradient_pass(kernels, grad_y, y, out):
    """Run a compiled gradient kernel: to a new array, over grad_y, or over y."""
    one = y.dtype.type(1)
    if out is grad_y:
        kernels[1](grad_y.reshape(-1), y.reshape(-1), one)
        return grad_y
    if out is y:
        kernels[2](grad_y.reshape(-1), y.reshape(-1), one)
        return y
    if out is None:
        out = np.empty_like(y)
    kernels[0](grad_y.reshape(-1), y.reshape(-1), out.reshape(-1), one)
    return out


# Without the compiled kernels, a gradient written over grad_y or y goes through blocks of
# this many elements: one small scratch block instead of a temporary as large as y (which
# had raised an MLP step's traced peak past 1.3x its hidden activations).
_BLOCK = 1 << 14


def _blockwise_applies(grad_y, y, out) -> bool:
    """Whether a gradient pass writes over grad_y or y, all C-contiguous of one shape."""
    return ((out is y or out is grad_y) and grad_y.shape == y.shape
            and grad_y.flags.c_contiguous and y.flags.c_contiguous)


def _blocks(grad_y, y, out):
    """(grad_y, y, out, scratch) flat blocks of up to _BLOCK elements, in order."""
    g, s, o = grad_y.reshape(-1), y.reshape(-1), out.reshape(-1)
    scratch = np.empty(min(_BLOCK, s.size), dtype=y.dtype)
    for start in range(0, s.size, _BLOCK):
        stop = min(start + _BLOCK, s.size)
        yield g[start:stop], s[start:stop], o[start:stop], scratch[:stop - start]


def sigmoid_backward(grad_y: np.ndarray, y: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """dL/dx = dL/dy * y * (1 - y), with ``y = sigmoid(x)``. Shapes: any, equal.

    ``out`` may be ``grad_y`` or ``y`` itself (written over, no new array).
    """
    kernels = _gradient_kernels(grad_y, y, out)
    if kernels is not None:
        return _gradient_pass(kernels[1], grad_y, y, out)
    if _blockwise_applies(grad_y, y, out):
        for g, s, o, local in _blocks(grad_y, y, out):
            np.subtract(1, s, out=local)
            local *= s
            np.multiply(local, g, out=o)
        return out
    local = np.subtract(1, y)
    local *= y
    return np.multiply(local, grad_y, out=local if out is None else out)


def tanh(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Hyperbolic tangent. Shape: any."""
    return np.tanh(x, out=out)


def tanh_backward(grad_y: np.ndarray, y: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """dL/dx = dL/dy * (1 - y**2), with ``y = tanh(x)``. Shapes: any, equal.

    ``out`` may be ``grad_y`` or ``y`` itself (written over, no new array).
    """
    kernels = _gradient_kernels(grad_y, y, out)
    if kernels is not None:
        return _gradient_pass(kernels[2], grad_y, y, out)
    if _blockwise_applies(grad_y, y, out):
        for g, s, o, local in _blocks(grad_y, y, out):
            np.multiply(s, s, out=local)
            np.subtract(1, local, out=local)
            np.multiply(g, local, out=o)
        return out
    local = np.multiply(y, y)  # the result's own array: one allocation
    np.subtract(1, local, out=local)
    return np.multiply(grad_y, local, out=local if out is None else out)


def relu(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """max(x, 0). Shape: any."""
    return np.maximum(x, 0, out=out)


def relu_backward(grad_y: np.ndarray, y: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """dL/dx = dL/dy * 1[y > 0]; the derivative at 0 is taken as 0, as in torch.

    ``out`` may be ``grad_y`` or ``y`` itself (written over, no new array).
    """
    return np.multiply(grad_y, y > 0, out=out)


ACTIVATIONS = {
    "sigmoid": (sigmoid, sigmoid_backward),
    "tanh": (tanh, tanh_backward),
    "relu": (relu, relu_backward),
}
"""Name -> (forward, backward-from-output). The names the layers accept."""
