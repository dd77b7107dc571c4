"""The GRU over a whole sequence: forward, and backpropagation through time.

One layer, one direction, in torch's convention (gate order r, z, n). As
for the LSTM (see :mod:`rnnlab.functional.recurrent`), the three gates are
fused: one input GEMM for all steps, one recurrent GEMM per step, and the
weight gradients as one GEMM per gradient after the loop.

What sets the GRU apart is that b_hn sits inside the reset gate's product,
r ⊙ (h W_hnᵀ + b_hn): the recurrent part of the n gate cannot be added into
its input part before the gate is applied, and the backward needs it (dr
depends on it). So the forward keeps gh_n = h_{t-1} W_hnᵀ + b_hn of every
step beside the gates, and the gradients of the input and recurrent
pre-activations differ in the n slot. b_hr and b_hz, which only ever appear
summed with b_ir and b_iz, are added once with the input projection, as the
RNN's and the LSTM's biases are. Derivation: docs/bptt.md.
"""

from __future__ import annotations

import numpy as np

from ._loops_numpy import state_views as _state_views
from .linear import accumulate_outer, add_into, column_sum, outer_sum
from .recurrent import _NO_OVERWRITE, _check_dtypes, _input_projection, _loops, _nonzero_h_prev


def _gru_loops(batch, hidden, x=None, reverse=False):
    """The module whose GRU loops run a step of this size: as planned on this machine for
    x (T, N, I) (see rnnlab.kernels.planner), else by backend.py's size rule: the NumPy
    reference, numba's whole loop for small steps, or for large ones NumPy's forward with
    a compiled backward (rnnlab.kernels.gru_fused)."""
    return _loops(batch, hidden, None if x is None else "gru", x, reverse, fused="gru_fused")


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
    as None lets the first step skip its recurrent GEMM.

    Returns ``(output, h_n), cache``: output (T, N, H) (a view into the cache:
    do not write to it) and h_n (N, H). Raises TypeError when a weight, bias or
    h0 is not of x's dtype.
    """
    _check_dtypes(x, h0=h0, weight_ih=weight_ih, weight_hh=weight_hh, bias_ih=bias_ih,
                  bias_hh=bias_hh)
    T, N, _ = x.shape
    H = weight_hh.shape[1]
    dtype = x.dtype
    gates = np.empty((T, N, 3 * H), dtype=dtype)  # gx_t (+ b_hr, b_hz), then [r z n]_t
    gh_n = np.empty((T, N, H), dtype=dtype)  # gh_t[:, 2H:3H] = h_{t-1} W_hnᵀ + b_hn
    states = np.empty((T + 1, N, H), dtype=dtype)  # h_0 .. h_T in sweep order
    zero_start = h0 is None
    states[-1 if reverse else 0] = 0 if zero_start else h0
    bias_rz, bias_hn = None, None
    if bias_hh is not None:  # b_hr, b_hz go in with the input projection; b_hn per step
        bias_rz = np.concatenate([bias_hh[:2 * H], np.zeros(H, dtype=dtype)])  # (3H,)
        bias_hn = bias_hh[2 * H:]  # (H,)
    _input_projection(x, weight_ih, bias_ih, bias_rz, gates)
    loops = _gru_loops(N, H, x, reverse)
    loops.gru_forward_loop(gates, gh_n, states, weight_hh, bias_hn, reverse, zero_start=zero_start)
    out, _ = _state_views(states, reverse)
    # The backward runs with the loops that wrote the buffers, as the LSTM's does.
    cache = (x, gates, gh_n, states, weight_ih, weight_hh, bias_ih is not None, reverse,
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
    x, gates, gh_n, states, weight_ih, weight_hh, has_bias, reverse, zero_start, loops = cache
    T, N, I = x.shape
    H = weight_hh.shape[1]
    dtype = x.dtype
    _, h_prev = _state_views(states, reverse)
    dh = np.zeros((N, H), dtype=dtype) if grad_h_n is None else np.array(grad_h_n, dtype=dtype)
    loops.gru_backward_loop(gates, gh_n, states, weight_hh, grad_output, dh, reverse,
                            last_dh=state_grad)
    d_gx, d_gh_n = gates, gh_n  # (T, N, 3H), (T, N, H), written over the forward's buffers
    grad_x = (d_gx.reshape(T * N, 3 * H) @ weight_ih).reshape(T, N, I) if input_grad else None
    grads = _param_grads(d_gx, d_gh_n, x, h_prev, has_bias, accumulate, overwrite,
                         _nonzero_h_prev(zero_start, reverse))
    return grad_x, dh if state_grad else None, grads


def _param_grads(d_gx, d_gh_n, x, h_prev, has_bias, accumulate, overwrite, hh_steps):
    """Weight and bias gradients from the pre-activation gradients of all steps.

    d_gx (T, N, 3H), d_gh_n (T, N, H), x (T, N, I), h_prev (T, N, H) ->
    dW_ih = dgxᵀ x (3H, I), db_ih = Σ dgx (3H,), and, since dgh = [dgx_r, dgx_z, dgh_n],
    dW_hh = [dgx_rz; dgh_n]ᵀ h_prev (3H, H) as one GEMM per row block, and
    db_hh = [db_ih[:2H], Σ dgh_n]. ``accumulate``, ``overwrite`` and ``hh_steps``
    (the steps whose h_prev may be non-zero) as in recurrent._param_grads; without
    ``accumulate`` the four gradients are returned (biases None without bias).
    """
    T, N, G = d_gx.shape
    H = G // 3
    gx2 = d_gx.reshape(T * N, G)  # (T·N, 3H)
    x2 = x.reshape(T * N, -1)  # (T·N, I)
    rows = h_prev[hh_steps].shape[0] * N
    h_hh = h_prev[hh_steps].reshape(rows, H)  # (steps·N, H)
    rz_hh = d_gx[hh_steps][..., :2 * H].reshape(rows, 2 * H)  # a strided view, no copy
    n_hh = d_gh_n[hh_steps].reshape(rows, H)
    db_ih = column_sum(gx2) if has_bias else None
    db_hn = column_sum(d_gh_n.reshape(T * N, H)) if has_bias else None
    if accumulate is None:
        dw_hh = np.concatenate([outer_sum(rz_hh, h_hh), outer_sum(n_hh, h_hh)])
        db_hh = None if db_ih is None else np.concatenate([db_ih[:2 * H], db_hn])
        return outer_sum(gx2, x2), dw_hh, db_ih, db_hh
    acc_w_ih, acc_w_hh, acc_b_ih, acc_b_hh = accumulate
    accumulate_outer(acc_w_ih, gx2, x2, overwrite[0])
    accumulate_outer(acc_w_hh[:2 * H], rz_hh, h_hh, overwrite[1])
    accumulate_outer(acc_w_hh[2 * H:], n_hh, h_hh, overwrite[1])
    if has_bias:
        add_into(acc_b_ih, db_ih, overwrite[2])
        add_into(acc_b_hh[:2 * H], db_ih[:2 * H], overwrite[3])
        add_into(acc_b_hh[2 * H:], db_hn, overwrite[3])
    return None
