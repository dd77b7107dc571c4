"""Whole models for sequence tasks: an MLP, RNN, LSTM or GRU body with a Linear head.

The lab, the trainer and the benchmark compare the families on the same
inputs, so they share this one wrapper. Input is time-major, x (T, N, F):

- ``"mlp"``: the flattened sequence, x → (N, T·F) → MLP → (N, out). It sees
  every step at once and has no notion of order beyond feature position.
- ``"rnn"`` / ``"lstm"`` / ``"gru"``: the recurrent body reads x step by step, and the
  head maps the last layer's last hidden state h_T (N, H) to (N, out); with
  ``every_step=True`` the head maps every h_t, giving (T, N, out).
"""

from __future__ import annotations

import numpy as np

from . import init
from .nn import GRU, LSTM, MLP, RNN, Linear, Module
from .nn._checks import check_array

KINDS = ("mlp", "rnn", "lstm", "gru")


class SequenceModel(Module):
    """One of the families with a Linear head.

    Args:
        kind: "mlp", "rnn", "lstm" or "gru".
        input_size: features F per time step.
        hidden_size: hidden units H (per hidden layer for the MLP).
        output_size: outputs of the head (classes or regression targets).
        seq_len: T, needed by the MLP (its input is T·F wide); ignored otherwise.
        num_layers: hidden layers of the MLP, or stacked recurrent layers.
        activation: the MLP's activation ("sigmoid", "tanh", "relu"), or the
            RNN's nonlinearity ("tanh", "relu"); ignored by the LSTM and the GRU.
        every_step: recurrent models only: apply the head at every step.
        dtype, rng: as in the layers.

    Shape:
        x (T, N, F) -> (N, output_size), or (T, N, output_size) with every_step.
    """

    def __init__(self, kind, input_size, hidden_size, output_size, *, seq_len=None,
                 num_layers=1, activation="tanh", every_step=False, dtype=np.float32, rng=None):
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        rng = init.as_generator(rng)
        self.kind, self.every_step = kind, bool(every_step)
        self.input_size, self.seq_len = input_size, seq_len
        self.dtype = np.dtype(dtype)
        if kind == "mlp":
            if seq_len is None:
                raise ValueError("the MLP needs seq_len: its input is the flattened sequence")
            if every_step:
                raise ValueError("every_step is for recurrent models; the MLP sees the whole sequence")
            sizes = [seq_len * input_size] + [hidden_size] * num_layers + [output_size]
            self.body = MLP(sizes, activation=activation, dtype=dtype, rng=rng)
        else:
            if kind == "rnn":
                self.body = RNN(input_size, hidden_size, num_layers, nonlinearity=activation,
                                dtype=dtype, rng=rng)
            else:
                body = LSTM if kind == "lstm" else GRU
                self.body = body(input_size, hidden_size, num_layers, dtype=dtype, rng=rng)
            self.head = Linear(hidden_size, output_size, dtype=dtype, rng=rng)
        self._shape = None

    def forward(self, x):
        check_array(x, f"SequenceModel({self.kind}) input", self.dtype, ndims=(3,),
                    last_dim=self.input_size)
        T, N, F = x.shape
        self._shape = x.shape
        if self.kind == "mlp":
            if T != self.seq_len:
                raise ValueError(f"MLP input: expected {self.seq_len} time steps, got {T}")
            return self.body(x.transpose(1, 0, 2).reshape(N, T * F))  # (N, out)
        output, _ = self.body(x)  # (T, N, H)
        return self.head(output if self.every_step else output[-1])

    def backward(self, grad_out, *, input_grad=True):
        """grad_out like the forward's output -> grad_x (T, N, F).

        With ``input_grad=False`` (training, where the data needs no gradient)
        the recurrent body skips the input-gradient GEMM and None is returned.
        The body always starts from zero states, so their gradient is never
        computed.
        """
        if self.kind == "mlp":
            T, N, F = self._shape
            grad_x = self.body.backward(grad_out, input_grad=input_grad)
            return None if grad_x is None else grad_x.reshape(N, T, F).transpose(1, 0, 2)
        grad_hidden = self.head.backward(grad_out)
        if self.every_step:
            grad_x, _ = self.body.backward(grad_hidden, input_grad=input_grad, state_grad=False)
            return grad_x
        # The head read h_T of the last layer, which is h_n[-1]: its gradient enters
        # as grad_h_n, cheaper than a (T, N, H) grad_output that is zero but for one step.
        layers, N, H = self.body.num_layers, grad_hidden.shape[0], grad_hidden.shape[1]
        grad_h_n = np.zeros((layers, N, H), dtype=self.dtype)
        grad_h_n[-1] = grad_hidden
        grad_hx = (grad_h_n, None) if self.kind == "lstm" else grad_h_n
        grad_x, _ = self.body.backward(None, grad_hx, input_grad=input_grad, state_grad=False)
        return grad_x
