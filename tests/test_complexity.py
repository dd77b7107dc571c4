"""The analytic formulas of rnnlab.analysis.complexity against what rnnlab really holds and does.

- Parameter counts: the sizes of the arrays of real modules, on random sizes.
- FLOPs: the multiply-adds of every matrix product of an instrumented forward
  and backward, counted as they happen. Every array that rnnlab creates is made
  a ``_Counting`` array (NumPy's creation functions are patched for the test),
  so that each product, ``@`` or ``np.matmul``/``np.dot``, passes through
  ``__array_ufunc__``/``__array_function__`` and is counted from its operand
  shapes. A product the counter cannot count fails the test.
- Memory: the BPTT minimum is a lower bound of what the caches really keep.
"""

from __future__ import annotations

import contextlib

import numpy as np
import pytest

from rnnlab.analysis import complexity as cx
from rnnlab.bench.models import SequenceRegressor
from rnnlab.nn import GRU, LSTM, MLP, RNN, MSELoss

SEEDS = range(6)
RECURRENT = ["rnn", "lstm", "gru"]
LAYERS = {"rnn": RNN, "lstm": LSTM, "gru": GRU}
GATES = {"rnn": 1, "lstm": 4, "gru": 3}  # W_ih rows per hidden unit, as in torch


def _sizes(rng, low=1, high=9, count=1):
    return [int(v) for v in rng.integers(low, high, size=count)]


# ------------------------------------------------------------------ parameters


@pytest.mark.parametrize("seed", SEEDS)
def test_mlp_params_match_arrays(seed):
    rng = np.random.default_rng(seed)
    sizes = _sizes(rng, 1, 40, count=int(rng.integers(2, 6)))
    bias = bool(rng.integers(2))
    model = MLP(sizes, activation="tanh", bias=bias, rng=rng)
    actual = {}
    for name, p in model.named_parameters():
        layer = name.split(".")[0]
        actual[layer] = actual.get(layer, 0) + p.data.size
    assert cx.mlp_params(sizes, bias=bias) == actual
    assert cx.linear_params(sizes[0], sizes[1], bias) == actual["0"]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("kind", RECURRENT)
def test_recurrent_params_match_arrays(kind, seed):
    rng = np.random.default_rng(100 + seed)
    n, m = _sizes(rng, 1, 30, count=2)
    layers = int(rng.integers(1, 4))
    bias = bool(rng.integers(2))
    model = LAYERS[kind](n, m, num_layers=layers, bias=bias, rng=rng)
    actual = {}
    for name, p in model.named_parameters():
        layer = name.rsplit("_", 1)[1]  # weight_ih_l0 -> l0
        actual[layer] = actual.get(layer, 0) + p.data.size
    formula = getattr(cx, f"{kind}_params")(n, m, layers, bias)
    assert formula == actual


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("model", cx.MODELS)
def test_benchmark_model_params(model, seed):
    rng = np.random.default_rng(200 + seed)
    n, m, T, k = _sizes(rng, 1, 20, count=4)
    if model == "mlp":
        module = MLP([T * n, m, k], activation="sigmoid", rng=rng)
    else:
        module = SequenceRegressor(model, n, m, k, rng=rng)
    actual = {}
    for name, p in module.named_parameters():
        layer = name.split(".")[0]
        actual[layer] = actual.get(layer, 0) + p.data.size
    assert cx.model_params(model, n, m, T, k) == actual


# ------------------------------------------------------------------ FLOPs, counted


class _Counting(np.ndarray):
    """An ndarray that counts the multiply-adds of the matrix products it takes part in."""

    counter = None  # a list [multiply_adds], set by the fixture

    def __array_ufunc__(self, ufunc, method, *inputs, out=None, **kwargs):
        plain = [_plain(a) for a in inputs]
        if ufunc is np.matmul:
            assert method == "__call__", f"uncounted matmul.{method}"
            _Counting.counter[0] += _matmul_macs(plain[0], plain[1])
        if out is not None:
            kwargs["out"] = tuple(_plain(o) for o in out)
        result = getattr(ufunc, method)(*plain, **kwargs)
        if out is not None:
            return out[0] if len(out) == 1 else out
        return _wrap(result)

    def __array_function__(self, func, types, args, kwargs):
        if func is np.dot:
            a, b = (_plain(x) for x in args[:2])
            _Counting.counter[0] += _matmul_macs(a if a.ndim else a[None],
                                                 b if b.ndim else b[None])
        elif func is np.outer:
            a, b = (_plain(x) for x in args[:2])
            _Counting.counter[0] += a.size * b.size
        elif func is np.einsum and len(args) == 2 and "," not in args[0]:
            pass  # one operand: a sum (rnnlab's finite check, nn._checks.has_nonfinite), no product
        elif func in (np.einsum, np.tensordot, np.inner, np.vdot, np.linalg.multi_dot):
            raise AssertionError(f"the FLOP counter cannot count np.{func.__name__}: teach it")
        return super().__array_function__(func, types, args, kwargs)


def _plain(a):
    """A _Counting array as a plain ndarray view (no NumPy creation function: they are patched)."""
    return a.view(np.ndarray) if isinstance(a, _Counting) else a


def _wrap(result):
    if isinstance(result, tuple):
        return tuple(_wrap(r) for r in result)
    if isinstance(result, np.ndarray) and not isinstance(result, _Counting):
        return result.view(_Counting)
    return result


def _matmul_macs(a, b) -> int:
    """Multiply-adds of a @ b, with NumPy's rules for 1-D operands and batch axes."""
    a_shape = a.shape if a.ndim > 1 else (1,) + a.shape
    b_shape = b.shape if b.ndim > 1 else b.shape + (1,)
    assert a_shape[-1] == b_shape[-2]
    batch = 1  # broadcast batch axes, without NumPy helpers (they use the patched creators)
    a_batch, b_batch = a_shape[:-2], b_shape[:-2]
    width = max(len(a_batch), len(b_batch))
    a_batch = (1,) * (width - len(a_batch)) + tuple(a_batch)
    b_batch = (1,) * (width - len(b_batch)) + tuple(b_batch)
    for i, j in zip(a_batch, b_batch):
        assert i == j or 1 in (i, j)
        batch *= max(i, j)
    return batch * a_shape[-2] * a_shape[-1] * b_shape[-1]


_CREATORS = ("empty", "zeros", "ones", "full", "empty_like", "zeros_like", "ones_like",
             "full_like", "array", "asarray", "ascontiguousarray", "copy", "stack",
             "concatenate")


def _numpy_backend():
    """The NumPy time loops (a compiled backend would hide its products from the counter)."""
    try:
        from rnnlab.functional.backend import use_backend
    except ImportError:  # a single backend
        return contextlib.nullcontext()
    return use_backend("numpy")


@pytest.fixture
def counting(monkeypatch):
    """Patch NumPy's creation functions to make _Counting arrays; yield the counter.

    The recurrent layers run their NumPy backend meanwhile: the counted
    algorithm is the one every backend implements. Bias gradients are sums,
    not products, in the model; rnnlab runs them as a GEMV with a ones vector
    for speed (linear.column_sum), which the counter would take for a product,
    so they run as NumPy sums here.
    """
    from rnnlab.functional import gru, linear, recurrent

    counter = [0]
    monkeypatch.setattr(_Counting, "counter", counter)
    for module in (linear, recurrent, gru):
        monkeypatch.setattr(module, "column_sum", lambda a: a.sum(axis=0))
    for name in _CREATORS:
        original = getattr(np, name)

        def creator(*args, __original=original, **kwargs):
            return _wrap(__original(*args, **kwargs))

        monkeypatch.setattr(np, name, creator)
    with _numpy_backend():
        yield counter


def _counted(module, x):
    """Parameters and input as _Counting arrays."""
    for p in module.parameters():
        p.data = p.data.view(_Counting)
        p.grad = p.grad.view(_Counting)
    return x.view(_Counting)


def _run_counted(counter, module, x, y):
    """(forward multiply-adds, forward + backward multiply-adds) of one training pass."""
    loss_fn = MSELoss()
    counter[0] = 0
    pred = module(x)
    forward = counter[0]
    loss_fn(pred, y)
    module.backward(loss_fn.backward())
    return forward, counter[0]


def test_counter_counts(counting):
    """The instrument itself: a product of known shape, through each route."""
    a = np.zeros((3, 4, 5))
    b = np.ones((5, 6)).astype(np.float32)
    assert isinstance(a, _Counting)
    counting[0] = 0
    _ = a @ b
    assert counting[0] == 3 * 4 * 5 * 6
    np.matmul(a[0], b, out=np.empty((4, 6)))
    assert counting[0] == 3 * 4 * 5 * 6 + 4 * 5 * 6
    counting[0] = 0
    np.dot(a[0], b)
    assert counting[0] == 4 * 5 * 6


@pytest.mark.parametrize("seed", SEEDS)
def test_mlp_flops_counted(counting, seed):
    rng = np.random.default_rng(300 + seed)
    d = int(rng.integers(2, 9))  # d >= 2: at d = 1 a weight gradient is an outer product
    sizes = _sizes(rng, 1, 30, count=int(rng.integers(2, 5)))
    module = MLP(sizes, activation="sigmoid", rng=rng)
    x = _counted(module, rng.standard_normal((d, sizes[0])).astype(np.float32))
    y = rng.standard_normal((d, sizes[-1])).astype(np.float32)
    forward, total = _run_counted(counting, module, x, y)
    assert cx.mlp_forward_flops(d, sizes).gemm == 2 * forward
    assert cx.mlp_training_flops(d, sizes) == 2 * total
    assert cx.mlp_training_flops(d, sizes, input_grad=False) == 2 * total - 2 * d * sizes[0] * sizes[1]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("kind", RECURRENT)
def test_recurrent_flops_counted(counting, kind, seed):
    rng = np.random.default_rng(400 + seed)
    d, T = int(rng.integers(2, 6)), int(rng.integers(1, 7))
    n, m = _sizes(rng, 1, 20, count=2)
    layers = int(rng.integers(1, 3))
    module = LAYERS[kind](n, m, num_layers=layers, rng=rng)
    x = _counted(module, rng.standard_normal((T, d, n)).astype(np.float32))
    # Given initial states: the textbook count, T recurrent products per layer.
    zeros = np.zeros((layers, d, m), np.float32)
    counting[0] = 0
    out, _ = module(x, (zeros, zeros) if kind == "lstm" else zeros)
    forward = counting[0]
    module.backward(np.ones_like(out))
    total = counting[0]
    fwd = getattr(cx, f"{kind}_forward_flops")(d, T, n, m, layers)
    training = getattr(cx, f"{kind}_training_flops")
    assert fwd.gemm == 2 * forward
    assert training(d, T, n, m, layers) == 2 * total
    # No initial states (zero start), with and without their gradient: the first step's products go.
    for state_grad in (True, False):
        counting[0] = 0
        out, _ = module(x)
        module.backward(np.ones_like(out), state_grad=state_grad)
        assert training(d, T, n, m, layers, zero_start=True, state_grad=state_grad) == 2 * counting[0]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("model", cx.MODELS)
def test_benchmark_model_flops_counted(counting, model, seed):
    rng = np.random.default_rng(500 + seed)
    d, T = int(rng.integers(2, 6)), int(rng.integers(1, 6))
    n, m, k = _sizes(rng, 1, 16, count=3)
    if model == "mlp":
        module = MLP([T * n, m, k], activation="sigmoid", rng=rng)
        x = rng.standard_normal((d, T * n)).astype(np.float32)
    else:
        module = SequenceRegressor(model, n, m, k, rng=rng)
        x = rng.standard_normal((T, d, n)).astype(np.float32)
    x = _counted(module, x)
    y = rng.standard_normal((d, k)).astype(np.float32)
    forward, total = _run_counted(counting, module, x, y)
    # The recurrent models start from zero states: count what rnnlab runs.
    assert cx.model_forward_flops(model, d, n, m, T, k, zero_start=True).gemm == 2 * forward
    assert cx.model_training_flops(model, d, n, m, T, k, zero_start=True) == 2 * total
    first_layer_dx = 2 * d * T * n * m * GATES.get(model, 1)
    assert cx.model_training_flops(model, d, n, m, T, k, input_grad=False,
                                   zero_start=True) == 2 * total - first_layer_dx
    if model != "mlp":  # the textbook count has the first step's products on top
        gates = GATES[model]
        assert cx.model_training_flops(model, d, n, m, T, k) - 2 * total == 3 * 2 * d * m * gates * m


def test_elementwise_terms_scale():
    """The documented elementwise terms: per step and unit, 4 (RNN), 21 (LSTM) and 16 (GRU),
    with bias."""
    assert cx.rnn_forward_flops(3, 5, 7, 11).elementwise == 4 * 3 * 5 * 11
    assert cx.lstm_forward_flops(3, 5, 7, 11).elementwise == 21 * 3 * 5 * 11
    assert cx.lstm_forward_flops(3, 5, 7, 11, bias=False).elementwise == 13 * 3 * 5 * 11
    assert cx.gru_forward_flops(3, 5, 7, 11).elementwise == 16 * 3 * 5 * 11
    assert cx.gru_forward_flops(3, 5, 7, 11, bias=False).elementwise == 10 * 3 * 5 * 11
    f = cx.mlp_forward_flops(2, [5, 7, 3])
    assert f.elementwise == 2 * 7 + 2 * 3 + 2 * 7 and f.total == f.gemm + f.elementwise


# ------------------------------------------------------------------ memory


def _cache_bytes(cache, exclude=()) -> int:
    """Bytes of the distinct arrays (by base buffer) in a (nested) cache, minus ``exclude``."""
    seen, total = {id(a) for a in exclude}, 0
    stack = [cache]
    while stack:
        item = stack.pop()
        if isinstance(item, (tuple, list)):
            stack.extend(item)
        elif isinstance(item, np.ndarray):
            base = item
            while base.base is not None and isinstance(base.base, np.ndarray):
                base = base.base
            if id(base) not in seen:
                seen.add(id(base))
                total += base.nbytes
    return total


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("kind", RECURRENT)
def test_bptt_minimum_is_below_the_cache(kind, seed):
    """What BPTT must keep is at most what rnnlab's cache keeps (activations and input),
    and the formula is exact in its dtype and linear in d and T."""
    rng = np.random.default_rng(600 + seed)
    d, T, n, m = _sizes(rng, 1, 12, count=4)
    dtype = [np.float32, np.float64][seed % 2]
    layer = LAYERS[kind](n, m, dtype=dtype, rng=rng)
    layer(rng.standard_normal((T, d, n)).astype(dtype))
    (caches, _, _) = layer._cache
    kept = _cache_bytes(caches, exclude=[p.data for p in layer.parameters()])
    fn = getattr(cx, f"{kind}_bptt_memory")
    minimum = fn(d, T, n, m, dtype)
    assert minimum.bytes == minimum.floats * np.dtype(dtype).itemsize
    assert 0 < minimum.bytes <= kept
    assert fn(2 * d, T, n, m).floats == 2 * fn(d, T, n, m).floats
    assert fn(d, 3 * T, n, m).floats == 3 * fn(d, T, n, m).floats


def test_bad_arguments():
    with pytest.raises(ValueError):
        cx.lstm_params(0, 4)
    with pytest.raises(ValueError):
        cx.mlp_params([4])
    with pytest.raises(ValueError):
        cx.model_training_flops("transformer", 1, 1, 1, 1, 1)
