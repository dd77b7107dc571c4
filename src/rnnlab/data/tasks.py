"""Synthetic sequence tasks that probe long-term memory, with their chance-level baselines.

All inputs are time-major, x (T, N, F). Every generator takes ``rng`` (a
``numpy.random.Generator``) and ``dtype`` (float32 or float64) as keywords and
returns a :class:`Batch` ``(x, y)``: same seed, same arrays.

Adding problem (Hochreiter & Schmidhuber 1997; Le et al. 2015)
    Each of the N sequences has T steps of two channels. Channel 0 holds values
    v_t ~ U[0, 1], independent. Channel 1 is a marker: 1 at exactly two steps,
    i ~ U{0, ..., T//2 - 1} (first half) and j ~ U{T//2, ..., T - 1} (second
    half), 0 elsewhere. The target is y = v_i + v_j. Shapes: x (T, N, 2),
    y (N, 1). A model must hold v_i for up to T steps.
    Baseline: predicting the mean, E[y] = 1, scores MSE = Var(y) = 1/6.

Copy memory (Hochreiter & Schmidhuber 1997; Arjovsky et al. 2016)
    Alphabet: blank 0, symbols 1..K (K = ``n_symbols``), delimiter K+1; inputs
    are one-hot over K+2 classes. With L = ``length``, a sequence has T + 2L steps:

        input:  s_1 .. s_L | 0 x (T-1) | K+1 | 0 x L
        target: 0 x (T+L)                    | s_1 .. s_L

    (L + (T-1) + 1 + L = T + 2L.) The symbols s ~ U{1..K} are independent. The
    model must recall s_1..s_L after T blanks, emitting them on the L steps after
    the delimiter. Shapes: x (T+2L, N, K+2), y (T+2L, N) int64.
    Baseline: a memoryless model predicts blank with certainty up to and
    including the delimiter (cross-entropy 0 on those T+L steps), then the
    uniform distribution over the K symbols (ln K on each of the L steps), so
    the mean cross-entropy per step is L ln K / (T + 2L).

Sine forecasting
    x_t = sin(ω t + φ) + ε_t for t = 0..T-1, with ω ~ U[ω_lo, ω_hi] radians per
    step (default [0.1, 1.0]: periods from 2π ≈ 6.3 to 20π ≈ 63 steps),
    φ ~ U[0, 2π) and ε_t ~ N(0, noise²); the target is the next noise-free
    value y = sin(ω T + φ). Shapes: x (T, N, 1), y (N, 1).
    Baseline: repeating the last input, ŷ = x_{T-1}. Over the phase,
    E[(sin(a) - sin(a + ω))²] = 2 sin²(ω/2) = 1 - cos ω; averaged over ω and with
    the noise, MSE = 1 - (sin ω_hi - sin ω_lo)/(ω_hi - ω_lo) + noise².
"""

from __future__ import annotations

import math

import numpy as np

from .loader import Batch, check_dtype, check_float, check_int, check_rng

__all__ = [
    "adding_problem", "adding_baseline_mse",
    "copy_memory", "copy_baseline_cross_entropy",
    "sine_forecast", "sine_baseline_mse", "last_value_mse",
    "ADDING_VALUE_RANGE", "SINE_OMEGA_RANGE",
]

# The adding problem's values are drawn from U[low, high).
ADDING_VALUE_RANGE = (0.0, 1.0)
# Default frequency range of sine_forecast, radians per step (well below Nyquist, π).
SINE_OMEGA_RANGE = (0.1, 1.0)


# --- adding problem ---

def adding_problem(batch: int, T: int, *, rng: np.random.Generator,
                   dtype=np.float32) -> Batch:
    """The adding problem: add the two marked values of a length-T sequence.

    Channel 0 holds v_t ~ U[0, 1]; channel 1 marks one step in [0, T//2) and one
    in [T//2, T); y = v_i + v_j (computed from the values as stored in ``dtype``).

    Arguments:
        batch: number of sequences N >= 1.
        T: sequence length, T >= 2 (each half needs a step).
        rng: the only source of randomness.
        dtype: float dtype of x and y.

    Shapes: x (T, N, 2), y (N, 1), both ``dtype``.
    """
    check_rng(rng)
    dtype = check_dtype(dtype)
    n = check_int(batch, "batch")
    T = check_int(T, "T", minimum=2)
    low, high = ADDING_VALUE_RANGE
    values = rng.uniform(low, high, size=(T, n)).astype(dtype)  # (T, N)
    first = rng.integers(0, T // 2, size=n)  # (N,) in [0, T//2)
    second = rng.integers(T // 2, T, size=n)  # (N,) in [T//2, T)
    cols = np.arange(n)
    x = np.zeros((T, n, 2), dtype=dtype)
    x[:, :, 0] = values
    x[first, cols, 1] = 1
    x[second, cols, 1] = 1
    y = (values[first, cols].astype(np.float64) + values[second, cols]).astype(dtype)
    return Batch(x, y[:, None])


def adding_baseline_mse() -> float:
    """MSE of always predicting E[y] = 1 on the adding problem: Var(y) = 1/6.

    Derivation from the definition: v_i, v_j ~ U[a, b] independent, a = 0, b = 1.
    Var U[a, b] = (b - a)²/12, so Var(v_i + v_j) = 2 (b - a)²/12 = 1/6, and
    E[y] = 2 (a + b)/2 = 1. The MSE of the constant prediction E[y] is Var(y),
    the lowest of any prediction that ignores the inputs.
    """
    low, high = ADDING_VALUE_RANGE
    return 2 * (high - low) ** 2 / 12


# --- copy memory ---

def copy_memory(batch: int, T: int, *, rng: np.random.Generator, n_symbols: int = 8,
                length: int = 10, dtype=np.float32) -> Batch:
    """The copy-memory task: recall ``length`` symbols after T blank steps.

    Blank is class 0, symbols are 1..n_symbols, the delimiter is n_symbols + 1.
    Input: the symbols (steps 0..length-1), T-1 blanks, the delimiter (step
    T+length-1), ``length`` blanks. Target: blank on steps 0..T+length-1, then
    the symbols in order on steps T+length..T+2*length-1.

    Arguments:
        batch: number of sequences N >= 1.
        T: delay, T >= 1 (the delimiter comes T steps after the last symbol).
        rng: the only source of randomness.
        n_symbols: K >= 1, the size of the alphabet without blank and delimiter.
        length: L >= 1, the number of symbols to copy.
        dtype: float dtype of the one-hot x.

    Shapes: x (T + 2L, N, K + 2) one-hot ``dtype``, y (T + 2L, N) int64.
    """
    check_rng(rng)
    dtype = check_dtype(dtype)
    n = check_int(batch, "batch")
    T = check_int(T, "T")
    k = check_int(n_symbols, "n_symbols")
    L = check_int(length, "length")
    steps = T + 2 * L
    symbols = rng.integers(1, k + 1, size=(L, n), dtype=np.int64)  # (L, N)
    tokens = np.zeros((steps, n), dtype=np.int64)  # (T+2L, N) input classes
    tokens[:L] = symbols
    tokens[T + L - 1] = k + 1  # the delimiter
    y = np.zeros((steps, n), dtype=np.int64)
    y[T + L:] = symbols
    x = np.eye(k + 2, dtype=dtype)[tokens]  # (T+2L, N, K+2)
    return Batch(x, y)


def copy_baseline_cross_entropy(T: int, n_symbols: int = 8, length: int = 10) -> float:
    """Mean cross-entropy per step (nats) of the best memoryless copy-memory model.

    It predicts blank with certainty until the delimiter (T + L steps, loss 0),
    then the uniform distribution over the K symbols (L steps, loss ln K each):
    L ln K / (T + 2L). For T = 100, K = 8, L = 10: 10 ln 8 / 120 ≈ 0.173.
    """
    T = check_int(T, "T")
    k = check_int(n_symbols, "n_symbols")
    L = check_int(length, "length")
    return L * math.log(k) / (T + 2 * L)


# --- sine forecasting ---

def _check_omega_range(omega_range) -> tuple[float, float]:
    try:
        lo, hi = omega_range
    except (TypeError, ValueError):
        raise ValueError("omega_range must be a pair (low, high) with 0 < low <= high < π, "
                         f"got {omega_range!r}") from None
    lo = check_float(lo, "omega_range[0]", 0.0, math.pi, low_open=True, high_open=True)
    hi = check_float(hi, "omega_range[1]", 0.0, math.pi, low_open=True, high_open=True)
    if lo > hi:
        raise ValueError(f"omega_range must have low <= high, got {omega_range!r}")
    return lo, hi


def sine_forecast(batch: int, T: int, *, rng: np.random.Generator, dtype=np.float32,
                  noise: float = 0.0, omega_range=SINE_OMEGA_RANGE) -> Batch:
    """One-step-ahead forecasting of sine waves of random frequency and phase.

    x_t = sin(ω t + φ) + ε_t for t = 0..T-1 and y = sin(ω T + φ), noise-free,
    with ω ~ U[omega_range], φ ~ U[0, 2π), ε_t ~ N(0, noise²). ω and φ are drawn
    before the noise and independently of T, so the same seed with T+1 steps
    extends the same waves: its x[T] (noise-free) is this y.

    Arguments:
        batch: number of sequences N >= 1.
        T: window length, T >= 1.
        rng: the only source of randomness.
        dtype: float dtype of x and y.
        noise: standard deviation of the Gaussian input noise, >= 0.
        omega_range: (low, high), 0 < low <= high < π radians per step.

    Shapes: x (T, N, 1), y (N, 1), both ``dtype``.
    """
    check_rng(rng)
    dtype = check_dtype(dtype)
    n = check_int(batch, "batch")
    T = check_int(T, "T")
    noise = check_float(noise, "noise", 0.0, math.inf, high_open=True)
    lo, hi = _check_omega_range(omega_range)
    omega = rng.uniform(lo, hi, size=n)  # (N,)
    phi = rng.uniform(0.0, 2 * math.pi, size=n)  # (N,)
    t = np.arange(T + 1, dtype=np.float64)[:, None]  # (T+1, 1)
    wave = np.sin(omega * t + phi)  # (T+1, N), float64
    x = wave[:T]
    if noise > 0:
        x = x + noise * rng.standard_normal(size=(T, n))
    return Batch(x[:, :, None].astype(dtype), wave[T][:, None].astype(dtype))


def sine_baseline_mse(noise: float = 0.0, omega_range=SINE_OMEGA_RANGE) -> float:
    """Expected MSE of repeating the last input, ŷ = x_{T-1}, on :func:`sine_forecast`.

    With a = ω(T-1) + φ, sin(a + ω) - sin(a) = 2 cos(a + ω/2) sin(ω/2); its square
    averaged over the uniform phase is 2 sin²(ω/2) = 1 - cos ω. Averaged over
    ω ~ U[lo, hi]: 1 - (sin hi - sin lo)/(hi - lo) (1 - cos lo when lo = hi). The
    independent noise on x_{T-1} adds noise². Independent of T.
    """
    noise = check_float(noise, "noise", 0.0, math.inf, high_open=True)
    lo, hi = _check_omega_range(omega_range)
    mean_cos = math.cos(lo) if lo == hi else (math.sin(hi) - math.sin(lo)) / (hi - lo)
    return 1.0 - mean_cos + noise ** 2


def last_value_mse(batch: Batch) -> float:
    """MSE of the "repeat the last value" forecast, ŷ = x[T-1], on a given batch.

    Shapes: batch.x (T, N, 1), batch.y (N, 1) -> float (computed in float64).
    """
    x, y = batch
    if x.ndim != 3 or x.shape[2] != 1 or y.shape != (x.shape[1], 1):
        raise ValueError(f"expected x (T, N, 1) and y (N, 1), got x {x.shape} and y {y.shape}")
    diff = x[-1].astype(np.float64) - y
    return float(np.mean(diff * diff))
