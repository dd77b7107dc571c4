"""clip_grad_norm_: torch.nn.utils.clip_grad_norm_, with the norm accumulated in float64."""

from __future__ import annotations

import math
from typing import Iterable

import numpy as np

from ..nn.module import Parameter
from .optimizer import _non_negative

__all__ = ["clip_grad_norm_"]


def _sum_of_squares(g: np.ndarray) -> float:
    """sum(g**2) accumulated in float64, with no full-size temporary."""
    if g.dtype == np.float64 and g.flags.c_contiguous:
        v = g.reshape(-1)
        return float(np.dot(v, v))
    s = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"[:g.ndim]
    return float(np.einsum(f"{s},{s}->", g, g, dtype=np.float64, casting="safe"))


def clip_grad_norm_(parameters: Parameter | Iterable[Parameter], max_norm: float,
                    norm_type: float = 2.0, error_if_nonfinite: bool = False) -> float:
    r"""Scale all gradients in place so that their joint norm is at most ``max_norm``.

    As ``torch.nn.utils.clip_grad_norm_``: the norm is taken over all
    gradients as if they were concatenated into one vector, then::

        total_norm = (sum_i ||grad_i||_p ** p) ** (1/p)      # or max_i max|grad_i| for p = inf
        clip_coef  = max_norm / (total_norm + 1e-6)
        if clip_coef < 1:  grad_i *= clip_coef               # for every i

    (torch multiplies by ``min(clip_coef, 1)`` unconditionally; multiplying by
    1 is skipped here, with identical results.)

    Non-finite norm: with ``error_if_nonfinite=False`` (the default) this does
    what torch does: a NaN norm gives a NaN coefficient and every gradient
    becomes NaN; an infinite norm gives a zero coefficient, so finite entries
    become 0 and infinite ones NaN. The non-finite norm is returned. With
    ``error_if_nonfinite=True`` a ``RuntimeError`` is raised and nothing changes.

    Accuracy: the 2-norm and p-norms are accumulated in float64 whatever the
    gradient dtype (torch accumulates in the gradient's dtype), so a float32
    result can differ from torch's in the last bits. The 2-norm and inf-norm
    paths allocate no gradient-sized temporary.

    Args:
        parameters (Parameter or iterable of Parameter): whose ``.grad`` to clip.
        max_norm (float): the largest allowed norm, >= 0.
        norm_type (float, optional): p of the p-norm, > 0, or ``inf`` (also
            ``"inf"``) for the max-abs norm. Default: 2.0.
        error_if_nonfinite (bool, optional): raise instead of scaling when the
            total norm is NaN or infinite. Default: False.

    Returns:
        float: the total norm of the gradients *before* clipping (0.0 for no
        parameters).

    Raises:
        ValueError: negative or NaN ``max_norm``; ``norm_type`` not > 0 (torch
            also accepts 0 and -inf, this does not).
        RuntimeError: non-finite norm with ``error_if_nonfinite=True``.
    """
    if isinstance(parameters, Parameter):
        parameters = [parameters]
    grads = [p.grad for p in parameters]
    max_norm = _non_negative("max_norm", max_norm)
    norm_type = float(norm_type)
    if not norm_type > 0:
        raise ValueError(f"Invalid norm_type: {norm_type!r} (expected > 0 or inf)")
    if not grads:
        return 0.0

    if math.isinf(norm_type):
        # max|g| as two reductions, with no |g| temporary; NaN propagates.
        norms = [max(float(g.max()), -float(g.min())) for g in grads if g.size]
        total_norm = math.nan if any(math.isnan(n) for n in norms) else max(norms, default=0.0)
    elif norm_type == 2.0:
        total_norm = math.sqrt(sum(_sum_of_squares(g) for g in grads))
    else:
        acc = 0.0
        for g in grads:
            a = np.empty(g.shape, np.float64)  # |g|**p in float64 (a temporary)
            np.abs(g, out=a)
            np.power(a, norm_type, out=a)
            acc += float(a.sum())
        total_norm = acc ** (1.0 / norm_type)

    if error_if_nonfinite and not math.isfinite(total_norm):
        raise RuntimeError(f"The total norm of order {norm_type} for gradients is non-finite "
                           f"({total_norm}), so it cannot be clipped; set "
                           f"error_if_nonfinite=False to scale by it anyway")
    clip_coef = max_norm / (total_norm + 1e-6)
    if not clip_coef >= 1.0:  # also true for NaN, as torch.clamp(nan, max=1) is NaN
        with np.errstate(invalid="ignore"):  # inf * 0 -> NaN, as in torch, silently
            for g in grads:
                g *= clip_coef
    return total_norm
