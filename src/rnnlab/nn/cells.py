"""Recurrent cells, one time step each: RNNCell and LSTMCell.

Names, shapes, gate order and init are torch's (see :mod:`rnnlab.nn.recurrent`);
a step runs the same functional code as a one-step sequence.
"""

from __future__ import annotations

import numpy as np

from ._checks import check_array, check_dtype, check_positive_int, require_cache
from ._recurrent_base import GATES, _check_nonlinearity, _RecurrentBase


class _Cell(_RecurrentBase):
    """One time step; parameters weight_ih, weight_hh, bias_ih, bias_hh as in torch.

    ``backward`` differentiates the most recent ``forward``: to backpropagate
    through a loop of cell calls, use :class:`RNN`/:class:`LSTM` instead.
    """

    def __init__(self, mode, input_size, hidden_size, bias, nonlinearity, dtype, rng):
        super().__init__()
        self.mode = mode
        self.gates = GATES[mode]
        self.input_size = check_positive_int(input_size, "input_size")
        self.hidden_size = check_positive_int(hidden_size, "hidden_size")
        self.bias = bool(bias)
        self.nonlinearity = _check_nonlinearity(nonlinearity)
        self.dtype = check_dtype(dtype)
        self._init_parameters(rng, [("", self.input_size)])
        self._cache = None

    def _step_forward(self, x, states):
        name = type(self).__name__
        check_array(x, f"{name} input", self.dtype, ndims=(1, 2), last_dim=self.input_size)
        batched = x.ndim == 2
        xb = x if batched else x[None, :]
        N, H = xb.shape[0], self.hidden_size
        shape = (N, H) if batched else (H,)
        if states is None:
            states = tuple(np.zeros((N, H), dtype=self.dtype) for _ in range(self._n_states))
        else:
            names = ("h", "c") if self.mode == "LSTM" else ("h",)
            for n, s in zip(names, states):
                check_array(s, f"{name} {n}", self.dtype, shape=shape)
            states = tuple(s if batched else s[None, :] for s in states)
        out, finals, cache = self._run_forward(np.ascontiguousarray(xb)[None], states, "", False)
        self._cache = (cache, batched, N)
        finals = tuple(f.copy() for f in finals)  # (N, H) each, detached from the cache
        return finals if batched else tuple(f[0] for f in finals)

    def _step_backward(self, grad_states):
        require_cache(self._cache, self)
        cache, batched, N = self._cache
        shape = (N, self.hidden_size) if batched else (self.hidden_size,)
        checked = []
        for k, g in enumerate(grad_states):
            if g is not None:
                check_array(g, f"{type(self).__name__} grad of state {k}", self.dtype, shape=shape)
                g = g if batched else g[None, :]
            checked.append(g)
        self._cache = None
        # The new h is the step's only output, so its gradient enters as grad_h_n.
        grad_x, grad_states = self._run_backward(cache, None, tuple(checked), "")
        grad_x = grad_x[0]
        if not batched:
            grad_x, grad_states = grad_x[0], tuple(g[0] for g in grad_states)
        return grad_x, grad_states

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        if not self.bias:
            s += ", bias=False"
        if self.mode != "LSTM" and self.nonlinearity != "tanh":
            s += f", nonlinearity={self.nonlinearity!r}"
        return s + f", dtype={self.dtype}"


class _SingleStateCell(_Cell):
    """forward/backward of the cells whose state is h alone (RNNCell and GRUCell)."""

    def forward(self, x, h=None):
        """x, h -> h'."""
        (h_new,) = self._step_forward(x, None if h is None else (h,))
        return h_new

    def backward(self, grad_h_new):
        """grad_h' -> (grad_x, grad_h); adds the parameter gradients."""
        grad_x, (grad_h,) = self._step_backward((grad_h_new,))
        return grad_x, grad_h


class RNNCell(_SingleStateCell):
    """One Elman step ``h' = act(x W_ihᵀ + b_ih + h W_hhᵀ + b_hh)``.

    Shape: x (N, I) or (I,); h (N, H) or (H,), None for zeros -> h' like h.
    Attributes: weight_ih (H, I), weight_hh (H, H), bias_ih, bias_hh (H,), U(-1/√H, 1/√H).
    """

    def __init__(self, input_size, hidden_size, bias=True, nonlinearity="tanh", *,
                 dtype=np.float32, rng=None):
        super().__init__("RNN", input_size, hidden_size, bias, nonlinearity, dtype, rng)



class LSTMCell(_Cell):
    """One LSTM step: gates i, f, g, o from ``x W_ihᵀ + b_ih + h W_hhᵀ + b_hh``,
    ``c' = f ⊙ c + i ⊙ g``, ``h' = o ⊙ tanh(c')``.

    Shape: x (N, I) or (I,); (h, c) each (N, H) or (H,), None for zeros -> (h', c').
    Attributes: weight_ih (4H, I), weight_hh (4H, H), bias_ih, bias_hh (4H,), U(-1/√H, 1/√H).
    """

    def __init__(self, input_size, hidden_size, bias=True, *, dtype=np.float32, rng=None):
        super().__init__("LSTM", input_size, hidden_size, bias, "tanh", dtype, rng)

    def forward(self, x, hx=None):
        """x, (h, c) -> (h', c')."""
        if hx is not None and not (isinstance(hx, tuple) and len(hx) == 2):
            raise TypeError(f"LSTMCell hx: expected a tuple (h, c) or None, got {type(hx).__name__}")
        h_new, c_new = self._step_forward(x, hx)
        return h_new, c_new

    def backward(self, grad_hx):
        """(grad_h', grad_c') -> (grad_x, (grad_h, grad_c)); either entry may be None."""
        if not (isinstance(grad_hx, tuple) and len(grad_hx) == 2):
            raise TypeError(f"LSTMCell.backward: expected a tuple (grad_h', grad_c'), "
                            f"got {type(grad_hx).__name__}")
        grad_x, (grad_h, grad_c) = self._step_backward(grad_hx)
        return grad_x, (grad_h, grad_c)
