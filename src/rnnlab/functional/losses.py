"""Losses, each returning ``(loss, grad_pred)`` with mean reduction.

    mse:            L = mean((pred - target)**2)
                    dL/dpred = 2 (pred - target) / numel
    cross_entropy:  L = mean_n( logsumexp(z_n) - z_n[y_n] )
                    dL/dz = (softmax(z) - onehot(y)) / N
"""

from __future__ import annotations

import numpy as np


def mse(pred: np.ndarray, target: np.ndarray):
    """Mean squared error. Shapes: pred and target equal, any -> (float, grad like pred)."""
    diff = pred - target
    loss = float(np.mean(diff * diff, dtype=np.float64))
    grad = diff * (2.0 / diff.size)
    return loss, grad.astype(pred.dtype, copy=False)


def cross_entropy(logits: np.ndarray, target: np.ndarray):
    """Softmax cross-entropy from logits, stable by log-sum-exp.

    Shapes: logits (N, C), target (N,) integer classes in [0, C) -> (float, (N, C)).
    """
    n = logits.shape[0]
    shifted = logits - logits.max(axis=1, keepdims=True)  # (N, C), max 0 per row
    exp = np.exp(shifted)
    sum_exp = exp.sum(axis=1, keepdims=True)  # (N, 1)
    log_prob_target = shifted[np.arange(n), target] - np.log(sum_exp[:, 0])  # (N,)
    loss = float(-np.mean(log_prob_target, dtype=np.float64))
    grad = exp / sum_exp  # softmax (N, C)
    grad[np.arange(n), target] -= 1
    grad /= n
    return loss, grad
