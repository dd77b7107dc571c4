"""SGD with momentum, dampening, Nesterov and weight decay: torch.optim.SGD's update."""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable

import numpy as np

from ..kernels.sgd import compiled_update
from ..nn.module import Parameter
from .optimizer import Optimizer, _non_negative, _real

__all__ = ["SGD"]


class SGD(Optimizer):
    r"""Stochastic gradient descent, optionally with momentum, as ``torch.optim.SGD``.

    Args:
        params (iterable of Parameter): the parameters to optimise, e.g.
            ``model.parameters()``; stored as a list, must not be empty.
        lr (float): learning rate, >= 0.
        momentum (float, optional): momentum factor, >= 0. Default: 0.
        dampening (float, optional): dampening for momentum. Default: 0.
        nesterov (bool, optional): Nesterov momentum; needs ``momentum > 0``
            and ``dampening == 0``. Default: False.
        weight_decay (float, optional): L2 penalty, >= 0, added to the
            gradient. Default: 0.

    The update of each parameter ``p`` with gradient ``g`` at step ``t``
    (``t = 1, 2, ...``)::

        if weight_decay != 0:
            g = g + weight_decay * p
        if momentum != 0:
            if t == 1:                        # the buffer does not exist yet
                momentum_buffer = g           # (a copy; no dampening here)
            else:
                momentum_buffer = momentum * momentum_buffer + (1 - dampening) * g
            if nesterov:
                g = g + momentum * momentum_buffer
            else:
                g = momentum_buffer
        p = p - lr * g

    ``p.grad`` itself is never modified.

    Attributes:
        state[i]["momentum_buffer"] (ndarray): shape and dtype of ``params[i]``,
            created at the first step with ``momentum != 0``.

    Raises:
        ValueError: ``lr``, ``momentum`` or ``weight_decay`` negative or NaN;
            ``nesterov`` without positive momentum and zero dampening; an empty
            or duplicated parameter list.
        TypeError: a hyperparameter that is not a real number.
    """

    _buffer_names = ("momentum_buffer",)

    def __init__(self, params: Iterable[Parameter], lr: float, momentum: float = 0,
                 dampening: float = 0, nesterov: bool = False, weight_decay: float = 0):
        hyper = self._validate(lr=lr, momentum=momentum, dampening=dampening,
                               nesterov=nesterov, weight_decay=weight_decay)
        super().__init__(params)
        self._set_hyperparameters(hyper)

    @staticmethod
    def _validate(lr, momentum, dampening, nesterov, weight_decay) -> dict[str, Any]:
        lr = _non_negative("learning rate", lr)
        momentum = _non_negative("momentum", momentum)
        dampening = _real("dampening", dampening)
        if not math.isfinite(dampening):
            raise ValueError(f"Invalid dampening: {dampening!r} (expected a finite number)")
        weight_decay = _non_negative("weight_decay", weight_decay)
        if not isinstance(nesterov, (bool, np.bool_)):
            raise TypeError(f"nesterov must be a bool, got {nesterov!r}")
        nesterov = bool(nesterov)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError(f"Nesterov momentum requires a momentum and zero dampening, "
                             f"got momentum={momentum!r}, dampening={dampening!r}")
        return {"_lr": lr, "momentum": momentum, "dampening": dampening,
                "nesterov": nesterov, "weight_decay": weight_decay}

    def hyperparameters(self) -> dict[str, Any]:
        return {"lr": self.lr, "momentum": self.momentum, "dampening": self.dampening,
                "nesterov": self.nesterov, "weight_decay": self.weight_decay}

    def _check_loaded_state(self, step, state):
        if step == 0 and any(state):
            raise ValueError("state_dict has step 0 but holds momentum buffers")

    def step(self, closure: Callable[[], Any] | None = None):
        """One update of every parameter (see the class docstring).

        Args:
            closure (callable, optional): re-evaluates the model and returns
                the loss; called first, its result returned.
        """
        loss = closure() if closure is not None else None
        lr, momentum, dampening = self.lr, self.momentum, self.dampening
        nesterov, weight_decay = self.nesterov, self.weight_decay
        for i, p in enumerate(self.params):
            self._check_param(i, p)
            d, g, s = p.data, p.grad, self._scratch[i]

            buf = self.state[i].get("momentum_buffer") if momentum != 0 else None
            # One compiled pass instead of 2-6 NumPy passes, when it can run (see kernels.sgd).
            if compiled_update(d, g, buf, s, lr, momentum, dampening, weight_decay, nesterov):
                continue

            if weight_decay != 0:
                np.multiply(d, weight_decay, out=s)
                s += g                                    # s = g + weight_decay * p
                g = s

            if momentum != 0:
                st = self.state[i]
                buf = st.get("momentum_buffer")
                if buf is None:                           # first step: buf = g (a copy)
                    buf = st["momentum_buffer"] = np.empty_like(d)
                    np.copyto(buf, g)
                else:
                    buf *= momentum
                    if dampening != 0:
                        # nesterov excludes dampening, so g (maybe s) is dead after this
                        np.multiply(g, 1 - dampening, out=s)
                        buf += s                          # buf = m*buf + (1-dampening)*g
                    else:
                        buf += g                          # buf = m*buf + g
                if nesterov:
                    if g is s:
                        # s holds the decayed grad and no second workspace is kept:
                        # p -= lr*g, then p -= lr*momentum*buf (same sum, two roundings).
                        s *= -lr
                        d += s
                        np.multiply(buf, -lr * momentum, out=s)
                        d += s
                        continue
                    np.multiply(buf, momentum, out=s)
                    s += g                                # s = g + momentum * buf
                    g = s
                else:
                    g = buf

            np.multiply(g, -lr, out=s)
            d += s                                        # p = p - lr * g
        self.step_count += 1
        return loss
