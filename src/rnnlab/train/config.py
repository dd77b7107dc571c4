"""The configuration of a training run: :class:`TrainConfig`, its defaults and its checks."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import numpy as np

from ..models import KINDS

__all__ = ["TrainConfig", "TrainError", "TASKS", "OPTIMIZERS", "ACTIVATIONS", "DTYPES",
           "TASK_OPTIONS", "DEFAULT_LR", "DEFAULT_MOMENTUM", "DIGITS_TEST_FRACTION",
           "RESUMABLE_OVERRIDES"]

TASKS = ("adding", "copy", "sine", "digits", "vowels")
OPTIMIZERS = ("sgd", "adam")
ACTIVATIONS = ("tanh", "relu", "sigmoid")
DTYPES = ("float32", "float64")

# Task-size options and their defaults; an option of another task must stay unset.
TASK_OPTIONS = {
    "adding": {"seq_len": 50},
    "copy": {"seq_len": 20, "n_symbols": 8, "copy_length": 10},
    "sine": {"seq_len": 50, "noise": 0.0},
    "digits": {},
    "vowels": {},
}
DEFAULT_LR = {"adam": 1e-3, "sgd": 1e-2}
DEFAULT_MOMENTUM = 0.9  # SGD only
DIGITS_TEST_FRACTION = 0.25
VOWELS_TRAIN = 270  # utterances in the Japanese Vowels training split

# Options that may change when a run is resumed: none of them changes a shape,
# the data stream or the optimizer's state layout.
RESUMABLE_OVERRIDES = ("steps", "lr", "clip", "every", "keep")

class TrainError(ValueError):
    """A user error: a bad configuration, an output folder already in use, nothing to resume."""


# ---------------------------------------------------------------- configuration


def _check_int(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise TrainError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_float(name, value, *, positive=False, allow_none=False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TrainError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise TrainError(f"{name} must be a finite number {'> 0' if positive else '>= 0'}, "
                         f"got {value!r}")
    return value


def _check_choice(name, value, choices):
    if value not in choices:
        raise TrainError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a run; ``resolved()`` fills the task and optimizer defaults.

    Attributes:
        model: "mlp", "rnn", "lstm" or "gru".
        task: "adding", "copy", "sine", "digits" or "vowels".
        seq_len: T of adding/sine (default 50), the copy delay (default 20); unset for digits (T=8).
        n_symbols, copy_length: copy memory's alphabet K (8) and symbols to recall L (10).
        noise: sine's input noise std (0.0).
        hidden: hidden units H. layers: stacked recurrent layers / MLP hidden layers.
        activation: the MLP's activation or the RNN's nonlinearity (ignored by the LSTM and GRU).
        optimizer: "sgd" or "adam"; lr (default 1e-2 for SGD, 1e-3 for Adam);
        momentum: SGD only (default 0.9); weight_decay: L2, both.
        clip: max gradient norm, or None for no clipping.
        steps: total steps of the run (a resumed run stops at the same step).
        batch: sequences per step. seed: the root seed (init, data, split).
        dtype: "float32" or "float64".
        every: checkpoint every this many steps (and at the last step).
        keep: how many of the newest checkpoints to keep.
    """

    model: str = "lstm"
    task: str = "adding"
    seq_len: int | None = None
    n_symbols: int | None = None
    copy_length: int | None = None
    noise: float | None = None
    hidden: int = 32
    layers: int = 1
    activation: str = "tanh"
    optimizer: str = "adam"
    lr: float | None = None
    momentum: float | None = None
    weight_decay: float = 0.0
    clip: float | None = None
    steps: int = 1000
    batch: int = 32
    seed: int = 0
    dtype: str = "float32"
    every: int = 100
    keep: int = 3

    def resolved(self) -> "TrainConfig":
        """A checked copy with every default filled in.

        Raises:
            TrainError: a value out of range, or an option that does not apply
                (e.g. ``noise`` with the adding task, ``momentum`` with Adam).
        """
        c = self
        _check_choice("model", c.model, KINDS)
        task = _check_choice("task", c.task, TASKS)
        _check_choice("optimizer", c.optimizer, OPTIMIZERS)
        _check_choice("activation", c.activation, ACTIVATIONS)
        _check_choice("dtype", c.dtype, DTYPES)
        if c.model == "rnn" and c.activation == "sigmoid":
            raise TrainError("activation of the RNN must be tanh or relu, got 'sigmoid'")
        updates: dict[str, Any] = {}
        for option in ("seq_len", "n_symbols", "copy_length", "noise"):
            value = getattr(c, option)
            if option not in TASK_OPTIONS[task]:
                if value is not None:
                    applies = [t for t, opts in TASK_OPTIONS.items() if option in opts]
                    raise TrainError(f"{option} applies to the {'/'.join(applies)} task(s), "
                                     f"not to {task!r}")
                continue
            if value is None:
                value = TASK_OPTIONS[task][option]
            if option == "noise":
                value = _check_float("noise", value)
            else:
                value = _check_int(option, value, 2 if (option, task) == ("seq_len", "adding") else 1)
            updates[option] = value
        updates["hidden"] = _check_int("hidden", c.hidden, 1)
        updates["layers"] = _check_int("layers", c.layers, 1)
        lr = DEFAULT_LR[c.optimizer] if c.lr is None else c.lr
        updates["lr"] = _check_float("lr", lr, positive=True)
        if c.optimizer == "sgd":
            updates["momentum"] = _check_float(
                "momentum", DEFAULT_MOMENTUM if c.momentum is None else c.momentum)
        elif c.momentum is not None:
            raise TrainError("momentum applies to the sgd optimizer, not to adam")
        updates["weight_decay"] = _check_float("weight_decay", c.weight_decay)
        updates["clip"] = _check_float("clip", c.clip, positive=True, allow_none=True)
        updates["steps"] = _check_int("steps", c.steps, 1)
        updates["batch"] = _check_int("batch", c.batch, 1)
        updates["seed"] = _check_int("seed", c.seed, 0)
        updates["every"] = _check_int("every", c.every, 1)
        updates["keep"] = _check_int("keep", c.keep, 1)
        if task == "digits":
            n_train = 1797 - round(DIGITS_TEST_FRACTION * 1797)
            if updates["batch"] > n_train:
                raise TrainError(f"batch must be at most {n_train} (the digits training set), "
                                 f"got {updates['batch']}")
        if task == "vowels" and updates["batch"] > VOWELS_TRAIN:
            raise TrainError(f"batch must be at most {VOWELS_TRAIN} (the Japanese Vowels training "
                             f"set), got {updates['batch']}")
        return replace(c, **updates)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data) -> "TrainConfig":
        """The config of a dict as written by :meth:`to_dict` (exactly its keys), resolved."""
        if not isinstance(data, dict):
            raise TrainError(f"a config must be a JSON object, got {type(data).__name__}")
        names = {f.name for f in fields(cls)}
        missing, unexpected = sorted(names - set(data)), sorted(set(data) - names)
        if missing or unexpected:
            raise TrainError(f"config keys: missing {missing}, unexpected {unexpected}")
        return cls(**data).resolved()
