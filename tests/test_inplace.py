"""In a Sequential/MLP, an activation next to a Linear works in place; alone, it never
writes into an array the caller owns. Same numbers either way, less memory."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from rnnlab import nn

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
def test_mlp_step_keeps_two_hidden_buffers(activation):
    """Traced peak of an MLP training step (forward + backward): the hidden activation
    and its gradient, not a third copy (an out-of-place activation would make three)."""
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
    assert peak < 2.5 * hidden_bytes, (peak, hidden_bytes)
