"""Adam: torch.optim.Adam's update (single-tensor path, no amsgrad), in place."""

from __future__ import annotations

from typing import Any, Callable, Iterable

import numpy as np

from ..nn.module import Parameter
from .optimizer import Optimizer, _non_negative, _real

__all__ = ["Adam"]


class Adam(Optimizer):
    r"""Adam with L2 weight decay (not AdamW), as ``torch.optim.Adam``.

    Args:
        params (iterable of Parameter): the parameters to optimise, e.g.
            ``model.parameters()``; stored as a list, must not be empty.
        lr (float, optional): learning rate, >= 0. Default: 1e-3.
        betas (tuple[float, float], optional): ``(beta1, beta2)``, the decay
            rates of the running averages of the gradient and of its square,
            each in [0, 1). Default: (0.9, 0.999).
        eps (float, optional): >= 0, added to the denominator. Default: 1e-8.
        weight_decay (float, optional): L2 penalty, >= 0, added to the
            gradient (coupled, as torch's ``Adam``; not ``AdamW``). Default: 0.

    The update of each parameter ``p`` with gradient ``g`` at step ``t``
    (``t = 1, 2, ...``; ``exp_avg`` and ``exp_avg_sq`` start at zero)::

        if weight_decay != 0:
            g = g + weight_decay * p
        exp_avg    = beta1 * exp_avg    + (1 - beta1) * g
        exp_avg_sq = beta2 * exp_avg_sq + (1 - beta2) * g * g
        bias_correction1 = 1 - beta1 ** t
        bias_correction2 = 1 - beta2 ** t
        step_size = lr / bias_correction1
        denom = sqrt(exp_avg_sq) / sqrt(bias_correction2) + eps
        p = p - step_size * exp_avg / denom

    ``eps`` is added *after* the bias-corrected square root, as in torch (so
    it is not ``eps / sqrt(bias_correction2)`` inside the uncorrected form).
    ``exp_avg`` is updated as ``g + beta1 * (exp_avg - g)``, the same value
    as torch's ``lerp_`` (within rounding). ``p.grad`` is never modified.

    Attributes:
        state[i]["exp_avg"], state[i]["exp_avg_sq"] (ndarray): shape and dtype
            of ``params[i]``, created (zero) at the first step.

    Raises:
        ValueError: ``lr``, ``eps`` or ``weight_decay`` negative or NaN; a beta
            outside [0, 1); an empty or duplicated parameter list.
        TypeError: a hyperparameter that is not a real number, or betas that
            are not a pair.
    """

    _buffer_names = ("exp_avg", "exp_avg_sq")

    def __init__(self, params: Iterable[Parameter], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0):
        hyper = self._validate(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
        super().__init__(params)
        self._set_hyperparameters(hyper)

    @staticmethod
    def _validate(lr, betas, eps, weight_decay) -> dict[str, Any]:
        lr = _non_negative("learning rate", lr)
        if isinstance(betas, (str, bytes)) or not hasattr(betas, "__len__") or len(betas) != 2:
            raise TypeError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        beta1, beta2 = _real("beta1", betas[0]), _real("beta2", betas[1])
        if not 0.0 <= beta1 < 1.0:
            raise ValueError(f"Invalid beta parameter at index 0: {beta1!r} (expected in [0, 1))")
        if not 0.0 <= beta2 < 1.0:
            raise ValueError(f"Invalid beta parameter at index 1: {beta2!r} (expected in [0, 1))")
        eps = _non_negative("epsilon value", eps)
        weight_decay = _non_negative("weight_decay", weight_decay)
        return {"_lr": lr, "betas": (beta1, beta2), "eps": eps, "weight_decay": weight_decay}

    def hyperparameters(self) -> dict[str, Any]:
        return {"lr": self.lr, "betas": tuple(self.betas), "eps": self.eps,
                "weight_decay": self.weight_decay}

    def _check_loaded_state(self, step, state):
        for i, st in enumerate(state):
            if step == 0 and st:
                raise ValueError(f"state_dict has step 0 but holds buffers for parameter {i}")
            if step > 0 and set(st) != set(self._buffer_names):
                missing = sorted(set(self._buffer_names) - set(st))
                raise ValueError(f"state_dict has step {step} but parameter {i} "
                                 f"lacks buffers {missing}")

    def step(self, closure: Callable[[], Any] | None = None):
        """One update of every parameter (see the class docstring).

        Args:
            closure (callable, optional): re-evaluates the model and returns
                the loss; called first, its result returned.
        """
        loss = closure() if closure is not None else None
        lr, (beta1, beta2), eps, weight_decay = self.lr, self.betas, self.eps, self.weight_decay
        t = self.step_count + 1
        bias_correction1 = 1 - beta1 ** t
        bias_correction2 = 1 - beta2 ** t
        step_size = lr / bias_correction1
        bias_correction2_sqrt = bias_correction2 ** 0.5
        # All Python floats: float32 parameters stay in float32 arithmetic.
        for i, p in enumerate(self.params):
            self._check_param(i, p)
            d, g, s = p.data, p.grad, self._scratch[i]
            st = self.state[i]
            if not st:
                st["exp_avg"] = np.zeros_like(d)
                st["exp_avg_sq"] = np.zeros_like(d)
            exp_avg, exp_avg_sq = st["exp_avg"], st["exp_avg_sq"]

            if weight_decay != 0:
                np.multiply(d, weight_decay, out=s)
                s += g                                    # s = g + weight_decay * p
                g = s

            exp_avg -= g
            exp_avg *= beta1
            exp_avg += g                                  # = beta1*exp_avg + (1-beta1)*g

            np.multiply(g, g, out=s)                      # g is dead after this
            s *= 1 - beta2
            exp_avg_sq *= beta2
            exp_avg_sq += s                               # = beta2*exp_avg_sq + (1-beta2)*g*g

            np.sqrt(exp_avg_sq, out=s)
            s /= bias_correction2_sqrt
            s += eps                                      # s = denom
            np.divide(exp_avg, s, out=s)
            s *= -step_size
            d += s                                        # p = p - step_size*exp_avg/denom
        self.step_count = t
        return loss
