"""The tasks a run trains on: how to draw a batch and score the model's output."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ..data import adding_problem, copy_memory, load_digits_sequences, sine_forecast
from ..data.loader import Batch
from ..data.vowels import load_vowels_standardized, pad_or_cut, pad_sequences
from ..last_step import LastStepClassifier
from ..nn import CrossEntropyLoss, MSELoss
from .config import DIGITS_TEST_FRACTION, TrainConfig

__all__ = ["HELD_OUT"]


@dataclass
class _Task:
    """How to draw a batch and score the model's output for one task.

    batch(n, rng) -> Batch(x (T, N, F), y); loss(out, y) -> (float, dloss/dout);
    held_out: data the run never trains on, scored every ``every`` steps.
    """

    input_size: int
    output_size: int
    seq_len: int
    every_step: bool
    batch: Callable[[int, np.random.Generator], Batch]
    loss: Callable[[np.ndarray, np.ndarray], tuple[float, np.ndarray]]
    held_out: Batch | None = None  # the fixed batch of the held-out loss
    make_model: Callable[[np.random.Generator], Any] | None = None  # None: a SequenceModel


def _mse(out, y):
    fn = MSELoss()
    loss = fn(out, y)
    return loss, fn.backward()


def _cross_entropy(out, y):
    fn = CrossEntropyLoss()
    loss = fn(out, y)
    return loss, fn.backward()


# Sequences in the held-out batch of the synthetic tasks (digits holds out its test split).
HELD_OUT = 256


def _make_task(c: TrainConfig, split_rng: np.random.Generator) -> _Task:
    dtype = np.dtype(c.dtype)
    if c.task == "adding":
        return _Task(2, 1, c.seq_len, False,
                     lambda n, rng: adding_problem(n, c.seq_len, rng=rng, dtype=dtype), _mse)
    if c.task == "sine":
        return _Task(1, 1, c.seq_len, False,
                     lambda n, rng: sine_forecast(n, c.seq_len, rng=rng, dtype=dtype, noise=c.noise),
                     _mse)
    if c.task == "copy":
        k, length = c.n_symbols, c.copy_length
        steps, classes = c.seq_len + 2 * length, k + 2

        def batch(n, rng):
            return copy_memory(n, c.seq_len, rng=rng, n_symbols=k, length=length, dtype=dtype)

        if c.model == "mlp":
            # The MLP emits all steps at once, (N, T'·C): view it as (T', N, C).
            def loss(out, y):
                n = out.shape[0]
                logits = out.reshape(n, steps, classes).transpose(1, 0, 2).reshape(steps * n, classes)
                value, grad = _cross_entropy(np.ascontiguousarray(logits), y.reshape(-1))
                return value, grad.reshape(steps, n, classes).transpose(1, 0, 2).reshape(n, -1)

            return _Task(classes, steps * classes, steps, False, batch, loss)

        def loss(out, y):  # (T', N, C) logits, (T', N) classes: mean over all T'·N
            value, grad = _cross_entropy(out.reshape(-1, classes), y.reshape(-1))
            return value, grad.reshape(out.shape)

        return _Task(classes, classes, steps, True, batch, loss)
    if c.task == "vowels":
        return _vowels_task(c)
    # digits: minibatches drawn without replacement from the fixed training split
    split = load_digits_sequences(rng=split_rng, test_fraction=DIGITS_TEST_FRACTION, dtype=dtype)
    x_train, y_train = split.x_train, split.y_train

    def batch(n, rng):
        idx = rng.choice(x_train.shape[1], size=n, replace=False)
        return Batch(x_train[:, idx], y_train[idx])

    return _Task(8, 10, 8, False, batch, _cross_entropy,
                 held_out=Batch(split.x_test, split.y_test))


def _vowels_task(c: TrainConfig) -> _Task:
    """Japanese Vowels, standardised on its training split; batches drawn without replacement.

    The MLP sees every utterance padded or cut to the longest training one; a
    recurrent model reads a Padded batch to each sequence's own end
    (:class:`rnnlab.last_step.LastStepClassifier`). The held-out loss is the test split's.
    """
    data = load_vowels_standardized(dtype=np.dtype(c.dtype))
    (train, y_train), (test, y_test) = data["train"], data["test"]
    longest = max(s.shape[0] for s in train)

    def frames(sequences, idx=None):
        if c.model == "mlp":
            return pad_or_cut(sequences, longest, idx)
        return pad_sequences(sequences, idx)

    def batch(n, rng):
        idx = rng.choice(len(train), size=n, replace=False)
        return Batch(frames(train, idx), y_train[idx])

    def model(rng):
        return LastStepClassifier(c.model, 12, c.hidden, 9, num_layers=c.layers,
                                  activation=c.activation, dtype=np.dtype(c.dtype), rng=rng)

    return _Task(12, 9, longest, False, batch, _cross_entropy,
                 held_out=Batch(frames(test), y_test),
                 make_model=None if c.model == "mlp" else model)
