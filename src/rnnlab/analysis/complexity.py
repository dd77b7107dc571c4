"""Analytic cost of the MLP, the Elman RNN, the LSTM and the GRU: parameters, FLOPs, BPTT memory.

Notation (the letters of the benchmark grid):

    d  batch size                 n  input features per step
    m  hidden units               T  time steps
    k  outputs of the Linear head G  gate blocks: 1 for the RNN, 4 for the LSTM, 3 for the GRU

Conventions:

- A multiply-add is **2 FLOPs**. A product (M, K) · (K, N) costs 2·M·K·N.
- ``gemm`` counts the matrix products only. ``elementwise`` counts the other
  arithmetic, one FLOP per element per operation, and one per element for
  every activation (σ, tanh, relu; a transcendental counts as one). It is an
  order of magnitude, documented per function, and is *not* part of
  :func:`training_flops`.
- Counts follow the algorithm of :mod:`rnnlab.functional`: the recurrent
  product runs at every step, the first one included (h_0 · W_hhᵀ, even when
  h_0 = 0), and the backward computes dh_{t-1} at every step (so grad_h0 too).

Training step, exactly: every forward GEMM ``Y = X Wᵀ`` has a backward of two
GEMMs of the same size, ``dW = dYᵀ X`` and ``dX = dY W``. The recurrent GEMM
is no exception (dW_hh, and dh_{t-1} = dpre_t W_hh). So

    training GEMM FLOPs = 3 × forward GEMM FLOPs

with one caveat: the input gradient of the *first* layer, dX = dY W_1 with X
the data, is not needed to train. rnnlab computes it anyway (its
``backward`` returns grad_x) and torch does not (the data does not require
grad). ``input_grad=True`` (the default) counts the work rnnlab does;
``input_grad=False`` subtracts that one GEMM, giving the minimum a training
step needs. The optimizer update (a few FLOPs per parameter) is not counted.

The benchmark models (:func:`model_params` and friends):

- ``"mlp"``: the flattened sequence, Linear(T·n, m) → σ → Linear(m, k);
- ``"rnn"``: RNN(n, m) (tanh, 1 layer) → Linear(m, k) on the last hidden state;
- ``"lstm"``: LSTM(n, m) (1 layer) → Linear(m, k) on the last hidden state;
- ``"gru"``: GRU(n, m) (1 layer) → Linear(m, k) on the last hidden state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = [
    "Flops", "Memory", "MODELS",
    "linear_params", "mlp_params", "rnn_params", "lstm_params", "gru_params",
    "linear_forward_flops", "mlp_forward_flops", "rnn_forward_flops", "lstm_forward_flops",
    "gru_forward_flops",
    "mlp_training_flops", "rnn_training_flops", "lstm_training_flops", "gru_training_flops",
    "mlp_activation_memory", "rnn_bptt_memory", "lstm_bptt_memory", "gru_bptt_memory",
    "model_params", "model_forward_flops", "model_training_flops", "model_bptt_memory",
]

MODELS = ("mlp", "rnn", "lstm", "gru")
GATES = {"rnn": 1, "lstm": 4, "gru": 3}  # gate blocks G of each recurrent model


@dataclass(frozen=True)
class Flops:
    """FLOPs of one pass: ``gemm`` (matrix products) and ``elementwise`` (the rest)."""

    gemm: int
    elementwise: int

    @property
    def total(self) -> int:
        return self.gemm + self.elementwise

    def __add__(self, other: "Flops") -> "Flops":
        return Flops(self.gemm + other.gemm, self.elementwise + other.elementwise)


@dataclass(frozen=True)
class Memory:
    """An amount of memory: ``floats`` array elements of ``itemsize`` bytes each."""

    floats: int
    itemsize: int

    @property
    def bytes(self) -> int:
        return self.floats * self.itemsize


def _positive(**values) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _sizes(sizes: Sequence[int]) -> list[int]:
    sizes = [int(s) for s in sizes]
    if len(sizes) < 2:
        raise ValueError(f"MLP sizes needs at least [in, out], got {sizes}")
    _positive(**{f"sizes[{i}]": s for i, s in enumerate(sizes)})
    return sizes


# ------------------------------------------------------------------ parameters


def linear_params(in_features: int, out_features: int, bias: bool = True) -> int:
    """Parameters of Linear(in, out): ``out·in + out`` (``out·in`` without bias)."""
    _positive(in_features=in_features, out_features=out_features)
    return out_features * in_features + (out_features if bias else 0)


def mlp_params(sizes: Sequence[int], bias: bool = True) -> dict[str, int]:
    """Parameters per Linear layer of ``MLP(sizes)``, keyed as in its state_dict.

    Layer j maps sizes[j] → sizes[j+1] and holds ``sizes[j+1]·sizes[j] + sizes[j+1]``;
    the activations between them hold none, so the keys are "0", "2", "4", ...
    """
    sizes = _sizes(sizes)
    return {str(2 * j): linear_params(a, b, bias) for j, (a, b) in enumerate(zip(sizes, sizes[1:]))}


def _recurrent_params(gates, input_size, hidden_size, num_layers, bias):
    _positive(input_size=input_size, hidden_size=hidden_size, num_layers=num_layers)
    out = {}
    for layer in range(num_layers):
        fan_in = input_size if layer == 0 else hidden_size
        out[f"l{layer}"] = gates * hidden_size * (fan_in + hidden_size) + (
            2 * gates * hidden_size if bias else 0)
    return out


def rnn_params(input_size: int, hidden_size: int, num_layers: int = 1,
               bias: bool = True) -> dict[str, int]:
    """Parameters per layer of ``RNN``, keyed "l0", "l1", ...

    Layer l: ``m·i + m·m + 2m`` with i = n for l = 0 and i = m after
    (W_ih (m, i), W_hh (m, m), b_ih and b_hh (m,) each: torch keeps both biases).
    """
    return _recurrent_params(1, input_size, hidden_size, num_layers, bias)


def lstm_params(input_size: int, hidden_size: int, num_layers: int = 1,
                bias: bool = True) -> dict[str, int]:
    """Parameters per layer of ``LSTM``, keyed "l0", "l1", ...

    Layer l: ``4m·i + 4m·m + 8m`` with i = n for l = 0 and i = m after
    (W_ih (4m, i), W_hh (4m, m), b_ih and b_hh (4m,) each).
    """
    return _recurrent_params(4, input_size, hidden_size, num_layers, bias)


def gru_params(input_size: int, hidden_size: int, num_layers: int = 1,
               bias: bool = True) -> dict[str, int]:
    """Parameters per layer of ``GRU``, keyed "l0", "l1", ...

    Layer l: ``3m·i + 3m·m + 6m`` = 3·(i·m + m² + 2m) with i = n for l = 0 and
    i = m after (W_ih (3m, i), W_hh (3m, m), b_ih and b_hh (3m,) each).
    """
    return _recurrent_params(3, input_size, hidden_size, num_layers, bias)


# ------------------------------------------------------------------ FLOPs


def linear_forward_flops(d: int, in_features: int, out_features: int, bias: bool = True) -> Flops:
    """Linear(in, out) on a batch of d rows.

    gemm = 2·d·in·out (X Wᵀ); elementwise = d·out (the bias add).
    """
    _positive(d=d, in_features=in_features, out_features=out_features)
    return Flops(2 * d * in_features * out_features, d * out_features if bias else 0)


def mlp_forward_flops(d: int, sizes: Sequence[int], bias: bool = True) -> Flops:
    """MLP(sizes) on a batch of d rows.

    gemm = Σ_j 2·d·sizes[j]·sizes[j+1];
    elementwise = Σ_j d·sizes[j+1] (bias adds) + Σ_hidden d·sizes[j] (one activation
    per hidden unit; none after the last layer).
    """
    sizes = _sizes(sizes)
    total = Flops(0, sum(d * s for s in sizes[1:-1]))
    for a, b in zip(sizes, sizes[1:]):
        total = total + linear_forward_flops(d, a, b, bias)
    return total


def _recurrent_forward(gates, elementwise_per_unit, d, T, input_size, hidden_size,
                       num_layers, bias):
    _positive(d=d, T=T, input_size=input_size, hidden_size=hidden_size, num_layers=num_layers)
    G, m = gates, hidden_size
    gemm = 0
    for layer in range(num_layers):
        fan_in = input_size if layer == 0 else m
        gemm += 2 * T * d * fan_in * G * m  # input projection, all steps at once
        gemm += 2 * T * d * m * G * m  # recurrent product, one per step
    elementwise = num_layers * T * d * m * (elementwise_per_unit + (2 * G if bias else 0))
    return Flops(gemm, elementwise)


def rnn_forward_flops(d: int, T: int, input_size: int, hidden_size: int, num_layers: int = 1,
                      bias: bool = True) -> Flops:
    """Elman RNN over T steps, per layer l (input i = n for l = 0, m after).

    gemm = 2·T·d·i·m (x W_ihᵀ) + 2·T·d·m·m (h_{t-1} W_hhᵀ);
    elementwise = T·d·m·(2 + 1 + 1): both biases, adding the recurrent term, the activation
    (the biases drop without bias).
    """
    return _recurrent_forward(1, 2, d, T, input_size, hidden_size, num_layers, bias)


def lstm_forward_flops(d: int, T: int, input_size: int, hidden_size: int, num_layers: int = 1,
                       bias: bool = True) -> Flops:
    """LSTM over T steps, per layer l (input i = n for l = 0, m after).

    gemm = 2·T·d·i·4m (x W_ihᵀ) + 2·T·d·m·4m (h_{t-1} W_hhᵀ);
    elementwise = T·d·m·(8 + 4 + 4 + 5): both biases over 4m, adding the recurrent term
    over 4m, the four gate activations, and c = f⊙c + i⊙g (3), tanh(c), h = o⊙tanh(c)
    (the 8 bias FLOPs drop without bias).
    """
    return _recurrent_forward(4, 4 + 4 + 5, d, T, input_size, hidden_size, num_layers, bias)


def gru_forward_flops(d: int, T: int, input_size: int, hidden_size: int, num_layers: int = 1,
                      bias: bool = True) -> Flops:
    """GRU over T steps, per layer l (input i = n for l = 0, m after).

    gemm = 2·T·d·i·3m (x W_ihᵀ) + 2·T·d·m·3m (h_{t-1} W_hhᵀ);
    elementwise = T·d·m·(6 + 2 + 2 + 3 + 3): both biases over 3m, adding the recurrent
    term of r and z, σ of r and z, n = tanh(gx_n + r ⊙ gh_n) (3), and
    h = n + z ⊙ (h_{t-1} - n) (3) (the 6 bias FLOPs drop without bias).
    """
    return _recurrent_forward(3, 2 + 2 + 3 + 3, d, T, input_size, hidden_size, num_layers, bias)


def mlp_training_flops(d: int, sizes: Sequence[int], input_grad: bool = True) -> int:
    """GEMM FLOPs of one training step of MLP(sizes) (forward + backward).

    = 3 · Σ_j 2·d·sizes[j]·sizes[j+1], minus 2·d·sizes[0]·sizes[1] when
    ``input_grad`` is False (the gradient of the data is not computed).
    """
    sizes = _sizes(sizes)
    total = 3 * mlp_forward_flops(d, sizes).gemm
    return total if input_grad else total - 2 * d * sizes[0] * sizes[1]


def _one_recurrent_product(gates, d, hidden_size):
    """GEMM FLOPs of one step's recurrent product, (d, m) · (m, G·m), or of its
    dW_hh term or its dh GEMM, which have the same size."""
    return 2 * d * hidden_size * gates * hidden_size


def _zero_start_saving(gates, d, hidden_size, num_layers, state_grad=True):
    """GEMM FLOPs of a training step that rnnlab skips when every layer starts
    from zero states (h0 not given).

    Per layer: the first step's h_0 W_hhᵀ and its share of dW_hh, and, without
    ``state_grad``, dL/dh_0 = dpre_1 W_hh: one recurrent product each.
    """
    return num_layers * _one_recurrent_product(gates, d, hidden_size) * (2 if state_grad else 3)


def _recurrent_training(forward_fn, gates, d, T, input_size, hidden_size, num_layers,
                        input_grad, zero_start=False, state_grad=True):
    total = 3 * forward_fn(d, T, input_size, hidden_size, num_layers).gemm
    if not input_grad:
        total -= 2 * T * d * gates * hidden_size * input_size
    if zero_start:
        total -= _zero_start_saving(gates, d, hidden_size, num_layers, state_grad)
    return total


def rnn_training_flops(d: int, T: int, input_size: int, hidden_size: int, num_layers: int = 1,
                       input_grad: bool = True, zero_start: bool = False,
                       state_grad: bool = True) -> int:
    """GEMM FLOPs of forward + BPTT of the RNN.

    = 3 · :func:`rnn_forward_flops`.gemm: per layer the backward holds
    dW_ih = dPreᵀ X and dX = dPre W_ih (2·T·d·i·m each), dW_hh = dPreᵀ H_prev and
    dh_{t-1} = dpre_t W_hh (2·T·d·m·m each). ``input_grad=False`` drops the
    first layer's dX, 2·T·d·n·m. ``zero_start=True`` counts what rnnlab runs
    from zero initial states: per layer 2·(2·d·m·m) less (the first step's
    recurrent product and its dW_hh share), and 2·d·m·m more less without
    ``state_grad`` (no dL/dh_0).
    """
    return _recurrent_training(rnn_forward_flops, 1, d, T, input_size, hidden_size,
                               num_layers, input_grad, zero_start, state_grad)


def lstm_training_flops(d: int, T: int, input_size: int, hidden_size: int, num_layers: int = 1,
                        input_grad: bool = True, zero_start: bool = False,
                        state_grad: bool = True) -> int:
    """GEMM FLOPs of forward + BPTT of the LSTM.

    = 3 · :func:`lstm_forward_flops`.gemm, the four gates fused: per layer
    dW_ih, dX (2·T·d·i·4m each), dW_hh, dh_{t-1} (2·T·d·m·4m each).
    ``input_grad=False`` drops the first layer's dX, 2·T·d·n·4m; ``zero_start``
    and ``state_grad`` as in :func:`rnn_training_flops`, with 4m gate rows.
    """
    return _recurrent_training(lstm_forward_flops, 4, d, T, input_size, hidden_size,
                               num_layers, input_grad, zero_start, state_grad)


def gru_training_flops(d: int, T: int, input_size: int, hidden_size: int, num_layers: int = 1,
                       input_grad: bool = True, zero_start: bool = False,
                       state_grad: bool = True) -> int:
    """GEMM FLOPs of forward + BPTT of the GRU.

    = 3 · :func:`gru_forward_flops`.gemm, the three gates fused: per layer
    dW_ih, dX (2·T·d·i·3m each), dW_hh, dh_{t-1} (2·T·d·m·3m each).
    ``input_grad=False`` drops the first layer's dX, 2·T·d·n·3m; ``zero_start``
    and ``state_grad`` as in :func:`rnn_training_flops`, with 3m gate rows.
    """
    return _recurrent_training(gru_forward_flops, 3, d, T, input_size, hidden_size,
                               num_layers, input_grad, zero_start, state_grad)


# ------------------------------------------------------------------ memory


def _itemsize(dtype) -> int:
    return np.dtype(dtype).itemsize


def mlp_activation_memory(d: int, sizes: Sequence[int], dtype=np.float32) -> Memory:
    """What the backward of MLP(sizes) must keep: the input and every hidden activation.

    floats = d·sizes[0] + Σ_hidden d·sizes[j]. Each Linear needs its input for dW;
    σ and tanh need their output, which is the next Linear's input (one array).
    """
    sizes = _sizes(sizes)
    _positive(d=d)
    return Memory(d * sizes[0] + sum(d * s for s in sizes[1:-1]), _itemsize(dtype))


def rnn_bptt_memory(d: int, T: int, input_size: int, hidden_size: int,
                    dtype=np.float32) -> Memory:
    """The minimum one RNN layer keeps for BPTT: every hidden state and the input.

    floats = T·d·m + T·d·n. h_t gives act'(pre_t) (1 - h_t² for tanh) and is
    the h_{t-1} of dW_hh; x_t is needed for dW_ih.
    """
    _positive(d=d, T=T, input_size=input_size, hidden_size=hidden_size)
    return Memory(T * d * hidden_size + T * d * input_size, _itemsize(dtype))


def lstm_bptt_memory(d: int, T: int, input_size: int, hidden_size: int,
                     dtype=np.float32) -> Memory:
    """The minimum one LSTM layer keeps for BPTT: the gates, c and tanh(c) of every step, and the input.

    floats = T·d·(4m + m + m) + T·d·n. (h_t = o_t ⊙ tanh(c_t) can be recomputed
    from what is kept.)
    """
    _positive(d=d, T=T, input_size=input_size, hidden_size=hidden_size)
    m = hidden_size
    return Memory(T * d * (4 * m + m + m) + T * d * input_size, _itemsize(dtype))


def gru_bptt_memory(d: int, T: int, input_size: int, hidden_size: int,
                    dtype=np.float32) -> Memory:
    """The minimum one GRU layer keeps for BPTT: r, z, n, h_{t-1} W_hnᵀ + b_hn and h of
    every step, and the input.

    floats = T·d·(3m + m + m) + T·d·n. dr needs the recurrent part of n (it sits
    inside r ⊙ (...)), dz and dW_hh need h_{t-1}.
    """
    _positive(d=d, T=T, input_size=input_size, hidden_size=hidden_size)
    m = hidden_size
    return Memory(T * d * (3 * m + m + m) + T * d * input_size, _itemsize(dtype))


# ------------------------------------------------------------------ benchmark models


# per recurrent model: its params, forward FLOPs, training FLOPs and BPTT memory
_RECURRENT = {
    "rnn": (rnn_params, rnn_forward_flops, rnn_training_flops, rnn_bptt_memory),
    "lstm": (lstm_params, lstm_forward_flops, lstm_training_flops, lstm_bptt_memory),
    "gru": (gru_params, gru_forward_flops, gru_training_flops, gru_bptt_memory),
}


def _check_model(model):
    if model not in MODELS:
        raise ValueError(f"model must be one of {MODELS}, got {model!r}")


def _mlp_sizes(n, m, T, k):
    return [T * n, m, k]


def model_params(model: str, n: int, m: int, T: int, k: int) -> dict[str, int]:
    """Parameters per layer of a benchmark model (see the module docstring).

    "mlp": {"0": m·T·n + m, "2": k·m + k};
    "rnn": {"body": m·n + m·m + 2m, "head": k·m + k};
    "lstm": {"body": 4m·n + 4m·m + 8m, "head": k·m + k};
    "gru": {"body": 3m·n + 3m·m + 6m, "head": k·m + k}.
    """
    _check_model(model)
    if model == "mlp":
        return mlp_params(_mlp_sizes(n, m, T, k))
    layer = _RECURRENT[model][0](n, m)["l0"]
    return {"body": layer, "head": linear_params(m, k)}


def model_forward_flops(model: str, d: int, n: int, m: int, T: int, k: int,
                        zero_start: bool = False) -> Flops:
    """Forward FLOPs of a benchmark model on a batch (the loss not included).

    The textbook count by default; ``zero_start=True`` counts what rnnlab runs
    (the recurrent body starts from zero states and skips h_0 W_hhᵀ).
    """
    _check_model(model)
    if model == "mlp":
        return mlp_forward_flops(d, _mlp_sizes(n, m, T, k))
    body = _RECURRENT[model][1](d, T, n, m)
    if zero_start:
        body = Flops(body.gemm - _one_recurrent_product(GATES[model], d, m), body.elementwise)
    return body + linear_forward_flops(d, m, k)


def model_training_flops(model: str, d: int, n: int, m: int, T: int, k: int,
                         input_grad: bool = True, zero_start: bool = False) -> int:
    """GEMM FLOPs of one training step of a benchmark model: 3 × forward GEMMs
    (minus the first layer's input gradient when ``input_grad`` is False).

    The textbook count by default, the same work for rnnlab and torch (the
    benchmark's FLOP rates use it). ``zero_start=True`` counts what rnnlab
    runs: the body starts from zero states, so the first step's recurrent
    product, its dW_hh share and dL/dh_0 are skipped (see :func:`rnn_training_flops`).
    """
    _check_model(model)
    if model == "mlp":
        return mlp_training_flops(d, _mlp_sizes(n, m, T, k), input_grad)
    body = _RECURRENT[model][2](
        d, T, n, m, input_grad=input_grad, zero_start=zero_start, state_grad=not zero_start)
    return body + 3 * linear_forward_flops(d, m, k).gemm


def model_bptt_memory(model: str, d: int, n: int, m: int, T: int, dtype=np.float32) -> Memory:
    """The minimum a training step of a benchmark model must keep for its backward.

    "mlp": d·T·n + d·m; "rnn": T·d·m + T·d·n; "lstm": T·d·6m + T·d·n;
    "gru": T·d·5m + T·d·n (the head's input is h_T, already counted).
    """
    _check_model(model)
    if model == "mlp":
        return mlp_activation_memory(d, [T * n, m, 1], dtype)
    return _RECURRENT[model][3](d, T, n, m, dtype)
