"""Recurrent layers: RNNCell, LSTMCell, and the multi-layer RNN and LSTM (the GRU: nn/gru.py).

Names, shapes, gate order (i, f, g, o), the pair of biases, the init
U(-1/√H, 1/√H) and the state shapes are those of torch.nn, so a state_dict
moves between the two unchanged. The math lives in
:mod:`rnnlab.functional.recurrent`; these classes hold parameters, check
input, arrange layers and directions, and add gradients into ``param.grad``.
"""

from __future__ import annotations

import numpy as np

from .. import init
from ..functional.gru import gru_backward, gru_forward
from ..functional.recurrent import lstm_backward, lstm_forward, rnn_backward, rnn_forward
from ._checks import check_array, check_dtype, check_positive_int, require_cache
from .module import Module, Parameter, grad_sinks

GATES = {"RNN": 1, "LSTM": 4, "GRU": 3}  # rows of W_ih per hidden unit, by mode


class _RecurrentBase(Module):
    """Parameters and input handling shared by the RNN and the LSTM (layers and cells)."""

    gates = 1  # rows of W_ih per hidden unit: 1 for the RNN, 4 for the LSTM

    def _init_parameters(self, rng, suffixes):
        """Register weight_ih{s}, weight_hh{s}, bias_ih{s}, bias_hh{s} for each suffix, in torch order."""
        rng = init.as_generator(rng)
        H = self.hidden_size
        bound = 1.0 / np.sqrt(H)
        for suffix, in_size in suffixes:
            shapes = [("weight_ih", (self.gates * H, in_size)), ("weight_hh", (self.gates * H, H))]
            if self.bias:
                shapes += [("bias_ih", (self.gates * H,)), ("bias_hh", (self.gates * H,))]
            for name, shape in shapes:
                setattr(self, name + suffix, Parameter(init.uniform(shape, bound, rng, self.dtype)))

    def _weights(self, suffix):
        """(W_ih, W_hh, b_ih, b_hh) arrays for one layer and direction; biases None without bias."""
        get = lambda name: getattr(self, name + suffix).data  # noqa: E731
        if self.bias:
            return get("weight_ih"), get("weight_hh"), get("bias_ih"), get("bias_hh")
        return get("weight_ih"), get("weight_hh"), None, None

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
        names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        params = tuple(getattr(self, n + suffix) if self.bias or n.startswith("weight") else None
                       for n in names)
        with grad_sinks(params) as (accumulate, overwrite):
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


# --------------------------------------------------------------------- sequences


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


class RNN(_SequenceLayer):
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

    Attributes:
        weight_ih_l{k}[_reverse]: (H, I) for k = 0, (H, D·H) after; U(-1/√H, 1/√H).
        weight_hh_l{k}[_reverse]: (H, H); bias_ih_l{k}, bias_hh_l{k}: (H,). Same init.
    """

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True,
                 batch_first=False, bidirectional=False, *, dtype=np.float32, rng=None):
        super().__init__("RNN", input_size, hidden_size, num_layers, nonlinearity, bias,
                         batch_first, bidirectional, dtype=dtype, rng=rng)

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


# --------------------------------------------------------------------- cells


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


class RNNCell(_Cell):
    """One Elman step ``h' = act(x W_ihᵀ + b_ih + h W_hhᵀ + b_hh)``.

    Shape: x (N, I) or (I,); h (N, H) or (H,), None for zeros -> h' like h.
    Attributes: weight_ih (H, I), weight_hh (H, H), bias_ih, bias_hh (H,), U(-1/√H, 1/√H).
    """

    def __init__(self, input_size, hidden_size, bias=True, nonlinearity="tanh", *,
                 dtype=np.float32, rng=None):
        super().__init__("RNN", input_size, hidden_size, bias, nonlinearity, dtype, rng)

    def forward(self, x, h=None):
        """x, h -> h'."""
        (h_new,) = self._step_forward(x, None if h is None else (h,))
        return h_new

    def backward(self, grad_h_new):
        """grad_h' -> (grad_x, grad_h); adds the parameter gradients."""
        grad_x, (grad_h,) = self._step_backward((grad_h_new,))
        return grad_x, grad_h


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
