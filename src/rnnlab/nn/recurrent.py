"""Recurrent layers over whole sequences: the multi-layer RNN and LSTM (the GRU: nn/gru.py).

Names, shapes, gate order (i, f, g, o), the pair of biases, the init
U(-1/√H, 1/√H) and the state shapes are those of torch.nn, so a state_dict
moves between the two unchanged. The math lives in
:mod:`rnnlab.functional.recurrent`; these classes hold parameters, check
input, arrange layers and directions, and add gradients into ``param.grad``.
A :class:`~rnnlab.nn.utils.rnn.PackedSequence` input takes the packed path
(:mod:`rnnlab.nn._packed_layers`). The cells live in :mod:`rnnlab.nn.cells`
and are importable from here too.
"""

from __future__ import annotations

import numpy as np

from ._checks import check_array, check_dtype, check_positive_int, require_cache
from ._packed_layers import PackedCache, backward_packed, forward_packed
from ._recurrent_base import GATES, _check_nonlinearity, _RecurrentBase
from .cells import LSTMCell, RNNCell  # noqa: F401 (importable from here, as before the split)
from .utils.rnn import PackedSequence

__all__ = ["RNN", "LSTM", "RNNCell", "LSTMCell"]


class _SequenceLayer(_RecurrentBase):
    """num_layers × directions of a recurrent cell over a whole sequence."""

    def __init__(self, mode, input_size, hidden_size, num_layers=1, nonlinearity="tanh",
                 bias=True, batch_first=False, bidirectional=False, *, dtype=np.float32, rng=None):
        super().__init__()
        self.mode = mode
        self.gates = GATES[mode]
        self.input_size = check_positive_int(input_size, "input_size")
        self.hidden_size = check_positive_int(hidden_size, "hidden_size")
        self.num_layers = check_positive_int(num_layers, "num_layers")
        self.nonlinearity = _check_nonlinearity(nonlinearity)
        self.bias = bool(bias)
        self.batch_first = bool(batch_first)
        self.bidirectional = bool(bidirectional)
        self.num_directions = 2 if bidirectional else 1
        self.dtype = check_dtype(dtype)
        suffixes = []
        for layer in range(self.num_layers):
            in_size = self.input_size if layer == 0 else self.hidden_size * self.num_directions
            for direction in range(self.num_directions):
                suffixes.append((f"_l{layer}" + ("_reverse" if direction else ""), in_size))
        self._suffixes = [s for s, _ in suffixes]
        self._init_parameters(rng, suffixes)
        self._cache = None

    # -------------------------------------------------------------- forward
    def _check_states(self, hx, batched, N):
        """Validate h0 (and c0) -> tuple of (L·D, N, H) arrays, or of None when hx is None.

        None stands for zero states: the functional layer then skips the
        first step's recurrent GEMM, whose product would be zero.
        """
        L_D, H = self.num_layers * self.num_directions, self.hidden_size
        shape = (L_D, N, H) if batched else (L_D, H)
        if hx is None:
            return (None,) * self._n_states
        if self.mode == "LSTM":
            if not (isinstance(hx, tuple) and len(hx) == 2):
                raise TypeError(f"LSTM hx: expected a tuple (h0, c0), got {type(hx).__name__}")
            names = ("h0", "c0")
        else:
            hx, names = (hx,), ("h0",)
        states = []
        for name, state in zip(names, hx):
            check_array(state, f"{type(self).__name__} {name}", self.dtype, shape=shape)
            states.append(state if batched else state[:, None, :])
        return tuple(states)

    def forward(self, x, hx=None):
        """Run the sequence. See the class docstring for shapes."""
        if isinstance(x, PackedSequence):
            return forward_packed(self, x, hx)
        name = type(self).__name__
        check_array(x, f"{name} input", self.dtype, ndims=(2, 3), last_dim=self.input_size)
        batched = x.ndim == 3
        if not batched:
            seq = x[:, None, :]  # (T, 1, I)
        elif self.batch_first:
            seq = x.transpose(1, 0, 2)  # (N, T, I) -> (T, N, I)
        else:
            seq = x
        seq = np.ascontiguousarray(seq)
        states = self._check_states(hx, batched, seq.shape[1])

        D = self.num_directions
        caches, finals = [], [[] for _ in range(self._n_states)]
        layer_input = seq
        for layer in range(self.num_layers):
            outputs = []
            for direction in range(D):
                index = layer * D + direction
                out, final, cache = self._run_forward(
                    layer_input, tuple(None if s is None else s[index] for s in states),
                    self._suffixes[index], reverse=direction == 1)
                outputs.append(out)
                caches.append(cache)
                for k, f in enumerate(final):
                    finals[k].append(f)
            layer_input = outputs[0] if D == 1 else np.concatenate(outputs, axis=2)  # (T, N, D·H)
        output = layer_input
        finals = tuple(np.stack(f) for f in finals)  # each (L·D, N, H)

        self._cache = (caches, batched, output.shape)
        if not batched:
            output, finals = output[:, 0, :], tuple(f[:, 0, :] for f in finals)
        elif self.batch_first:
            output = output.transpose(1, 0, 2)
        return output, finals

    # -------------------------------------------------------------- backward
    def _backward(self, grad_output, grad_states, input_grad=True, state_grad=True):
        """grad_output like the output or None; grad_states a tuple like the final states (entries may be None).

        Returns (grad_x, tuple of initial-state gradients), the tuple None when ``state_grad`` is False.
        """
        require_cache(self._cache, self)
        if isinstance(self._cache, PackedCache):
            return backward_packed(self, grad_output, grad_states, input_grad, state_grad)
        caches, batched, seq_shape = self._cache
        name = type(self).__name__
        T, N, DH = seq_shape
        L_D, H, D = self.num_layers * self.num_directions, self.hidden_size, self.num_directions
        if grad_output is not None:
            user_shape = (T, N, DH) if not batched or not self.batch_first else (N, T, DH)
            if not batched:
                user_shape = (T, DH)
            check_array(grad_output, f"{name} grad_output", self.dtype, shape=user_shape)
            if not batched:
                grad_output = grad_output[:, None, :]
            elif self.batch_first:
                grad_output = grad_output.transpose(1, 0, 2)
        state_shape = (L_D, N, H) if batched else (L_D, H)
        checked = []
        for k, g in enumerate(grad_states):
            if g is not None:
                check_array(g, f"{name} grad of final state {k}", self.dtype, shape=state_shape)
                if not batched:
                    g = g[:, None, :]
            checked.append(g)
        self._cache = None  # the LSTM backward consumes its buffers

        grad_initial = [np.empty((L_D, N, H), dtype=self.dtype) for _ in grad_states] if state_grad \
            else None
        grad_layer_out = grad_output
        for layer in reversed(range(self.num_layers)):
            grad_x = None
            for direction in range(D):
                index = layer * D + direction
                grad_out_dir = (None if grad_layer_out is None
                                else grad_layer_out[..., direction * H:(direction + 1) * H])
                gx, g_init = self._run_backward(
                    caches[index], grad_out_dir,
                    tuple(None if g is None else g[index] for g in checked),
                    self._suffixes[index], input_grad=input_grad or layer > 0,
                    state_grad=state_grad)
                for k, g in enumerate(g_init if state_grad else ()):
                    grad_initial[k][index] = g
                grad_x = gx if grad_x is None else grad_x + gx
            grad_layer_out = grad_x  # (T, N, input of this layer)

        grad_x = grad_layer_out  # None when input_grad is False
        if state_grad and not batched:
            grad_initial = [g[:, 0, :] for g in grad_initial]
        if grad_x is not None:
            if not batched:
                grad_x = grad_x[:, 0, :]
            elif self.batch_first:
                grad_x = grad_x.transpose(1, 0, 2)
        return grad_x, None if grad_initial is None else tuple(grad_initial)

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if self.mode != "LSTM" and self.nonlinearity != "tanh":
            s += f", nonlinearity={self.nonlinearity!r}"
        for flag, default in (("bias", True), ("batch_first", False), ("bidirectional", False)):
            if getattr(self, flag) != default:
                s += f", {flag}={getattr(self, flag)}"
        return s + f", dtype={self.dtype}"


class _SingleStateLayer(_SequenceLayer):
    """forward/backward of the layers whose state is h alone (the RNN and the GRU)."""

    def forward(self, x, h0=None):
        """x -> (output, h_n). See the class docstring for shapes."""
        output, (h_n,) = super().forward(x, h0)
        return output, h_n

    def backward(self, grad_output, grad_h_n=None, *, input_grad=True, state_grad=True):
        """(grad_output, grad_h_n) -> (grad_x, grad_h0); None means a zero gradient.

        Adds every parameter gradient into ``param.grad``. With
        ``input_grad=False`` grad_x is None and its GEMM is skipped (as torch
        skips it for an input that does not require grad); with
        ``state_grad=False`` the same holds for grad_h0.
        """
        grad_x, grad_states = self._backward(grad_output, (grad_h_n,), input_grad, state_grad)
        return grad_x, None if grad_states is None else grad_states[0]


class RNN(_SingleStateLayer):
    """Multi-layer Elman RNN, ``h_t = act(x_t W_ihᵀ + b_ih + h_{t-1} W_hhᵀ + b_hh)``.

    Args:
        input_size: features I of the input.
        hidden_size: features H of the hidden state.
        num_layers: stacked layers; layer k > 0 reads the outputs of layer k-1.
        nonlinearity: "tanh" (default) or "relu".
        bias: use b_ih and b_hh (default True).
        batch_first: input and output are (N, T, ·) instead of (T, N, ·); the
            states stay (L·D, N, H).
        bidirectional: add a reverse-time direction; outputs concatenate to 2H.
        dtype: float32 (default) or float64.
        rng: numpy Generator (or seed) for the init.

    Shape (D = 2 if bidirectional else 1, L = num_layers):
        input (T, N, I), (N, T, I) with batch_first, or (T, I) unbatched;
        h0 (L·D, N, H), or (L·D, H) unbatched; None means zeros.
        output (T, N, D·H) (batch_first: (N, T, D·H)); h_n (L·D, N, H).
        A :class:`~rnnlab.nn.utils.rnn.PackedSequence` input (data (S, I), S = Σ lengths)
        gives a PackedSequence output (data (S, D·H)), and the final states hold each
        sequence's state at its own last step (the reverse direction's: after its first),
        in the caller's batch order; backward then takes the output's gradient as a
        PackedSequence and returns the input's as one.

    Attributes:
        weight_ih_l{k}[_reverse]: (H, I) for k = 0, (H, D·H) after; U(-1/√H, 1/√H).
        weight_hh_l{k}[_reverse]: (H, H); bias_ih_l{k}, bias_hh_l{k}: (H,). Same init.
    """

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True,
                 batch_first=False, bidirectional=False, *, dtype=np.float32, rng=None):
        super().__init__("RNN", input_size, hidden_size, num_layers, nonlinearity, bias,
                         batch_first, bidirectional, dtype=dtype, rng=rng)

class LSTM(_SequenceLayer):
    """Multi-layer LSTM with gates i, f, g, o (torch order), fused into one GEMM.

    Per layer and step (σ the sigmoid, ⊙ elementwise)::

        i, f, g, o = σ, σ, tanh, σ of  x_t W_ihᵀ + b_ih + h_{t-1} W_hhᵀ + b_hh
        c_t = f ⊙ c_{t-1} + i ⊙ g
        h_t = o ⊙ tanh(c_t)

    Args: as :class:`RNN`, without ``nonlinearity``.

    Shape (D = 2 if bidirectional else 1, L = num_layers):
        input (T, N, I), (N, T, I) with batch_first, or (T, I) unbatched;
        hx = (h0, c0), each (L·D, N, H) or (L·D, H) unbatched; None means zeros.
        output (T, N, D·H) (batch_first: (N, T, D·H)); (h_n, c_n) each (L·D, N, H).
        A :class:`~rnnlab.nn.utils.rnn.PackedSequence` input (data (S, I), S = Σ lengths)
        gives a PackedSequence output (data (S, D·H)), and the final states hold each
        sequence's state at its own last step (the reverse direction's: after its first),
        in the caller's batch order; backward then takes the output's gradient as a
        PackedSequence and returns the input's as one.

    Attributes:
        weight_ih_l{k}[_reverse]: (4H, I) for k = 0, (4H, D·H) after, rows [i; f; g; o].
        weight_hh_l{k}[_reverse]: (4H, H); bias_ih_l{k}, bias_hh_l{k}: (4H,).
        All drawn from U(-1/√H, 1/√H).
    """

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 bidirectional=False, *, dtype=np.float32, rng=None):
        super().__init__("LSTM", input_size, hidden_size, num_layers, "tanh", bias,
                         batch_first, bidirectional, dtype=dtype, rng=rng)

    def forward(self, x, hx=None):
        """x -> (output, (h_n, c_n)). See the class docstring for shapes."""
        output, (h_n, c_n) = super().forward(x, hx)
        return output, (h_n, c_n)

    def backward(self, grad_output, grad_hx=None, *, input_grad=True, state_grad=True):
        """(grad_output, (grad_h_n, grad_c_n)) -> (grad_x, (grad_h0, grad_c0)).

        ``grad_hx`` or either of its entries may be None (zero). Adds every
        parameter gradient into ``param.grad``. With ``input_grad=False``
        grad_x is None and its GEMM is skipped; with ``state_grad=False``
        (grad_h0, grad_c0) is None and the last step's dh GEMM is skipped.
        """
        if grad_hx is None:
            grad_hx = (None, None)
        elif not (isinstance(grad_hx, tuple) and len(grad_hx) == 2):
            raise TypeError(f"LSTM grad_hx: expected a tuple (grad_h_n, grad_c_n) or None, "
                            f"got {type(grad_hx).__name__}")
        grad_x, grad_states = self._backward(grad_output, grad_hx, input_grad, state_grad)
        return grad_x, grad_states
