"""The per-step time loops compiled with numba: the fast path for small steps.

Same signatures and equations as :mod:`rnnlab.functional._loops_numpy`. The
whole time loop runs in compiled code: per step, the recurrent product and
one fused pass over the step's elements, instead of a dozen NumPy calls that
each cost ~1 µs. That wins while a step is small (batch × hidden up to a few
hundred units); beyond that NumPy's SIMD ufuncs and multi-threaded BLAS win,
and :mod:`rnnlab.functional.backend` picks NumPy.

The recurrent product is written as loops (:func:`_matmul_into`) rather than
``np.dot``: numba's ``np.dot`` calls SciPy's own OpenBLAS, a second BLAS
whose spinning threads fight NumPy's for the cores. The kernels compile on
first use for each dtype and layout, and are cached on disk.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

_jit = nb.njit(cache=True, nogil=True, error_model="numpy")


@_jit
def _matmul_into(a, b, out):
    """out (N, K) = a (N, J) · b (J, K), with b C-contiguous.

    The inner loop runs along a row of b and of out (an axpy), which the
    compiler vectorises without reordering any sum.
    """
    N, J = a.shape
    K = b.shape[1]
    for n in range(N):
        for k in range(K):
            out[n, k] = 0
        for j in range(J):
            a_nj = a[n, j]
            for k in range(K):
                out[n, k] += a_nj * b[j, k]


@_jit
def _rnn_forward(states, weight_hh_t, relu, reverse, zero_start):
    T = states.shape[0] - 1
    N, H = states.shape[1], states.shape[2]
    recur = np.zeros((N, H), dtype=states.dtype)
    for step in range(T):
        t = T - 1 - step if reverse else step
        prev, cur = (t + 1, t) if reverse else (t, t + 1)
        if step > 0 or not zero_start:
            _matmul_into(states[prev], weight_hh_t, recur)  # (N, H)
        for n in range(N):
            for j in range(H):
                a = states[cur, n, j] + recur[n, j]
                if relu:
                    states[cur, n, j] = a if a > 0 else 0
                else:
                    states[cur, n, j] = math.tanh(a)


@_jit
def _rnn_backward(states, weight_hh, grad_output, has_grad_output, dh, d_pre, relu, reverse,
                  last_dh):
    T = states.shape[0] - 1
    N, H = states.shape[1], states.shape[2]
    for step in range(T):
        t = step if reverse else T - 1 - step  # BPTT runs the sweep backwards
        cur = t if reverse else t + 1
        for n in range(N):
            for j in range(H):
                g = dh[n, j]
                if has_grad_output:
                    g += grad_output[t, n, j]
                h = states[cur, n, j]
                d_pre[t, n, j] = g * (1 if h > 0 else 0) if relu else g * (1 - h * h)
        if last_dh or step < T - 1:
            _matmul_into(d_pre[t], weight_hh, dh)


@_jit
def _lstm_forward(gates, h_states, c_states, tanh_c, weight_hh_t, reverse, zero_start):
    T, N, G = gates.shape
    H = G // 4
    recur = np.zeros((N, G), dtype=gates.dtype)
    for step in range(T):
        t = T - 1 - step if reverse else step
        prev, cur = (t + 1, t) if reverse else (t, t + 1)
        if step > 0 or not zero_start:
            _matmul_into(h_states[prev], weight_hh_t, recur)  # (N, 4H)
        for n in range(N):
            for j in range(H):
                i = 1 / (1 + math.exp(-(gates[t, n, j] + recur[n, j])))
                f = 1 / (1 + math.exp(-(gates[t, n, H + j] + recur[n, H + j])))
                g = math.tanh(gates[t, n, 2 * H + j] + recur[n, 2 * H + j])
                o = 1 / (1 + math.exp(-(gates[t, n, 3 * H + j] + recur[n, 3 * H + j])))
                c = f * c_states[prev, n, j] + i * g
                tc = math.tanh(c)
                gates[t, n, j] = i
                gates[t, n, H + j] = f
                gates[t, n, 2 * H + j] = g
                gates[t, n, 3 * H + j] = o
                c_states[cur, n, j] = c
                tanh_c[t, n, j] = tc
                h_states[cur, n, j] = o * tc


@_jit
def lstm_gate_gradients(act, tc, c_prev, grad_out, has_grad_out, dh, dc):
    """One step of the LSTM backward, fused: act (N, 4H) = [i f g o] becomes dL/dpre.

    dh (N, H) is dL/dh_t without grad_out; dc (N, H) enters as dL/dc_t from
    step t+1 and leaves as dL/dc_{t-1}. Equations in recurrent.lstm_backward.
    Each row is computed into fresh local buffers and copied back: with the
    stores going to memory the compiler knows nothing else points to, the
    loop vectorises (2x faster than storing into ``act`` directly).
    """
    N, G = act.shape
    H = G // 4
    d_pre = np.empty(G, dtype=act.dtype)
    d_c_prev = np.empty(H, dtype=act.dtype)
    for n in range(N):
        a, t_n, cp_n, dh_n, dc_n = act[n], tc[n], c_prev[n], dh[n], dc[n]
        go_n = grad_out[n] if has_grad_out else grad_out[0]
        for j in range(H):
            d_h = dh_n[j] + go_n[j] if has_grad_out else dh_n[j]
            i = a[j]
            f = a[H + j]
            g = a[2 * H + j]
            o = a[3 * H + j]
            t = t_n[j]
            d_c = dc_n[j] + d_h * o * (1 - t * t)
            d_pre[j] = d_c * g * i * (1 - i)
            d_pre[H + j] = d_c * cp_n[j] * f * (1 - f)
            d_pre[2 * H + j] = d_c * i * (1 - g * g)
            d_pre[3 * H + j] = d_h * t * o * (1 - o)
            d_c_prev[j] = d_c * f
        a[:] = d_pre
        dc_n[:] = d_c_prev


@_jit
def _lstm_backward(gates, c_states, tanh_c, weight_hh, grad_output, has_grad_output, dh, dc,
                   reverse, last_dh):
    T = gates.shape[0]
    for step in range(T):
        t = step if reverse else T - 1 - step  # BPTT runs the sweep backwards
        prev = t + 1 if reverse else t
        lstm_gate_gradients(gates[t], tanh_c[t], c_states[prev],
                            grad_output[t] if has_grad_output else grad_output[0],
                            has_grad_output, dh, dc)
        if last_dh or step < T - 1:
            _matmul_into(gates[t], weight_hh, dh)


def _grad_or_dummy(grad_output, like):
    if grad_output is None:
        return np.zeros((1, 1, 1), dtype=like.dtype), False
    return grad_output, True


def rnn_forward_loop(states, weight_hh, relu, reverse, zero_start=False):
    _rnn_forward(states, np.ascontiguousarray(weight_hh.T), relu, reverse, zero_start)


def rnn_backward_loop(states, weight_hh, grad_output, dh, d_pre, relu, reverse, last_dh=True,
                      workspace=None):
    grad_output, has = _grad_or_dummy(grad_output, states)
    _rnn_backward(states, weight_hh, grad_output, has, dh, d_pre, relu, reverse, last_dh)


def lstm_forward_loop(gates, h_states, c_states, tanh_c, weight_hh, reverse, zero_start=False):
    _lstm_forward(gates, h_states, c_states, tanh_c, np.ascontiguousarray(weight_hh.T), reverse,
                  zero_start)


def lstm_backward_loop(gates, c_states, tanh_c, weight_hh, grad_output, dh, dc, reverse,
                       last_dh=True):
    grad_output, has = _grad_or_dummy(grad_output, gates)
    _lstm_backward(gates, c_states, tanh_c, weight_hh, grad_output, has, dh, dc, reverse, last_dh)


# --------------------------------------------------------------------------- GRU


@_jit
def gru_gates_forward(g, recur, bias_hn, gh_n, h_prev, h_out):
    """One GRU step after its recurrent product, fused: equations in rnnlab.functional.gru.

    g (N, 3H) holds gx_t (+ b_hr, b_hz) and becomes [r z n]_t; recur (N, 3H) is
    h_{t-1} W_hhᵀ; gh_n (N, H) receives recur's n part + b_hn ((H,), zeros
    without bias); h_out (N, H) receives h_t.
    """
    N, G = g.shape
    H = G // 3
    for n in range(N):
        for j in range(H):
            r = 1 / (1 + math.exp(-(g[n, j] + recur[n, j])))
            z = 1 / (1 + math.exp(-(g[n, H + j] + recur[n, H + j])))
            a = recur[n, 2 * H + j] + bias_hn[j]
            c = math.tanh(g[n, 2 * H + j] + r * a)
            g[n, j] = r
            g[n, H + j] = z
            g[n, 2 * H + j] = c
            gh_n[n, j] = a
            h_out[n, j] = c + z * (h_prev[n, j] - c)


@_jit
def gru_gates_backward(g, gh_n, h_prev, grad_out, has_grad_out, dh, d_gh):
    """One GRU step of BPTT before its dh product, fused: equations in rnnlab.functional.gru.

    g (N, 3H) = [r z n]_t becomes dL/dgx_t, gh_n (N, H) becomes dL/dgh_n, and
    d_gh (N, 3H) receives dL/dgh_t = [dgx_r, dgx_z, dgh_n] for the dh product;
    dh (N, H) enters as dL/dh_t from step t+1 (grad_out (N, H) is added when
    ``has_grad_out``) and leaves as dh_t ⊙ z_t, the direct path to h_{t-1}.
    """
    N, G = g.shape
    H = G // 3
    for n in range(N):
        for j in range(H):
            d = dh[n, j] + grad_out[n, j] if has_grad_out else dh[n, j]
            r = g[n, j]
            z = g[n, H + j]
            c = g[n, 2 * H + j]
            d_gx_n = d * (1 - z) * (1 - c * c)
            d_r = d_gx_n * gh_n[n, j] * r * (1 - r)
            d_z = d * (h_prev[n, j] - c) * z * (1 - z)
            g[n, j] = d_r
            g[n, H + j] = d_z
            g[n, 2 * H + j] = d_gx_n
            gh_n[n, j] = d_gx_n * r
            d_gh[n, j] = d_r
            d_gh[n, H + j] = d_z
            d_gh[n, 2 * H + j] = d_gx_n * r
            dh[n, j] = d * z


@_jit
def _matmul_add_into(a, b, out):
    """out (N, K) += a (N, J) · b (J, K), b C-contiguous (an axpy per row, as _matmul_into)."""
    N, J = a.shape
    K = b.shape[1]
    for n in range(N):
        for j in range(J):
            a_nj = a[n, j]
            for k in range(K):
                out[n, k] += a_nj * b[j, k]


@_jit
def _gru_forward(gates, gh_n, states, weight_hh_t, bias_hn, reverse, zero_start):
    T, N, G = gates.shape
    recur = np.zeros((N, G), dtype=gates.dtype)  # h_{t-1} W_hhᵀ; zero for a zero start
    for step in range(T):
        t = T - 1 - step if reverse else step
        prev, cur = (t + 1, t) if reverse else (t, t + 1)
        if step > 0 or not zero_start:
            _matmul_into(states[prev], weight_hh_t, recur)  # (N, 3H)
        gru_gates_forward(gates[t], recur, bias_hn, gh_n[t], states[prev], states[cur])


@_jit
def _gru_backward(gates, gh_n, states, weight_hh, grad_output, has_grad_output, dh, reverse,
                  last_dh):
    T, N, G = gates.shape
    d_gh = np.empty((N, G), dtype=gates.dtype)
    for step in range(T):
        t = step if reverse else T - 1 - step  # BPTT runs the sweep backwards
        prev = t + 1 if reverse else t
        gru_gates_backward(gates[t], gh_n[t], states[prev],
                           grad_output[t] if has_grad_output else grad_output[0],
                           has_grad_output, dh, d_gh)
        if last_dh or step < T - 1:
            _matmul_add_into(d_gh, weight_hh, dh)  # dh_{t-1} = dh_t ⊙ z_t + dgh_t W_hh


def gru_forward_loop(gates, gh_n, states, weight_hh, bias_hn, reverse, zero_start=False):
    if bias_hn is None:  # the kernel always adds one
        bias_hn = np.zeros(gh_n.shape[-1], dtype=gates.dtype)
    _gru_forward(gates, gh_n, states, np.ascontiguousarray(weight_hh.T), bias_hn, reverse,
                 zero_start)


def gru_backward_loop(gates, gh_n, states, weight_hh, grad_output, dh, reverse, last_dh=True):
    grad_output, has = _grad_or_dummy(grad_output, gates)
    _gru_backward(gates, gh_n, states, np.ascontiguousarray(weight_hh), grad_output, has, dh,
                  reverse, last_dh)
