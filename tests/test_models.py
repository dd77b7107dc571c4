"""SequenceModel against the same composition in torch, for every kind."""

from __future__ import annotations

import numpy as np
import pytest

from rnnlab.models import SequenceModel
from conftest import assert_close, to_torch


@pytest.mark.parametrize("kind,every_step", [("mlp", False), ("rnn", False), ("lstm", False),
                                              ("gru", False), ("rnn", True), ("lstm", True),
                                              ("gru", True)])
def test_sequence_model_matches_torch(torch, kind, every_step):
    rng = np.random.default_rng(0)
    T, N, F, H, O, L = 5, 3, 4, 6, 2, 2
    model = SequenceModel(kind, F, H, O, seq_len=T, num_layers=L, every_step=every_step,
                          dtype=np.float64, rng=rng)
    for name, p in model.named_parameters():
        if "bias" in name:
            p.data[...] = rng.uniform(0.2, 0.8, p.shape)
    tnn = torch.nn
    if kind == "mlp":
        theirs = tnn.ModuleDict({"body": tnn.Sequential(
            tnn.Linear(T * F, H), tnn.Tanh(), tnn.Linear(H, H), tnn.Tanh(), tnn.Linear(H, O))}).double()
    else:
        body = {"rnn": tnn.RNN, "lstm": tnn.LSTM, "gru": tnn.GRU}[kind](F, H, L)
        theirs = tnn.ModuleDict({"body": body, "head": tnn.Linear(H, O)}).double()
    theirs.load_state_dict({k: torch.tensor(v) for k, v in model.state_dict().items()})

    x = rng.standard_normal((T, N, F))
    xt = to_torch(torch, x, True)
    if kind == "mlp":
        yt = theirs["body"](xt.permute(1, 0, 2).reshape(N, T * F))
    else:
        out, _ = theirs["body"](xt)
        yt = theirs["head"](out if every_step else out[-1])
    y = model(x)
    assert_close(y, yt.detach().numpy(), np.float64, "output")
    g = rng.standard_normal(y.shape)
    (yt * torch.tensor(g)).sum().backward()
    assert_close(model.backward(g), xt.grad.numpy(), np.float64, "grad x")
    tparams = dict(theirs.named_parameters())
    for name, p in model.named_parameters():
        assert_close(p.grad, tparams[name].grad.numpy(), np.float64, name)


def test_mlp_needs_its_sequence_length():
    with pytest.raises(ValueError, match="seq_len"):
        SequenceModel("mlp", 3, 4, 2)
    model = SequenceModel("mlp", 3, 4, 2, seq_len=5, rng=0)
    with pytest.raises(ValueError, match="expected 5 time steps, got 4"):
        model(np.zeros((4, 2, 3), np.float32))
