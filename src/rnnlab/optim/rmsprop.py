"""RMSprop: torch.optim.RMSprop's update (uncentered, no momentum), in place."""

from __future__ import annotations

from typing import Any, Callable, Iterable

import numpy as np

from ..nn.module import Parameter
from .adam import Adam
from .optimizer import Optimizer, _non_negative, _real

__all__ = ["RMSprop"]


class RMSprop(Optimizer):
    r"""RMSprop (uncentered, no momentum), as ``torch.optim.RMSprop``.

    Args:
        params (iterable of Parameter): the parameters to optimise; must not be empty.
        lr (float, optional): learning rate, >= 0. Default: 1e-2 (torch's).
        alpha (float, optional): decay rate of the running average of the
            squared gradient, in [0, 1). Default: 0.99.
        eps (float, optional): >= 0, added to the denominator. Default: 1e-8.
        weight_decay (float, optional): L2 penalty, >= 0, added to the gradient. Default: 0.

    The update of each parameter ``p`` with gradient ``g`` (``square_avg`` starts at zero)::

        if weight_decay != 0:
            g = g + weight_decay * p
        square_avg = alpha * square_avg + (1 - alpha) * g * g
        p = p - lr * g / (sqrt(square_avg) + eps)

    ``p.grad`` is never modified.

    Attributes:
        state[i]["square_avg"] (ndarray): shape and dtype of ``params[i]``,
            created (zero) at the first step.

    Raises:
        ValueError: ``lr``, ``eps`` or ``weight_decay`` negative or NaN, ``alpha``
            outside [0, 1); an empty or duplicated parameter list.
        TypeError: a hyperparameter that is not a real number.
    """

    _buffer_names = ("square_avg",)

    def __init__(self, params: Iterable[Parameter], lr: float = 1e-2, alpha: float = 0.99,
                 eps: float = 1e-8, weight_decay: float = 0):
        hyper = self._validate(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay)
        super().__init__(params)
        self._set_hyperparameters(hyper)
        self._decay_scratch: dict[int, np.ndarray] = {}

    @staticmethod
    def _validate(lr, alpha, eps, weight_decay) -> dict[str, Any]:
        lr = _non_negative("learning rate", lr)
        alpha = _real("alpha", alpha)
        if not 0.0 <= alpha < 1.0:
            raise ValueError(f"Invalid alpha value: {alpha!r} (expected in [0, 1))")
        return {"_lr": lr, "alpha": alpha, "eps": _non_negative("epsilon value", eps),
                "weight_decay": _non_negative("weight_decay", weight_decay)}

    def hyperparameters(self) -> dict[str, Any]:
        return {"lr": self.lr, "alpha": self.alpha, "eps": self.eps,
                "weight_decay": self.weight_decay}

    _check_loaded_state = Adam._check_loaded_state  # buffers exist exactly from step 1 on

    def step(self, closure: Callable[[], Any] | None = None):
        """One update of every parameter (see the class docstring); returns closure()'s loss."""
        loss = closure() if closure is not None else None
        lr, alpha, eps, weight_decay = self.lr, self.alpha, self.eps, self.weight_decay
        for i, p in enumerate(self.params):
            self._check_param(i, p)
            d, g, s = p.data, p.grad, self._scratch[i]
            st = self.state[i]
            if not st:
                st["square_avg"] = np.zeros_like(d)
            square_avg = st["square_avg"]
            work = s
            if weight_decay != 0:
                np.multiply(d, weight_decay, out=s)
                s += g                                    # s = g + weight_decay * p
                g = s
                if i not in self._decay_scratch:          # a second buffer, made once
                    self._decay_scratch[i] = np.empty_like(d)
                work = self._decay_scratch[i]
            np.multiply(g, g, out=work)
            work *= 1 - alpha
            square_avg *= alpha
            square_avg += work                            # = alpha*square_avg + (1-alpha)*g*g
            np.sqrt(square_avg, out=work)
            work += eps
            np.divide(g, work, out=work)
            work *= -lr
            d += work                                     # p = p - lr * g / (sqrt(sq) + eps)
        self.step_count += 1
        return loss
