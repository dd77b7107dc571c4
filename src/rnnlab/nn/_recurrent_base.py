"""What the recurrent layers and cells share: parameters in torch's layout, and the dispatch
of one layer and direction to :mod:`rnnlab.functional.recurrent`."""

from __future__ import annotations

import numpy as np

from .. import init
from ..functional.gru import gru_backward, gru_forward
from ..functional.recurrent import lstm_backward, lstm_forward, rnn_backward, rnn_forward
from ._checks import check_parameter_memory
from .module import Module, Parameter, grad_sinks

GATES = {"RNN": 1, "LSTM": 4, "GRU": 3}  # rows of W_ih per hidden unit, by mode


class _RecurrentBase(Module):
    """Parameters and input handling shared by the RNN, the LSTM and the GRU (layers and cells)."""

    gates = 1  # rows of W_ih per hidden unit: GATES[mode]

    def _init_parameters(self, rng, suffixes):
        """Register weight_ih{s}, weight_hh{s}, bias_ih{s}, bias_hh{s} for each suffix, in torch order."""
        rng = init.as_generator(rng)
        H = self.hidden_size
        bound = 1.0 / np.sqrt(H)
        shapes = []
        for suffix, in_size in suffixes:
            shapes += [("weight_ih" + suffix, (self.gates * H, in_size)),
                       ("weight_hh" + suffix, (self.gates * H, H))]
            if self.bias:
                shapes += [("bias_ih" + suffix, (self.gates * H,)),
                           ("bias_hh" + suffix, (self.gates * H,))]
        # Refuse sizes that cannot fit before allocating any of them.
        check_parameter_memory(self, [shape for _, shape in shapes])
        for name, shape in shapes:
            setattr(self, name, Parameter(init.uniform(shape, bound, rng, self.dtype)))

    def _weights(self, suffix):
        """(W_ih, W_hh, b_ih, b_hh) arrays for one layer and direction; biases None without bias."""
        get = lambda name: getattr(self, name + suffix).data  # noqa: E731
        if self.bias:
            return get("weight_ih"), get("weight_hh"), get("bias_ih"), get("bias_hh")
        return get("weight_ih"), get("weight_hh"), None, None

    def _params(self, suffix):
        """(weight_ih, weight_hh, bias_ih, bias_hh) Parameters of one layer and direction;
        biases None without bias."""
        names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        return tuple(getattr(self, n + suffix) if self.bias or n.startswith("weight") else None
                     for n in names)

    def _run_forward(self, x, states, suffix, reverse):
        """One layer, one direction. Returns (output (T,N,H), final states tuple, cache)."""
        w_ih, w_hh, b_ih, b_hh = self._weights(suffix)
        if self.mode == "LSTM":
            (out, h_n, c_n), cache = lstm_forward(x, states[0], states[1], w_ih, w_hh, b_ih, b_hh,
                                                  reverse=reverse)
            return out, (h_n, c_n), cache
        if self.mode == "GRU":
            (out, h_n), cache = gru_forward(x, states[0], w_ih, w_hh, b_ih, b_hh, reverse=reverse)
            return out, (h_n,), cache
        (out, h_n), cache = rnn_forward(x, states[0], w_ih, w_hh, b_ih, b_hh,
                                        nonlinearity=self.nonlinearity, reverse=reverse)
        return out, (h_n,), cache

    def _run_backward(self, cache, grad_out, grad_states, suffix, input_grad=True, state_grad=True):
        """Backward of one layer and direction; adds parameter grads. Returns (grad_x, grad_states),
        grad_states entries None when ``state_grad`` is False."""
        with grad_sinks(self._params(suffix)) as (accumulate, overwrite):
            if self.mode == "LSTM":
                grad_x, grad_h0, grad_c0, _ = lstm_backward(
                    cache, grad_out, *grad_states, input_grad=input_grad,
                    accumulate=accumulate, overwrite=overwrite, state_grad=state_grad)
                grad_states = (grad_h0, grad_c0)
            else:
                backward = gru_backward if self.mode == "GRU" else rnn_backward
                grad_x, grad_h0, _ = backward(cache, grad_out, grad_states[0],
                                              input_grad=input_grad, accumulate=accumulate,
                                              overwrite=overwrite, state_grad=state_grad)
                grad_states = (grad_h0,)
        return grad_x, grad_states

    @property
    def _n_states(self):
        return 2 if self.mode == "LSTM" else 1


def _check_nonlinearity(nonlinearity):
    if nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
    return nonlinearity
