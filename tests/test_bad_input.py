"""Bad input gets a ValueError/TypeError naming what was expected and what came."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnlab import nn

F32 = np.float32


def test_wrong_rank():
    lstm = nn.LSTM(3, 4, rng=0)
    with pytest.raises(ValueError, match=r"expected a 2-D or 3-D array, got 4-D"):
        lstm(np.zeros((2, 2, 2, 3), F32))
    with pytest.raises(ValueError, match=r"expected a 1-D or 2-D array, got 3-D"):
        nn.RNNCell(3, 4, rng=0)(np.zeros((1, 2, 3), F32))


def test_wrong_feature_size():
    with pytest.raises(ValueError, match=r"expected last dimension \(features\) 3, got shape \(5, 2, 4\)"):
        nn.RNN(3, 4, rng=0)(np.zeros((5, 2, 4), F32))
    with pytest.raises(ValueError, match=r"expected last dimension \(features\) 3"):
        nn.Linear(3, 2, rng=0)(np.zeros((5, 2), F32))


@pytest.mark.parametrize("batch_first", [False, True])
def test_wrong_state_shape(batch_first):
    lstm = nn.LSTM(3, 4, num_layers=2, batch_first=batch_first, rng=0)
    x = np.zeros((5, 2, 3), F32)
    good = np.zeros((2, 5 if batch_first else 2, 4), F32)
    bad = np.zeros((1, 2, 4), F32)
    with pytest.raises(ValueError, match=r"h0: expected shape \(2, \d, 4\), got \(1, 2, 4\)"):
        lstm(x, (bad, good))
    with pytest.raises(ValueError, match=r"c0: expected shape"):
        lstm(x, (good, bad))
    with pytest.raises(TypeError, match=r"expected a tuple \(h0, c0\)"):
        lstm(x, good)
    with pytest.raises(ValueError, match=r"h0: expected shape \(1, 4\), got \(2, 4\)"):
        nn.RNN(3, 4, rng=0)(np.zeros((5, 3), F32), np.zeros((2, 4), F32))


def test_wrong_dtype():
    with pytest.raises(TypeError, match=r"expected dtype float32, got float64"):
        nn.LSTM(3, 4, rng=0)(np.zeros((5, 2, 3)))
    with pytest.raises(TypeError, match=r"expected dtype float64, got float32"):
        nn.Linear(3, 4, dtype=np.float64, rng=0)(np.zeros((5, 3), F32))
    with pytest.raises(TypeError, match=r"expected a numpy array"):
        nn.RNN(3, 4, rng=0)([[[0.0, 0.0, 0.0]]])
    with pytest.raises(TypeError, match=r"dtype must be float32 or float64, got int32"):
        nn.LSTM(3, 4, dtype=np.int32)


def test_nan_input():
    x = np.zeros((5, 2, 3), F32)
    x[2, 1, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        nn.LSTM(3, 4, rng=0)(x)


@pytest.mark.parametrize("through_product", [True, False])
@pytest.mark.parametrize("weights", ["random", "zero", "zero column"])
@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2 ** 31 - 1), dtype=st.sampled_from([np.float32, np.float64]),
       bad=st.sampled_from([np.nan, np.inf, -np.inf]))
def test_nan_in_a_linear_input_is_refused(through_product, weights, seed, dtype, bad):
    """A NaN anywhere in a Linear's input is a ValueError, with or without the scan that
    rides on the product (wide inputs, OpenBLAS), whatever the weights: zero weights
    (NaN·0 is NaN) and a zero column where the NaN sits included. The layer keeps no cache
    of the refused input and its parameters are untouched."""
    from rnnlab.nn import _checks
    from rnnlab.nn import linear as linear_module
    rng = np.random.default_rng(seed)
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setattr(linear_module, "products_show_nan", lambda: through_product)
        _refuse_nan_input(monkeypatch, _checks, linear_module, through_product, weights, rng,
                          dtype, bad)


def _refuse_nan_input(monkeypatch, _checks, linear_module, through_product, weights, rng, dtype,
                      bad=np.nan):
    n_in, n_out = int(rng.integers(2, 40)), int(rng.integers(1, 20))
    layer = nn.Linear(n_in, n_out, dtype=dtype, rng=rng)
    layer.bias.data[:] = rng.uniform(0.5, 1.0, n_out)
    x = rng.standard_normal((int(rng.integers(1, 9)), int(rng.integers(1, 5)), n_in)).astype(dtype)
    where = tuple(int(rng.integers(0, d)) for d in x.shape)
    x[where] = bad
    if weights == "zero":
        layer.weight.data[:] = 0
    elif weights == "zero column":
        layer.weight.data[:, where[-1]] = 0
    before = {k: v.copy() for k, v in layer.state_dict().items()}
    scans = []
    real_scan = _checks.nan_in_input_or_none
    monkeypatch.setattr(_checks, "nan_in_input_or_none",
                        lambda *a: scans.append(1) or real_scan(*a))
    with pytest.raises(ValueError, match="Linear input: contains NaN or inf"), \
            np.errstate(invalid="ignore", over="ignore"):  # inf·0 in the product
        layer(x)
    assert len(scans) == int(through_product and n_in > n_out)  # the path was taken
    for k, v in layer.state_dict().items():
        np.testing.assert_array_equal(v, before[k])
    with pytest.raises(Exception, match="before forward"):
        layer.backward(np.zeros(x.shape[:-1] + (n_out,), dtype))


def _entry_points(rng):
    """(name, call(bad value) -> raises?) for every array a user hands to a layer or loss."""
    T, N, I, H = 4, 3, 5, 6
    x = rng.standard_normal((T, N, I)).astype(F32)

    def poisoned(a, value):
        a = a.copy()
        a[tuple(int(rng.integers(d)) for d in a.shape)] = value
        return a

    def layer_input(make):
        return lambda v: make()(poisoned(x, v))

    def grad_output(make):
        def call(v):
            layer = make()
            out = layer(x)
            out = out[0] if isinstance(out, tuple) else out
            layer.backward(poisoned(np.ones_like(out), v))
        return call

    def loss(fn, pred, target, which):
        def call(v):
            args = [pred, target]
            args[which] = poisoned(args[which], v)
            fn()(*args)
        return call

    pred = rng.standard_normal((N, H)).astype(F32)
    lstm = lambda: nn.LSTM(I, H, rng=0)  # noqa: E731
    rnn = lambda: nn.RNN(I, H, rng=0)  # noqa: E731
    wide = lambda: nn.Linear(I, 2, rng=0)  # noqa: E731 - in > out: the scan rides on the product
    narrow = lambda: nn.Linear(I, 9, rng=0)  # noqa: E731
    mlp = lambda: nn.MLP([I, 7, 2], rng=0)  # noqa: E731
    return [
        ("LSTM x", layer_input(lstm)), ("RNN x", layer_input(rnn)),
        ("wide Linear x", layer_input(wide)), ("narrow Linear x", layer_input(narrow)),
        ("MLP x", layer_input(mlp)),
        ("LSTM grad_output", grad_output(lstm)), ("RNN grad_output", grad_output(rnn)),
        ("Linear grad_out", grad_output(wide)), ("MLP grad_out", grad_output(mlp)),
        ("MSE pred", loss(nn.MSELoss, pred, pred + 1, 0)),
        ("MSE target", loss(nn.MSELoss, pred, pred + 1, 1)),
        ("CE logits", loss(nn.CrossEntropyLoss, pred, np.arange(N) % H, 0)),
    ]


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf], ids=["nan", "+inf", "-inf"])
@pytest.mark.parametrize("entry", range(12))
def test_non_finite_values_are_refused_everywhere(entry, bad):
    """NaN, +inf and -inf in x, in grad_output, in MSE pred/targets and in CE logits are
    each a ValueError naming the array; the same arrays with finite values pass."""
    name, call = _entry_points(np.random.default_rng(entry))[entry]
    with pytest.raises(ValueError, match="contains NaN or inf"), \
            np.errstate(invalid="ignore", over="ignore"):
        call(bad)
    call(3.0)  # a finite value in the same place is fine


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2 ** 31 - 1), dtype=st.sampled_from([np.float32, np.float64]),
       bad=st.sampled_from([None, np.nan, np.inf, -np.inf]), huge=st.booleans(),
       view=st.sampled_from(["whole", "strided", "transposed"]))
def test_has_nonfinite_is_exact(seed, dtype, bad, huge, view):
    """The one-pass scan says True exactly when an element is NaN or ±inf, also when the
    finite elements are so large that their sum overflows, and on non-contiguous views."""
    from rnnlab.nn._checks import has_nonfinite
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(tuple(int(d) for d in rng.integers(1, 7, size=rng.integers(1, 4))))
    a = a.astype(dtype)
    if huge:
        a[...] = np.finfo(dtype).max * np.sign(a + 0.5)
    if view == "strided":
        a = a[..., ::2]
    elif view == "transposed":
        a = a.T
    if bad is not None:
        a[tuple(int(rng.integers(d)) for d in a.shape)] = bad
    assert has_nonfinite(a) == (not np.isfinite(a).all())


def test_a_nan_made_by_the_weights_is_not_the_inputs():
    """inf in a weight times a zero input is NaN in the output: the input has no NaN, so
    no error (as for any layer whose weights overflow); the product shows the NaN."""
    layer = nn.Linear(6, 2, rng=0)
    layer.weight.data[1, 3] = np.inf
    x = np.ones((4, 6), F32)
    x[:, 3] = 0
    with np.errstate(invalid="ignore"):  # inf·0, which NumPy reports as a warning
        y = layer(x)
    assert np.isnan(y[:, 1]).all() and np.isfinite(y[:, 0]).all()


@pytest.mark.parametrize("x_shape,n_in,n_out", [((300,), 300, 7), ((1, 9), 9, 2),
                                                ((16, 4096), 4096, 16), ((256, 4096), 4096, 32)])
def test_a_nan_shows_through_the_product(x_shape, n_in, n_out):
    """Where the scan rides on the product (NumPy on OpenBLAS), a NaN in any element of x
    shows in every element of its row of the Linear's product, for zero and infinite
    weights in its column too: 1-D and 2-D x, and 16 rows of a (16, 4096) weight, which
    the Linear takes feature-major (W · xᵀ)."""
    from rnnlab.functional.linear import linear_forward
    from rnnlab.nn._checks import products_show_nan
    if not products_show_nan():
        pytest.skip("this NumPy's BLAS gets the whole scan")
    rng = np.random.default_rng(n_in + n_out)
    x = rng.standard_normal(x_shape).astype(F32)
    where = tuple(int(rng.integers(d)) for d in x_shape)
    x[where] = np.nan
    w = rng.standard_normal((n_out, n_in)).astype(F32)
    w[:, where[-1]] = 0
    w[0, where[-1]] = np.inf
    with np.errstate(invalid="ignore"):
        y, _ = linear_forward(x, w, rng.standard_normal(n_out).astype(F32))
    rows = y.reshape(-1, n_out)
    bad_row = where[0] if x.ndim == 2 else 0
    assert np.isnan(rows[bad_row]).all()
    assert not np.isnan(np.delete(rows, bad_row, axis=0)).any()
    with pytest.raises(ValueError, match="Linear input: contains NaN"):
        layer = nn.Linear(n_in, n_out, rng=0)
        layer.weight.data[:] = w
        with np.errstate(invalid="ignore"):
            layer(x)


def test_nan_input_under_errstate_raise():
    """With np.errstate(invalid="raise"), a NaN input whose product meets inf·0 still gets
    the ValueError naming the input (not a FloatingPointError from inside the product);
    a clean input keeps the FloatingPointError, which is about the weights."""
    layer = nn.Linear(6, 2, rng=0)
    layer.weight.data[0, 3] = np.inf
    x = np.ones((4, 6), F32)
    x[:, 3] = 0
    x[1, 5] = np.nan
    with np.errstate(invalid="raise"):
        with pytest.raises(ValueError, match="Linear input: contains NaN"):
            layer(x)
        x[1, 5] = 1
        with pytest.raises(FloatingPointError):
            layer(x)


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match=r"hidden_size must be a positive integer, got 0"):
        nn.LSTM(3, 0)
    with pytest.raises(ValueError, match=r"nonlinearity must be 'tanh' or 'relu', got 'sigmoid'"):
        nn.RNN(3, 4, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match=r"activation must be one of"):
        nn.MLP([2, 3], activation="gelu")


def test_load_state_dict_missing_unexpected_and_shape():
    lstm = nn.LSTM(3, 4, rng=0)
    before = lstm.state_dict()
    sd = lstm.state_dict()
    del sd["bias_hh_l0"]
    with pytest.raises(ValueError, match=r"missing keys \['bias_hh_l0'\]"):
        lstm.load_state_dict(sd)
    sd = lstm.state_dict()
    sd["weight_ih_l1"] = np.zeros((16, 4), F32)
    with pytest.raises(ValueError, match=r"unexpected keys \['weight_ih_l1'\]"):
        lstm.load_state_dict(sd)
    sd = {k: v + 1 for k, v in lstm.state_dict().items()}
    sd["weight_hh_l0"] = np.zeros((16, 5), F32)
    with pytest.raises(ValueError, match=r"'weight_hh_l0' expected shape \(16, 4\), got \(16, 5\)"):
        lstm.load_state_dict(sd)
    sd["weight_hh_l0"] = np.full((16, 4), np.nan, F32)
    with pytest.raises(ValueError, match=r"'weight_hh_l0' contains NaN"):
        lstm.load_state_dict(sd)
    # Checked before assigned: the failed loads changed nothing.
    for k, v in lstm.state_dict().items():
        np.testing.assert_array_equal(v, before[k])
    # strict=False reports instead of raising.
    sd = lstm.state_dict()
    del sd["bias_hh_l0"]
    result = lstm.load_state_dict(sd, strict=False)
    assert result.missing_keys == ["bias_hh_l0"] and result.unexpected_keys == []


@pytest.mark.parametrize("make", [
    lambda: (nn.Linear(3, 2, rng=0), (np.zeros((2, 2), F32),)),
    lambda: (nn.RNN(3, 2, rng=0), (np.zeros((1, 1, 2), F32),)),
    lambda: (nn.LSTM(3, 2, rng=0), (np.zeros((1, 1, 2), F32),)),
    lambda: (nn.LSTMCell(3, 2, rng=0), ((np.zeros((1, 2), F32), None),)),
    lambda: (nn.RNNCell(3, 2, rng=0), (np.zeros((1, 2), F32),)),
    lambda: (nn.Tanh(), (np.zeros((1, 2), F32),)),
    lambda: (nn.MSELoss(), ()),
])
def test_backward_before_forward(make):
    module, args = make()
    with pytest.raises(ValueError, match="backward called before forward"):
        module.backward(*args)


@pytest.mark.parametrize("module", [nn.LSTM(3, 2, rng=0), nn.RNN(3, 2, rng=0)])
def test_second_backward_for_one_forward_is_refused(module):
    out, _ = module(np.ones((4, 1, 3), F32))
    module.backward(np.ones_like(out))
    with pytest.raises(ValueError, match="backward called before forward"):
        module.backward(np.ones_like(out))


@pytest.mark.parametrize("module", [nn.Linear(3, 2, rng=0), nn.Tanh(), nn.MLP([3, 4, 2], rng=0)])
def test_second_backward_of_a_feedforward_module_is_refused(module):
    """A second backward would add the same gradients twice; it is refused instead."""
    out = module(np.ones((5, 3), F32))
    module.backward(np.ones_like(out))
    with pytest.raises(ValueError, match="backward called before forward"):
        module.backward(np.ones_like(out))


def test_grad_output_of_the_wrong_shape():
    rnn = nn.RNN(3, 2, batch_first=True, rng=0)
    out, _ = rnn(np.ones((4, 5, 3), F32))  # (N=4, T=5, 3)
    with pytest.raises(ValueError, match=r"grad_output: expected shape \(4, 5, 2\), got \(5, 4, 2\)"):
        rnn.backward(np.ones((5, 4, 2), F32))


def test_losses_reject_bad_targets():
    with pytest.raises(ValueError, match=r"expected shape \(3, 2\), got \(3,\)"):
        nn.MSELoss()(np.zeros((3, 2), F32), np.zeros(3, F32))
    with pytest.raises(TypeError, match="integer ndarray"):
        nn.CrossEntropyLoss()(np.zeros((3, 2), F32), np.zeros(3, F32))
    with pytest.raises(ValueError, match=r"classes in \[0, 2\), got values in \[0, 2\]"):
        nn.CrossEntropyLoss()(np.zeros((3, 2), F32), np.array([0, 1, 2]))


@settings(max_examples=40, deadline=None)
@given(shape=st.lists(st.integers(0, 4), min_size=0, max_size=4),
       dtype=st.sampled_from([np.float32, np.float64, np.int64]))
def test_fuzzed_inputs_get_a_clear_error_or_a_right_shape(shape, dtype):
    """Any input is either accepted with the right output shape or refused with ValueError/TypeError."""
    lstm = nn.LSTM(3, 2, num_layers=2, bidirectional=True, rng=0)
    x = np.ones(shape, dtype=dtype)
    try:
        out, (h, c) = lstm(x)
    except (ValueError, TypeError):
        return
    assert out.shape == tuple(shape[:-1]) + (4,)
    assert h.shape == ((4,) if x.ndim == 2 else (4, shape[1])) + (2,)


@pytest.mark.parametrize("cell", ["rnn", "lstm"])
@pytest.mark.parametrize("wrong", ["weight_ih", "weight_hh", "bias_hh", "h0"])
def test_functional_recurrent_api_refuses_mixed_dtypes(cell, wrong):
    """A float64 weight, bias or state next to a float32 input: a TypeError naming it.
    (The compiled loops read raw memory; the packed LSTM product read such a W_hh as
    float32 values and returned NaN at N = 32, H = 128 before this check.)"""
    from rnnlab.functional import recurrent as R
    rng = np.random.default_rng(157)
    T, N, I, H = 3, 32, 4, 128
    gates = 4 if cell == "lstm" else 1
    arrays = dict(x=rng.standard_normal((T, N, I)), h0=rng.standard_normal((N, H)),
                  weight_ih=0.3 * rng.standard_normal((gates * H, I)),
                  weight_hh=0.1 * rng.standard_normal((gates * H, H)),
                  bias_ih=rng.standard_normal(gates * H), bias_hh=rng.standard_normal(gates * H))
    arrays = {k: v.astype(np.float64 if k == wrong else np.float32) for k, v in arrays.items()}
    forward = R.lstm_forward if cell == "lstm" else R.rnn_forward
    args = dict(arrays, c0=None) if cell == "lstm" else arrays
    with pytest.raises(TypeError, match=f"{wrong}: expected dtype float32.*got float64"):
        forward(**args)
    arrays[wrong] = arrays[wrong].astype(np.float32)
    (out, *_), _ = forward(**(dict(arrays, c0=None) if cell == "lstm" else arrays))
    assert out.dtype == np.float32 and np.isfinite(out).all()
