"""Every layer and loss against torch: outputs, final states, and every gradient.

Shapes, layer counts, directions and layouts are drawn at random per trial;
biases are random and non-zero (a zero bias hides a wrong-bias bug). One
helper per family loads the same weights into both frameworks, runs forward,
backpropagates the same random upstream gradients, and compares all of it.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from rnnlab import nn
from conftest import assert_close, to_torch

DTYPES = [np.float64, np.float32]
TORCH_DTYPE = {np.float64: "float64", np.float32: "float32"}


def _load_into_torch(torch, ours, theirs):
    """Copy our state_dict into the torch module and check the key sets agree."""
    sd = ours.state_dict()
    assert set(sd) == set(theirs.state_dict()), "parameter names differ from torch"
    missing = theirs.load_state_dict({k: torch.tensor(v) for k, v in sd.items()}, strict=True)
    assert not missing.missing_keys and not missing.unexpected_keys


def _randomize_biases(module, rng):
    """Random, clearly non-zero biases (init could draw values near zero)."""
    for name, p in module.named_parameters():
        if "bias" in name:
            p.data[...] = rng.uniform(0.2, 0.8, p.shape) * rng.choice([-1, 1], p.shape)


def _compare_params(torch, ours, theirs, dtype):
    tparams = dict(theirs.named_parameters())
    errs = {}
    for name, p in ours.named_parameters():
        errs[name] = assert_close(p.grad, tparams[name].grad.numpy(), dtype, f"grad {name}")
    return max(errs.values())


def _sequence_case(torch, rng, kind, dtype, trial):
    """One random configuration of RNN/LSTM/GRU compared with torch.nn.RNN/LSTM/GRU."""
    tdtype = getattr(torch, TORCH_DTYPE[dtype])
    T, N = int(rng.integers(1, 7)), int(rng.integers(1, 5))
    I, H = int(rng.integers(1, 7)), int(rng.integers(1, 7))
    if trial % 3 == 2:  # hidden >= 8 x batch: the fused LSTM's feature-major product
        H = 8 * N + int(rng.integers(0, 3))
    L = int(rng.integers(1, 4))
    bidirectional, batch_first = bool(rng.integers(2)), bool(rng.integers(2))
    unbatched = trial % 5 == 4
    give_state = bool(rng.integers(2))
    bias = trial % 7 != 6
    kwargs = dict(num_layers=L, bias=bias, batch_first=batch_first, bidirectional=bidirectional)
    if kind == "lstm":
        ours = nn.LSTM(I, H, **kwargs, dtype=dtype, rng=rng)
        theirs = torch.nn.LSTM(I, H, **kwargs, dtype=tdtype)
    elif kind == "gru":  # tests/test_gru.py runs these
        ours = nn.GRU(I, H, **kwargs, dtype=dtype, rng=rng)
        theirs = torch.nn.GRU(I, H, **kwargs, dtype=tdtype)
    else:
        ours = nn.RNN(I, H, nonlinearity=kind.split("_")[1], **kwargs, dtype=dtype, rng=rng)
        theirs = torch.nn.RNN(I, H, nonlinearity=kind.split("_")[1], **kwargs, dtype=tdtype)
    if bias:
        _randomize_biases(ours, rng)
    _load_into_torch(torch, ours, theirs)

    D = 2 if bidirectional else 1
    if unbatched:
        x = rng.standard_normal((T, I)).astype(dtype)
        state_shape = (L * D, H)
    else:
        x = rng.standard_normal((N, T, I) if batch_first else (T, N, I)).astype(dtype)
        state_shape = (L * D, N, H)
    n_states = 2 if kind == "lstm" else 1
    states = [rng.standard_normal(state_shape).astype(dtype) for _ in range(n_states)]

    xt = to_torch(torch, x, True)
    st = [to_torch(torch, s, True) for s in states]
    if kind == "lstm":
        hx, hxt = (tuple(states), tuple(st)) if give_state else (None, None)
    else:
        hx, hxt = (states[0], st[0]) if give_state else (None, None)
    out, finals = ours(x, hx)
    tout, tfinals = theirs(xt, hxt)
    finals = finals if kind == "lstm" else (finals,)
    tfinals = tfinals if kind == "lstm" else (tfinals,)

    worst = assert_close(out, tout.detach().numpy(), dtype, "output")
    for f, tf in zip(finals, tfinals):
        worst = max(worst, assert_close(f, tf.detach().numpy(), dtype, "final state"))

    g_out = rng.standard_normal(out.shape).astype(dtype)
    g_finals = [rng.standard_normal(f.shape).astype(dtype) for f in finals]
    loss = (tout * to_torch(torch, g_out)).sum()
    for tf, g in zip(tfinals, g_finals):
        loss = loss + (tf * to_torch(torch, g)).sum()
    loss.backward()
    if kind == "lstm":
        grad_x, grad_states = ours.backward(g_out, tuple(g_finals))
    else:
        grad_x, grad_h0 = ours.backward(g_out, g_finals[0])
        grad_states = (grad_h0,)

    worst = max(worst, assert_close(grad_x, xt.grad.numpy(), dtype, "grad x"))
    if give_state:
        for g, s in zip(grad_states, st):
            worst = max(worst, assert_close(g, s.grad.numpy(), dtype, "grad initial state"))
    worst = max(worst, _compare_params(torch, ours, theirs, dtype))
    return worst


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["rnn_tanh", "rnn_relu", "lstm"])
def test_sequence_layers_match_torch(torch, backend, kind, dtype):
    rng = np.random.default_rng(zlib.crc32(f"{kind}-{np.dtype(dtype)}".encode()))
    worst = max(_sequence_case(torch, rng, kind, dtype, trial) for trial in range(25))
    print(f"{backend} {kind} {np.dtype(dtype)}: worst relative error {worst:.2e}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["rnn_tanh", "rnn_relu", "lstm"])
def test_cells_match_torch(torch, backend, kind, dtype):
    rng = np.random.default_rng(7)
    tdtype = getattr(torch, TORCH_DTYPE[dtype])
    for trial in range(10):
        N, I, H = (int(v) for v in rng.integers(1, 7, size=3))
        unbatched = trial % 3 == 2
        if kind == "lstm":
            ours, theirs = nn.LSTMCell(I, H, dtype=dtype, rng=rng), torch.nn.LSTMCell(I, H, dtype=tdtype)
        else:
            nl = kind.split("_")[1]
            ours = nn.RNNCell(I, H, nonlinearity=nl, dtype=dtype, rng=rng)
            theirs = torch.nn.RNNCell(I, H, nonlinearity=nl, dtype=tdtype)
        _randomize_biases(ours, rng)
        _load_into_torch(torch, ours, theirs)
        lead = () if unbatched else (N,)
        x = rng.standard_normal(lead + (I,)).astype(dtype)
        states = [rng.standard_normal(lead + (H,)).astype(dtype) for _ in range(2 if kind == "lstm" else 1)]
        xt, st = to_torch(torch, x, True), [to_torch(torch, s, True) for s in states]
        g = [rng.standard_normal(lead + (H,)).astype(dtype) for _ in states]
        if kind == "lstm":
            h, c = ours(x, tuple(states))
            th, tc = theirs(xt, tuple(st))
            assert_close(h, th.detach().numpy(), dtype, "h'")
            assert_close(c, tc.detach().numpy(), dtype, "c'")
            ((th * to_torch(torch, g[0])).sum() + (tc * to_torch(torch, g[1])).sum()).backward()
            grad_x, grad_states = ours.backward((g[0], g[1]))
        else:
            h = ours(x, states[0])
            th = theirs(xt, st[0])
            assert_close(h, th.detach().numpy(), dtype, "h'")
            (th * to_torch(torch, g[0])).sum().backward()
            grad_x, grad_h = ours.backward(g[0])
            grad_states = (grad_h,)
        assert_close(grad_x, xt.grad.numpy(), dtype, "grad x")
        for gs, s in zip(grad_states, st):
            assert_close(gs, s.grad.numpy(), dtype, "grad state")
        _compare_params(torch, ours, theirs, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu"])
def test_mlp_matches_torch(torch, activation, dtype):
    rng = np.random.default_rng(3)
    tdtype = getattr(torch, TORCH_DTYPE[dtype])
    act = {"sigmoid": torch.nn.Sigmoid, "tanh": torch.nn.Tanh, "relu": torch.nn.ReLU}[activation]
    for trial in range(10):
        sizes = [int(s) for s in rng.integers(1, 9, size=rng.integers(2, 5))]
        ours = nn.MLP(sizes, activation=activation, dtype=dtype, rng=rng)
        layers = []
        for k, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(torch.nn.Linear(a, b, dtype=tdtype))
            if k < len(sizes) - 2:
                layers.append(act())
        theirs = torch.nn.Sequential(*layers)
        _randomize_biases(ours, rng)
        _load_into_torch(torch, ours, theirs)
        lead = tuple(rng.integers(1, 4, size=rng.integers(1, 3)))  # any leading axes
        x = rng.standard_normal(lead + (sizes[0],)).astype(dtype)
        xt = to_torch(torch, x, True)
        y, ty = ours(x), theirs(xt)
        assert_close(y, ty.detach().numpy(), dtype, "output")
        g = rng.standard_normal(y.shape).astype(dtype)
        (ty * to_torch(torch, g)).sum().backward()
        assert_close(ours.backward(g), xt.grad.numpy(), dtype, "grad x")
        _compare_params(torch, ours, theirs, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias", [True, False])
def test_linear_feature_major_product_matches_torch(torch, dtype, bias):
    """Batches of 8-32 rows with a large weight take the W · xᵀ product (see linear.py):
    it must give torch's output and gradients, for every batch around the switch."""
    from rnnlab.functional.linear import FEATURE_MAJOR_ROWS, _feature_major_pays
    rng = np.random.default_rng(61)
    tdtype = getattr(torch, TORCH_DTYPE[dtype])
    n_in, n_out = 300, 120
    ours = nn.Linear(n_in, n_out, bias=bias, dtype=dtype, rng=rng)
    theirs = torch.nn.Linear(n_in, n_out, bias=bias, dtype=tdtype)
    _randomize_biases(ours, rng)
    _load_into_torch(torch, ours, theirs)
    lo, hi = FEATURE_MAJOR_ROWS
    taken = []
    for lead in [(lo - 1,), (lo,), (hi,), (hi + 1,), (2, lo // 2 + 1)]:
        taken.append(_feature_major_pays(int(np.prod(lead)), ours.weight.data))
        ours.zero_grad()
        theirs.zero_grad()
        x = rng.standard_normal(lead + (n_in,)).astype(dtype)
        xt = to_torch(torch, x, True)
        y, ty = ours(x), theirs(xt)
        assert y.flags.c_contiguous and y.shape == lead + (n_out,)
        assert_close(y, ty.detach().numpy(), dtype, "output")
        g = rng.standard_normal(y.shape).astype(dtype)
        (ty * to_torch(torch, g)).sum().backward()
        assert_close(ours.backward(g), xt.grad.numpy(), dtype, "grad x")
        _compare_params(torch, ours, theirs, dtype)
    assert taken == [False, True, True, False, True]  # both products were exercised


@pytest.mark.parametrize("dtype", DTYPES)
def test_linear_without_bias_matches_torch(torch, dtype):
    rng = np.random.default_rng(5)
    tdtype = getattr(torch, TORCH_DTYPE[dtype])
    ours, theirs = nn.Linear(4, 3, bias=False, dtype=dtype, rng=rng), torch.nn.Linear(4, 3, bias=False, dtype=tdtype)
    _load_into_torch(torch, ours, theirs)
    x = rng.standard_normal((1, 4)).astype(dtype)  # one row: the outer-product path of dW
    xt = to_torch(torch, x, True)
    y, ty = ours(x), theirs(xt)
    g = rng.standard_normal(y.shape).astype(dtype)
    (ty * to_torch(torch, g)).sum().backward()
    assert_close(y, ty.detach().numpy(), dtype, "output")
    assert_close(ours.backward(g), xt.grad.numpy(), dtype, "grad x")
    _compare_params(torch, ours, theirs, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_losses_match_torch(torch, dtype):
    rng = np.random.default_rng(11)
    for trial in range(10):
        N, C = int(rng.integers(1, 8)), int(rng.integers(2, 8))
        # Large logits exercise the log-sum-exp shift.
        logits = (rng.standard_normal((N, C)) * (50 if trial % 2 else 1)).astype(dtype)
        target = rng.integers(0, C, size=N)
        lt = to_torch(torch, logits, True)
        ce = nn.CrossEntropyLoss()
        loss = ce(logits, target)
        tloss = torch.nn.functional.cross_entropy(lt, torch.tensor(target))
        tloss.backward()
        assert_close(loss, tloss.item(), dtype, "cross-entropy")
        assert_close(ce.backward(), lt.grad.numpy(), dtype, "cross-entropy grad")

        shape = tuple(rng.integers(1, 5, size=rng.integers(1, 4)))
        pred, target = rng.standard_normal(shape).astype(dtype), rng.standard_normal(shape).astype(dtype)
        pt = to_torch(torch, pred, True)
        mse = nn.MSELoss()
        loss = mse(pred, target)
        tloss = torch.nn.functional.mse_loss(pt, to_torch(torch, target))
        tloss.backward()
        assert isinstance(loss, float)
        assert_close(loss, tloss.item(), dtype, "mse")
        grad = mse.backward()
        assert grad.dtype == dtype
        assert_close(grad, pt.grad.numpy(), dtype, "mse grad")


@pytest.mark.parametrize("kind", ["rnn", "lstm"])
def test_torch_state_dict_loads_into_rnnlab(torch, backend, kind):
    """The other direction: torch's own init and names load into ours and give its outputs."""
    rng = np.random.default_rng(13)
    cls, tcls = (nn.LSTM, torch.nn.LSTM) if kind == "lstm" else (nn.RNN, torch.nn.RNN)
    theirs = tcls(5, 6, num_layers=2, bidirectional=True, dtype=torch.float64)
    ours = cls(5, 6, num_layers=2, bidirectional=True, dtype=np.float64, rng=rng)
    ours.load_state_dict(theirs.state_dict())  # tensors are accepted directly
    x = rng.standard_normal((4, 3, 5))
    out, _ = ours(x)
    tout, _ = theirs(torch.tensor(x))
    assert_close(out, tout.detach().numpy(), np.float64, "output after loading torch weights")


@pytest.mark.parametrize("kind", ["rnn", "lstm"])
def test_init_matches_torch_distribution(kind):
    """Every parameter lies in U(-1/√H, 1/√H) and fills most of that range."""
    H = 64
    layer = (nn.LSTM if kind == "lstm" else nn.RNN)(16, H, num_layers=2, rng=0)
    bound = 1 / np.sqrt(H)
    for name, p in layer.named_parameters():
        assert np.abs(p.data).max() <= bound, name
        assert np.abs(p.data).max() > 0.9 * bound, name
        # U(-b, b) has std b/√3; allow five standard errors for the mean.
        assert abs(p.data.mean()) < 5 * bound / np.sqrt(3 * p.data.size), name


@pytest.mark.parametrize("kind", ["rnn", "lstm"])
def test_input_grad_false_skips_only_grad_x(backend, kind):
    """Parameter and state gradients are unchanged when the input gradient is not asked for."""
    rng = np.random.default_rng(17)
    cls = nn.LSTM if kind == "lstm" else nn.RNN
    layer = cls(3, 4, num_layers=2, bidirectional=True, dtype=np.float64, rng=rng)
    x = rng.standard_normal((5, 2, 3))
    g = rng.standard_normal((5, 2, 8))
    grads = []
    for input_grad in (True, False):
        layer.zero_grad()
        layer(x)
        grad_x, grad_state = layer.backward(g, input_grad=input_grad)
        assert (grad_x is None) == (not input_grad)
        grads.append(([p.grad.copy() for p in layer.parameters()], grad_state))
    for a, b in zip(grads[0][0], grads[1][0]):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(np.atleast_1d(grads[0][1]), np.atleast_1d(grads[1][1])):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("make", [
    lambda rng: (nn.Linear(4, 3, dtype=np.float64, rng=rng), (2, 4)),
    lambda rng: (nn.Linear(4, 3, dtype=np.float64, rng=rng), (1, 4)),  # the outer-product path
    lambda rng: (nn.RNN(4, 3, dtype=np.float64, rng=rng), (5, 2, 4)),
    lambda rng: (nn.LSTM(4, 3, num_layers=2, dtype=np.float64, rng=rng), (5, 1, 4)),
])
def test_parameter_gradients_accumulate(backend, make):
    """Two backward passes without zero_grad add up, as in torch (the first writes into zeros)."""
    rng = np.random.default_rng(23)
    module, shape = make(rng)
    x = rng.standard_normal(shape)
    out = module(x)
    g = rng.standard_normal((out[0] if isinstance(out, tuple) else out).shape)
    module.backward(g)
    once = [p.grad.copy() for p in module.parameters()]
    assert any(np.abs(a).max() > 0 for a in once)
    module(x)
    module.backward(g)
    for a, b in zip(once, module.parameters()):
        np.testing.assert_allclose(b.grad, 2 * a, rtol=1e-12, atol=1e-15)


_GRAD_MODULES = [
    lambda rng: (nn.Linear(4, 3, dtype=np.float64, rng=rng), (2, 4)),
    lambda rng: (nn.MLP([6, 5, 2], dtype=np.float32, rng=rng), (1, 6)),  # outer products
    lambda rng: (nn.RNN(4, 3, bidirectional=True, dtype=np.float64, rng=rng), (5, 2, 4)),
    lambda rng: (nn.LSTM(4, 3, num_layers=2, dtype=np.float32, rng=rng), (5, 1, 4)),
]


def _backward_once(module, x, g):
    module(x)
    module.backward(g)
    return [p.grad.copy() for p in module.parameters()]


@pytest.mark.parametrize("make", _GRAD_MODULES)
def test_zero_grad_is_lazy_but_exact(backend, make):
    """zero_grad only marks the gradients zero; the next backward writes them instead of adding.

    Its result must equal a backward into gradients that were really filled
    with zeros, and nothing of the step before may leak into it.
    """
    rng = np.random.default_rng(29)
    module, shape = make(rng)
    dtype = module.parameters()[0].dtype
    x1, x2 = rng.standard_normal(shape).astype(dtype), rng.standard_normal(shape).astype(dtype)
    out = module(x1)
    g = rng.standard_normal((out[0] if isinstance(out, tuple) else out).shape).astype(dtype)
    _backward_once(module, x1, 3 * g)  # leaves large, different values behind
    module.zero_grad()
    lazy = _backward_once(module, x2, g)
    module.zero_grad()
    for p in module.parameters():  # reading materialises the zeros: no lazy path now
        assert not p.grad.any()
    filled = _backward_once(module, x2, g)
    for a, b in zip(lazy, filled):
        np.testing.assert_array_equal(a, b)


def test_zero_grad_keeps_arrays_and_respects_a_user_write():
    """A gradient written by the user after zero_grad is added to, not overwritten."""
    rng = np.random.default_rng(31)
    layer = nn.Linear(3, 2, dtype=np.float64, rng=rng)
    x, g = rng.standard_normal((4, 3)), rng.standard_normal((4, 2))
    alone = _backward_once(layer, x, g)
    ids = [id(p.grad) for p in layer.parameters()]
    layer.zero_grad()
    assert [id(p.grad) for p in layer.parameters()] == ids
    layer.weight.grad[...] = 1.0
    layer(x)
    layer.backward(g)
    np.testing.assert_allclose(layer.weight.grad, alone[0] + 1.0, rtol=1e-14)
    np.testing.assert_allclose(layer.bias.grad, alone[1], rtol=1e-14)


def test_failed_backward_leaves_zeroed_gradients_zero(monkeypatch):
    """A backward that raises after taking the gradient arrays must not expose their stale values."""
    from rnnlab.functional import recurrent

    rng = np.random.default_rng(37)
    lstm = nn.LSTM(3, 2, dtype=np.float64, rng=rng)
    x, g = rng.standard_normal((4, 2, 3)), rng.standard_normal((4, 2, 2))
    _backward_once(lstm, x, g)  # non-zero values in every gradient
    lstm.zero_grad()

    def broken(*args, **kwargs):
        raise FloatingPointError("boom")

    monkeypatch.setattr(recurrent, "_param_grads", broken)
    lstm(x)
    with pytest.raises(FloatingPointError):
        lstm.backward(g)
    for name, p in lstm.named_parameters():
        assert not p.grad.any(), name


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
@pytest.mark.parametrize("T", [1, 5, 7])
def test_rnn_backward_in_blocks_equals_one_block(backend, monkeypatch, reverse, nonlinearity, T):
    """The RNN backward runs BPTT in blocks of steps for memory; the blocks must not change a gradient."""
    from rnnlab.functional import recurrent

    rng = np.random.default_rng(41 + T)
    N, I, H = 3, 4, 5
    x = rng.standard_normal((T, N, I))
    weights = [rng.standard_normal(s) * 0.5 for s in ((H, I), (H, H), (H,), (H,))]
    h0 = rng.standard_normal((N, H))
    grad_out, grad_h_n = rng.standard_normal((T, N, H)), rng.standard_normal((N, H))

    def run(min_bytes, accumulate):
        monkeypatch.setattr(recurrent, "_BLOCK_MIN_BYTES", min_bytes)
        _, cache = recurrent.rnn_forward(x, h0, *weights, nonlinearity=nonlinearity, reverse=reverse)
        if not accumulate:
            return recurrent.rnn_backward(cache, grad_out, grad_h_n)
        sinks = [np.full_like(w, 7.0) for w in weights]  # stale values that must be overwritten
        gx, gh, _ = recurrent.rnn_backward(cache, grad_out, grad_h_n, accumulate=sinks,
                                           overwrite=(True,) * 4)
        return gx, gh, (sinks[0], sinks[1], sinks[2])

    for accumulate in (False, True):
        one = run(1 << 40, accumulate)
        blocks = run(0, accumulate)
        np.testing.assert_allclose(blocks[0], one[0], rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(blocks[1], one[1], rtol=1e-12, atol=1e-14)
        for a, b in zip(blocks[2], one[2]):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("kind", ["rnn_tanh", "rnn_relu", "lstm"])
@pytest.mark.parametrize("T", [1, 4])
def test_zero_start_and_no_state_grad_change_nothing_else(backend, kind, T):
    """No initial state skips the products with zero; state_grad=False skips dL/dh_0.

    Against explicit zero states: the same outputs and the same parameter and
    input gradients, in every layer and direction.
    """
    rng = np.random.default_rng(43 + T)
    if kind == "lstm":
        layer = nn.LSTM(3, 4, num_layers=2, bidirectional=True, dtype=np.float64, rng=rng)
    else:
        layer = nn.RNN(3, 4, num_layers=2, bidirectional=True, nonlinearity=kind[4:],
                       dtype=np.float64, rng=rng)
    _randomize_biases(layer, rng)
    x = rng.standard_normal((T, 2, 3))
    g = rng.standard_normal((T, 2, 8))
    zeros = np.zeros((4, 2, 4))
    results = []
    for hx, state_grad in ((zeros if kind != "lstm" else (zeros, zeros), True), (None, True),
                           (None, False)):
        layer.zero_grad()
        out, _ = layer(x, hx)
        grad_x, grad_states = layer.backward(g, state_grad=state_grad)
        assert (grad_states is None) == (not state_grad)
        results.append((out.copy(), grad_x, [p.grad.copy() for p in layer.parameters()]))
    for out, grad_x, grads in results[1:]:
        np.testing.assert_allclose(out, results[0][0], rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(grad_x, results[0][1], rtol=1e-13, atol=1e-15)
        for a, b in zip(grads, results[0][2]):
            np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("contiguous", [True, False])
def test_rank1_weight_gradient_writes_and_adds(backend, dtype, contiguous):
    """The batch-of-one weight gradient (compiled or NumPy) against np.outer, written and added."""
    from rnnlab.functional.linear import accumulate_outer

    rng = np.random.default_rng(47)
    a, b = rng.standard_normal((1, 7)).astype(dtype), rng.standard_normal((1, 5)).astype(dtype)
    start = rng.standard_normal((7, 5)).astype(dtype)
    grad = start.copy() if contiguous else np.asfortranarray(start)
    expected = np.outer(a[0], b[0])
    tol = dict(rtol=1e-6 if dtype == np.float32 else 1e-15, atol=0)
    accumulate_outer(grad, a, b, overwrite=False)  # adds into the non-zero start
    np.testing.assert_allclose(grad, start + expected, **tol)
    accumulate_outer(grad, a, b, overwrite=True)  # the stale contents are replaced
    np.testing.assert_allclose(grad, expected, **tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_weight_gradient_of_no_rows_adds_nothing_or_writes_zeros(dtype):
    """Zero rows (a sequence's steps from a zero state): aᵀb is zero; added, nothing
    changes, and written over stale contents, they become zeros."""
    from rnnlab.functional.linear import accumulate_outer

    rng = np.random.default_rng(48)
    a, b = np.empty((0, 6), dtype), np.empty((0, 4), dtype)
    start = rng.standard_normal((6, 4)).astype(dtype)
    grad = start.copy()
    accumulate_outer(grad, a, b, overwrite=False)
    np.testing.assert_array_equal(grad, start)
    accumulate_outer(grad, a, b, overwrite=True)
    np.testing.assert_array_equal(grad, np.zeros_like(start))


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_backward_runs_with_the_loops_of_its_forward(backend, kind):
    """Changing the backend between forward and backward changes nothing: the backward
    reads the forward's buffers as its own loops wrote them (the fused LSTM loops keep
    tanh(pre/2) of the i, f, o gates, not σ)."""
    from rnnlab.functional.backend import BACKENDS, numba_available, use_backend
    rng = np.random.default_rng(59)
    cls = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[kind]
    layer = cls(3, 5, num_layers=2, bidirectional=True, dtype=np.float64, rng=rng)
    _randomize_biases(layer, rng)
    x = rng.standard_normal((4, 3, 3))
    g = rng.standard_normal((4, 3, 10))
    layer.zero_grad()
    layer(x)
    expected = layer.backward(g)[0], [p.grad.copy() for p in layer.parameters()]
    others = [b for b in BACKENDS if b not in ("auto", backend)] if numba_available() else []
    for other in others:
        layer.zero_grad()
        layer(x)
        with use_backend(other):
            grad_x = layer.backward(g)[0]
        np.testing.assert_allclose(grad_x, expected[0], rtol=1e-13, atol=1e-15, err_msg=other)
        for p, want in zip(layer.parameters(), expected[1]):
            np.testing.assert_allclose(p.grad, want, rtol=1e-13, atol=1e-15, err_msg=other)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("contiguous", [True, False])
def test_activation_passes_equal_numpy_bit_for_bit(backend, dtype, contiguous):
    """The compiled one-pass sigmoid finish and sigmoid/tanh gradients (on every backend
    but "numpy") compute NumPy's operations in NumPy's order: equal results, bit for bit."""
    from rnnlab.functional import activations
    from rnnlab.functional.backend import use_backend
    rng = np.random.default_rng(67)
    x = (rng.standard_normal((7, 33)) * 4).astype(dtype)
    grad = rng.standard_normal((7, 33)).astype(dtype)
    if not contiguous:
        x, grad = x[:, ::2], grad[:, ::2]
    y_sig, y_tanh = activations.sigmoid(x), np.tanh(x)
    got = (y_sig, activations.sigmoid_backward(grad, y_sig), activations.tanh_backward(grad, y_tanh))
    with use_backend("numpy"):
        want = (activations.sigmoid(x), activations.sigmoid_backward(grad, y_sig),
                activations.tanh_backward(grad, y_tanh))
    for name, a, b in zip(("sigmoid", "sigmoid_backward", "tanh_backward"), got, want):
        assert a.dtype == b.dtype == dtype and a.shape == b.shape, name
        np.testing.assert_array_equal(a, b, err_msg=name)
        np.testing.assert_allclose(b, {"sigmoid": 1 / (1 + np.exp(-x.astype(np.float64))),
                                       "sigmoid_backward": grad * y_sig * (1 - y_sig),
                                       "tanh_backward": grad * (1 - y_tanh ** 2)}[name],
                                   rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-7)
    # Written over the upstream gradient or over y: the same numbers.
    for name, backward, y_kept in (("sigmoid_backward", activations.sigmoid_backward, y_sig),
                                   ("tanh_backward", activations.tanh_backward, y_tanh)):
        expected = backward(grad, y_kept)
        over_grad, over_y = grad.copy(), y_kept.copy()
        assert backward(over_grad, y_kept, out=over_grad) is over_grad
        assert backward(grad, over_y, out=over_y) is over_y
        np.testing.assert_array_equal(over_grad, expected, err_msg=name + " over grad")
        np.testing.assert_array_equal(over_y, expected, err_msg=name + " over y")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("N,T", [(1, 33), (3, 17), (5, 16), (5, 7)])
def test_feature_major_backward_matches_torch(torch, dtype, N, T):
    """Fused LSTM backward with the dh product taken as W_hhᵀ · dpreᵀ from a transposed
    copy of W_hh (a small batch over enough steps), and one case below the step count
    (the batch-major product), in both directions, against torch."""
    from rnnlab.functional.backend import numba_available, use_backend
    if not numba_available():
        pytest.skip("the fused loops are compiled")
    from rnnlab.kernels import loops_fused
    rng = np.random.default_rng(97 + N + T)
    H, I = 40, 6  # 4H = 160: no whole 64-column panels, so never the packed product
    taken = loops_fused._backward_feature_major(N, H, T)
    assert taken == (T >= (32 if N == 1 else 8))  # (5, 7): the batch-major product
    tdtype = getattr(torch, TORCH_DTYPE[dtype])
    ours = nn.LSTM(I, H, bidirectional=True, dtype=dtype, rng=rng)
    theirs = torch.nn.LSTM(I, H, bidirectional=True, dtype=tdtype)
    _randomize_biases(ours, rng)
    _load_into_torch(torch, ours, theirs)
    x = rng.standard_normal((T, N, I)).astype(dtype)
    states = [rng.standard_normal((2, N, H)).astype(dtype) for _ in range(2)]
    xt, st = to_torch(torch, x, True), [to_torch(torch, s, True) for s in states]
    with use_backend("fused"):
        out, (h_n, c_n) = ours(x, tuple(states))
        tout, (th, tc) = theirs(xt, tuple(st))
        g = rng.standard_normal(out.shape).astype(dtype)
        g_h = rng.standard_normal(h_n.shape).astype(dtype)
        ((tout * to_torch(torch, g)).sum() + (th * to_torch(torch, g_h)).sum()).backward()
        grad_x, (grad_h0, grad_c0) = ours.backward(g, (g_h, None))
    assert_close(out, tout.detach().numpy(), dtype, "output")
    assert_close(grad_x, xt.grad.numpy(), dtype, "grad x")
    assert_close(grad_h0, st[0].grad.numpy(), dtype, "grad h0")
    assert_close(grad_c0, st[1].grad.numpy(), dtype, "grad c0")
    _compare_params(torch, ours, theirs, dtype)


@pytest.mark.parametrize("N,H", [(4, 64), (7, 64), (9, 80), (5, 16), (33, 64), (80, 64),
                                 (16, 256), (17, 256)])
def test_packed_weight_products_match_torch(torch, N, H):
    """float32 LSTM steps whose recurrent products run on a weight packed once (packed_gemm),
    against torch: 4-row tiles plus leftover rows, forward only (H = 16, 80) or both
    directions (H = 64), on one thread; split over NumPy's BLAS threads (from 2^20
    multiply-adds: 16-17 x 256 both ways, 80 x 64 forward only); 80 x 64's backward,
    past the one-thread rule's limit, on OpenBLAS."""
    from rnnlab.functional.backend import numba_available, use_backend
    if not numba_available():
        pytest.skip("the packed products are compiled")
    from rnnlab.kernels import blas_pool, loops_fused, packed_gemm
    if not packed_gemm.HOST_HAS_FMA:
        pytest.skip("the packed products are used on CPUs with FMA only")
    forward = loops_fused._product_threads(N, H, 4 * H, np.float32)
    backward = loops_fused._product_threads(N, H, H, np.float32)
    pool = blas_pool.threads()
    big = pool > 1 and N * 4 * H * H >= packed_gemm.POOL_MIN_MACS
    one = int(N * H <= loops_fused.PACKED_MAX_UNITS)
    assert forward == (pool if big else one)  # 4H columns: at least 2 panels here
    # H columns: the pool needs two panels to split, the packed kernel whole panels
    assert backward == (0 if H % 64 else pool if big and H >= 128 else one)
    rng = np.random.default_rng(83 + N + H)
    T, I = 5, 6
    ours = nn.LSTM(I, H, bidirectional=True, dtype=np.float32, rng=rng)
    theirs = torch.nn.LSTM(I, H, bidirectional=True, dtype=torch.float32)
    _randomize_biases(ours, rng)
    _load_into_torch(torch, ours, theirs)
    x = rng.standard_normal((T, N, I)).astype(np.float32)
    states = [rng.standard_normal((2, N, H)).astype(np.float32) for _ in range(2)]
    xt, st = to_torch(torch, x, True), [to_torch(torch, s, True) for s in states]
    with use_backend("fused"):
        out, (h_n, c_n) = ours(x, tuple(states))
        tout, (th, tc) = theirs(xt, tuple(st))
        assert_close(out, tout.detach().numpy(), np.float32, "output")
        assert_close(c_n, tc.detach().numpy(), np.float32, "c_n")
        g = rng.standard_normal(out.shape).astype(np.float32)
        g_h = rng.standard_normal(h_n.shape).astype(np.float32)
        ((tout * to_torch(torch, g)).sum() + (th * to_torch(torch, g_h)).sum()).backward()
        grad_x, (grad_h0, grad_c0) = ours.backward(g, (g_h, None))
    assert_close(grad_x, xt.grad.numpy(), np.float32, "grad x")
    assert_close(grad_h0, st[0].grad.numpy(), np.float32, "grad h0")
    assert_close(grad_c0, st[1].grad.numpy(), np.float32, "grad c0")
    _compare_params(torch, ours, theirs, np.float32)


@pytest.mark.parametrize("N,H,kind", [(5, 64, "tanh"), (6, 128, "relu"), (33, 256, "tanh"),
                                      (16, 256, "relu"), (64, 128, "tanh"), (9, 80, "tanh")])
@pytest.mark.parametrize("training", [False, True])
def test_rnn_packed_weight_products_match_torch(torch, monkeypatch, N, H, kind, training):
    """float32 RNN steps whose products h_{t-1} W_hhᵀ and dpre_t W_hh run on a weight packed
    once (loops_fused), against torch, both directions: on one thread (5 x 64, 6 x 128),
    split over NumPy's BLAS threads where there is a pool (from 2^20 multiply-adds:
    33 x 256 with a leftover row, 16 x 256), and 9 x 80 (no whole 64-column panels) on
    NumPy's loops. ``training``: as in a training step, no initial state, no gradient of
    it, and T = 40, so that the backward runs in blocks of steps (from 256 KiB of dL/dpre)
    that share one packed W_hh up to KEEP_PACKED_MAX_ROWS rows a block (64 x 128: 320 rows,
    one packed W_hh per block); else a given state and its gradient, T = 6.
    The test counts the packed products, so it fails if they are not taken."""
    from rnnlab.functional.backend import numba_available, use_backend
    if not numba_available():
        pytest.skip("the packed products are compiled")
    from rnnlab.kernels import blas_pool, loops_fused, packed_gemm
    from rnnlab.functional import recurrent as R
    if not packed_gemm.HOST_HAS_FMA:
        pytest.skip("the packed products are used on CPUs with FMA only")
    T, I = (40, 7) if training else (6, 7)
    taken = loops_fused._rnn_product_threads(np.empty((T + 1, N, H), np.float32), T)
    pool = blas_pool.threads()
    big = pool > 1 and N * H * H >= packed_gemm.POOL_MIN_MACS
    one = int(N * H <= loops_fused.PACKED_MAX_UNITS)
    assert taken == (0 if H % 64 else pool if big else one)
    calls, packs = [], []
    real_matmul, real_call = packed_gemm.packed_matmul, packed_gemm.PanelProduct.__call__
    real_pack = packed_gemm.pack_columns
    monkeypatch.setattr(packed_gemm, "packed_matmul", lambda *a, **k: calls.append(1) or real_matmul(*a, **k))
    monkeypatch.setattr(packed_gemm.PanelProduct, "__call__",
                        lambda self, *a: calls.append(1) or real_call(self, *a))
    monkeypatch.setattr(packed_gemm, "pack_columns", lambda w: packs.append(1) or real_pack(w))
    block_steps = R._block_steps(T, N * H * 4)
    blocks = -(-T // block_steps)  # backward calls of the loop
    kept = block_steps * N <= loops_fused.KEEP_PACKED_MAX_ROWS
    rng = np.random.default_rng(89 + N + H + T)
    ours = nn.RNN(I, H, nonlinearity=kind, bidirectional=True, dtype=np.float32, rng=rng)
    theirs = torch.nn.RNN(I, H, nonlinearity=kind, bidirectional=True, dtype=torch.float32)
    _randomize_biases(ours, rng)
    _load_into_torch(torch, ours, theirs)
    x = rng.standard_normal((T, N, I)).astype(np.float32)
    h0 = None if training else rng.standard_normal((2, N, H)).astype(np.float32)
    xt = to_torch(torch, x, True)
    h0t = None if training else to_torch(torch, h0, True)
    with use_backend("fused"):
        out, h_n = ours(x, h0)
        tout, th = theirs(xt, h0t)
        assert_close(out, tout.detach().numpy(), np.float32, "output")
        g = rng.standard_normal(out.shape).astype(np.float32)
        g_h = rng.standard_normal(h_n.shape).astype(np.float32)
        ((tout * to_torch(torch, g)).sum() + (th * to_torch(torch, g_h)).sum()).backward()
        grad_x, grad_h0 = ours.backward(g, g_h, state_grad=not training)
    products = 2 * ((T - 1) + (T - 1)) if training else 2 * (T + T)  # both directions
    if taken:
        assert len(calls) == products
        assert len(packs) == 2 * (1 if kept else blocks)  # per direction: once, or per block
    else:
        assert not calls
    if training:
        assert grad_h0 is None
        assert (blocks > 1) == (T * N * H * 4 >= 1 << 18)  # 16 x 256, 33 x 256, 64 x 128
    else:
        assert_close(grad_h0, h0t.grad.numpy(), np.float32, "grad h0")
    assert_close(grad_x, xt.grad.numpy(), np.float32, "grad x")
    _compare_params(torch, ours, theirs, np.float32)
