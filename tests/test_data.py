"""The data tasks: shapes, determinism, each task's definition, and each baseline.

Every expected value is recomputed here from the task definition (markers,
symbols, sine waves, sklearn's own images), never copied from a run. The
baselines are checked against the empirical loss of the baseline predictor on
a large batch, and the adding baseline also against a quadrature of its
defining integral.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnlab.data import (
    Batch,
    DigitsSplit,
    adding_baseline_mse,
    adding_problem,
    copy_baseline_cross_entropy,
    copy_memory,
    flatten_sequences,
    last_value_mse,
    load_digits_sequences,
    minibatches,
    sine_baseline_mse,
    sine_forecast,
)

DTYPES = [np.float32, np.float64]
FAST = settings(max_examples=30, deadline=None)
sizes = st.integers(min_value=1, max_value=12)
seeds = st.integers(min_value=0, max_value=2**32 - 1)


def rng(seed=0):
    return np.random.default_rng(seed)


def assert_batch_equal(a: Batch, b: Batch):
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.y, b.y)


# --- shapes and dtypes -------------------------------------------------------

@FAST
@given(n=sizes, T=st.integers(2, 30), seed=seeds, dtype=st.sampled_from(DTYPES))
def test_adding_shapes(n, T, seed, dtype):
    x, y = adding_problem(n, T, rng=rng(seed), dtype=dtype)
    assert x.shape == (T, n, 2) and x.dtype == dtype
    assert y.shape == (n, 1) and y.dtype == dtype


@FAST
@given(n=sizes, T=st.integers(1, 30), k=st.integers(1, 10), length=st.integers(1, 12),
       seed=seeds, dtype=st.sampled_from(DTYPES))
def test_copy_shapes(n, T, k, length, seed, dtype):
    x, y = copy_memory(n, T, rng=rng(seed), n_symbols=k, length=length, dtype=dtype)
    assert x.shape == (T + 2 * length, n, k + 2) and x.dtype == dtype
    assert y.shape == (T + 2 * length, n) and y.dtype == np.int64
    # one-hot: exactly one 1 per step, the rest 0
    assert set(np.unique(x)) <= {0.0, 1.0}
    np.testing.assert_array_equal(x.sum(axis=2), 1)


@FAST
@given(n=sizes, T=st.integers(1, 30), seed=seeds, dtype=st.sampled_from(DTYPES),
       noise=st.sampled_from([0.0, 0.1]))
def test_sine_shapes(n, T, seed, dtype, noise):
    x, y = sine_forecast(n, T, rng=rng(seed), dtype=dtype, noise=noise)
    assert x.shape == (T, n, 1) and x.dtype == dtype
    assert y.shape == (n, 1) and y.dtype == dtype


# --- determinism -------------------------------------------------------------

GENERATORS = {
    "adding": lambda r: adding_problem(16, 10, rng=r),
    "copy": lambda r: copy_memory(16, 10, rng=r),
    "sine": lambda r: sine_forecast(16, 10, rng=r),
    "sine_noisy": lambda r: sine_forecast(16, 10, rng=r, noise=0.1),
}


@pytest.mark.parametrize("name", GENERATORS)
def test_same_seed_same_arrays_different_seed_different(name):
    make = GENERATORS[name]
    assert_batch_equal(make(rng(7)), make(rng(7)))
    a, b = make(rng(7)), make(rng(8))
    assert not np.array_equal(a.x, b.x)


def test_generators_use_no_global_state():
    np.random.seed(0)
    a = adding_problem(8, 6, rng=rng(3))
    np.random.seed(1)
    np.random.random(100)
    b = adding_problem(8, 6, rng=rng(3))
    assert_batch_equal(a, b)


def test_dtype_only_rounds():
    """float32 and float64 from one seed hold the same values up to rounding."""
    a = adding_problem(32, 9, rng=rng(5), dtype=np.float32)
    b = adding_problem(32, 9, rng=rng(5), dtype=np.float64)
    np.testing.assert_allclose(a.x, b.x, rtol=1e-6)
    np.testing.assert_allclose(a.y, b.y, rtol=1e-6)


# --- adding problem ----------------------------------------------------------

@FAST
@given(n=sizes, T=st.integers(2, 40), seed=seeds)
def test_adding_markers_and_target(n, T, seed):
    x, y = adding_problem(n, T, rng=rng(seed), dtype=np.float64)
    values, marker = x[:, :, 0], x[:, :, 1]
    assert set(np.unique(marker)) <= {0.0, 1.0}
    half = T // 2
    np.testing.assert_array_equal(marker[:half].sum(axis=0), 1)  # one in [0, T//2)
    np.testing.assert_array_equal(marker[half:].sum(axis=0), 1)  # one in [T//2, T)
    assert values.min() >= 0.0 and values.max() <= 1.0
    np.testing.assert_allclose(y[:, 0], (values * marker).sum(axis=0), rtol=1e-12)


def test_adding_target_float32_is_marked_sum():
    x, y = adding_problem(50, 13, rng=rng(1), dtype=np.float32)
    marked = (x[:, :, 0].astype(np.float64) * x[:, :, 1]).sum(axis=0)
    np.testing.assert_allclose(y[:, 0], marked, rtol=1e-6)


def test_adding_marker_positions_cover_each_half():
    """Both halves' positions are drawn over the whole half, not a fixed step."""
    T = 9
    x, _ = adding_problem(4000, T, rng=rng(2), dtype=np.float64)
    pos = np.argwhere(x[:, :, 1].T == 1)[:, 1].reshape(-1, 2)  # (N, 2), sorted per row
    assert set(pos[:, 0]) == set(range(T // 2))
    assert set(pos[:, 1]) == set(range(T // 2, T))


def test_adding_baseline_matches_empirical_mse():
    n = 200_000
    _, y = adding_problem(n, 8, rng=rng(11), dtype=np.float64)
    sq = (y[:, 0] - 1.0) ** 2  # loss of always predicting 1
    se = sq.std(ddof=1) / math.sqrt(n)
    assert abs(sq.mean() - adding_baseline_mse()) < 3 * se


def test_adding_baseline_is_the_defining_integral():
    """E[(v1 + v2 - 1)²] with v1, v2 ~ U[0, 1], by the midpoint rule on the unit square."""
    m = 1000
    u = (np.arange(m) + 0.5) / m
    integral = np.mean((u[:, None] + u[None, :] - 1.0) ** 2)
    assert abs(integral - adding_baseline_mse()) < 1e-6  # midpoint error is 2/(12 m²)
    assert abs(adding_baseline_mse() - 1 / 6) < 1e-15


# --- copy memory -------------------------------------------------------------

@FAST
@given(n=sizes, T=st.integers(1, 25), k=st.integers(1, 9), length=st.integers(1, 10),
       seed=seeds)
def test_copy_structure(n, T, k, length, seed):
    x, y = copy_memory(n, T, rng=rng(seed), n_symbols=k, length=length, dtype=np.float64)
    tokens = x.argmax(axis=2)  # (T+2L, N) input classes
    blank, delim = 0, k + 1
    symbols = tokens[:length]
    assert symbols.min() >= 1 and symbols.max() <= k  # symbols only, no blank/delimiter
    # the T-1 blanks, the delimiter at step T+L-1, then L blanks
    np.testing.assert_array_equal(tokens[length:T + length - 1], blank)
    np.testing.assert_array_equal(tokens[T + length - 1], delim)
    np.testing.assert_array_equal(tokens[T + length:], blank)
    assert (tokens == delim).sum() == n  # exactly one delimiter per sequence
    # targets: blank until the delimiter (inclusive), then the symbols in order
    np.testing.assert_array_equal(y[:T + length], blank)
    np.testing.assert_array_equal(y[T + length:], symbols)


def test_copy_symbols_are_uniform_over_alphabet():
    k = 5
    x, _ = copy_memory(2000, 3, rng=rng(4), n_symbols=k, length=10)
    counts = np.bincount(x.argmax(axis=2)[:10].ravel(), minlength=k + 2)
    assert counts[0] == 0 and counts[k + 1] == 0
    expected = 20000 / k
    # each count is Binomial(20000, 1/k): within 5 standard deviations
    assert np.all(np.abs(counts[1:k + 1] - expected) < 5 * math.sqrt(expected * (1 - 1 / k)))


def memoryless_cross_entropy(x, y, k):
    """Mean cross-entropy per step of the memoryless copy predictor, driven by the inputs.

    It sees only whether the delimiter has passed: before and at the delimiter
    it puts probability 1 on blank, after it 1/k on each symbol.
    """
    delim = k + 1
    seen = np.cumsum(x[:, :, delim], axis=0)  # (T+2L, N): delimiter seen up to step t
    after = np.concatenate([np.zeros_like(seen[:1]), seen[:-1]], axis=0) > 0
    probs = np.zeros(x.shape, dtype=np.float64)
    probs[..., 0] = ~after
    probs[..., 1:k + 1] = after[..., None] / k
    p_target = np.take_along_axis(probs, y[..., None], axis=2)[..., 0]
    with np.errstate(divide="ignore"):
        return float(-np.mean(np.log(p_target)))


@pytest.mark.parametrize("T,k,length", [(1, 8, 10), (20, 8, 10), (50, 3, 4), (7, 1, 2)])
def test_copy_baseline_matches_memoryless_predictor(T, k, length):
    x, y = copy_memory(500, T, rng=rng(T), n_symbols=k, length=length, dtype=np.float64)
    ce = memoryless_cross_entropy(x, y, k)
    assert math.isfinite(ce)  # the predictor never gives a target probability 0
    assert abs(ce - copy_baseline_cross_entropy(T, n_symbols=k, length=length)) < 1e-12


def test_copy_baseline_defaults():
    assert copy_baseline_cross_entropy(100) == pytest.approx(10 * math.log(8) / 120, rel=1e-15)


# --- sine forecasting --------------------------------------------------------

@FAST
@given(n=sizes, T=st.integers(1, 40), seed=seeds)
def test_sine_target_continues_sequence(n, T, seed):
    x, y = sine_forecast(n, T, rng=rng(seed), dtype=np.float64)
    longer, _ = sine_forecast(n, T + 1, rng=rng(seed), dtype=np.float64)
    np.testing.assert_allclose(x, longer[:T], atol=1e-12)
    np.testing.assert_allclose(y, longer[T], atol=1e-6)


def test_sine_noisy_target_is_noise_free():
    n, T, noise = 2000, 12, 0.3
    x, y = sine_forecast(n, T, rng=rng(9), dtype=np.float64, noise=noise)
    clean, _ = sine_forecast(n, T + 1, rng=rng(9), dtype=np.float64)
    np.testing.assert_allclose(y, clean[T], atol=1e-12)
    residual = x - clean[:T]
    assert abs(residual.mean()) < 5 * noise / math.sqrt(residual.size)
    assert abs(residual.std() / noise - 1) < 0.02


def test_sine_is_a_sinusoid_in_range():
    """Each window satisfies sin's recurrence s_{t+1} = 2 cos ω s_t - s_{t-1}, ω in range."""
    lo, hi = 0.2, 0.7
    x, y = sine_forecast(300, 20, rng=rng(3), dtype=np.float64, omega_range=(lo, hi))
    s = np.concatenate([x[:, :, 0], y.T], axis=0)  # (T+1, N)
    assert np.abs(s).max() <= 1.0
    # 2 cos ω from least squares over the recurrence, per sequence
    num = ((s[2:] + s[:-2]) * s[1:-1]).sum(axis=0)
    two_cos = num / (s[1:-1] ** 2).sum(axis=0)
    omega = np.arccos(two_cos / 2)
    assert omega.min() >= lo - 1e-9 and omega.max() <= hi + 1e-9
    resid = s[2:] - two_cos * s[1:-1] + s[:-2]
    assert np.abs(resid).max() < 1e-9


def test_sine_frequency_and_phase_are_uniform():
    """Recover ω and φ of each wave from x_0 = sin φ, x_1 = sin(ω + φ), x_2; check U ranges."""
    lo, hi, n = 0.2, 0.7, 20_000
    x, _ = sine_forecast(n, 3, rng=rng(13), dtype=np.float64, omega_range=(lo, hi))
    s0, s1, s2 = x[0, :, 0], x[1, :, 0], x[2, :, 0]
    cos_w = (s0 + s2) / (2 * s1)  # from s_2 + s_0 = 2 cos ω s_1
    ok = np.abs(s1) > 0.05  # away from the ill-conditioned s_1 ≈ 0
    omega = np.arccos(cos_w[ok])
    cos_phi = (s1[ok] - s0[ok] * cos_w[ok]) / np.sin(omega)  # sin(ω+φ) = sin φ cos ω + cos φ sin ω
    phi = np.mod(np.arctan2(s0[ok], cos_phi), 2 * np.pi)
    np.testing.assert_allclose(np.sin(omega * 2 + phi), s2[ok], atol=1e-8)
    # quartile counts of U[lo, hi] and U[0, 2π): each Binomial(m, 1/4), within 5 sd
    m = ok.sum()
    sd = math.sqrt(m * 0.25 * 0.75)
    for values, a, b in [(omega, lo, hi), (phi, 0.0, 2 * math.pi)]:
        counts = np.histogram(values, bins=4, range=(a, b))[0]
        assert counts.sum() == m
        assert np.all(np.abs(counts - m / 4) < 5 * sd), counts


@pytest.mark.parametrize("noise", [0.0, 0.2])
def test_sine_baseline_matches_last_value_mse(noise):
    n = 100_000
    batch = sine_forecast(n, 6, rng=rng(21), dtype=np.float64, noise=noise)
    sq = (batch.x[-1, :, 0] - batch.y[:, 0]) ** 2
    assert last_value_mse(batch) == pytest.approx(sq.mean(), rel=1e-12)
    se = sq.std(ddof=1) / math.sqrt(n)
    assert abs(sq.mean() - sine_baseline_mse(noise=noise)) < 3 * se


def test_sine_baseline_single_frequency():
    assert sine_baseline_mse(omega_range=(0.5, 0.5)) == pytest.approx(1 - math.cos(0.5))


# --- digits ------------------------------------------------------------------

@pytest.fixture(scope="module")
def sklearn_digits():
    datasets = pytest.importorskip("sklearn.datasets")
    return datasets.load_digits()


@pytest.fixture(scope="module")
def split():
    return load_digits_sequences(rng=rng(0))


def test_digits_shapes_range_labels(split):
    assert isinstance(split, DigitsSplit)
    n_train, n_test = split.y_train.shape[0], split.y_test.shape[0]
    assert n_train + n_test == 1797
    assert n_test == round(0.25 * 1797)
    assert split.x_train.shape == (8, n_train, 8) and split.x_test.shape == (8, n_test, 8)
    assert split.x_train.dtype == np.float32 and split.x_test.dtype == np.float32
    assert split.y_train.dtype == np.int64 and split.y_test.dtype == np.int64
    for x in (split.x_train, split.x_test):
        assert x.min() == 0.0 and x.max() == 1.0  # scaled by /16; 0 and 16 both occur
    for y in (split.y_train, split.y_test):
        assert set(np.unique(y)) == set(range(10))


def test_digits_split_is_a_partition(split):
    assert not set(split.train_index) & set(split.test_index)
    np.testing.assert_array_equal(
        np.sort(np.concatenate([split.train_index, split.test_index])), np.arange(1797))


def test_digits_match_sklearn_and_flatten_round_trips(split, sklearn_digits):
    for x, y, idx in [(split.x_train, split.y_train, split.train_index),
                      (split.x_test, split.y_test, split.test_index)]:
        flat = flatten_sequences(x)  # (N, 64)
        assert flat.shape == (x.shape[1], 64)
        np.testing.assert_array_equal(flat.reshape(-1, 8, 8) * 16, sklearn_digits.images[idx])
        np.testing.assert_array_equal(flat * 16, sklearn_digits.data[idx])
        np.testing.assert_array_equal(y, sklearn_digits.target[idx])
        # row t of the image is time step t
        np.testing.assert_array_equal(x[3] * 16, sklearn_digits.images[idx][:, 3, :])
    flat_train, flat_test = split.flat()
    np.testing.assert_array_equal(flat_train, flatten_sequences(split.x_train))


def test_digits_no_shared_rows_beyond_duplicates_in_sklearn(split, sklearn_digits):
    """By rows: a test image seen in training must be a duplicate already in sklearn."""
    rows = lambda a: {r.tobytes() for r in a}  # noqa: E731
    shared = rows(flatten_sequences(split.x_train) * 16) & rows(flatten_sequences(split.x_test) * 16)
    data = sklearn_digits.data.astype(np.float32)
    uniq, counts = np.unique(data, axis=0, return_counts=True)
    duplicated = rows(uniq[counts > 1])
    assert shared <= duplicated


def test_digits_seeded_split():
    a = load_digits_sequences(rng=rng(1), test_fraction=0.3, dtype=np.float64)
    b = load_digits_sequences(rng=rng(1), test_fraction=0.3, dtype=np.float64)
    c = load_digits_sequences(rng=rng(2), test_fraction=0.3, dtype=np.float64)
    np.testing.assert_array_equal(a.test_index, b.test_index)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    assert a.x_train.dtype == np.float64
    assert a.y_test.shape[0] == round(0.3 * 1797)
    assert not np.array_equal(np.sort(a.test_index), np.sort(c.test_index))


def test_flatten_sequences_layout():
    T, n, f = 3, 4, 5
    x = np.arange(T * n * f).reshape(T, n, f)
    flat = flatten_sequences(x)
    for t in range(T):
        np.testing.assert_array_equal(flat[:, t * f:(t + 1) * f], x[t])


# --- minibatches -------------------------------------------------------------

@FAST
@given(n=st.integers(1, 40), b=st.integers(1, 50), seed=seeds, drop_last=st.booleans())
def test_minibatches_cover_epoch(n, b, seed, drop_last):
    T, f = 3, 2
    x = np.arange(T * n * f, dtype=np.float64).reshape(T, n, f)
    y = np.arange(n)
    seen = []
    for xb, yb in minibatches(x, y, b, rng=rng(seed), drop_last=drop_last):
        assert xb.shape[0] == T and xb.shape[2] == f and xb.shape[1] == yb.shape[0]
        assert xb.shape[1] == b or not drop_last
        np.testing.assert_array_equal(xb, x[:, yb])  # x and y stay paired
        seen.extend(yb.tolist())
    full = n - n % b if drop_last else n
    assert len(seen) == full and len(set(seen)) == full


def test_minibatches_shuffle_with_rng():
    x = np.zeros((2, 100, 1))
    y = np.arange(100)
    first = next(minibatches(x, y, 100, rng=rng(0))).y
    again = next(minibatches(x, y, 100, rng=rng(0))).y
    other = next(minibatches(x, y, 100, rng=rng(1))).y
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, y) and not np.array_equal(first, other)


# --- bad arguments -----------------------------------------------------------

BAD_VALUE_CALLS = {
    "adding batch 0": lambda: adding_problem(0, 5, rng=rng()),
    "adding batch -1": lambda: adding_problem(-1, 5, rng=rng()),
    "adding T 1": lambda: adding_problem(4, 1, rng=rng()),
    "adding T float": lambda: adding_problem(4, 5.0, rng=rng()),
    "adding batch bool": lambda: adding_problem(True, 5, rng=rng()),
    "copy T 0": lambda: copy_memory(4, 0, rng=rng()),
    "copy n_symbols 0": lambda: copy_memory(4, 5, rng=rng(), n_symbols=0),
    "copy length 0": lambda: copy_memory(4, 5, rng=rng(), length=0),
    "copy batch 0": lambda: copy_memory(0, 5, rng=rng()),
    "copy baseline T 0": lambda: copy_baseline_cross_entropy(0),
    "copy baseline length -2": lambda: copy_baseline_cross_entropy(5, length=-2),
    "sine T 0": lambda: sine_forecast(4, 0, rng=rng()),
    "sine batch 0": lambda: sine_forecast(0, 4, rng=rng()),
    "sine noise -0.1": lambda: sine_forecast(4, 4, rng=rng(), noise=-0.1),
    "sine noise nan": lambda: sine_forecast(4, 4, rng=rng(), noise=float("nan")),
    "sine omega reversed": lambda: sine_forecast(4, 4, rng=rng(), omega_range=(0.9, 0.2)),
    "sine omega 0": lambda: sine_forecast(4, 4, rng=rng(), omega_range=(0.0, 0.5)),
    "sine omega above nyquist": lambda: sine_forecast(4, 4, rng=rng(), omega_range=(0.1, 4.0)),
    "sine omega not a pair": lambda: sine_forecast(4, 4, rng=rng(), omega_range=0.5),
    "sine baseline noise": lambda: sine_baseline_mse(noise=-1),
    "last_value_mse shape": lambda: last_value_mse(Batch(np.zeros((3, 2, 2)), np.zeros((2, 1)))),
    "digits test_fraction 0": lambda: load_digits_sequences(rng=rng(), test_fraction=0.0),
    "digits test_fraction 1": lambda: load_digits_sequences(rng=rng(), test_fraction=1.0),
    "digits test_fraction tiny": lambda: load_digits_sequences(rng=rng(), test_fraction=1e-6),
    "flatten 2-D": lambda: flatten_sequences(np.zeros((3, 4))),
    "minibatches batch 0": lambda: list(minibatches(np.zeros((2, 3, 1)), np.zeros(3), 0, rng=rng())),
    "minibatches y mismatch": lambda: list(minibatches(np.zeros((2, 3, 1)), np.zeros(4), 2, rng=rng())),
    "minibatches x 2-D": lambda: list(minibatches(np.zeros((3, 1)), np.zeros(3), 2, rng=rng())),
}


@pytest.mark.parametrize("name", BAD_VALUE_CALLS)
def test_bad_values_raise_value_error(name):
    with pytest.raises(ValueError) as info:
        BAD_VALUE_CALLS[name]()
    assert "got" in str(info.value)  # names what came, beside what was expected


def test_error_names_expected_and_received():
    with pytest.raises(ValueError, match=r"T must be an integer >= 2, got 1"):
        adding_problem(4, 1, rng=rng())


BAD_TYPE_CALLS = {
    "int seed as rng": lambda: adding_problem(4, 5, rng=0),
    "no rng": lambda: copy_memory(4, 5, rng=None),
    "legacy RandomState": lambda: sine_forecast(4, 5, rng=np.random.RandomState(0)),
    "int dtype": lambda: adding_problem(4, 5, rng=rng(), dtype=np.int32),
    "float16 dtype": lambda: sine_forecast(4, 5, rng=rng(), dtype=np.float16),
    "digits rng": lambda: load_digits_sequences(rng=1),
}


@pytest.mark.parametrize("name", BAD_TYPE_CALLS)
def test_bad_types_raise_type_error(name):
    with pytest.raises(TypeError, match="got"):
        BAD_TYPE_CALLS[name]()
