"""The per-step time loops in plain NumPy: the readable reference backend.

Each function runs one direction's recurrence over all T steps, in place, on
buffers that :mod:`rnnlab.functional.recurrent` allocated; that module's
docstrings carry the equations. Every step is a handful of in-place NumPy
calls (``out=``), with no allocation inside the loop.
"""

from __future__ import annotations

import numpy as np


def sweep(T: int, reverse: bool):
    """Time indices in the order a direction processes them."""
    return range(T - 1, -1, -1) if reverse else range(T)


def state_views(states: np.ndarray, reverse: bool):
    """Split a (T+1, N, H) state buffer into (outputs, previous states), both (T, N, H).

    Forward: states[0] is the initial state, step t writes states[t+1].
    Reverse: states[T] is the initial state, step t writes states[t].
    In both, ``prev[t]`` is the state that step t reads.
    """
    if reverse:
        return states[:-1], states[1:]
    return states[1:], states[:-1]


def _recurrent_operand(weight_hh, T):
    """W_hhᵀ for the per-step GEMM h_{t-1} · W_hhᵀ.

    A C-contiguous copy once T > 2: OpenBLAS runs h @ B up to ~1.7x faster for
    a small batch when B is not a transposed view, and the copy (one pass over
    W_hh) pays for itself within a few steps. For T <= 2 the view is cheaper.
    """
    return np.ascontiguousarray(weight_hh.T) if T > 2 else weight_hh.T


def rnn_forward_loop(states, weight_hh, relu, reverse, zero_start=False, recurrent_product=None):
    """states (T+1, N, H): the initial state at its end, pre_t (input part) in the output slots.

    Leaves h_t = act(pre_t + h_{t-1} W_hhᵀ) in the output slots. With
    ``zero_start`` the initial state is zero and the first step skips its GEMM.
    ``recurrent_product``: a function of t returning h_{t-1} W_hhᵀ (N, H), when
    another module computes it (the fused loops: on a packed weight); None: matmul.
    """
    out, prev = state_views(states, reverse)
    if recurrent_product is None:
        weight_hh_t = _recurrent_operand(weight_hh, out.shape[0])  # (H, H)
        recur = np.empty(out.shape[1:], dtype=states.dtype)  # (N, H): h_{t-1} W_hhᵀ

        def recurrent_product(t):
            return np.matmul(prev[t], weight_hh_t, out=recur)

    for k, t in enumerate(sweep(out.shape[0], reverse)):
        if k or not zero_start:
            out[t] += recurrent_product(t)
        if relu:
            np.maximum(out[t], 0, out=out[t])
        else:
            np.tanh(out[t], out=out[t])


def rnn_backward_loop(states, weight_hh, grad_output, dh, d_pre, relu, reverse, last_dh=True,
                      workspace=None, dh_product=None):
    """Fill d_pre (T, N, H) with dL/dpre_t; dh (N, H) enters as dL/dh_T, leaves as dL/dh_0.

    With ``last_dh=False`` the last GEMM, dL/dh_0, is skipped (nobody needs
    it) and dh is left holding dL/dh_1. ``workspace``: a dict the caller keeps
    across the blocks of steps of one backward, for what a loop prepares once
    (the fused loops keep their packed W_hh there); unused here. ``dh_product``:
    a function of t writing dpre_t W_hh into dh, when another module computes it
    (the fused loops); None: matmul.
    """
    out, _ = state_views(states, reverse)
    if relu:  # act' from the output: 1[h > 0] or 1 - h², for all steps at once
        np.greater(out, 0, out=d_pre)
    else:
        np.multiply(out, out, out=d_pre)
        np.subtract(1, d_pre, out=d_pre)
    if dh_product is None:
        def dh_product(t):
            np.matmul(d_pre[t], weight_hh, out=dh)

    T = out.shape[0]
    for k, t in enumerate(sweep(T, not reverse)):  # BPTT runs the sweep backwards
        if grad_output is not None:
            dh += grad_output[t]
        d_pre[t] *= dh
        if last_dh or k < T - 1:
            dh_product(t)


def _sigmoid_(a):
    """In-place 1/(1+exp(-a)); the caller silences overflow (exp(-a) = inf gives 0, correctly)."""
    np.negative(a, out=a)
    np.exp(a, out=a)
    a += 1
    np.reciprocal(a, out=a)


def lstm_forward_loop(gates, h_states, c_states, tanh_c, weight_hh, reverse, zero_start=False):
    """gates (T, N, 4H) hold the input part of pre_t and receive [i f g o]_t.

    h_states, c_states (T+1, N, H) hold the initial states and receive h_t, c_t;
    tanh_c (T, N, H) receives tanh(c_t). With ``zero_start`` the initial h is
    zero and the first step skips its GEMM.
    """
    T, N, G = gates.shape
    H = G // 4
    h_out, h_prev = state_views(h_states, reverse)
    c_out, c_prev = state_views(c_states, reverse)
    i_all, f_all = gates[..., :H], gates[..., H:2 * H]  # (T, N, H) views
    g_all, o_all = gates[..., 2 * H:3 * H], gates[..., 3 * H:]
    weight_hh_t = _recurrent_operand(weight_hh, T)  # (H, 4H)
    recur = np.empty((N, G), dtype=gates.dtype)  # h_{t-1} W_hhᵀ
    g_new = np.empty((N, H), dtype=gates.dtype)
    i_g = np.empty((N, H), dtype=gates.dtype)
    with np.errstate(over="ignore"):
        for k, t in enumerate(sweep(T, reverse)):
            pre = gates[t]
            if k or not zero_start:
                np.matmul(h_prev[t], weight_hh_t, out=recur)
                pre += recur
            # σ over the whole block is one call chain; g is taken by tanh first.
            np.tanh(g_all[t], out=g_new)
            _sigmoid_(pre)
            g_all[t] = g_new
            np.multiply(f_all[t], c_prev[t], out=c_out[t])
            np.multiply(i_all[t], g_new, out=i_g)
            c_out[t] += i_g
            np.tanh(c_out[t], out=tanh_c[t])
            np.multiply(o_all[t], tanh_c[t], out=h_out[t])


def lstm_backward_loop(gates, c_states, tanh_c, weight_hh, grad_output, dh, dc, reverse,
                       last_dh=True):
    """Overwrite gates (T, N, 4H) = [i f g o]_t with dL/dpre_t.

    dh, dc (N, H) enter as dL/dh_T, dL/dc_T and leave as dL/dh_0, dL/dc_0
    (with ``last_dh=False`` the GEMM of dL/dh_0 is skipped: dh is then stale).
    """
    T, N, G = gates.shape
    H = G // 4
    _, c_prev = state_views(c_states, reverse)
    upstream = np.empty((N, G), dtype=gates.dtype)  # dL/d[i f g o]_t
    u_i, u_f = upstream[:, :H], upstream[:, H:2 * H]
    u_g, u_o = upstream[:, 2 * H:3 * H], upstream[:, 3 * H:]
    local = np.empty((N, G), dtype=gates.dtype)  # d[i f g o]_t / dpre_t
    local_g = local[:, 2 * H:3 * H]
    tanh_sq = np.empty((N, H), dtype=gates.dtype)
    for k, t in enumerate(sweep(T, not reverse)):  # BPTT runs the sweep backwards
        act = gates[t]
        i, f, g, o = act[:, :H], act[:, H:2 * H], act[:, 2 * H:3 * H], act[:, 3 * H:]
        if grad_output is not None:
            dh += grad_output[t]
        np.multiply(dh, tanh_c[t], out=u_o)
        dh *= o  # dL/dtanh(c_t)
        np.multiply(tanh_c[t], tanh_c[t], out=tanh_sq)
        np.subtract(1, tanh_sq, out=tanh_sq)
        dh *= tanh_sq
        dc += dh  # dL/dc_t, whole
        np.multiply(dc, g, out=u_i)
        np.multiply(dc, c_prev[t], out=u_f)
        np.multiply(dc, i, out=u_g)
        dc *= f  # dL/dc_{t-1}
        np.subtract(1, act, out=local)
        local *= act  # s(1-s); the g slot is redone below
        np.multiply(g, g, out=local_g)
        np.subtract(1, local_g, out=local_g)
        np.multiply(upstream, local, out=act)  # dL/dpre_t replaces the activations
        if last_dh or k < T - 1:
            np.matmul(act, weight_hh, out=dh)  # dL/dh_{t-1}



def gru_forward_loop(gates, gh_n, states, weight_hh, bias_hn, reverse, zero_start=False,
                     step_product=None):
    """gates (T, N, 3H) hold gx_t (+ b_hr, b_hz) and receive [r z n]_t.

    gh_n (T, N, H) receives h_{t-1} W_hnᵀ + b_hn (bias_hn (H,) or None); states
    (T+1, N, H) holds the initial state and receives h_t. With ``zero_start``
    the initial h is zero and the first step's GEMM is skipped. ``step_product``
    (a faster path's) is ``(recur (N, 3H), prev) -> f(t)`` making f(t) write
    recur = h_{t-1} W_hhᵀ; by default NumPy's matmul does.
    """
    T, N, G = gates.shape
    H = G // 3
    out, prev = state_views(states, reverse)
    recur = np.zeros((N, G), dtype=gates.dtype)  # h_{t-1} W_hhᵀ
    if step_product is None:
        weight_hh_t = _recurrent_operand(weight_hh, T)  # (H, 3H)

        def product(t):
            np.matmul(prev[t], weight_hh_t, out=recur)
    else:
        product = step_product(recur, prev)
    r_h = np.empty((N, H), dtype=gates.dtype)  # r_t ⊙ gh_n
    with np.errstate(over="ignore"):
        for k, t in enumerate(sweep(T, reverse)):
            rz, n = gates[t][:, :2 * H], gates[t][:, 2 * H:]  # (N, 2H), (N, H)
            r, z = rz[:, :H], rz[:, H:]
            if k or not zero_start:
                product(t)
                rz += recur[:, :2 * H]
            if bias_hn is None:
                gh_n[t] = recur[:, 2 * H:]
            else:
                np.add(recur[:, 2 * H:], bias_hn, out=gh_n[t])
            _sigmoid_(rz)
            np.multiply(r, gh_n[t], out=r_h)
            n += r_h
            np.tanh(n, out=n)
            np.subtract(prev[t], n, out=out[t])  # h_t = n + z ⊙ (h_{t-1} - n)
            out[t] *= z
            out[t] += n


def gru_backward_loop(gates, gh_n, states, weight_hh, grad_output, dh, reverse, last_dh=True):
    """Overwrite gates (T, N, 3H) = [r z n]_t with dL/dgx_t and gh_n (T, N, H) with dL/dgh_n.

    dh (N, H) enters as dL/dh_T and leaves as dL/dh_0 (with ``last_dh=False``
    the GEMM of dL/dh_0 is skipped: dh is then stale).
    """
    T, N, G = gates.shape
    H = G // 3
    _, prev = state_views(states, reverse)
    upstream = np.empty((N, 2 * H), dtype=gates.dtype)  # dL/d[r z]_t
    u_r, u_z = upstream[:, :H], upstream[:, H:]
    local = np.empty((N, 2 * H), dtype=gates.dtype)  # d[r z]_t / d(pre-activation)
    d_gh = np.empty((N, G), dtype=gates.dtype)  # dL/dgh_t = [dgx_r, dgx_z, dgh_n]
    u_n = np.empty((N, H), dtype=gates.dtype)  # dL/dn_t
    tmp = np.empty((N, H), dtype=gates.dtype)
    for k, t in enumerate(sweep(T, not reverse)):  # BPTT runs the sweep backwards
        rz, n = gates[t][:, :2 * H], gates[t][:, 2 * H:]
        r, z = rz[:, :H], rz[:, H:]
        if grad_output is not None:
            dh += grad_output[t]
        np.subtract(prev[t], n, out=u_z)
        u_z *= dh
        np.subtract(1, z, out=u_n)
        u_n *= dh
        dh *= z  # the direct path h_{t-1} -> h_t
        np.multiply(n, n, out=tmp)
        np.subtract(1, tmp, out=tmp)
        np.multiply(u_n, tmp, out=n)  # dL/dgx_n replaces n
        np.multiply(n, gh_n[t], out=u_r)
        np.multiply(n, r, out=gh_n[t])  # dL/dgh_n replaces gh_n
        np.subtract(1, rz, out=local)
        local *= rz  # σ' = s(1 - s), for r and z at once
        np.multiply(upstream, local, out=rz)  # dL/dgx_[r z] replaces r, z
        if last_dh or k < T - 1:
            d_gh[:, :2 * H] = rz  # dL/dgh_[r z] = dL/dgx_[r z]
            d_gh[:, 2 * H:] = gh_n[t]
            np.matmul(d_gh, weight_hh, out=tmp)
            dh += tmp  # dL/dh_{t-1}
