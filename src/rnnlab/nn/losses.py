"""Loss modules: ``loss = loss_fn(pred, target)`` returns a float (mean reduction);
``loss_fn.backward()`` returns dloss/dpred, shaped like ``pred``."""

from __future__ import annotations

import numpy as np

from ..functional.losses import cross_entropy, mse
from ._checks import check_array, require_cache
from .module import Module


def _check_pred(pred, name):
    if not isinstance(pred, np.ndarray) or pred.dtype.kind != "f":
        raise TypeError(f"{name} pred: expected a float ndarray, got "
                        f"{getattr(pred, 'dtype', type(pred).__name__)}")
    return check_array(pred, f"{name} pred", pred.dtype)


class MSELoss(Module):
    """Mean squared error ``L = mean((pred - target)²)``.

    Shape: pred (*) and target (*), equal shapes and dtypes (no broadcasting) -> float.
    """

    def __init__(self):
        super().__init__()
        self._grad = None

    def forward(self, pred, target):
        _check_pred(pred, "MSELoss")
        check_array(target, "MSELoss target", pred.dtype, shape=pred.shape)
        loss, self._grad = mse(pred, target)
        return loss

    def backward(self):
        """dL/dpred = 2 (pred - target) / pred.size, shaped like pred."""
        require_cache(self._grad, self)
        grad, self._grad = self._grad, None
        return grad


class CrossEntropyLoss(Module):
    """Softmax cross-entropy from logits, ``L = mean_n(logsumexp(z_n) - z_n[y_n])``.

    Shape: logits (N, C) float; target (N,) integer class indices in [0, C) -> float.
    """

    def __init__(self):
        super().__init__()
        self._grad = None

    def forward(self, logits, target):
        _check_pred(logits, "CrossEntropyLoss")
        if logits.ndim != 2:
            raise ValueError(f"CrossEntropyLoss logits: expected 2-D (N, C), got shape {logits.shape}")
        n, c = logits.shape
        if not isinstance(target, np.ndarray) or target.dtype.kind not in "iu":
            raise TypeError(f"CrossEntropyLoss target: expected an integer ndarray of class indices, "
                            f"got {getattr(target, 'dtype', type(target).__name__)}")
        if target.shape != (n,):
            raise ValueError(f"CrossEntropyLoss target: expected shape ({n},), got {target.shape}")
        if target.min() < 0 or target.max() >= c:
            raise ValueError(f"CrossEntropyLoss target: expected classes in [0, {c}), "
                             f"got values in [{target.min()}, {target.max()}]")
        loss, self._grad = cross_entropy(logits, target)
        return loss

    def backward(self):
        """dL/dlogits = (softmax(logits) - onehot(target)) / N, shape (N, C)."""
        require_cache(self._grad, self)
        grad, self._grad = self._grad, None
        return grad
