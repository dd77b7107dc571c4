"""The GRU over a whole sequence: forward, and backpropagation through time.

One layer, one direction, in torch's convention (gate order r, z, n). As
for the LSTM (see :mod:`rnnlab.functional.recurrent`), the three gates are
fused: one input GEMM for all steps, one recurrent GEMM per step, and the
weight gradients as one GEMM each after the loop.

What sets the GRU apart is that b_hn sits inside the reset gate's product,
r ⊙ (h W_hnᵀ + b_hn): the recurrent part of the n gate cannot be added into
its input part before the gate is applied. So the forward keeps the two
pre-activations apart, gx_t = x_t W_ihᵀ + b_ih and gh_t = h_{t-1} W_hhᵀ + b_hh,
and the backward has two gradients for them that differ in the n slot only.
Derivation: docs/bptt.md.
"""

from __future__ import annotations

import numpy as np

from . import _loops_numpy
from ._loops_numpy import state_views as _state_views
from .recurrent import (_NO_OVERWRITE, _check_dtypes, _input_projection, _loops,
                        _nonzero_h_prev, _param_grads)


def _gru_loops(batch, hidden):
    """The backend's GRU loops for a step of this size, or NumPy's where it has none."""
    loops = _loops(batch, hidden)
    return loops if hasattr(loops, "gru_forward_loop") else _loops_numpy


def gru_forward(x, h0, weight_ih, weight_hh, bias_ih=None, bias_hh=None, reverse=False):
    """GRU over a sequence, with the three gate GEMMs fused into one.

    Equations (σ is the logistic sigmoid, ⊙ the elementwise product)::

        gx_t = x_t W_ihᵀ + b_ih                (N, 3H), gate order r, z, n
        gh_t = h_{t-1} W_hhᵀ + b_hh            (N, 3H)
        r_t = σ(gx_t[:, 0:H]  + gh_t[:, 0:H])
        z_t = σ(gx_t[:, H:2H] + gh_t[:, H:2H])
        n_t = tanh(gx_t[:, 2H:3H] + r_t ⊙ gh_t[:, 2H:3H])
        h_t = (1 - z_t) ⊙ n_t + z_t ⊙ h_{t-1}  = n_t + z_t ⊙ (h_{t-1} - n_t)

    Shapes: x (T, N, I) contiguous, h0 (N, H) or None for zeros, weight_ih
    (3H, I), weight_hh (3H, H), bias_ih/bias_hh (3H,) or None. A zero h0 given
    as None lets the first step skip its recurrent GEMM (gh_1 = b_hh).

    Returns ``(output, h_n), cache``: output (T, N, H) (a view into the cache:
    do not write to it) and h_n (N, H). Raises TypeError when a weight, bias or
    h0 is not of x's dtype.
    """
    _check_dtypes(x, h0=h0, weight_ih=weight_ih, weight_hh=weight_hh, bias_ih=bias_ih,
                  bias_hh=bias_hh)
    T, N, _ = x.shape
    H = weight_hh.shape[1]
    dtype = x.dtype
    gates = np.empty((T, N, 3 * H), dtype=dtype)  # gx_t, then [r z n]_t
    gh = np.empty((T, N, 3 * H), dtype=dtype)  # gh_t
    states = np.empty((T + 1, N, H), dtype=dtype)  # h_0 .. h_T in sweep order
    zero_start = h0 is None
    states[-1 if reverse else 0] = 0 if zero_start else h0
    _input_projection(x, weight_ih, bias_ih, None, gates)
    loops = _gru_loops(N, H)
    loops.gru_forward_loop(gates, gh, states, weight_hh, bias_hh, reverse, zero_start=zero_start)
    out, _ = _state_views(states, reverse)
    # The backward runs with the loops that wrote the buffers, as the LSTM's does.
    cache = (x, gates, gh, states, weight_ih, weight_hh, bias_ih is not None, reverse,
             zero_start, loops)
    return (out, states[0] if reverse else states[T]), cache


def gru_backward(cache, grad_output=None, grad_h_n=None, input_grad=True, accumulate=None,
                 overwrite=_NO_OVERWRITE, state_grad=True):
    """Backpropagation through time for :func:`gru_forward`. Consumes the cache.

    Equations, from t = T down to 1, with dh_T = grad_h_n (dgx, dgh are the
    gradients of gx_t, gh_t; σ' and tanh' written with the outputs)::

        dh_t  += grad_output_t
        dz     = dh_t ⊙ (h_{t-1} - n_t)       dn = dh_t ⊙ (1 - z_t)
        dgx_n  = dn ⊙ (1 - n_t²)              dr = dgx_n ⊙ gh_t[:, 2H:3H]
        dgh_n  = dgx_n ⊙ r_t
        dgx_r  = dgh_r = dr ⊙ r_t(1 - r_t)    dgx_z = dgh_z = dz ⊙ z_t(1 - z_t)
        dh_{t-1} = dh_t ⊙ z_t + dgh_t W_hh
    then over all steps at once: dx = dgx W_ih, dW_ih = dgxᵀ x, db_ih = Σ dgx,
    dW_hh = dghᵀ h_prev, db_hh = Σ dgh.

    Shapes: grad_output (T, N, H) or None, grad_h_n (N, H) or None (None = zero).
    Returns ``grad_x (T, N, I), grad_h0 (N, H), (dW_ih, dW_hh, db_ih, db_hh)``,
    the biases None without bias, grad_x None when ``input_grad`` is False and
    grad_h0 None when ``state_grad`` is False (its GEMM is skipped). With
    ``accumulate`` = (dW_ih, dW_hh, db_ih, db_hh) arrays the parameter
    gradients are added into them and None takes the place of the tuple;
    ``overwrite`` as in :func:`rnnlab.functional.recurrent.rnn_backward`.
    """
    x, gates, gh, states, weight_ih, weight_hh, has_bias, reverse, zero_start, loops = cache
    T, N, _ = x.shape
    H = weight_hh.shape[1]
    dtype = x.dtype
    _, h_prev = _state_views(states, reverse)
    dh = np.zeros((N, H), dtype=dtype) if grad_h_n is None else np.array(grad_h_n, dtype=dtype)
    loops.gru_backward_loop(gates, gh, states, weight_hh, grad_output, dh, reverse,
                            last_dh=state_grad)
    d_gx, d_gh = gates, gh  # (T, N, 3H) each, written over the forward's buffers
    grad_x = (d_gx.reshape(T * N, 3 * H) @ weight_ih).reshape(T, N, -1) if input_grad else None
    grads = _param_grads(d_gx, x, h_prev, has_bias, accumulate, overwrite,
                         _nonzero_h_prev(zero_start, reverse), d_pre_hh=d_gh)
    return grad_x, dh if state_grad else None, grads
