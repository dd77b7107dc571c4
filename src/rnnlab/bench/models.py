"""The benchmark models and their training-step closures, in rnnlab and in torch.

A grid :class:`Point` fixes the shapes: batch d, input n, hidden m, steps T,
outputs k. The three models (see :mod:`rnnlab.analysis.complexity`):

- ``"mlp"``: the flattened sequence (d, T·n) → Linear(T·n, m) → σ → Linear(m, k);
- ``"rnn"``: RNN(n, m) (tanh, 1 layer) → Linear(m, k) on the last hidden state;
- ``"lstm"``: LSTM(n, m) (1 layer) → Linear(m, k) on the last hidden state;
- ``"gru"``: GRU(n, m) (1 layer) → Linear(m, k) on the last hidden state.

Every model is trained with the MSE loss and SGD. One training step is::

    optimizer.zero_grad()
    loss = mse(model(x), y)
    backward
    optimizer.step()

Fairness choices:

- Both sides start from the same weights (rnnlab's init, loaded into torch)
  and train on the same float32 arrays (x, y).
- The head reads the last hidden state. rnnlab passes the head's input
  gradient back as ``grad_h_n`` with ``grad_output=None`` (exact for one
  unidirectional layer, where output[-1] is h_n, and cheaper than a (T, d, m)
  array of zeros); torch uses ``h_n`` and its autograd does the rest.
- torch clears gradients with ``zero_grad(set_to_none=True)``, its default and
  its fastest path (the backward then writes fresh gradients instead of adding
  into zeroed ones). rnnlab's contract is to add into ``param.grad``, so it
  zeroes in place. Each side runs its idiomatic, fastest loop.
- ``torch.optim.SGD`` with its defaults (no ``foreach`` on CPU), no
  ``torch.compile``; the loss is returned as a tensor (no ``.item()`` sync in
  the timed step).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np

from ..analysis.complexity import MODELS
from ..models import SequenceModel
from ..nn import MLP, Module, MSELoss
from ..optim import SGD

__all__ = ["Point", "SequenceRegressor", "StepPair", "make_data", "build_rnnlab", "build_torch",
           "make_pair", "import_torch"]


@dataclass(frozen=True)
class Point:
    """One grid point: a model and its shapes."""

    model: str
    d: int
    n: int
    m: int
    T: int
    k: int = 10

    def __post_init__(self):
        if self.model not in MODELS:
            raise ValueError(f"model must be one of {MODELS}, got {self.model!r}")
        for name in ("d", "n", "m", "T", "k"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
                raise ValueError(f"Point.{name} must be a positive integer, got {value!r}")

    def as_dict(self) -> dict:
        return asdict(self)

    def label(self) -> str:
        return f"{self.model} d={self.d} n={self.n} m={self.m} T={self.T}"


def SequenceRegressor(mode: str, n: int, m: int, k: int, *, dtype=np.float32, rng=None):
    """The benchmark's recurrent model: :class:`rnnlab.models.SequenceModel` with one
    RNN (tanh), LSTM or GRU layer and a Linear head on the last hidden state.

    Shape: x (T, d, n) -> prediction (d, k). Its state_dict keys ("body.weight_ih_l0",
    ..., "head.weight", "head.bias") are those of the torch twin built by :func:`build_torch`.
    """
    if mode not in ("rnn", "lstm", "gru"):
        raise ValueError(f"mode must be 'rnn', 'lstm' or 'gru', got {mode!r}")
    return SequenceModel(mode, n, m, k, dtype=dtype, rng=rng)


def make_data(point: Point, seed: int = 0):
    """(x, y) float32 for a point: x (T, d, n), or (d, T·n) for the MLP; y (d, k)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((point.T, point.d, point.n)).astype(np.float32)
    y = rng.standard_normal((point.d, point.k)).astype(np.float32)
    if point.model == "mlp":  # the flattened sequence of each sample
        x = np.ascontiguousarray(x.transpose(1, 0, 2).reshape(point.d, point.T * point.n))
    return x, y


def build_rnnlab(point: Point, seed: int = 0) -> Module:
    """The rnnlab model of a point, initialised from ``seed``."""
    rng = np.random.default_rng(seed)
    if point.model == "mlp":
        return MLP([point.T * point.n, point.m, point.k], activation="sigmoid", rng=rng)
    return SequenceRegressor(point.model, point.n, point.m, point.k, rng=rng)


def rnnlab_step(model: Module, optimizer: SGD, x: np.ndarray, y: np.ndarray) -> Callable[[], float]:
    """A closure running one rnnlab training step on (x, y); it returns the loss."""
    loss_fn = MSELoss()
    forward, backward = model.forward, model.backward
    zero_grad, update = optimizer.zero_grad, optimizer.step

    def step():
        zero_grad()
        loss = loss_fn(forward(x), y)
        backward(loss_fn.backward(), input_grad=False)  # the data needs no gradient, as in torch
        update()
        return loss

    return step


def import_torch():
    """The torch module, or None when it is not installed (or fails to import)."""
    try:
        import torch
    except Exception:  # ImportError, or a broken install
        return None
    return torch


def build_torch(point: Point, state_dict):
    """The torch twin of a point's model, with the given (rnnlab) weights loaded."""
    torch = import_torch()
    if torch is None:
        raise ImportError("torch is not installed")
    from . import _torch_models

    if point.model == "mlp":
        model = _torch_models.mlp(point.T * point.n, point.m, point.k)
    else:
        model = _torch_models.TorchSequenceRegressor(point.model, point.n, point.m, point.k)
    model.load_state_dict({name: torch.tensor(np.array(value)) for name, value in state_dict.items()})
    return model.float().train()


def torch_step(model, optimizer, x, y):
    """A closure running one torch training step on tensors (x, y); it returns the loss tensor."""
    torch = import_torch()
    loss_fn = torch.nn.MSELoss()
    zero_grad, update = optimizer.zero_grad, optimizer.step

    def step():
        zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        update()
        return loss

    return step


@dataclass
class StepPair:
    """The two sides of one grid point: models, optimizers, data and step closures.

    ``torch_*`` fields are None when torch is not used.
    """

    point: Point
    x: np.ndarray
    y: np.ndarray
    rnnlab_model: Module
    rnnlab_optimizer: SGD
    rnnlab_step: Callable[[], float]
    torch_model: object = None
    torch_optimizer: object = None
    torch_step: Callable[[], object] | None = None


def make_pair(point: Point, *, seed: int = 0, lr: float = 0.01, momentum: float = 0.0,
              with_torch: bool = True) -> StepPair:
    """Build both sides of a point from the same weights and the same data."""
    x, y = make_data(point, seed)
    model = build_rnnlab(point, seed)
    opt = SGD(model.parameters(), lr=lr, momentum=momentum)
    pair = StepPair(point, x, y, model, opt, rnnlab_step(model, opt, x, y))
    if with_torch:
        torch = import_torch()
        if torch is None:
            raise ImportError("torch is not installed")
        tmodel = build_torch(point, model.state_dict())
        topt = torch.optim.SGD(tmodel.parameters(), lr=lr, momentum=momentum)
        tx, ty = torch.tensor(x), torch.tensor(y)
        pair.torch_model, pair.torch_optimizer = tmodel, topt
        pair.torch_step = torch_step(tmodel, topt, tx, ty)
    return pair
