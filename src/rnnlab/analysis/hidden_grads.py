"""Exact ∂L/∂h_t (and ∂L/∂c_t) along a sequence, for a loss on the last step only.

The backward recurrences of docs/bptt.md, written out in float64 from a
one-layer :class:`~rnnlab.models.SequenceModel`'s weights (the layers' own
backward sums over steps and keeps no per-step dh), so that the gradient
reaching every hidden state can be measured (what torch's ``retain_grad`` on
each h_t gives), for the Elman RNN, the LSTM and the GRU::

    RNN:   dh_T = ∂L/∂h_T;  dh_{t-1} = (dh_t ⊙ act'(pre_t)) W_hh
    LSTM:  dc_t = dc_t^{from t+1} + dh_t ⊙ o_t ⊙ (1 - tanh²c_t)
           dpre_t = [dc_t⊙g_t⊙i(1-i), dc_t⊙c_{t-1}⊙f(1-f), dc_t⊙i_t⊙(1-g²), dh_t⊙tanh c_t⊙o(1-o)]
           dh_{t-1} = dpre_t W_hh;  dc_{t-1}^{from t} = dc_t ⊙ f_t
    GRU:   dgx_n = dh_t ⊙ (1 - z_t) ⊙ (1 - n_t²)
           dgh_t = [dgx_n ⊙ gh_n ⊙ r(1-r), dh_t ⊙ (h_{t-1} - n_t) ⊙ z(1-z), dgx_n ⊙ r_t]
           dh_{t-1} = dh_t ⊙ z_t + dgh_t W_hh

Used by :mod:`rnnlab.experiments.gradient_flow`; tests/test_exp_gradient_flow.py
checks them against torch autograd (``retain_grad`` on every h_t and c_t).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["forward_states", "hidden_state_grads", "last_step_grad", "grad_norms", "decay_stats",
           "set_spectral_radius"]

_KINDS = ("rnn", "lstm", "gru")


def _weights(model):
    """(W_ih, W_hh, b_ih, b_hh, kind, nonlinearity) of a one-layer recurrent SequenceModel,
    in float64 (zero biases without bias)."""
    body = model.body
    if model.kind not in _KINDS or body.num_layers != 1 or body.bidirectional:
        raise ValueError("gradient flow is measured on one-layer, one-direction "
                         "RNN/LSTM/GRU models")
    w_ih = body.weight_ih_l0.data.astype(np.float64)
    w_hh = body.weight_hh_l0.data.astype(np.float64)
    zeros = np.zeros(w_hh.shape[0])
    b_ih = body.bias_ih_l0.data.astype(np.float64) if body.bias else zeros
    b_hh = body.bias_hh_l0.data.astype(np.float64) if body.bias else zeros
    return w_ih, w_hh, b_ih, b_hh, model.kind, body.nonlinearity


def _sigmoid(z):
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def forward_states(model, x):
    """The model's recurrence in float64 from its weights, with h_0 = c_0 = 0.

    Returns dict(h (T+1, N, H): h_0 .. h_T; c (T+1, N, H) for the LSTM, else None;
    gates: the activated gates, (T, N, 4H) i, f, g, o for the LSTM, (T, N, 3H) r, z, n
    for the GRU, None for the RNN; gh_n (T, N, H), the GRU's h_{t-1} W_hnᵀ + b_hn).
    """
    w_ih, w_hh, b_ih, b_hh, kind, act = _weights(model)
    x = np.asarray(x, dtype=np.float64)
    T, N, _ = x.shape
    H = w_hh.shape[1]
    h = np.zeros((T + 1, N, H))
    if kind == "gru":  # b_hn sits inside r ⊙ (...): the two parts stay apart
        gx = x @ w_ih.T + b_ih  # (T, N, 3H)
        gates, gh_n = np.empty((T, N, 3 * H)), np.empty((T, N, H))
        for t in range(T):
            gh = h[t] @ w_hh.T + b_hh
            r = _sigmoid(gx[t, :, :H] + gh[:, :H])
            z = _sigmoid(gx[t, :, H:2 * H] + gh[:, H:2 * H])
            n = np.tanh(gx[t, :, 2 * H:] + r * gh[:, 2 * H:])
            gates[t], gh_n[t] = np.concatenate([r, z, n], axis=1), gh[:, 2 * H:]
            h[t + 1] = (1 - z) * n + z * h[t]
        return {"h": h, "c": None, "gates": gates, "gh_n": gh_n}
    proj = x @ w_ih.T + b_ih + b_hh  # (T, N, G·H), the input part of every pre-activation
    if kind == "rnn":
        for t in range(T):
            pre = proj[t] + h[t] @ w_hh.T
            h[t + 1] = np.tanh(pre) if act == "tanh" else np.maximum(pre, 0.0)
        return {"h": h, "c": None, "gates": None}
    c = np.zeros((T + 1, N, H))
    gates = np.empty((T, N, 4 * H))
    for t in range(T):
        pre = proj[t] + h[t] @ w_hh.T
        i, f = _sigmoid(pre[:, :H]), _sigmoid(pre[:, H:2 * H])
        g, o = np.tanh(pre[:, 2 * H:3 * H]), _sigmoid(pre[:, 3 * H:])
        gates[t] = np.concatenate([i, f, g, o], axis=1)
        c[t + 1] = f * c[t] + i * g
        h[t + 1] = o * np.tanh(c[t + 1])
    return {"h": h, "c": c, "gates": gates}


def hidden_state_grads(model, x, grad_h_last, states=None):
    """Exact ∂L/∂h_t (and ∂L/∂c_t for the LSTM) for t = 1..T, for a loss on h_T only.

    The backward recurrence of docs/bptt.md in float64, started at
    dh_T = ``grad_h_last``, over the states of :func:`forward_states` (computed
    here unless given). ∂L/∂h_t is the total derivative through every later
    step, which is what torch's ``h_t.grad`` holds; for the LSTM, ∂L/∂c_t likewise.

    Shapes: x (T, N, F), grad_h_last (N, H) ->
    (dh (T, N, H), dc (T, N, H) or None but for the LSTM), float64; index t-1 holds step t.
    """
    _, w_hh, _, _, kind, act = _weights(model)
    if states is None:
        states = forward_states(model, x)
    h = states["h"]
    T, N, H = h.shape[0] - 1, h.shape[1], h.shape[2]
    dh = np.empty((T, N, H))
    dh[T - 1] = grad_h_last
    if kind == "rnn":
        for t in range(T - 1, 0, -1):  # array index t holds step t+1, whose state is h[t+1]
            d_act = 1.0 - h[t + 1] ** 2 if act == "tanh" else (h[t + 1] > 0).astype(np.float64)
            dh[t - 1] = (dh[t] * d_act) @ w_hh
        return dh, None
    if kind == "gru":
        gates, gh_n = states["gates"], states["gh_n"]
        for t in range(T - 1, 0, -1):
            r, z, n = (gates[t][:, k * H:(k + 1) * H] for k in range(3))
            d_gx_n = dh[t] * (1 - z) * (1 - n ** 2)
            d_gh = np.concatenate([d_gx_n * gh_n[t] * r * (1 - r),
                                   dh[t] * (h[t] - n) * z * (1 - z), d_gx_n * r], axis=1)
            dh[t - 1] = dh[t] * z + d_gh @ w_hh
        return dh, None
    c, gates = states["c"], states["gates"]
    dc = np.empty((T, N, H))
    dc_next = np.zeros((N, H))  # the part of ∂L/∂c_t that flows back from c_{t+1}
    for t in range(T - 1, -1, -1):
        i, f, g, o = (gates[t][:, k * H:(k + 1) * H] for k in range(4))
        tanh_c = np.tanh(c[t + 1])
        dc[t] = dc_next + dh[t] * o * (1.0 - tanh_c ** 2)
        if t == 0:
            break
        d_pre = np.concatenate([dc[t] * g * i * (1 - i), dc[t] * c[t] * f * (1 - f),
                                dc[t] * i * (1 - g ** 2), dh[t] * tanh_c * o * (1 - o)], axis=1)
        dh[t - 1] = d_pre @ w_hh
        dc_next = dc[t] * f
    return dh, dc


def last_step_grad(model, h_last, y):
    """∂L/∂h_T for L = MSE(head(h_T), y) (mean over the batch), in float64.

    Shapes: h_last (N, H), y (N, 1) -> (N, H).
    """
    w = model.head.weight.data.astype(np.float64)
    b = model.head.bias.data.astype(np.float64)
    pred = h_last @ w.T + b
    d_pred = 2.0 * (pred - y) / pred.size
    return d_pred @ w


def grad_norms(model, x, y):
    """‖∂L/∂h_t‖ (and ‖∂L/∂c_t‖ for the LSTM) for t = 1..T, with the decay ratio.

    The norm is the Frobenius norm of the (N, H) gradient of the batch-mean loss.
    Returns dict(h: list of T norms, c: list or None, decay_ratio: ‖∂L/∂h_1‖ / ‖∂L/∂h_T‖,
    log10_decay; for the LSTM also forget_gate_mean, the mean f_t over steps, batch and units,
    and forget_gate_max_unit, the largest per-unit mean: the most persistent memory cell).
    """
    states = forward_states(model, x)
    grad_last = last_step_grad(model, states["h"][-1], np.asarray(y, dtype=np.float64))
    dh, dc = hidden_state_grads(model, x, grad_last, states)
    out = {"h": np.sqrt(np.einsum("tnh,tnh->t", dh, dh)).tolist(), "c": None}
    if dc is not None:
        H = dc.shape[2]
        out["c"] = np.sqrt(np.einsum("tnh,tnh->t", dc, dc)).tolist()
        unit_forget = states["gates"][:, :, H:2 * H].mean(axis=(0, 1))  # (H,) mean f per unit
        out["forget_gate_mean"] = float(unit_forget.mean())
        out["forget_gate_max_unit"] = float(unit_forget.max())
    out.update(decay_stats(out["h"]))
    return out


def decay_stats(norms):
    """decay_ratio = norms[0] / norms[-1] and its log10 (None when not finite or undefined)."""
    first, last = float(norms[0]), float(norms[-1])
    if not (math.isfinite(first) and math.isfinite(last)) or last == 0.0:
        return {"decay_ratio": None, "log10_decay": None}
    ratio = first / last
    return {"decay_ratio": ratio, "log10_decay": math.log10(ratio) if ratio > 0 else -math.inf}


def set_spectral_radius(weight, radius):
    """Scale a square weight in place so that its largest |eigenvalue| is ``radius``."""
    current = float(np.max(np.abs(np.linalg.eigvals(weight.astype(np.float64)))))
    weight *= np.asarray(radius / current, dtype=weight.dtype)
    return current
