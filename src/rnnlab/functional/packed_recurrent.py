"""A recurrent layer over a packed batch of variable-length sequences: forward and BPTT.

One layer, one direction, any cell of :mod:`rnnlab.functional.packed_cells`
(RNN, LSTM, GRU).
The work follows the sum of the lengths S, not batch × longest:

- the input projection is one GEMM over the S packed rows, X (S, I) · W_ihᵀ;
- step t runs its recurrent GEMM and its cell on its ``batch_sizes[t]``
  active rows only, which are a prefix of the batch (the sequences are sorted
  by decreasing length; see :mod:`rnnlab.functional.packed_layout`);
- in backward only the dh (and dc) recurrence runs per step; dX = dPre W_ih,
  dW_ih = dPreᵀ X, dW_hh = dPreᵀ H_prev and db = Σ dPre are GEMMs over all
  rows after the loop.

States live in one (N + S, H) buffer per state: the N initial states, then
the new state of every packed row. The previous state of step t's row j is
row j of step t-1, a prefix of that step's rows, so every step reads and
writes contiguous views. Carried gradients dh, dc are (N, H), indexed by
sequence; step t updates their first ``batch_sizes[t]`` rows, so a sequence's
dL/dh_n waits in its row until its own last step is reached.

The reverse direction is the same sweep over each sequence reversed in time:
the reversed sequences have the same lengths, hence the same layout, and one
permutation of the rows (:meth:`PackedLayout.reversal`, its own inverse) maps
the packed input to them and their outputs back. Every sequence then starts
at its own end.
"""

from __future__ import annotations

import numpy as np

from .backend import loops_for
from .linear import accumulate_outer, add_into, column_sum, outer_sum
from .packed_cells import cell_for
from .packed_layout import PackedLayout
from .recurrent import _check_dtypes

_NO_OVERWRITE = (False, False, False, False)


def step_for(mode: str, nonlinearity: str, batch: int, hidden: int):
    """The step object a layer of this mode runs on a packed batch of ``batch`` sequences.

    The NumPy reference of :mod:`.packed_cells`, except for the LSTM when the backend
    (:func:`rnnlab.functional.backend.loops_for`) is not "numpy": then the same step with
    its elementwise passes compiled (:mod:`rnnlab.kernels.packed_cells_fused`, which needs numba).
    """
    if mode == "LSTM" and loops_for(batch, hidden) != "numpy":
        from ..kernels.packed_cells_fused import FusedLSTMStep
        return FusedLSTMStep()
    return cell_for(mode, nonlinearity)


def packed_forward(cell, x, batch_sizes, states0, weight_ih, weight_hh, bias_ih=None,
                   bias_hh=None, reverse=False, layout=None):
    """Run ``cell`` over a packed batch.

    Shapes: x (S, I) packed rows, batch_sizes (T,) non-increasing with N =
    batch_sizes[0], states0 a tuple of ``cell.n_states`` (N, H) arrays or None
    entries (zeros; a zero h lets the first step skip its recurrent GEMM), one
    row per sequence in the packed (sorted) order; weight_ih (G·H, I),
    weight_hh (G·H, H), biases (G·H,) or None. ``layout``: a
    :class:`PackedLayout` of batch_sizes to reuse across layers.

    Returns ``(output (S, H), finals), cache``: finals is a tuple of the
    states (N, H) at each sequence's last step (for ``reverse``, its first).
    The output of the forward direction is a view into the cache.
    """
    _check_dtypes(x, weight_ih=weight_ih, weight_hh=weight_hh, bias_ih=bias_ih,
                  bias_hh=bias_hh, **{f"state {k}": s for k, s in enumerate(states0)})
    layout = PackedLayout(batch_sizes) if layout is None else layout
    S, N, H = layout.total, layout.batch, weight_hh.shape[1]
    if reverse:
        x = x[layout.reversal()]  # (S, I): each sequence reversed in time
    bufs = cell.forward_buffers(S, N, H, x.dtype)
    pre, states = bufs["pre"], bufs["states"]
    scale = cell.row_scale(H, x.dtype)  # (G·H,) or None
    bias = cell.input_bias(bias_ih, bias_hh)
    weight_hh_t = np.empty(weight_hh.shape[::-1], dtype=x.dtype)  # (H, G·H), C order
    if scale is None:
        np.matmul(x, weight_ih.T, out=pre)  # (S, G·H)
        np.copyto(weight_hh_t, weight_hh.T)
    else:
        np.matmul(x, (weight_ih * scale[:, None]).T, out=pre)
        np.multiply(weight_hh.T, scale, out=weight_hh_t)
        bias = None if bias is None else bias * scale
    if bias is not None:
        pre += bias
    zero_start = states0[0] is None
    for buffer, initial in zip(states, states0):
        buffer[:N] = 0 if initial is None else initial
    work = cell.workspace(N, H, x.dtype)
    with np.errstate(over="ignore"):  # exp overflow in σ gives 0, correctly
        for t in range(layout.steps):
            first, b = layout.rows(t)
            prev_first = 0 if t == 0 else N + int(layout.offsets[t - 1])
            cell.forward_step(slice(first, first + b),
                              tuple(s[prev_first:prev_first + b] for s in states),
                              tuple(s[N + first:N + first + b] for s in states),
                              bufs, weight_hh_t, bias_hh, t == 0 and zero_start, work)
    output = states[0][N:]  # (S, H)
    if reverse:
        output = output[layout.reversal()]
    last = N + layout.last_rows()
    finals = tuple(s[last] for s in states)  # (N, H) each
    cache = (cell, x, bufs, layout, weight_ih, weight_hh, bias_ih is not None, reverse,
             zero_start)
    return (output, finals), cache


def packed_backward(cache, grad_output=None, grad_finals=None, input_grad=True,
                    accumulate=None, overwrite=_NO_OVERWRITE, state_grad=True):
    """BPTT for :func:`packed_forward`; consumes the cache.

    From the last step down to the first, with the carried gradients started
    at ``grad_finals`` (each sequence's entry is reached at its own last step)::

        dh[:b_t] += grad_output_t
        cell.backward_step -> dpre_t, and dh[:b_t] (dc[:b_t]) = dL/d(previous states)
    then over all rows: dX = dPre_ih W_ih, dW_ih = dPre_ihᵀ X, dW_hh = dPre_hhᵀ H_prev,
    db_ih = Σ dPre_ih, db_hh = Σ dPre_hh.

    Shapes: grad_output (S, H) or None; grad_finals a tuple like the finals
    (entries None = zero) or None. Returns ``grad_x (S, I), grad_states0,
    (dW_ih, dW_hh, db_ih, db_hh)``: grad_x None without ``input_grad``,
    grad_states0 a tuple of (N, H) (None without ``state_grad``: the first
    step's dh GEMM is skipped), biases None without bias. With ``accumulate``
    = (dW_ih, dW_hh, db_ih, db_hh) arrays, the gradients are added into them
    (``overwrite`` flags: arrays whose contents stand for zero) and None
    replaces the quadruple.
    """
    cell, x, bufs, layout, weight_ih, weight_hh, has_bias, reverse, zero_start = cache
    N, H, dtype = layout.batch, weight_hh.shape[1], x.dtype
    states = bufs["states"]
    grad_finals = (None,) * cell.n_states if grad_finals is None else grad_finals
    dstates = tuple(np.zeros((N, H), dtype=dtype) if g is None else np.array(g, dtype=dtype)
                    for g in grad_finals)
    if grad_output is not None and reverse:
        grad_output = grad_output[layout.reversal()]
    cell.backward_begin(bufs)
    work = cell.workspace(N, H, dtype)
    for t in reversed(range(layout.steps)):
        first, b = layout.rows(t)
        rows = slice(first, first + b)
        carried = tuple(d[:b] for d in dstates)
        if grad_output is not None:
            np.add(carried[0], grad_output[rows], out=carried[0])
        prev_first = 0 if t == 0 else N + int(layout.offsets[t - 1])
        cell.backward_step(rows, tuple(s[prev_first:prev_first + b] for s in states), bufs,
                           carried, weight_hh, t > 0 or state_grad, work)
    d_ih, d_hh = cell.pre_grads(bufs)  # (S, G·H) each
    grad_x = None
    if input_grad:
        grad_x = d_ih @ weight_ih  # (S, I)
        if reverse:
            grad_x = grad_x[layout.reversal()]
    # A zero start adds nothing to dW_hh: the first step's N rows are left out of its GEMM.
    skip = N if zero_start else 0
    grads = _weight_grads(d_ih, d_hh, x, _previous_states(states[0], layout, skip), skip,
                          has_bias, accumulate, overwrite)
    return grad_x, (dstates if state_grad else None), grads


def _previous_states(h_states, layout, skip):
    """(S - skip, H): the previous h of every packed row from row ``skip`` on, gathered from
    h_states (N + S, H) one step (a contiguous block) at a time."""
    N = layout.batch
    h_prev = np.empty((layout.total - skip, h_states.shape[1]), dtype=h_states.dtype)
    for t in range(layout.steps):
        first, b = layout.rows(t)
        if first >= skip:
            prev_first = 0 if t == 0 else N + int(layout.offsets[t - 1])
            h_prev[first - skip:first - skip + b] = h_states[prev_first:prev_first + b]
    return h_prev


def _weight_grads(d_ih, d_hh, x, h_prev, skip, has_bias, accumulate, overwrite):
    """dW_ih = d_ihᵀ x, dW_hh = d_hh[skip:]ᵀ h_prev, db_ih = Σ d_ih, db_hh = Σ d_hh, returned
    or added into ``accumulate`` (see :func:`packed_backward`)."""
    same = d_ih is d_hh  # the RNN and the LSTM: one bias gradient serves both
    d_hh_rows = d_hh[skip:]
    db_ih = column_sum(d_ih) if has_bias else None
    db_hh = (db_ih if same else column_sum(d_hh)) if has_bias else None
    if accumulate is None:
        return outer_sum(d_ih, x), outer_sum(d_hh_rows, h_prev), db_ih, db_hh
    acc_w_ih, acc_w_hh, acc_b_ih, acc_b_hh = accumulate
    accumulate_outer(acc_w_ih, d_ih, x, overwrite[0])
    if len(h_prev):
        accumulate_outer(acc_w_hh, d_hh_rows, h_prev, overwrite[1])
    elif overwrite[1]:
        acc_w_hh[...] = 0  # every sequence is one step long from a zero state
    if has_bias:
        add_into(acc_b_ih, db_ih, overwrite[2])
        add_into(acc_b_hh, db_hh, overwrite[3])
    return None
