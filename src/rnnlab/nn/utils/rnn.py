"""Variable-length batches, with the API of ``torch.nn.utils.rnn``.

A :class:`PackedSequence` holds N sequences of different lengths without
padding: sorted by decreasing length, step by step, so that step t's rows are
the first ``batch_sizes[t]`` sequences (see :mod:`rnnlab.functional.packed_layout`).
RNN and LSTM take one and return one, and their work follows the sum of the
lengths, not batch × longest::

    packed = pack_padded_sequence(x, lengths, enforce_sorted=False)  # x (T, N, I)
    out, (h_n, c_n) = lstm(packed)              # h_n: each sequence's own last step
    y, lengths = pad_packed_sequence(out)       # (T, N, H), zeros past each length

Arrays are NumPy's; ``lengths`` may be a list, an integer array or a CPU
tensor (anything ``np.asarray`` reads). Sorting is stable: equal lengths keep
their order in the batch.
"""

from __future__ import annotations

from collections import namedtuple

import numpy as np

from ...functional.packed_layout import (PackedLayout, batch_sizes_from_lengths,
                                         check_batch_sizes)

__all__ = ["PackedSequence", "pack_padded_sequence", "pad_packed_sequence", "pad_sequence",
           "pack_sequence", "invert_permutation"]

_PackedFields = namedtuple("PackedSequence", ["data", "batch_sizes", "sorted_indices",
                                              "unsorted_indices"])


class PackedSequence(_PackedFields):
    """A packed batch: ``(data, batch_sizes, sorted_indices, unsorted_indices)``, as torch's.

    Attributes:
        data (S, *): the rows of all sequences, step by step, S = Σ lengths.
        batch_sizes (T,) int64: how many sequences have a step t; non-increasing.
        sorted_indices (N,) int64 or None: packed sequence j is batch entry
            ``sorted_indices[j]`` of the caller; None when the batch came sorted.
        unsorted_indices (N,) int64 or None: the inverse permutation (computed
            from sorted_indices when not given).
    """

    __slots__ = ()

    def __new__(cls, data, batch_sizes, sorted_indices=None, unsorted_indices=None):
        if sorted_indices is not None:
            sorted_indices = np.asarray(sorted_indices, dtype=np.int64)
            if unsorted_indices is None:
                unsorted_indices = invert_permutation(sorted_indices)
        if unsorted_indices is not None:
            unsorted_indices = np.asarray(unsorted_indices, dtype=np.int64)
        return super().__new__(cls, data, batch_sizes, sorted_indices, unsorted_indices)


def invert_permutation(permutation):
    """The inverse of a permutation of 0..N-1 (None stays None)."""
    if permutation is None:
        return None
    permutation = np.asarray(permutation, dtype=np.int64)
    inverse = np.empty_like(permutation)
    inverse[permutation] = np.arange(len(permutation))
    return inverse


def _check_lengths(lengths, batch: int, steps: int, enforce_sorted: bool) -> np.ndarray:
    """lengths as (N,) int64, each in [1, steps], one per batch entry (and decreasing
    with ``enforce_sorted``); else a ValueError naming what was expected and what came."""
    arr = np.asarray(lengths)
    if arr.ndim != 1 or arr.dtype.kind not in "iu":
        raise ValueError(f"lengths: expected a 1-D sequence of integers, got a {arr.ndim}-D "
                         f"array of {arr.dtype} with shape {arr.shape}")
    if len(arr) != batch:
        raise ValueError(f"lengths: expected {batch} lengths (one per sequence of the batch), "
                         f"got {len(arr)}")
    arr = arr.astype(np.int64)
    bad = np.flatnonzero((arr < 1) | (arr > steps))
    if len(bad):
        raise ValueError(f"lengths: expected every length in [1, {steps}] (the input's time "
                         f"steps), got {arr[bad[0]]} at index {bad[0]}")
    if enforce_sorted and np.any(np.diff(arr) > 0):
        raise ValueError(f"lengths: expected lengths in decreasing order with "
                         f"enforce_sorted=True, got {arr.tolist()} "
                         f"(pass enforce_sorted=False to have them sorted)")
    return arr


def pack_padded_sequence(input, lengths, batch_first=False, enforce_sorted=True):
    """Pack a padded batch.

    Args:
        input: (T, N, *) array, or (N, T, *) with ``batch_first``; entries past
            each length are ignored.
        lengths: (N,) integers in [1, T].
        enforce_sorted: if True the lengths must be decreasing; if False they
            are sorted here (stably) and the order is kept in the result.

    Returns:
        a :class:`PackedSequence` with data (Σ lengths, *).
    """
    if not isinstance(input, np.ndarray):
        raise TypeError(f"pack_padded_sequence: expected a numpy array as input, "
                        f"got {type(input).__name__}")
    if input.ndim < 2:
        layout = "(N, T, *)" if batch_first else "(T, N, *)"
        raise ValueError(f"pack_padded_sequence: expected an input of at least 2 dimensions "
                         f"{layout}, got shape {input.shape}")
    time_major = input.swapaxes(0, 1) if batch_first else input  # (T, N, *)
    steps, batch = time_major.shape[:2]
    lengths = _check_lengths(lengths, batch, steps, enforce_sorted)
    sorted_indices = None if enforce_sorted else np.argsort(-lengths, kind="stable")
    order = np.arange(batch) if sorted_indices is None else sorted_indices
    batch_sizes = batch_sizes_from_lengths(lengths[order])
    layout = PackedLayout(batch_sizes)
    data = time_major[layout.step_of, order[layout.seq_of]]  # (S, *)
    return PackedSequence(data, batch_sizes, sorted_indices)


def pad_packed_sequence(sequence, batch_first=False, padding_value=0.0, total_length=None):
    """Undo :func:`pack_padded_sequence`.

    Returns ``(padded, lengths)``: padded (T, N, *) (or (N, T, *) with
    ``batch_first``) in the caller's batch order, ``padding_value`` past each
    length, T = the longest length or ``total_length`` (which may not be
    shorter); lengths (N,) int64 in the caller's order.
    """
    data = _check_packed(sequence, "pad_packed_sequence")
    layout = PackedLayout(sequence.batch_sizes)
    steps = layout.steps
    if total_length is not None:
        if isinstance(total_length, bool) or not isinstance(total_length, (int, np.integer)) \
                or total_length < steps:
            raise ValueError(f"pad_packed_sequence: expected total_length ≥ {steps} (the longest "
                             f"sequence), got {total_length!r}")
        steps = int(total_length)
    columns = layout.seq_of if sequence.sorted_indices is None \
        else sequence.sorted_indices[layout.seq_of]
    lengths = layout.lengths.copy()
    if sequence.sorted_indices is not None:
        lengths[sequence.sorted_indices] = layout.lengths
    if batch_first:
        padded = np.full((layout.batch, steps) + data.shape[1:], padding_value, dtype=data.dtype)
        padded[columns, layout.step_of] = data
    else:
        padded = np.full((steps, layout.batch) + data.shape[1:], padding_value, dtype=data.dtype)
        padded[layout.step_of, columns] = data
    return padded, lengths


def _check_packed(sequence, name: str) -> np.ndarray:
    """The data of a well-formed PackedSequence; else a TypeError or ValueError."""
    if not isinstance(sequence, PackedSequence):
        raise TypeError(f"{name}: expected a PackedSequence, got {type(sequence).__name__}")
    data = sequence.data
    if not isinstance(data, np.ndarray) or data.ndim < 1:
        raise TypeError(f"{name}: expected PackedSequence.data as a numpy array of at least "
                        f"1 dimension, got {type(data).__name__}")
    batch_sizes = check_batch_sizes(sequence.batch_sizes, name, rows=data.shape[0])
    for field in ("sorted_indices", "unsorted_indices"):
        perm = getattr(sequence, field)
        if perm is not None and (perm.shape != (batch_sizes[0],)
                                 or not np.array_equal(np.sort(perm), np.arange(batch_sizes[0]))):
            raise ValueError(f"{name}: expected {field} as a permutation of "
                             f"0..{batch_sizes[0] - 1}, got {perm.tolist()}")
    return data


def pad_sequence(sequences, batch_first=False, padding_value=0.0, padding_side="right"):
    """Stack arrays of shapes (L_i, *) into (T, N, *) (or (N, T, *) with ``batch_first``),
    T = max L_i, filling with ``padding_value`` on ``padding_side`` ("right" or "left")."""
    sequences = list(sequences)
    if not sequences:
        raise ValueError("pad_sequence: expected at least one sequence, got none")
    if padding_side not in ("right", "left"):
        raise ValueError(f"pad_sequence: padding_side must be 'right' or 'left', "
                         f"got {padding_side!r}")
    first = sequences[0]
    for k, s in enumerate(sequences):
        if not isinstance(s, np.ndarray) or s.ndim < 1:
            raise TypeError(f"pad_sequence: expected numpy arrays of at least 1 dimension, "
                            f"got {type(s).__name__} at index {k}")
        if s.shape[1:] != first.shape[1:] or s.dtype != first.dtype:
            raise ValueError(f"pad_sequence: expected every sequence of shape (L, "
                             f"{', '.join(map(str, first.shape[1:]))}) and dtype {first.dtype} "
                             f"(as the first), got {s.shape} {s.dtype} at index {k}")
    steps = max(len(s) for s in sequences)
    padded = np.full((len(sequences), steps) + first.shape[1:], padding_value, dtype=first.dtype)
    for k, s in enumerate(sequences):
        if padding_side == "right":
            padded[k, :len(s)] = s
        else:
            padded[k, steps - len(s):] = s
    return padded if batch_first else np.ascontiguousarray(padded.swapaxes(0, 1))


def pack_sequence(sequences, enforce_sorted=True):
    """Pack a list of arrays (L_i, *), each L_i ≥ 1 (decreasing with ``enforce_sorted``)."""
    sequences = list(sequences)
    padded = pad_sequence(sequences)  # (T, N, *); checks every sequence
    return pack_padded_sequence(padded, [len(s) for s in sequences], enforce_sorted=enforce_sorted)
