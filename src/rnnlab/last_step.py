"""A recurrent classifier on sequences of different lengths: the head reads each one's last step.

A batch of sequences of lengths ℓ_n is zero-padded after each end to the
longest, x (T, N, F) (see :func:`rnnlab.data.pad_sequences`). A unidirectional
layer runs over the padded batch; sequence n is read up to its own end,

    h_last[n] = output[ℓ_n - 1, n]        (N, H)
    logits    = h_last Wᵀ + b            (N, C)

and in backward the gradient enters the layer at those steps only:

    grad_output[t, n] = dL/dh_last[n]  if t = ℓ_n - 1,  else 0      (T, N, H)

This is exact, not an approximation: in a unidirectional layer the output at
step t depends on x_0 .. x_t only, so the padding after a sequence's end never
reaches output[ℓ_n - 1, n], and since the loss reads no step after it, the
backward pass carries exactly zero back from those steps (every parameter
gradient and dL/dx equal those of running each sequence alone, or of torch's
packed path; tests/test_vowels.py checks that against
``torch.nn.utils.rnn.pack_padded_sequence``). The cost is that of the padded
batch, N·T steps, not Σ ℓ_n: packed sequences remove that waste.
"""

from __future__ import annotations

import numpy as np

from . import init, nn
from .nn import Linear, Module
from .nn._checks import check_array, require_cache

__all__ = ["LastStepClassifier", "RECURRENT_KINDS", "available_kinds", "gather_last",
           "scatter_last"]

RECURRENT_KINDS = ("rnn", "lstm", "gru")


def available_kinds() -> tuple[str, ...]:
    """The recurrent kinds this installation has (``rnnlab.nn.GRU`` may be absent)."""
    return tuple(k for k in RECURRENT_KINDS if hasattr(nn, k.upper()))


def _check_lengths(lengths, T, N) -> np.ndarray:
    lengths = np.asarray(lengths)
    if lengths.shape != (N,) or not np.issubdtype(lengths.dtype, np.integer):
        raise ValueError(f"lengths must be {N} integers (one per sequence), got "
                         f"{lengths.dtype} with shape {lengths.shape}")
    if lengths.min() < 1 or lengths.max() > T:
        raise ValueError(f"lengths must lie in [1, {T}] (the padded length), got "
                         f"min {lengths.min()}, max {lengths.max()}")
    return lengths.astype(np.int64)


def gather_last(output, lengths) -> np.ndarray:
    """Each sequence's output at its own last step: h_last[n] = output[lengths[n] - 1, n].

    Shapes: output (T, N, H), lengths (N,) -> (N, H).
    """
    T, N, _ = output.shape
    lengths = _check_lengths(lengths, T, N)
    return output[lengths - 1, np.arange(N)]


def scatter_last(grad_last, lengths, T) -> np.ndarray:
    """The backward of :func:`gather_last`: dL/dh_last at each last step, zeros elsewhere.

    Shapes: grad_last (N, H), lengths (N,) -> grad_output (T, N, H).
    """
    N, H = grad_last.shape
    lengths = _check_lengths(lengths, T, N)
    grad_output = np.zeros((T, N, H), dtype=grad_last.dtype)
    grad_output[lengths - 1, np.arange(N)] = grad_last
    return grad_output


class LastStepClassifier(Module):
    """An RNN, LSTM or GRU body and a Linear head on each sequence's last hidden state.

    Args:
        kind: "rnn", "lstm" or "gru" (see :func:`available_kinds`).
        input_size: features F per step.
        hidden_size: hidden units H.
        output_size: classes C.
        num_layers: stacked recurrent layers (the head reads the last one).
        activation: the RNN's nonlinearity, "tanh" or "relu" (the LSTM and GRU ignore it).
        dtype, rng: as in the layers; the body is drawn first, then the head.

    Shape:
        forward(x (T, N, F), lengths (N,) or None) -> logits (N, C); lengths
        None means every sequence runs to T. ``forward`` also takes a
        :class:`rnnlab.data.Padded` (x, lengths) as its one argument.
        backward(grad_logits (N, C)) -> None (the data needs no gradient).
    """

    def __init__(self, kind, input_size, hidden_size, output_size, *, num_layers=1,
                 activation="tanh", dtype=np.float32, rng=None):
        super().__init__()
        if kind not in available_kinds():
            raise ValueError(f"kind must be one of {available_kinds()}, got {kind!r}")
        rng = init.as_generator(rng)
        self.kind, self.input_size, self.dtype = kind, input_size, np.dtype(dtype)
        extra = {"nonlinearity": activation} if kind == "rnn" else {}
        self.body = getattr(nn, kind.upper())(input_size, hidden_size, num_layers, dtype=dtype,
                                              rng=rng, **extra)
        self.head = Linear(hidden_size, output_size, dtype=dtype, rng=rng)
        self._lengths = None

    def forward(self, x, lengths=None):
        if lengths is None and isinstance(x, tuple):
            x, lengths = x  # a Padded batch
        check_array(x, f"LastStepClassifier({self.kind}) input", self.dtype, ndims=(3,),
                    last_dim=self.input_size)
        T, N, _ = x.shape
        lengths = (np.full(N, T, dtype=np.int64) if lengths is None
                   else _check_lengths(lengths, T, N))
        output, _ = self.body(x)  # (T, N, H)
        self._lengths = (lengths, T)
        return self.head(gather_last(output, lengths))  # (N, C)

    def backward(self, grad_out, *, input_grad=False):
        """grad_logits (N, C) -> None; parameter gradients are added into ``.grad``.

        ``input_grad`` is accepted for the trainer's call and must stay False.
        """
        if input_grad:
            raise ValueError("LastStepClassifier.backward computes no input gradient; "
                             "expected input_grad=False, got True")
        require_cache(self._lengths, self)
        lengths, T = self._lengths
        self._lengths = None
        grad_output = scatter_last(self.head.backward(grad_out), lengths, T)  # (T, N, H)
        self.body.backward(grad_output, input_grad=False, state_grad=False)
        return None
