"""The scikit-learn handwritten digits as sequences: each 8x8 image read row by row.

Data: ``sklearn.datasets.load_digits`` (1797 images, shipped with scikit-learn,
no download), 8x8 pixels with integer intensities 0..16, labels 0..9.

As a sequence: pixels are scaled to [0, 1] by /16 and image n becomes 8 time
steps, step t holding row t (8 pixels, left to right):

    x[t, n, f] = image_n[t, f] / 16          x (T=8, N, F=8)

For the MLP, :func:`flatten_sequences` lays the steps side by side, so that
flat[n, t*F + f] = x[t, n, f]: row t of the image becomes features
t*F .. (t+1)*F - 1, which is the row-major order of sklearn's ``data`` array.

Split: one permutation of the 1797 indices drawn from ``rng``; the first
round(test_fraction * 1797) go to the test set, the rest to the training set
(not stratified); both sets keep the shuffled order.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .loader import check_dtype, check_float, check_rng

__all__ = ["DigitsSplit", "load_digits_sequences", "flatten_sequences", "DIGITS_MAX_PIXEL"]

# sklearn's digits are 4x4-block counts of a 32x32 bitmap: intensities 0..16.
DIGITS_MAX_PIXEL = 16


@dataclass(frozen=True)
class DigitsSplit:
    """A train/test split of the digits as time-major sequences.

    Attributes:
        x_train: (8, N_train, 8) pixels in [0, 1].
        y_train: (N_train,) int64 labels 0..9.
        x_test: (8, N_test, 8) pixels in [0, 1].
        y_test: (N_test,) int64 labels 0..9.
        train_index: (N_train,) int64, row of each training sample in sklearn's data.
        test_index: (N_test,) int64, row of each test sample in sklearn's data.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    train_index: np.ndarray
    test_index: np.ndarray

    def flat(self) -> tuple[np.ndarray, np.ndarray]:
        """(x_train, x_test) flattened for the MLP. Shapes: (N_train, 64), (N_test, 64)."""
        return flatten_sequences(self.x_train), flatten_sequences(self.x_test)


@lru_cache(maxsize=1)
def _raw_digits() -> tuple[np.ndarray, np.ndarray]:
    """sklearn's images (1797, 8, 8) and labels (1797,), read once, read-only."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.array(bunch.images, dtype=np.float64)
    labels = np.array(bunch.target, dtype=np.int64)
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def load_digits_sequences(*, rng: np.random.Generator, test_fraction: float = 0.25,
                          dtype=np.float32) -> DigitsSplit:
    """Load the digits as row sequences and split them at random.

    Arguments:
        rng: draws the permutation of the split.
        test_fraction: share of the samples in the test set, in (0, 1); both sets
            must end up non-empty.
        dtype: float dtype of the pixels.

    Shapes: x_train (8, N_train, 8), y_train (N_train,) int64,
    x_test (8, N_test, 8), y_test (N_test,) int64, N_train + N_test = 1797.
    """
    check_rng(rng)
    dtype = check_dtype(dtype)
    test_fraction = check_float(test_fraction, "test_fraction", 0.0, 1.0,
                                low_open=True, high_open=True)
    images, labels = _raw_digits()
    n = images.shape[0]
    n_test = int(round(test_fraction * n))
    if not 0 < n_test < n:
        raise ValueError(f"test_fraction must leave both sets non-empty out of {n} samples, "
                         f"got {test_fraction!r} ({n_test} test samples)")
    order = rng.permutation(n)
    test_index, train_index = order[:n_test], order[n_test:]  # both in shuffled order
    seq = (images / DIGITS_MAX_PIXEL).transpose(1, 0, 2).astype(dtype)  # (8, 1797, 8)
    return DigitsSplit(
        x_train=np.ascontiguousarray(seq[:, train_index]),
        y_train=labels[train_index].copy(),
        x_test=np.ascontiguousarray(seq[:, test_index]),
        y_test=labels[test_index].copy(),
        train_index=train_index.astype(np.int64),
        test_index=test_index.astype(np.int64),
    )


def flatten_sequences(x: np.ndarray) -> np.ndarray:
    """Time-major sequences to flat feature vectors for the MLP.

    flat[n, t*F + f] = x[t, n, f]: step t (for digits, image row t) becomes
    features t*F .. (t+1)*F - 1. For digits this is sklearn's row-major ``data``.

    Shapes: x (T, N, F) -> (N, T*F).
    """
    if not isinstance(x, np.ndarray) or x.ndim != 3:
        raise ValueError("x must be a time-major 3-D array (T, N, F), got "
                         f"{type(x).__name__} with shape {getattr(x, 'shape', None)}")
    T, n, f = x.shape
    return np.ascontiguousarray(x.transpose(1, 0, 2)).reshape(n, T * f)
