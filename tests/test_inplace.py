"""In a Sequential/MLP, an activation next to a Linear works in place, and a Linear's
input gradient goes through the activation before it over that activation's output;
alone, an activation never writes into an array the caller owns. Same numbers either
way, less memory."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from rnnlab import nn
from rnnlab.functional import linear as linear_fn

from conftest import assert_close

ACTIVATIONS = ["sigmoid", "tanh", "relu"]


def _by_hand(mlp, x, g):
    """The same forward and backward, module by module, through the public calls only."""
    layers = list(mlp)
    out = x
    for layer in layers:
        out = layer(out)
    grad = g
    for layer in reversed(layers[1:]):
        grad = layer.backward(grad)
    layers[0].backward(grad)
    return out


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_in_place_mlp_equals_module_by_module(backend, activation, dtype):
    rng = np.random.default_rng(71)
    mlp = nn.MLP([6, 9, 7, 3], activation=activation, dtype=dtype, rng=rng)
    x = rng.standard_normal((5, 6)).astype(dtype)
    g = rng.standard_normal((5, 3)).astype(dtype)
    mlp.zero_grad()
    want = _by_hand(mlp, x, g).copy()
    want_grads = [p.grad.copy() for p in mlp.parameters()]
    mlp.zero_grad()
    got = mlp(x)
    mlp.backward(g)
    np.testing.assert_array_equal(got, want)
    for p, w in zip(mlp.parameters(), want_grads):
        np.testing.assert_array_equal(p.grad, w)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_activation_alone_leaves_its_arguments_alone(backend, activation):
    """A user's input and upstream gradient are read, never written."""
    rng = np.random.default_rng(73)
    module = {"sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "relu": nn.ReLU}[activation]()
    x = rng.standard_normal((4, 5))
    g = rng.standard_normal((4, 5))
    x0, g0 = x.copy(), g.copy()
    y = module(x)
    grad_x = module.backward(g)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(g, g0)
    assert not np.shares_memory(y, x) and not np.shares_memory(grad_x, g)
    # A Sequential that starts or ends with the activation must not write into x or g either.
    seq = nn.Sequential(module, nn.Linear(5, 3, dtype=np.float64, rng=rng), type(module)())
    seq(x)
    seq.backward(rng.standard_normal((4, 3)).copy())
    np.testing.assert_array_equal(x, x0)


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_row_blocks_equal_module_by_module(monkeypatch, backend, activation, dtype):
    """Random shapes with the row blocks forced on: the MLP's gradients equal those
    of the modules run one by one (the blocks only split the rows of one product)."""
    monkeypatch.setattr(linear_fn, "ROW_BLOCK_MIN_BYTES", 1)
    rng = np.random.default_rng(83)
    for _ in range(4):
        rows = int(rng.integers(1, 40))
        sizes = [int(v) for v in rng.integers(1, 30, size=int(rng.integers(3, 5)))]
        sizes[-1] = int(rng.integers(1, 4))  # a narrow weight, so that the blocks are taken
        mlp = nn.MLP(sizes, activation=activation, dtype=dtype, rng=rng)
        x = rng.standard_normal((rows, sizes[0])).astype(dtype)
        g = rng.standard_normal((rows, sizes[-1])).astype(dtype)
        mlp.zero_grad()
        _by_hand(mlp, x, g)
        want = [p.grad.copy() for p in mlp.parameters()]
        mlp.zero_grad()
        mlp(x)
        mlp.backward(g, input_grad=False)
        for (name, p), w in zip(mlp.named_parameters(), want):
            assert_close(p.grad, w, dtype, f"{activation} {sizes} rows={rows} {name}")


def test_input_grad_through_activation_blocks(monkeypatch):
    """The blocked product, against dL/dh computed whole; h is overwritten with dL/dpre,
    and a non-contiguous h is left alone."""
    rng = np.random.default_rng(89)
    rows, n_out, n_in = 37, 3, 50
    weight = rng.standard_normal((n_out, n_in))
    grad_y = rng.standard_normal((rows, n_out))
    h = np.tanh(rng.standard_normal((rows, n_in)))
    want = (grad_y @ weight) * (1 - h * h)
    monkeypatch.setattr(linear_fn, "ROW_BLOCK_MIN_BYTES", 1)
    assert linear_fn._row_blocks(h, weight) == linear_fn.ROW_BLOCKS
    from rnnlab.functional.activations import tanh_backward
    h_f = np.asfortranarray(h)
    got_f = linear_fn.input_grad_through_activation(grad_y, weight, h_f, tanh_backward)
    np.testing.assert_array_equal(h_f, h)
    got = linear_fn.input_grad_through_activation(grad_y, weight, h, tanh_backward)
    assert got is h
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got_f, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_mlp_step_keeps_one_hidden_buffer(activation):
    """Traced peak of an MLP training step (forward + backward): the hidden activation
    and an eighth of its gradient. Whole, the gradient would double the peak; an
    out-of-place activation would triple it."""
    rng = np.random.default_rng(79)
    d, n_in, hidden = 256, 64, 512
    mlp = nn.MLP([n_in, hidden, 10], activation=activation, rng=rng)
    x = rng.standard_normal((d, n_in)).astype(np.float32)
    g = rng.standard_normal((d, 10)).astype(np.float32)
    for _ in range(2):  # gradients exist from here on, as in a training loop
        mlp.zero_grad()
        mlp(x)
        mlp.backward(g, input_grad=False)
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        mlp.zero_grad()
        mlp(x)
        mlp.backward(g, input_grad=False)
        peak = tracemalloc.get_traced_memory()[1] - start
    finally:
        tracemalloc.stop()
    hidden_bytes = d * hidden * 4
    assert peak < 1.3 * hidden_bytes, (peak, hidden_bytes)
