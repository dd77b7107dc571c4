"""Per-step loops for large steps: NumPy's BLAS and SIMD ufuncs, plus one fused numba pass.

For a step of many units (batch × hidden above a few hundred) the compiled
whole-loop kernels of :mod:`._loops_numba` lose: numba's scalar exp/tanh are
not vectorised here, while NumPy's are, and NumPy's BLAS uses every core. The
NumPy reference, though, spends a dozen passes over memory per step. This
module keeps what each does best:

- forward, per step: the recurrent GEMM (NumPy), then ``tanh`` over all four
  gates in one SIMD pass, using σ(x) = (1 + tanh(x/2)) / 2 with the ½ folded
  into the i, f, o rows of the pre-activations; then one fused numba pass
  that finishes σ and computes c; then ``tanh(c)`` and ``h = o ⊙ tanh(c)``;
- backward, per step: one fused numba pass (no transcendental functions, so
  it vectorises) for all the gate gradients and dc, then the dh GEMM (NumPy).

The RNN step is already three NumPy calls, so the RNN uses the NumPy loops.
"""

from __future__ import annotations

import numpy as np

from ._loops_numba import _jit, lstm_gate_gradients
from ._loops_numpy import rnn_backward_loop, rnn_forward_loop, state_views, sweep

__all__ = ["rnn_forward_loop", "rnn_backward_loop", "lstm_forward_loop", "lstm_backward_loop",
           "input_row_scale"]


def input_row_scale(G, dtype):
    """(4H,) scale: ½ on the i, f, o rows, 1 on g, so that one tanh serves all four gates.

    The caller applies it to the rows of W_ih and the bias when it computes the
    input part of the pre-activations (see recurrent._input_projection); the
    loops apply it to W_hh.
    """
    H = G // 4
    scale = np.full(G, 0.5, dtype=dtype)
    scale[2 * H:3 * H] = 1
    return scale


@_jit
def _finish_gates_and_cell(act, c_prev, c_out):
    """act (N, 4H) = [tanh(pre_i/2), tanh(pre_f/2), g, tanh(pre_o/2)] -> [i, f, g, o]; c_out = f c_prev + i g.

    Rows go through local buffers so that the loop vectorises (see lstm_gate_gradients).
    """
    N, G = act.shape
    H = G // 4
    gates = np.empty(G, dtype=act.dtype)
    cell = np.empty(H, dtype=act.dtype)
    for n in range(N):
        a, cp_n = act[n], c_prev[n]
        for j in range(H):
            i = 0.5 + 0.5 * a[j]
            f = 0.5 + 0.5 * a[H + j]
            g = a[2 * H + j]
            gates[j] = i
            gates[H + j] = f
            gates[2 * H + j] = g
            gates[3 * H + j] = 0.5 + 0.5 * a[3 * H + j]
            cell[j] = f * cp_n[j] + i * g
        a[:] = gates
        c_out[n] = cell


def lstm_forward_loop(gates, h_states, c_states, tanh_c, weight_hh, reverse, zero_start=False):
    """As the NumPy loops, but gates (T, N, 4H) arrive with the i, f, o rows of their
    input part halved (see :func:`input_row_scale`)."""
    T, N, G = gates.shape
    H = G // 4
    h_out, h_prev = state_views(h_states, reverse)
    c_out, c_prev = state_views(c_states, reverse)
    # (H, 4H), scaled: one pass over W_hh per forward. (It keeps W_hh's memory order, so
    # it is W_hh's transpose in layout too; a transposed copy would cost ~10x as much.)
    weight_hh_t = weight_hh.T * input_row_scale(G, gates.dtype)
    recur = np.empty((N, G), dtype=gates.dtype)
    o_all = gates[..., 3 * H:]
    for k, t in enumerate(sweep(T, reverse)):
        act = gates[t]
        if k or not zero_start:  # a zero initial state adds nothing
            np.matmul(h_prev[t], weight_hh_t, out=recur)
            act += recur
        np.tanh(act, out=act)
        _finish_gates_and_cell(act, c_prev[t], c_out[t])
        np.tanh(c_out[t], out=tanh_c[t])
        np.multiply(o_all[t], tanh_c[t], out=h_out[t])


def lstm_backward_loop(gates, c_states, tanh_c, weight_hh, grad_output, dh, dc, reverse,
                       last_dh=True):
    T, N, G = gates.shape
    _, c_prev = state_views(c_states, reverse)
    no_grad = np.zeros((1, 1), dtype=gates.dtype)
    for k, t in enumerate(sweep(T, not reverse)):  # BPTT runs the sweep backwards
        act = gates[t]
        if grad_output is None:
            lstm_gate_gradients(act, tanh_c[t], c_prev[t], no_grad, False, dh, dc)
        else:
            lstm_gate_gradients(act, tanh_c[t], c_prev[t], grad_output[t], True, dh, dc)
        if last_dh or k < T - 1:
            np.matmul(act, weight_hh, out=dh)
