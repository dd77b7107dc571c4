"""Elman RNN and LSTM over a whole sequence: forward, and backpropagation through time.

One layer, one direction. ``reverse=True`` sweeps the sequence from the last
step to the first (the backward half of a bidirectional layer); outputs stay
at their own time index either way.

Layout choices (see docs/bptt.md for the derivations):
- The input projection for *all* steps is one GEMM, X (T·N, I) · W_ihᵀ, with
  both biases added once. Only the recurrent GEMM h_{t-1} · W_hhᵀ runs per step.
- In backward only the dh (and dc) recurrence runs per step. The weight
  gradients are one GEMM each over all steps after the loop:
  dW_ih = dPreᵀ · X, dW_hh = dPreᵀ · H_prev, db = Σ dPre.
- States live in one (T+1, N, H) buffer per sweep, so that the outputs and
  the previous states of every step are two contiguous, overlapping views:
  no copy is needed for the dW_hh GEMM.

Caches are consumed by the backward: the LSTM backward writes the gate
gradients over the stored gate activations, which keeps the peak memory of a
training step close to what BPTT must keep.
"""

from __future__ import annotations

import importlib

import numpy as np

from ..kernels import planner
from . import _loops_numpy
from ._loops_numpy import state_views as _state_views
from .backend import loops_for
from .linear import accumulate_outer, add_into, column_sum, outer_sum


def _loops(batch, hidden, cell=None, x=None, reverse=False, fused="loops_fused"):
    """The loops that run this step shape: as planned (see rnnlab.kernels.planner) for
    ``cell`` ("lstm", "gru", "rnn_tanh", "rnn_relu") and x (T, N, I), else by backend.py's
    rule, with ``fused`` naming the module of the "fused" choice (the GRU has its own)."""
    if cell is not None:
        return planner.planned_loops(cell, batch, hidden, x.dtype, x.shape[0], reverse)
    choice = loops_for(batch, hidden)
    if choice == "numba":
        from ..kernels import loops_numba
        return loops_numba
    if choice == "fused":
        return importlib.import_module(f"rnnlab.kernels.{fused}")
    return _loops_numpy


def _bias_sum(bias_ih, bias_hh):
    """b_ih + b_hh (either may be None; None if both are)."""
    return bias_ih if bias_hh is None else bias_hh if bias_ih is None else bias_ih + bias_hh


def _input_projection(x, weight_ih, bias_ih, bias_hh, out, row_scale=None):
    """out (T, N, G·H) = x (T, N, I) · W_ihᵀ + b_ih + b_hh, as one GEMM for all steps.

    The two biases are added as one vector (one pass over out, not two).
    ``row_scale`` (G·H,), if given, multiplies each row of W_ih first (the fused
    loops' ½; a pass over W_ih, not over out).
    """
    T, N, I = x.shape
    if row_scale is not None:
        weight_ih = weight_ih * row_scale[:, None]  # (G·H, I)
    np.matmul(x.reshape(T * N, I), weight_ih.T, out=out.reshape(T * N, -1))
    bias = _bias_sum(bias_ih, bias_hh)
    if bias is not None:
        out += bias


_NO_OVERWRITE = (False, False, False, False)


def _param_grads(d_pre, x, h_prev, has_bias, accumulate=None, overwrite=_NO_OVERWRITE,
                 hh_steps=slice(None)):
    """Weight and bias gradients from the pre-activation gradients of all steps.

    d_pre (T, N, G·H), x (T, N, I), h_prev (T, N, H) ->
    dW_ih (G·H, I), dW_hh (G·H, H), db (G·H,) or None (db is the same for b_ih and b_hh).

    ``accumulate``, if given, is (dW_ih, dW_hh, db_ih, db_hh) arrays (biases
    None without bias) that the gradients are added into, without
    full-size temporaries where possible; then None is returned. ``overwrite``
    flags, one for each, mark arrays whose contents stand for zero, to be
    written instead (see :func:`rnnlab.functional.linear.accumulate_outer`).
    ``hh_steps`` selects the steps whose h_prev may be non-zero: a zero
    initial state adds nothing to dW_hh, and its rows are left out of the GEMM.
    """
    T, N, GH = d_pre.shape
    d2 = d_pre.reshape(T * N, GH)  # (T·N, G·H)
    x2 = x.reshape(T * N, -1)
    d_hh = d_pre[hh_steps].reshape(-1, GH)  # (steps·N, G·H)
    h_hh = h_prev[hh_steps].reshape(d_hh.shape[0], h_prev.shape[-1])  # (steps·N, H)
    grad_bias = column_sum(d2) if has_bias else None
    if accumulate is None:
        return outer_sum(d2, x2), outer_sum(d_hh, h_hh), grad_bias
    acc_w_ih, acc_w_hh, acc_b_ih, acc_b_hh = accumulate
    accumulate_outer(acc_w_ih, d2, x2, overwrite[0])
    accumulate_outer(acc_w_hh, d_hh, h_hh, overwrite[1])
    if has_bias:
        add_into(acc_b_ih, grad_bias, overwrite[2])
        add_into(acc_b_hh, grad_bias, overwrite[3])
    return None


def _check_dtypes(x, **arrays) -> None:
    """Every given array (None skipped) has x's dtype, else a TypeError naming it.

    The compiled loops read raw float32 or float64 memory: a float64 weight next to a
    float32 input would be read as float32 values (a wrong answer, not an error).
    """
    for name, array in arrays.items():
        if array is not None and getattr(array, "dtype", None) != x.dtype:
            raise TypeError(f"{name}: expected dtype {x.dtype} (the input's), got "
                            f"{getattr(array, 'dtype', type(array).__name__)}")


# --------------------------------------------------------------------------- RNN


def rnn_forward(x, h0, weight_ih, weight_hh, bias_ih=None, bias_hh=None,
                nonlinearity="tanh", reverse=False):
    """Elman RNN over a sequence.

    Equations (``act`` is tanh or relu)::

        pre_t = x_t W_ihᵀ + b_ih + h_{t-1} W_hhᵀ + b_hh
        h_t   = act(pre_t)

    Shapes: x (T, N, I) contiguous, h0 (N, H) or None for zeros, weight_ih (H, I),
    weight_hh (H, H), bias_ih/bias_hh (H,) or None. A zero start given as None
    lets the first step skip its recurrent GEMM (and the backward its share of dW_hh).

    Returns ``(output, h_n), cache`` with output (T, N, H) (a view into the
    cache: do not write to it) and h_n (N, H). Raises TypeError when a weight,
    bias or h0 is not of x's dtype.
    """
    if nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
    _check_dtypes(x, h0=h0, weight_ih=weight_ih, weight_hh=weight_hh, bias_ih=bias_ih, bias_hh=bias_hh)
    T, N, _ = x.shape
    H = weight_hh.shape[0]
    states = np.empty((T + 1, N, H), dtype=x.dtype)  # h_0 .. h_T in sweep order
    out, prev = _state_views(states, reverse)  # (T, N, H) each
    zero_start = h0 is None
    states[-1 if reverse else 0] = 0 if zero_start else h0
    _input_projection(x, weight_ih, bias_ih, bias_hh, out)  # out holds pre_t for now
    _loops(N, H, f"rnn_{nonlinearity}", x, reverse).rnn_forward_loop(
        states, weight_hh, nonlinearity == "relu", reverse, zero_start=zero_start)
    h_n = states[0] if reverse else states[T]
    cache = (x, states, weight_ih, weight_hh, bias_ih is not None, nonlinearity, reverse,
             zero_start)
    return (out, h_n), cache


def rnn_backward(cache, grad_output=None, grad_h_n=None, input_grad=True, accumulate=None,
                 overwrite=_NO_OVERWRITE, state_grad=True):
    """Backpropagation through time for :func:`rnn_forward`.

    Equations, from t = T down to 1, with dh_T = grad_h_n::

        dh_t  += grad_output_t
        dpre_t = dh_t * act'(pre_t)       act' = 1 - h_t² (tanh) or 1[h_t > 0] (relu)
        dh_{t-1} = dpre_t W_hh
    then, over blocks of steps at once: dx = dpre W_ih, dW_ih = dpreᵀ x,
    dW_hh = dpreᵀ h_prev, db_ih = db_hh = Σ dpre.

    Memory: dpre is kept for one block of steps at a time (see
    :func:`_block_steps`), and each block's weight-gradient GEMMs run as soon
    as the block is done; so the backward adds a fraction of the forward's
    (T+1, N, H) states to the peak, not a second buffer of that size.

    Shapes: grad_output (T, N, H) or None, grad_h_n (N, H) or None (None = zero).
    Returns ``grad_x (T, N, I), grad_h0 (N, H), (dW_ih, dW_hh, db)`` with db None
    without bias, grad_x None when ``input_grad`` is False and grad_h0 None
    when ``state_grad`` is False (its GEMM is skipped). With
    ``accumulate`` = (dW_ih, dW_hh, db_ih, db_hh) arrays, the parameter
    gradients are added into them and None takes the place of the triple;
    ``overwrite`` flags (one for each of the four) mark arrays whose contents
    stand for zero, to be written instead of added into.
    """
    x, states, weight_ih, weight_hh, has_bias, nonlinearity, reverse, zero_start = cache
    T, N, I = x.shape
    H = weight_hh.shape[0]
    loops = _loops(N, H, f"rnn_{nonlinearity}", x, reverse)
    relu = nonlinearity == "relu"
    dh = np.zeros((N, H), dtype=x.dtype) if grad_h_n is None else np.array(grad_h_n, dtype=x.dtype)
    # grad_x costs a GEMM as large as the input projection; skip it when nobody needs it.
    grad_x = np.empty((T, N, I), dtype=x.dtype) if input_grad else None
    K = _block_steps(T, N * H * x.itemsize)
    d_pre = np.empty((K, N, H), dtype=x.dtype)  # dL/dpre_t for the steps of one block
    starts = range(0, T, K)
    workspace = {}  # what the loops prepare once for all blocks (the fused ones: a packed W_hh)
    totals = None
    last_block = starts[-1] if reverse else 0  # the one holding the sweep's first step
    for a in (starts if reverse else reversed(starts)):  # blocks in BPTT order
        b = min(a + K, T)
        block_states, d_block = states[a:b + 1], d_pre[:b - a]  # (b-a+1, N, H), (b-a, N, H)
        is_last = a == last_block
        loops.rnn_backward_loop(block_states, weight_hh, None if grad_output is None else grad_output[a:b],
                                dh, d_block, relu, reverse, last_dh=state_grad or not is_last,
                                workspace=workspace)
        if input_grad:
            np.matmul(d_block.reshape(-1, H), weight_ih, out=grad_x[a:b].reshape(-1, I))
        _, prev = _state_views(block_states, reverse)
        part = _param_grads(d_block, x[a:b], prev, has_bias, accumulate, overwrite,
                            _nonzero_h_prev(zero_start and is_last, reverse))
        overwrite = _NO_OVERWRITE  # later blocks add to what the first one wrote
        if part is not None:
            totals = part if totals is None else tuple(
                None if t is None else t + p for t, p in zip(totals, part))
    return grad_x, dh if state_grad else None, totals


# A block of BPTT steps keeps its dL/dpre in a buffer of at most this share of the states.
_BLOCK_SHARE = 8
# Below this many bytes of dL/dpre for the whole sequence, one block: splitting would only add
# GEMM calls. At 256 KiB the extra calls did not show in the step time (RNN at d = 32-256,
# m = 32, T = 16-64), while 1 MiB left steps of 512 KiB at 2x the BPTT minimum in memory.
_BLOCK_MIN_BYTES = 1 << 18


def _nonzero_h_prev(zero_start: bool, reverse: bool) -> slice:
    """The steps (of a block holding the sweep's first step) whose h_prev is not the zero start."""
    if not zero_start:
        return slice(None)
    return slice(None, -1) if reverse else slice(1, None)


def _block_steps(T: int, step_bytes: int) -> int:
    """Steps per block of the RNN backward: all T while dL/dpre is small, else ⌈T/8⌉."""
    if T * step_bytes < _BLOCK_MIN_BYTES:
        return T
    return -(-T // _BLOCK_SHARE)


# -------------------------------------------------------------------------- LSTM


def lstm_forward(x, h0, c0, weight_ih, weight_hh, bias_ih=None, bias_hh=None, reverse=False):
    """LSTM over a sequence, with the four gate GEMMs fused into one.

    Equations (σ is the logistic sigmoid, ⊙ the elementwise product)::

        pre_t = x_t W_ihᵀ + b_ih + h_{t-1} W_hhᵀ + b_hh      (N, 4H), gate order i, f, g, o
        i_t = σ(pre_t[:, 0:H])      f_t = σ(pre_t[:, H:2H])
        g_t = tanh(pre_t[:, 2H:3H]) o_t = σ(pre_t[:, 3H:4H])
        c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t
        h_t = o_t ⊙ tanh(c_t)

    Shapes: x (T, N, I) contiguous, h0 and c0 (N, H) or None for zeros,
    weight_ih (4H, I), weight_hh (4H, H), bias_ih/bias_hh (4H,) or None. A zero
    h0 given as None lets the first step skip its recurrent GEMM.

    Returns ``(output, h_n, c_n), cache``: output (T, N, H) (a view into the
    cache: do not write to it), h_n and c_n (N, H). Raises TypeError when a
    weight, bias, h0 or c0 is not of x's dtype.
    """
    _check_dtypes(x, h0=h0, c0=c0, weight_ih=weight_ih, weight_hh=weight_hh, bias_ih=bias_ih,
                  bias_hh=bias_hh)
    T, N, _ = x.shape
    H = weight_hh.shape[1]
    dtype = x.dtype
    gates = np.empty((T, N, 4 * H), dtype=dtype)  # pre_t, then [i f g o]_t (fused: [τ_i τ_f g τ_o]_t)
    h_states = np.empty((T + 1, N, H), dtype=dtype)
    c_states = np.empty((T + 1, N, H), dtype=dtype)
    tanh_c = np.empty((T, N, H), dtype=dtype)
    first = -1 if reverse else 0
    zero_start = h0 is None
    h_states[first] = 0 if zero_start else h0
    c_states[first] = 0 if c0 is None else c0
    loops = _loops(N, H, "lstm", x, reverse)
    row_scale = getattr(loops, "input_row_scale", None)
    if row_scale is None:
        _input_projection(x, weight_ih, bias_ih, bias_hh, gates)
        loops.lstm_forward_loop(gates, h_states, c_states, tanh_c, weight_hh, reverse,
                                zero_start=zero_start)
    else:
        # The fused loops take σ(x) as (1 + tanh(x/2))/2, with the ½ in W_ih's rows, and add
        # the bias with each step's recurrent part (see rnnlab.kernels.loops_fused).
        _input_projection(x, weight_ih, None, None, gates, row_scale(4 * H, dtype))
        loops.lstm_forward_loop(gates, h_states, c_states, tanh_c, weight_hh, reverse,
                                zero_start=zero_start, bias=_bias_sum(bias_ih, bias_hh))
    h_out, _ = _state_views(h_states, reverse)
    last = 0 if reverse else T
    # The backward runs with these loops whatever the backend is by then: what the gate
    # buffer holds after the forward is theirs to read (see rnnlab.kernels.loops_fused).
    cache = (x, gates, h_states, c_states, tanh_c, weight_ih, weight_hh,
             bias_ih is not None, reverse, zero_start, loops)
    return (h_out, h_states[last], c_states[last]), cache


def lstm_backward(cache, grad_output=None, grad_h_n=None, grad_c_n=None, input_grad=True,
                  accumulate=None, overwrite=_NO_OVERWRITE, state_grad=True):
    """Backpropagation through time for :func:`lstm_forward`. Consumes the cache.

    Equations, from t = T down to 1, with dh_T = grad_h_n and dc_T = grad_c_n::

        dh_t += grad_output_t
        do_t  = dh_t ⊙ tanh(c_t)
        dc_t += dh_t ⊙ o_t ⊙ (1 - tanh²(c_t))
        di_t  = dc_t ⊙ g_t         df_t = dc_t ⊙ c_{t-1}
        dg_t  = dc_t ⊙ i_t         dc_{t-1} = dc_t ⊙ f_t
        dpre_t = [di ⊙ i(1-i), df ⊙ f(1-f), dg ⊙ (1-g²), do ⊙ o(1-o)]_t
        dh_{t-1} = dpre_t W_hh
    then over all steps at once: dx = dpre W_ih, dW_ih = dpreᵀ x,
    dW_hh = dpreᵀ h_prev, db_ih = db_hh = Σ dpre.

    Shapes: grad_output (T, N, H) or None; grad_h_n, grad_c_n (N, H) or None.
    Returns ``grad_x (T, N, I), grad_h0 (N, H), grad_c0 (N, H), (dW_ih, dW_hh, db)``,
    with grad_x None when ``input_grad`` is False, grad_h0 and grad_c0 None when
    ``state_grad`` is False; ``accumulate`` and ``overwrite`` as in :func:`rnn_backward`.
    """
    (x, gates, h_states, c_states, tanh_c, weight_ih, weight_hh, has_bias, reverse, zero_start,
     loops) = cache
    T, N, _ = x.shape
    H = weight_hh.shape[1]
    dtype = x.dtype
    _, h_prev = _state_views(h_states, reverse)
    dh = np.zeros((N, H), dtype=dtype) if grad_h_n is None else np.array(grad_h_n, dtype=dtype)
    dc = np.zeros((N, H), dtype=dtype) if grad_c_n is None else np.array(grad_c_n, dtype=dtype)
    loops.lstm_backward_loop(gates, c_states, tanh_c, weight_hh, grad_output, dh, dc,
                             reverse, last_dh=state_grad)
    d_pre = gates
    grad_x = (d_pre.reshape(T * N, 4 * H) @ weight_ih).reshape(T, N, -1) if input_grad else None
    grads = _param_grads(d_pre, x, h_prev, has_bias, accumulate, overwrite,
                         _nonzero_h_prev(zero_start, reverse))
    if not state_grad:
        return grad_x, None, None, grads
    return grad_x, dh, dc, grads
