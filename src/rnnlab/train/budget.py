"""The memory a training run needs, estimated from its config before anything is allocated.

With P parameters of b bytes (:mod:`rnnlab.analysis` counts them) and B optimizer
buffers per parameter (Adam 2, SGD with momentum 1, plain SGD 0)::

    state       = P·b·(2 + B)          weights, gradients, optimizer buffers
    activations = 2 · A                A: what BPTT keeps (the analysis formulas, per
                                       layer, for the larger of the batch and the
                                       held-out batch); the backward builds as much again
    checkpoint  = P·b·(1 + B)          a checkpoint write serialises weights and buffers
    estimate    = state + max(activations, checkpoint)

It is an estimate of the order of magnitude, meant to refuse sizes that cannot
fit (``--hidden 10000000``, or 20000 on a machine with a few GiB), not to pack
memory to the last byte.
"""

from __future__ import annotations

import numpy as np

from ..analysis.complexity import (gru_bptt_memory, gru_params, linear_params, lstm_bptt_memory,
                                   lstm_params, mlp_activation_memory, mlp_params, rnn_bptt_memory,
                                   rnn_params)
from ..memory_guard import require_memory
from .config import TrainConfig

__all__ = ["training_memory", "require_training_memory"]

# model -> (parameter count, activations BPTT keeps), from rnnlab.analysis.
_RECURRENT_FORMULAS = {"rnn": (rnn_params, rnn_bptt_memory), "lstm": (lstm_params, lstm_bptt_memory),
                       "gru": (gru_params, gru_bptt_memory)}


def _buffers(c: TrainConfig) -> int:
    if c.optimizer == "adam":
        return 2
    return 1 if c.momentum else 0


def training_memory(c: TrainConfig, input_size: int, output_size: int, seq_len: int,
                    eval_batch: int) -> int:
    """Bytes a training step of ``c`` needs, by the formula of the module docstring.

    Args:
        c: a resolved config.
        input_size, output_size, seq_len: the task's F, outputs and T.
        eval_batch: sequences of the held-out batch (scored forward only).
    """
    itemsize = np.dtype(c.dtype).itemsize
    d, T, H = max(c.batch, eval_batch), seq_len, c.hidden
    if c.model == "mlp":
        sizes = [T * input_size] + [H] * c.layers + [output_size]
        params = sum(mlp_params(sizes).values())
        kept = mlp_activation_memory(d, sizes, c.dtype).floats
    else:
        count, bptt = _RECURRENT_FORMULAS[c.model]
        params = sum(count(input_size, H, c.layers).values()) + linear_params(H, output_size)
        kept = sum(bptt(d, T, input_size if layer == 0 else H, H, c.dtype).floats
                   for layer in range(c.layers)) + d * T * output_size
    buffers = _buffers(c)
    state = params * itemsize * (2 + buffers)
    return state + max(2 * kept * itemsize, params * itemsize * (1 + buffers))


def require_training_memory(c: TrainConfig, input_size: int, output_size: int, seq_len: int,
                            eval_batch: int) -> None:
    """A :class:`~rnnlab.memory_guard.MemoryBudgetError` if the run cannot fit."""
    nbytes = training_memory(c, input_size, output_size, seq_len, eval_batch)
    require_memory(nbytes, f"training {c.model} --hidden {c.hidden} --layers {c.layers} "
                           f"--batch {c.batch} (T = {seq_len}, {c.optimizer}, {c.dtype})")
