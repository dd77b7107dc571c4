"""Where each row of a packed batch of variable-length sequences lives.

A packed batch holds N sequences sorted by decreasing length, step by step:
the rows of step t are the steps t of the ``batch_sizes[t]`` sequences that
are at least t + 1 long, which are always the first ``batch_sizes[t]`` of the
batch (the lengths are sorted). So row ``offsets[t] + j`` is step t of
sequence j, for j < batch_sizes[t], and the active rows of every step are a
prefix of the batch. (Not to be confused with :mod:`rnnlab.kernels.packed_gemm`, which packs a
weight matrix for the BLAS kernels.)

Example, lengths (3, 2, 2, 1): batch_sizes (4, 3, 1), offsets (0, 4, 7, 8)::

    row   0   1   2   3 | 4   5   6 | 7
    step  0   0   0   0 | 1   1   1 | 2
    seq   0   1   2   3 | 0   1   2 | 0
"""

from __future__ import annotations

import numpy as np

__all__ = ["PackedLayout", "batch_sizes_from_lengths", "lengths_from_batch_sizes",
           "check_batch_sizes"]


def batch_sizes_from_lengths(sorted_lengths: np.ndarray) -> np.ndarray:
    """(N,) lengths sorted in decreasing order, each ≥ 1 -> (T,) int64 batch sizes,
    T = the longest: batch_sizes[t] = #{j : lengths[j] > t}."""
    sorted_lengths = np.asarray(sorted_lengths, dtype=np.int64)
    steps = np.arange(int(sorted_lengths[0]))  # (T,)
    return (sorted_lengths[None, :] > steps[:, None]).sum(axis=1).astype(np.int64)


def lengths_from_batch_sizes(batch_sizes: np.ndarray) -> np.ndarray:
    """(T,) batch sizes -> (N,) int64 lengths, sorted in decreasing order:
    lengths[j] = #{t : batch_sizes[t] > j}."""
    batch_sizes = np.asarray(batch_sizes, dtype=np.int64)
    rows = np.arange(int(batch_sizes[0]))  # (N,)
    return (batch_sizes[None, :] > rows[:, None]).sum(axis=1).astype(np.int64)


def check_batch_sizes(batch_sizes, name: str, rows: int | None = None) -> np.ndarray:
    """A valid batch_sizes array (1-D integers ≥ 1, non-increasing, summing to
    ``rows`` when given) as int64, else a ValueError naming what was expected."""
    arr = np.asarray(batch_sizes)
    if arr.ndim != 1 or arr.dtype.kind not in "iu" or arr.size == 0:
        raise ValueError(f"{name}: expected batch_sizes as a non-empty 1-D array of integers, "
                         f"got a {arr.ndim}-D array of {arr.dtype} with shape {arr.shape}")
    arr = arr.astype(np.int64)
    if arr.min() < 1 or np.any(np.diff(arr) > 0):
        raise ValueError(f"{name}: expected batch_sizes ≥ 1 in non-increasing order, "
                         f"got {arr.tolist()}")
    if rows is not None and int(arr.sum()) != rows:
        raise ValueError(f"{name}: expected batch_sizes summing to the {rows} rows of data, "
                         f"got a sum of {int(arr.sum())}")
    return arr


class PackedLayout:
    """Index arithmetic of a packed batch, computed once per batch_sizes.

    Attributes:
        batch_sizes (T,), offsets (T+1,): rows offsets[t]:offsets[t+1] are step t.
        lengths (N,): each sequence's length, decreasing.
        steps T, batch N, total S = Σ lengths.
        step_of, seq_of (S,): the step and the sequence of each row.
    """

    def __init__(self, batch_sizes: np.ndarray):
        self.batch_sizes = np.asarray(batch_sizes, dtype=np.int64)
        self.steps = len(self.batch_sizes)
        self.batch = int(self.batch_sizes[0])
        self.offsets = np.zeros(self.steps + 1, dtype=np.int64)
        np.cumsum(self.batch_sizes, out=self.offsets[1:])
        self.total = int(self.offsets[-1])
        self.lengths = lengths_from_batch_sizes(self.batch_sizes)
        self.step_of = np.repeat(np.arange(self.steps), self.batch_sizes)  # (S,)
        self.seq_of = np.arange(self.total) - self.offsets[self.step_of]  # (S,)
        self._reversal = None

    def rows(self, t: int) -> tuple[int, int]:
        """(first row, number of rows) of step t."""
        return int(self.offsets[t]), int(self.batch_sizes[t])

    def last_rows(self) -> np.ndarray:
        """(N,): the row of each sequence's last step."""
        return self.offsets[self.lengths - 1] + np.arange(self.batch)

    def reversal(self) -> np.ndarray:
        """(S,): the permutation of rows that reverses every sequence in time: row (t, j)
        <-> row (lengths[j] - 1 - t, j). The reversed sequences have the same lengths, so
        their packed layout is this one, and the permutation is its own inverse."""
        if self._reversal is None:
            mirrored = self.lengths[self.seq_of] - 1 - self.step_of
            self._reversal = self.offsets[mirrored] + self.seq_of
        return self._reversal
