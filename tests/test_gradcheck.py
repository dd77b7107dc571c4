"""Finite differences (no torch) agree with every module's backward, and catch a wrong one."""

from __future__ import annotations

import numpy as np
import pytest

from rnnlab import nn
from rnnlab.gradcheck import gradcheck, gradcheck_loss

F64 = np.float64
TOL = 1e-5
# The step of the central differences. Their round-off, ~ulp(L)/EPS, is ~2e-9 here (L ~ 10),
# which is 1e-5 of the smallest checked gradients (~1e-4) at EPS=1e-6; at 1e-5 the truncation
# error (~EPS²) is still small: the worst element errors are ~1.5e-6 on every backend.
EPS = 1e-5


def _biased(module, rng):
    for name, p in module.named_parameters():
        if "bias" in name:
            p.data[...] = rng.uniform(0.2, 0.8, p.shape) * rng.choice([-1, 1], p.shape)
    return module


def _cases(rng):
    T, N, I, H = 4, 3, 3, 4
    x = rng.standard_normal((T, N, I))
    state = lambda L: rng.standard_normal((L, N, H))  # noqa: E731
    yield "Linear", nn.Linear(I, H, dtype=F64, rng=rng), (x,)
    for act in ("sigmoid", "tanh", "relu"):
        yield f"MLP-{act}", nn.MLP([I, 5, 2], activation=act, dtype=F64, rng=rng), (x,)
    yield "RNN-tanh", nn.RNN(I, H, num_layers=2, dtype=F64, rng=rng), (x, state(2))
    yield "RNN-relu-bi", nn.RNN(I, H, nonlinearity="relu", bidirectional=True, dtype=F64, rng=rng), (x,)
    yield "LSTM", nn.LSTM(I, H, num_layers=2, dtype=F64, rng=rng), (x, (state(2), state(2)))
    yield "LSTM-bi-batch-first", nn.LSTM(I, H, bidirectional=True, batch_first=True, dtype=F64,
                                         rng=rng), (x.transpose(1, 0, 2).copy(),)
    yield "LSTM-unbatched", nn.LSTM(I, H, dtype=F64, rng=rng), (x[:, 0].copy(),)
    yield "RNNCell", nn.RNNCell(I, H, dtype=F64, rng=rng), (x[0], state(1)[0])
    yield "LSTMCell", nn.LSTMCell(I, H, dtype=F64, rng=rng), (x[0], (state(1)[0], state(1)[0]))


@pytest.mark.parametrize("index", range(len(list(_cases(np.random.default_rng(0))))))
def test_every_module_passes_gradcheck(backend, index):
    rng = np.random.default_rng(index)
    name, module, inputs = list(_cases(rng))[index]
    report = gradcheck(_biased(module, rng), *inputs, rng=rng, max_elements=None, eps=EPS)
    assert report.checked > 0
    assert report.passed(TOL), f"{name}: {report}"


def test_losses_pass_gradcheck():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((5, 4)) * 3
    report = gradcheck_loss(nn.CrossEntropyLoss(), logits, rng.integers(0, 4, 5))
    assert report.passed(TOL), report
    report = gradcheck_loss(nn.MSELoss(), rng.standard_normal((3, 2)), rng.standard_normal((3, 2)))
    assert report.passed(TOL), report


def test_gradcheck_catches_a_wrong_bias_gradient(monkeypatch):
    """The checker must fail when a backward is wrong: drop one of the LSTM's two bias grads."""
    from rnnlab.functional import recurrent

    original = recurrent._param_grads

    def drop_bias_hh(d_pre, x, h_prev, has_bias, accumulate=None, *rest):
        w_ih, w_hh, b_ih, b_hh = accumulate
        return original(d_pre, x, h_prev, has_bias, (w_ih, w_hh, b_ih, np.zeros_like(b_hh)), *rest)

    monkeypatch.setattr(recurrent, "_param_grads", drop_bias_hh)
    rng = np.random.default_rng(1)
    lstm = _biased(nn.LSTM(3, 4, dtype=F64, rng=rng), rng)
    report = gradcheck(lstm, rng.standard_normal((4, 2, 3)), rng=rng)
    assert not report.passed(TOL)
    assert report.worst.startswith("bias_hh_l0")


def test_gradcheck_requires_float64():
    with pytest.raises(TypeError, match="float64"):
        gradcheck(nn.Linear(2, 2, rng=0), np.zeros((1, 2), np.float32))


def test_backend_choice(monkeypatch):
    """auto: whole compiled loop for small steps, fused steps above; numpy can always be forced."""
    from rnnlab.functional import backend

    with backend.use_backend("numpy"):
        assert backend.loops_for(1, 8) == "numpy"
    if backend.numba_available():
        with backend.use_backend("auto"):
            assert backend.loops_for(1, backend.WHOLE_LOOP_MAX_UNITS) == "numba"
            assert backend.loops_for(2, backend.WHOLE_LOOP_MAX_UNITS) == "fused"
    with pytest.raises(ValueError, match="backend must be one of"):
        backend.set_backend("cuda")
    monkeypatch.setattr(backend, "numba_available", lambda: False)
    with pytest.raises(ValueError, match="needs numba installed"):
        backend.set_backend("numba")


def test_gradcheck_fails_on_a_nan_gradient(monkeypatch):
    """A backward that returns NaN must fail the check, not slip through max()."""
    rng = np.random.default_rng(2)
    lin = nn.Linear(3, 2, dtype=F64, rng=rng)
    original = nn.Linear.backward

    def nan_backward(self, grad_out, **kwargs):
        grad_x = original(self, grad_out, **kwargs)
        self.weight.grad[...] = np.nan
        return grad_x

    monkeypatch.setattr(nn.Linear, "backward", nan_backward)
    report = gradcheck(lin, rng.standard_normal((4, 3)), rng=rng)
    assert not report.passed(TOL)
    assert report.worst.startswith("weight")


@pytest.mark.parametrize("backend_name", ["numpy", "auto"])
def test_the_docstring_example_passes_on_every_seed(backend_name):
    """The module docstring's example, with the defaults, passes gradcheck's own 1e-6 on
    40 seeds of its upstream weights and checked elements (with eps = 1e-6 it failed on
    about a third of them)."""
    import rnnlab.gradcheck as module
    from rnnlab.functional.backend import numba_available, use_backend
    if backend_name == "auto" and not numba_available():
        pytest.skip("auto is numpy without numba")
    x = np.random.default_rng(1).standard_normal((5, 2, 3))
    assert "gradcheck(lstm, x, rng=2).max_rel_error < 1e-6" in module.__doc__
    with use_backend(backend_name):
        worst = [gradcheck(nn.LSTM(3, 4, dtype=F64, rng=0), x, rng=seed).max_rel_error
                 for seed in range(40)]
    assert max(worst) < 1e-6, (max(worst), int(np.argmax(worst)))
