"""The fused LSTM loops' compiled elementwise passes, and the pool jobs that run them by rows.

The passes read the gate buffer as :mod:`.loops_fused` keeps it,
[τ_i, τ_f, g, τ_o] with τ = tanh(pre/2), so σ = ½ + ½τ and σ' = ¼(1 - τ²);
:mod:`.loops_fused` has the equations and calls them per step, on the calling
thread or, for a large step, as jobs on OpenBLAS's threads (see
:mod:`.blas_pool`), each job on its chunk of rows. Every row is computed by
the same compiled code either way, so the results are the same bit for bit.
"""

from __future__ import annotations

from functools import lru_cache

import numba
import numpy as np
from numba import carray

from . import blas_pool, numpy_tanh
from .loops_numba import _jit

@_jit
def _add_recurrent_and_bias(act, recur, scale, bias):
    """act (N, 4H) += scale ⊙ recur (N, 4H) + bias (4H,): the pre-activations, in one pass.

    recur = h_{t-1} W_hhᵀ is the product with the unscaled weight: the ½ of the
    i, f, o rows is applied here, at no extra pass (scaling W_hh instead costs a
    pass over the weight per sequence, ~1 ms at H = 512). A factor ½ is exact in
    floating point, so the sum is the same either way. (The feature-major product
    is added by :func:`.transpose.add_transposed`, which computes the same.)"""
    N, G = act.shape
    for n in range(N):
        a, r = act[n], recur[n]
        for k in range(G):
            a[k] += scale[k] * r[k] + bias[k]


@_jit
def _add_bias(act, bias):
    """act (N, 4H) += bias (4H,): the pre-activations of a step from a zero state."""
    for n in range(act.shape[0]):
        a = act[n]
        for k in range(act.shape[1]):
            a[k] += bias[k]

@_jit
def _cell(act, c_prev, c_out, half):
    """c_out (N, H) = f ⊙ c_prev + i ⊙ g, from act (N, 4H) = [τ_i, τ_f, g, τ_o]."""
    N, G = act.shape
    H = G // 4
    for n in range(N):
        a, cp_n, c_n = act[n], c_prev[n], c_out[n]
        for j in range(H):
            c_n[j] = (half + half * a[H + j]) * cp_n[j] + (half + half * a[j]) * a[2 * H + j]


@_jit
def _hidden(act, tanh_c, h, half):
    """h (N, H) = o ⊙ tanh(c), from act (N, 4H) = [τ_i, τ_f, g, τ_o] and tanh_c (N, H)."""
    N, G = act.shape
    H = G // 4
    for n in range(N):
        a, tc_n, h_n = act[n], tanh_c[n], h[n]
        for j in range(H):
            h_n[j] = (half + half * a[3 * H + j]) * tc_n[j]


@_jit
def _gate_gradients(act, tanh_c, c_prev, grad_out, has_grad_out, dh, dc, half):
    """One step of the LSTM backward: act (N, 4H) = [τ_i, τ_f, g, τ_o] becomes dL/dpre.

    dh (N, H) is dL/dh_t without grad_out; dc (N, H) enters as dL/dc_t and
    leaves as dL/dc_{t-1}. Equations in recurrent.lstm_backward, with
    σ = ½ + ½τ and σ(1 - σ) = ¼(1 - τ²). ``half`` is ½ in the arrays' dtype
    (a float literal would make float32 kernels compute in float64).

    Each row is computed into local buffers and copied back: with the stores
    going to memory nothing else points to, the loop vectorises (2x faster).
    """
    N, G = act.shape
    H = G // 4
    one = half + half
    quarter = half * half
    d_pre = np.empty(G, dtype=act.dtype)
    d_c_prev = np.empty(H, dtype=act.dtype)
    for n in range(N):
        a, tc_n, cp_n, dh_n, dc_n = act[n], tanh_c[n], c_prev[n], dh[n], dc[n]
        go_n = grad_out[n] if has_grad_out else grad_out[0]
        for j in range(H):
            d_h = dh_n[j] + go_n[j] if has_grad_out else dh_n[j]
            t_i = a[j]
            t_f = a[H + j]
            g = a[2 * H + j]
            t_o = a[3 * H + j]
            t = tc_n[j]
            d_c = dc_n[j] + d_h * (half + half * t_o) * (one - t * t)
            d_pre[j] = d_c * g * quarter * (one - t_i * t_i)
            d_pre[H + j] = d_c * cp_n[j] * quarter * (one - t_f * t_f)
            d_pre[2 * H + j] = d_c * (half + half * t_i) * (one - g * g)
            d_pre[3 * H + j] = d_h * t * quarter * (one - t_o * t_o)
            d_c_prev[j] = d_c * (half + half * t_f)
        a[:] = d_pre
        dc_n[:] = d_c_prev


# What the pool jobs below call. They are module globals, not names local to _row_jobs:
# numba keys a cached function by its code and its closure, and the closure's compiled
# helpers pickle differently in every process, so that each process missed the disk cache,
# compiled the jobs again (~2 s) and added its own copy of them to __pycache__. numba checks
# only this file for staleness: after editing what the jobs call in another module
# (numpy_tanh's intrinsic, blas_pool.job_helpers), clear the jobs' cache.
_pointer, _chunk_range = blas_pool.job_helpers()
_call_loop = numpy_tanh.unary_loop_caller()


@numba.njit(inline="always")
def _job_rows(ctx, a, m, n_rows, width, at):
    """The job's rows [lo, hi) of the (N, width) float32 array at address ctx[at]."""
    lo, hi = _chunk_range(ctx, a, m)
    return carray(_pointer(ctx[at], np.float32), (n_rows, width))[lo:hi]


@numba.njit(inline="always")
def _job_tanh(ctx, src, dst):
    """dst = tanh(src), both a contiguous run of rows, by NumPy's loop (ctx[10], ctx[11])."""
    _call_loop(ctx[10], ctx[11], src.ctypes.data, dst.ctypes.data, src.size, 4)


@lru_cache(maxsize=None)
def _row_jobs():
    """(forward, backward) addresses of pool jobs running a step's kernels on a chunk of rows.

    Both contexts start [shift, N, chunk, H, act]. forward: then [pass, x1, x2, x3, x4,
    tanh, tanh_data], with ``tanh`` the address of NumPy's float32 tanh loop and its data
    (see :mod:`.numpy_tanh`), or 0: then the passes run without it, as three jobs.
    - pass 0: _add_recurrent_and_bias(act, recur=x1, scale=x2, bias=x3), or act += bias
      when x1 is 0 (a zero initial state); then, with ``tanh``, act = tanh(act);
    - pass 1: _cell(act, c_prev=x1, c_out=x2); then, with ``tanh``, tanh_c = x3 = tanh(c_out)
      and _hidden(act, tanh_c, h=x4);
    - pass 2: _hidden(act, tanh_c=x1, h=x2).
    backward: then [tanh_c, c_prev, grad_out or 0, dh, dc] for _gate_gradients. float32
    arrays, C-contiguous (N, ·) rows: the buffers that recurrent.lstm_forward allocates
    (gates, states, tanh_c) are; the backward checks dh, dc and grad_output, which may come
    from elsewhere. A chunk's rows are then one contiguous run, for one call of the tanh loop.
    """
    # The jobs use module globals only (see _job_rows), so that numba's disk cache serves them.
    @numba.cfunc(blas_pool.job_signature(), nopython=True, cache=True)
    def forward(m, n, k, alpha, a, lda, b, ldb, c, ldc, sb):
        ctx = carray(c, (12,), np.int64)
        N, H = ctx[1], ctx[3]
        act = _job_rows(ctx, a, m, N, 4 * H, 4)
        if ctx[5] == 0:
            bias = carray(_pointer(ctx[8], np.float32), (4 * H,))
            if ctx[6] == 0:  # no recurrent part: the step from a zero state
                _add_bias(act, bias)
            else:
                _add_recurrent_and_bias(act, _job_rows(ctx, a, m, N, 4 * H, 6),
                                        carray(_pointer(ctx[7], np.float32), (4 * H,)), bias)
            if ctx[10] != 0:
                _job_tanh(ctx, act, act)  # [τ_i, τ_f, g, τ_o], while the rows are in cache
        elif ctx[5] == 1:
            c_out = _job_rows(ctx, a, m, N, H, 7)
            _cell(act, _job_rows(ctx, a, m, N, H, 6), c_out, np.float32(0.5))
            if ctx[10] != 0:
                tanh_c = _job_rows(ctx, a, m, N, H, 8)
                _job_tanh(ctx, c_out, tanh_c)
                _hidden(act, tanh_c, _job_rows(ctx, a, m, N, H, 9), np.float32(0.5))
        else:
            _hidden(act, _job_rows(ctx, a, m, N, H, 6), _job_rows(ctx, a, m, N, H, 7),
                    np.float32(0.5))

    @numba.cfunc(blas_pool.job_signature(), nopython=True, cache=True)
    def backward(m, n, k, alpha, a, lda, b, ldb, c, ldc, sb):
        ctx = carray(c, (10,), np.int64)
        N, H = ctx[1], ctx[3]
        dh = _job_rows(ctx, a, m, N, H, 8)
        has_grad_out = ctx[7] != 0
        grad_out = _job_rows(ctx, a, m, N, H, 7) if has_grad_out else dh
        _gate_gradients(_job_rows(ctx, a, m, N, 4 * H, 4), _job_rows(ctx, a, m, N, H, 5),
                        _job_rows(ctx, a, m, N, H, 6), grad_out, has_grad_out, dh,
                        _job_rows(ctx, a, m, N, H, 9), np.float32(0.5))

    return forward.address, backward.address


def _forward_pass_on_pool(threads, which, act, x1, x2, x3=None, x4=None, tanh=None):
    """One of the forward's compiled passes (see _row_jobs) on ``threads`` pool threads;
    with ``tanh`` = (loop, data) of :func:`.numpy_tanh.float32_loop`, its tanh too."""
    N, G = act.shape
    fields = [G // 4, act.ctypes.data, which,
              *(0 if x is None else x.ctypes.data for x in (x1, x2, x3, x4)),
              *(tanh or (0, 0))]
    blas_pool.run_chunks(_row_jobs()[0], N, fields, threads)
