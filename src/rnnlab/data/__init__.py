"""Data for the lab: synthetic memory tasks, digits as sequences, Japanese Vowels, minibatches.

Every input is time-major, x (T, N, F); every random draw comes from the
``rng`` keyword (a ``numpy.random.Generator``). See each module's docstring for
the task definitions and the derivation of each chance-level baseline.

    tasks   adding_problem, copy_memory, sine_forecast and their baselines
    digits  load_digits_sequences -> DigitsSplit, flatten_sequences
    vowels  load_japanese_vowels (variable-length, no network), standardisation, padding
    loader  Batch(x, y), minibatches
"""

from .digits import DIGITS_MAX_PIXEL, DigitsSplit, flatten_sequences, load_digits_sequences
from .loader import Batch, minibatches
from .tasks import (
    ADDING_VALUE_RANGE,
    SINE_OMEGA_RANGE,
    adding_baseline_mse,
    adding_problem,
    copy_baseline_cross_entropy,
    copy_memory,
    last_value_mse,
    sine_baseline_mse,
    sine_forecast,
)
from .vowels import (
    Padded,
    feature_stats,
    load_japanese_vowels,
    load_vowels_standardized,
    pad_or_cut,
    pad_sequences,
    standardize,
)

__all__ = [
    "Batch", "minibatches",
    "adding_problem", "adding_baseline_mse",
    "copy_memory", "copy_baseline_cross_entropy",
    "sine_forecast", "sine_baseline_mse", "last_value_mse",
    "ADDING_VALUE_RANGE", "SINE_OMEGA_RANGE",
    "DigitsSplit", "load_digits_sequences", "flatten_sequences", "DIGITS_MAX_PIXEL",
    "load_japanese_vowels", "load_vowels_standardized", "feature_stats", "standardize",
    "Padded", "pad_sequences", "pad_or_cut",
]
