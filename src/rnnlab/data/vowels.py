"""The Japanese Vowels data set: variable-length sequences of 12 LPC cepstrum coefficients.

Data: UCI's "Japanese Vowels" (Kudo, Toyama and Shimbo 1999), the UEA archive's
JapaneseVowels. Nine male speakers utter the vowels /ae/; each utterance is a
sequence of T_i frames, 7 <= T_i <= 29, of 12 LPC cepstrum coefficients. The
task: name the speaker (classes 0..8). The split is the data set's own: 270
training utterances (30 per speaker) and 370 test utterances (24-88 per
speaker). The copy shipped here, ``japanese_vowels.npz``, is described
(source, license, citation, conversion) in ``japanese_vowels_README.md``
beside it; it loads with no network.

Standardisation: the per-coefficient mean and standard deviation over every
frame of the *training* split,

    mean[f] = Σ_i Σ_t x_i[t, f] / Σ_i T_i
    std[f]  = sqrt(Σ_i Σ_t (x_i[t, f] - mean[f])² / Σ_i T_i)
    z_i[t, f] = (x_i[t, f] - mean[f]) / std[f]

are applied to both splits, so nothing about the test set leaks into training.

Batches: a recurrent network reads each sequence to its own end; the lengths
differ, so a batch is padded with zeros after each end to the batch's longest,
x (T_max, N, 12) with lengths (N,) (:func:`pad_sequences`). An MLP needs one
input width: :func:`pad_or_cut` pads the shorter sequences and cuts the longer
ones to one fixed length L, x (L, N, 12).
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from typing import NamedTuple

import numpy as np

from .loader import check_dtype, check_int

__all__ = ["VOWELS_SPLITS", "VOWELS_FEATURES", "VOWELS_CLASSES", "Padded",
           "load_japanese_vowels", "feature_stats", "standardize", "load_vowels_standardized",
           "pad_sequences", "pad_or_cut"]

VOWELS_SPLITS = ("train", "test")
VOWELS_FEATURES = 12  # LPC cepstrum coefficients per frame
VOWELS_CLASSES = 9    # speakers
_FILE = "japanese_vowels.npz"
_SCALE = 1e6  # the file holds each coefficient in millionths (the source's 6 decimals), as int32


class Padded(NamedTuple):
    """A batch of sequences of different lengths, zero-padded after each end.

    Attributes:
        x: (T_max, N, F) time-major; x[t, n] is zero for t >= lengths[n].
        lengths: (N,) int64, each sequence's own length, 1 <= lengths[n] <= T_max.
    """

    x: np.ndarray
    lengths: np.ndarray


def _check_split(split) -> str:
    if split not in VOWELS_SPLITS:
        raise ValueError(f"split must be one of {VOWELS_SPLITS}, got {split!r}")
    return split


@lru_cache(maxsize=1)
def _raw() -> dict:
    """The shipped arrays, read once and read-only: x_<split> (frames, 12) int32,
    lengths_<split>, labels_<split>."""
    with resources.files(__package__).joinpath(_FILE).open("rb") as f, np.load(f) as npz:
        arrays = {k: npz[k] for k in npz.files}
    for a in arrays.values():
        a.setflags(write=False)
    return arrays


def load_japanese_vowels(split: str, *, dtype=np.float32) -> tuple[list[np.ndarray], np.ndarray]:
    """The raw (unstandardised) utterances of one split, in the data set's order.

    Arguments:
        split: "train" (270 utterances) or "test" (370).
        dtype: float dtype of the coefficients.

    Returns:
        (sequences, labels): a list of N arrays, sequence i of shape (T_i, 12)
        with 7 <= T_i <= 29, and the speakers as int64 labels (N,) in 0..8.
    """
    split = _check_split(split)
    dtype = check_dtype(dtype)
    raw = _raw()
    frames = raw[f"x_{split}"].astype(np.float64) / _SCALE  # (Σ T_i, 12)
    lengths = raw[f"lengths_{split}"].astype(np.int64)
    ends = np.cumsum(lengths)
    sequences = [frames[end - T:end].astype(dtype) for T, end in zip(lengths, ends)]
    return sequences, raw[f"labels_{split}"].astype(np.int64)


def feature_stats(sequences) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and standard deviation over every frame of every sequence.

    Shapes: sequences [(T_i, F)] -> mean (F,), std (F,) float64. A feature that
    never varies gets std 1, so that standardising leaves it at zero.
    """
    frames = _stack_frames(sequences)
    mean = frames.mean(axis=0)
    std = frames.std(axis=0)
    return mean, np.where(std > 0, std, 1.0)


def standardize(sequences, mean, std) -> list[np.ndarray]:
    """z[t, f] = (x[t, f] - mean[f]) / std[f] for each sequence, keeping each one's dtype.

    Shapes: [(T_i, F)], mean (F,), std (F,) -> [(T_i, F)].
    """
    mean, std = np.asarray(mean, dtype=np.float64), np.asarray(std, dtype=np.float64)
    F = _stack_frames(sequences).shape[1]
    if mean.shape != (F,) or std.shape != (F,):
        raise ValueError(f"mean and std must have shape ({F},), got {mean.shape} and {std.shape}")
    return [((s - mean) / std).astype(s.dtype) for s in sequences]


def load_vowels_standardized(*, dtype=np.float32):
    """Both splits standardised with the training split's statistics.

    Returns:
        dict with "train" and "test", each (sequences [(T_i, 12)], labels (N,)),
        and "mean", "std" (12,) computed on the training split only.
    """
    train, y_train = load_japanese_vowels("train", dtype=dtype)
    test, y_test = load_japanese_vowels("test", dtype=dtype)
    mean, std = feature_stats(train)
    return {"train": (standardize(train, mean, std), y_train),
            "test": (standardize(test, mean, std), y_test), "mean": mean, "std": std}


def pad_sequences(sequences, index=None) -> Padded:
    """Zero-pad sequences after their ends to the longest of them, time-major.

    Arguments:
        sequences: a list of (T_i, F) arrays of one dtype.
        index: which of them, in this order (default all).

    Shapes: [(T_i, F)] -> Padded(x (max T_i, N, F), lengths (N,) int64).
    """
    chosen = list(sequences) if index is None else [sequences[i] for i in index]
    frames = _stack_frames(chosen)  # checks shapes and dtypes
    lengths = np.array([s.shape[0] for s in chosen], dtype=np.int64)
    x = np.zeros((int(lengths.max()), len(chosen), frames.shape[1]), dtype=frames.dtype)
    for n, s in enumerate(chosen):
        x[:s.shape[0], n] = s
    return Padded(x, lengths)


def pad_or_cut(sequences, length: int, index=None) -> np.ndarray:
    """Bring every sequence to one length, as an MLP needs: zeros after a short one, a long one cut.

    x[t, n] = s_n[t] for t < min(T_n, L), else 0.

    Shapes: [(T_i, F)] -> x (L, N, F).
    """
    length = check_int(length, "length")
    chosen = list(sequences) if index is None else [sequences[i] for i in index]
    frames = _stack_frames(chosen)
    x = np.zeros((length, len(chosen), frames.shape[1]), dtype=frames.dtype)
    for n, s in enumerate(chosen):
        x[:min(s.shape[0], length), n] = s[:length]
    return x


def _stack_frames(sequences) -> np.ndarray:
    """All frames of a non-empty list of (T_i, F) arrays of one dtype, stacked: (Σ T_i, F)."""
    if isinstance(sequences, np.ndarray) or not len(sequences):
        raise ValueError("expected a non-empty list of (T_i, F) arrays, got "
                         f"{type(sequences).__name__} of length {len(sequences)}")
    first = sequences[0]
    for i, s in enumerate(sequences):
        if not isinstance(s, np.ndarray) or s.ndim != 2 or s.shape[0] < 1:
            raise ValueError(f"sequence {i}: expected a (T_i, F) array with T_i >= 1, got "
                             f"{type(s).__name__} with shape {getattr(s, 'shape', None)}")
        if s.shape[1] != first.shape[1] or s.dtype != first.dtype:
            raise ValueError(f"sequence {i}: expected (T_i, {first.shape[1]}) {first.dtype} like "
                             f"sequence 0, got {s.shape} {s.dtype}")
    return np.concatenate(sequences, axis=0)
