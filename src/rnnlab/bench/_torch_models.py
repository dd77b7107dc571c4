"""The torch twins of the benchmark models. Imported only when torch is used."""

from __future__ import annotations

import torch
from torch import nn


class TorchSequenceRegressor(nn.Module):
    """torch.nn.RNN, LSTM or GRU (1 layer) and a Linear head on h_n: the twin of
    :class:`rnnlab.bench.models.SequenceRegressor`, with the same state_dict keys."""

    def __init__(self, mode: str, n: int, m: int, k: int):
        super().__init__()
        self.lstm = mode == "lstm"
        self.body = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[mode](n, m)
        self.head = nn.Linear(m, k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, h_n = self.body(x)
        if self.lstm:
            h_n = h_n[0]
        return self.head(h_n[-1])  # (d, k)


def mlp(p: int, m: int, k: int) -> nn.Module:
    """The flattened-sequence MLP: Linear(p, m), Sigmoid, Linear(m, k)."""
    return nn.Sequential(nn.Linear(p, m), nn.Sigmoid(), nn.Linear(m, k))
