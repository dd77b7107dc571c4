"""Variable-length batches: rnnlab.nn.utils.rnn and the packed path of the layers, against torch.

Parity with torch's packed path (torch.nn.utils.rnn + torch.nn.RNN/LSTM/GRU): the
outputs, h_n, c_n, the input gradient, dh0/dc0 and every parameter gradient,
on random shapes and lengths (always including 1 and T), sorted and unsorted
batches, 1-3 layers, both directions, random non-zero biases. Then the
pack/pad functions against torch's, and one test per bad input.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnlab import nn
from rnnlab.functional.backend import numba_available, use_backend
from rnnlab.functional.packed_cells import LSTMStep
from rnnlab.functional.packed_recurrent import packed_backward, packed_forward
from rnnlab.nn.utils.rnn import (PackedSequence, pack_padded_sequence, pack_sequence,
                                 pad_packed_sequence, pad_sequence)
from conftest import assert_close

DTYPES = [np.float64, np.float32]
KINDS = ["lstm", "gru", "rnn_tanh", "rnn_relu"]


def _random_lengths(rng, N, T):
    """N lengths in [1, T], with T and (from N = 2) 1 among them, in random order."""
    lengths = rng.integers(1, T + 1, size=N)
    lengths[0] = T
    if N > 1:
        lengths[1] = 1
    return rng.permutation(lengths)


def _build(torch, kind, I, H, dtype, rng, **kwargs):
    """The same random layer in both frameworks, biases random and clearly non-zero."""
    tdtype = torch.float64 if dtype == np.float64 else torch.float32
    if kind in ("lstm", "gru"):
        ours = getattr(nn, kind.upper())(I, H, **kwargs, dtype=dtype, rng=rng)
        theirs = getattr(torch.nn, kind.upper())(I, H, **kwargs, dtype=tdtype)
    else:
        act = kind.split("_")[1]
        ours = nn.RNN(I, H, nonlinearity=act, **kwargs, dtype=dtype, rng=rng)
        theirs = torch.nn.RNN(I, H, nonlinearity=act, **kwargs, dtype=tdtype)
    for name, p in ours.named_parameters():
        if "bias" in name:
            p.data[...] = rng.uniform(0.2, 0.8, p.shape) * rng.choice([-1, 1], p.shape)
    theirs.load_state_dict({k: torch.tensor(v) for k, v in ours.state_dict().items()})
    return ours, theirs


def _packed_case(torch, rng, kind, dtype, trial):
    """One random configuration, forward and backward in both frameworks, all compared."""
    from torch.nn.utils import rnn as trnn

    T, N = int(rng.integers(1, 8)), int(rng.integers(1, 7))
    I, H, L = int(rng.integers(1, 6)), int(rng.integers(1, 7)), int(rng.integers(1, 4))
    bidirectional, batch_first = bool(trial % 2), bool(rng.integers(2))
    enforce_sorted = trial % 3 == 0
    give_state, give_grad_output = trial % 4 != 1, trial % 5 != 2
    ours, theirs = _build(torch, kind, I, H, dtype, rng, num_layers=L, batch_first=batch_first,
                          bidirectional=bidirectional, bias=trial % 7 != 6)
    lengths = _random_lengths(rng, N, T)
    if enforce_sorted:
        lengths = np.sort(lengths)[::-1].copy()
    lengths_arg = lengths.tolist() if trial % 2 else lengths  # a list or an int array
    D, n_states = 2 if bidirectional else 1, 2 if kind == "lstm" else 1
    x = rng.standard_normal((N, T, I) if batch_first else (T, N, I)).astype(dtype)
    states = [rng.standard_normal((L * D, N, H)).astype(dtype) for _ in range(n_states)]

    packed = pack_padded_sequence(x, lengths_arg, batch_first=batch_first,
                                  enforce_sorted=enforce_sorted)
    hx = None if not give_state else tuple(states) if kind == "lstm" else states[0]
    out, finals = ours(packed, hx)
    finals = finals if kind == "lstm" else (finals,)

    xt = torch.tensor(x, requires_grad=True)
    st = [torch.tensor(s, requires_grad=True) for s in states]
    tpacked = trnn.pack_padded_sequence(xt, torch.tensor(lengths), batch_first=batch_first,
                                        enforce_sorted=enforce_sorted)
    thx = None if not give_state else tuple(st) if kind == "lstm" else st[0]
    tout, tfinals = theirs(tpacked, thx)
    tfinals = tfinals if kind == "lstm" else (tfinals,)
    np.testing.assert_array_equal(out.batch_sizes, tpacked.batch_sizes.numpy())

    padded, out_lengths = pad_packed_sequence(out, batch_first=batch_first)
    tpadded, _ = trnn.pad_packed_sequence(tout, batch_first=batch_first)
    np.testing.assert_array_equal(out_lengths, lengths)
    assert out.data.dtype == dtype and padded.shape == tuple(tpadded.shape)
    assert_close(padded, tpadded.detach().numpy(), dtype, "output")
    for k, (f, tf) in enumerate(zip(finals, tfinals)):
        assert_close(f, tf.detach().numpy(), dtype, f"final state {k}")

    # Upstream gradients: a padded one (its padding must be ignored) packed with the same
    # call as the input, and random gradients of h_n (and c_n).
    grad_padded = rng.standard_normal(padded.shape).astype(dtype)
    grad_finals = [rng.standard_normal(f.shape).astype(dtype) for f in finals]
    loss = sum((tf * torch.tensor(g)).sum() for tf, g in zip(tfinals, grad_finals))
    grad_packed = None
    if give_grad_output:
        loss = loss + (tpadded * torch.tensor(grad_padded)).sum()
        grad_packed = pack_padded_sequence(grad_padded, lengths_arg, batch_first=batch_first,
                                           enforce_sorted=enforce_sorted)
    loss.backward()
    if kind == "lstm":
        grad_x, (grad_h0, grad_c0) = ours.backward(grad_packed, tuple(grad_finals))
        grad_states = [grad_h0, grad_c0]
    else:
        grad_x, grad_h0 = ours.backward(grad_packed, grad_finals[0])
        grad_states = [grad_h0]
    assert isinstance(grad_x, PackedSequence)
    grad_x_padded, _ = pad_packed_sequence(grad_x, batch_first=batch_first, total_length=T)
    assert_close(grad_x_padded, xt.grad.numpy(), dtype, "grad_x")
    if give_state:
        for k, (g, s) in enumerate(zip(grad_states, st)):
            assert_close(g, s.grad.numpy(), dtype, f"grad of initial state {k}")
    tparams = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        assert_close(p.grad, tparams[name].grad.numpy(), dtype, f"grad {name}")


# Every cell on the NumPy reference; the LSTM, which has a compiled packed step, on every backend.
CASES = [(kind, "numpy") for kind in KINDS] + [
    ("lstm", name) for name in (("numba", "fused") if numba_available() else ())]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind, backend_name", CASES)
def test_packed_layers_match_torch(torch, kind, backend_name, dtype):
    rng = np.random.default_rng(zlib.crc32(f"{kind}-{np.dtype(dtype)}".encode()))
    with use_backend(backend_name):
        for trial in range(12):
            _packed_case(torch, rng, kind, dtype, trial)


def test_packed_step_follows_the_backend():
    """The compiled LSTM step runs unless the backend is the NumPy reference."""
    from rnnlab.functional.packed_cells import GRUStep, RNNStep
    from rnnlab.functional.packed_recurrent import step_for

    with use_backend("numpy"):
        assert type(step_for("LSTM", "tanh", 64, 256)) is LSTMStep
    if numba_available():
        from rnnlab.kernels.packed_cells_fused import FusedLSTMStep
        for name in ("auto", "numba", "fused"):
            with use_backend(name):
                assert type(step_for("LSTM", "tanh", 4, 8)) is FusedLSTMStep
                assert type(step_for("GRU", "tanh", 4, 8)) is GRUStep
                assert type(step_for("RNN", "relu", 4, 8)) is RNNStep


def test_packed_gradients_add_and_skip(torch):
    """Two backward passes add into param.grad; input_grad/state_grad=False skip their
    results and leave the parameter gradients unchanged."""
    rng = np.random.default_rng(5)
    lstm = nn.LSTM(3, 4, num_layers=2, bidirectional=True, dtype=np.float64, rng=rng)
    x = rng.standard_normal((6, 4, 3))
    lengths = [6, 2, 1, 5]
    grads = []
    for flags in ({}, {"input_grad": False, "state_grad": False}):
        lstm.zero_grad()
        for _ in range(2):
            out, (h_n, _) = lstm(pack_padded_sequence(x, lengths, enforce_sorted=False))
            grad_x, grad_states = lstm.backward(PackedSequence(np.ones_like(out.data),
                                                               *out[1:]), **flags)
        assert (grad_x is None) == bool(flags) and (grad_states is None) == bool(flags)
        grads.append({n: p.grad.copy() for n, p in lstm.named_parameters()})
    for name in grads[0]:
        assert_close(grads[1][name], grads[0][name], np.float64, name)
    lstm.zero_grad()
    out, _ = lstm(pack_padded_sequence(x, lengths, enforce_sorted=False))
    lstm.backward(PackedSequence(np.ones_like(out.data), *out[1:]))
    for name, p in lstm.named_parameters():  # the two passes above added up to twice one pass
        assert_close(grads[0][name], 2 * p.grad, np.float64, name)


def test_each_step_runs_its_active_rows_only():
    """Step t's cell sees batch_sizes[t] rows: the work follows the sum of the lengths."""
    seen = []

    class Recording(LSTMStep):
        def forward_step(self, rows, prev, new, *args):
            seen.append((rows.stop - rows.start, prev[0].shape[0], new[0].shape[0]))
            super().forward_step(rows, prev, new, *args)

        def backward_step(self, rows, prev, bufs, dstates, *args):
            seen.append((rows.stop - rows.start, prev[0].shape[0], dstates[0].shape[0]))
            super().backward_step(rows, prev, bufs, dstates, *args)

    rng = np.random.default_rng(0)
    batch_sizes = np.array([5, 3, 3, 1])
    x = rng.standard_normal((12, 2))
    w_ih, w_hh = rng.standard_normal((12, 2)), rng.standard_normal((12, 3))
    (out, _), cache = packed_forward(Recording(), x, batch_sizes, (None, None), w_ih, w_hh,
                                     reverse=True)
    packed_backward(cache, np.ones_like(out))
    expected = [(b, b, b) for b in batch_sizes]
    assert seen == expected + expected[::-1]


# ------------------------------------------------------------------ pack / pad


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("enforce_sorted", [False, True])
def test_pack_and_pad_match_torch(torch, batch_first, enforce_sorted):
    from torch.nn.utils import rnn as trnn

    rng = np.random.default_rng(int(batch_first) + 2 * int(enforce_sorted))
    for _ in range(10):
        T, N = int(rng.integers(1, 9)), int(rng.integers(1, 7))
        # distinct lengths where possible: torch's sort does not keep the order of ties
        lengths = rng.permutation(np.arange(T, 0, -1)[:N]) if N <= T else _random_lengths(rng, N, T)
        if enforce_sorted or N > T:
            lengths = np.sort(lengths)[::-1].copy()
        x = rng.standard_normal((N, T, 2, 3) if batch_first else (T, N, 2, 3))
        tlengths = torch.tensor(lengths)
        ours = pack_padded_sequence(x, tlengths, batch_first, enforce_sorted)  # a tensor too
        theirs = trnn.pack_padded_sequence(torch.tensor(x), tlengths, batch_first, enforce_sorted)
        np.testing.assert_array_equal(ours.data, theirs.data.numpy())
        np.testing.assert_array_equal(ours.batch_sizes, theirs.batch_sizes.numpy())
        for field in ("sorted_indices", "unsorted_indices"):
            mine, torchs = getattr(ours, field), getattr(theirs, field)
            assert (mine is None) == (torchs is None)
            if mine is not None:
                np.testing.assert_array_equal(mine, torchs.numpy())
        total = T + int(rng.integers(0, 3))
        padded, out_lengths = pad_packed_sequence(ours, batch_first, -7.5, total)
        tpadded, tlengths_out = trnn.pad_packed_sequence(theirs, batch_first, -7.5, total)
        np.testing.assert_array_equal(padded, tpadded.numpy())
        np.testing.assert_array_equal(out_lengths, tlengths_out.numpy())
        assert out_lengths.dtype == np.int64
        # the round trip keeps every entry within its length
        again, _ = pad_packed_sequence(ours, batch_first)
        mask = np.arange(T)[None, :] < lengths[:, None]  # (N, T)
        tm = x if batch_first else x.swapaxes(0, 1)
        got = again if batch_first else again.swapaxes(0, 1)
        np.testing.assert_array_equal(got[mask], tm[mask])


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("side", ["right", "left"])
def test_pad_sequence_and_pack_sequence_match_torch(torch, batch_first, side):
    from torch.nn.utils import rnn as trnn

    rng = np.random.default_rng(3)
    seqs = [rng.standard_normal((n, 3)) for n in (4, 7, 1, 5)]
    tseqs = [torch.tensor(s) for s in seqs]
    padded = pad_sequence(seqs, batch_first, 2.5, side)
    tpadded = trnn.pad_sequence(tseqs, batch_first, 2.5, side)
    np.testing.assert_array_equal(padded, tpadded.numpy())
    packed = pack_sequence(seqs, enforce_sorted=False)
    tpacked = trnn.pack_sequence(tseqs, enforce_sorted=False)
    np.testing.assert_array_equal(packed.data, tpacked.data.numpy())
    np.testing.assert_array_equal(packed.sorted_indices, tpacked.sorted_indices.numpy())
    ordered = sorted(seqs, key=len, reverse=True)
    np.testing.assert_array_equal(
        pack_sequence(ordered).data, trnn.pack_sequence([torch.tensor(s) for s in ordered]).data)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 9), st.integers(1, 7), st.booleans(), st.booleans(), st.data())
def test_pad_of_pack_keeps_every_entry_within_its_length(T, N, batch_first, enforce_sorted, data):
    lengths = np.array(data.draw(st.lists(st.integers(1, T), min_size=N, max_size=N)))
    if enforce_sorted:
        lengths = np.sort(lengths)[::-1].copy()
    x = np.arange(T * N * 2, dtype=np.float64).reshape((N, T, 2) if batch_first else (T, N, 2))
    packed = pack_padded_sequence(x, lengths, batch_first, enforce_sorted)
    assert packed.data.shape == (lengths.sum(), 2)
    padded, out_lengths = pad_packed_sequence(packed, batch_first, -1.0, T)
    np.testing.assert_array_equal(out_lengths, lengths)
    inside = np.arange(T)[None, :] < lengths[:, None]  # (N, T)
    if not batch_first:
        inside = inside.T
    np.testing.assert_array_equal(padded[inside], x[inside])
    assert np.all(padded[~inside] == -1.0)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(-3, 9), min_size=3, max_size=3))
def test_any_length_outside_1_to_T_is_named(lengths):
    bad = [v for v in lengths if not 1 <= v <= 5]
    if not bad:
        pack_padded_sequence(_x(), lengths, enforce_sorted=False)
        return
    with pytest.raises(ValueError, match=rf"expected every length in \[1, 5\] .*, got {bad[0]} "):
        pack_padded_sequence(_x(), lengths, enforce_sorted=False)


# ------------------------------------------------------------------ bad input


def _x(T=5, N=3, I=2):
    return np.zeros((T, N, I), np.float32)


@pytest.mark.parametrize("lengths, message", [
    (np.array([[3, 2, 1]]), r"lengths: expected a 1-D sequence of integers, got a 2-D array"),
    (np.array([3.0, 2.0, 1.0]), r"lengths: expected a 1-D sequence of integers, got .* float64"),
    ([3, 2], r"lengths: expected 3 lengths \(one per sequence of the batch\), got 2"),
    ([3, 2, 1, 1], r"lengths: expected 3 lengths .*, got 4"),
    ([3, 0, 1], r"lengths: expected every length in \[1, 5\] .*, got 0 at index 1"),
    ([6, 2, 1], r"lengths: expected every length in \[1, 5\] .*, got 6 at index 0"),
    ([1, 3, 2], r"lengths: expected lengths in decreasing order with enforce_sorted=True, "
                r"got \[1, 3, 2\]"),
])
def test_bad_lengths(lengths, message):
    with pytest.raises(ValueError, match=message):
        pack_padded_sequence(_x(), lengths)


def test_bad_lengths_batch_first():
    with pytest.raises(ValueError, match=r"every length in \[1, 5\] .*, got 6"):
        pack_padded_sequence(np.zeros((3, 5, 2)), [6, 2, 1], batch_first=True)
    with pytest.raises(ValueError, match=r"expected 3 lengths"):
        pack_padded_sequence(np.zeros((3, 5, 2)), [5, 2], batch_first=True)


def test_packed_sequence_of_wrong_input_size():
    packed = pack_padded_sequence(_x(I=4), [5, 3, 1])
    for layer in (nn.LSTM(2, 3, rng=0), nn.RNN(2, 3, rng=0)):
        with pytest.raises(ValueError, match=r"PackedSequence.data: expected last dimension "
                                             r"\(features\) 2, got shape \(9, 4\)"):
            layer(packed)


def test_bad_packed_gradients_and_states():
    lstm = nn.LSTM(2, 3, num_layers=2, rng=0)
    packed = pack_padded_sequence(_x(), [2, 5, 1], enforce_sorted=False)
    with pytest.raises(ValueError, match=r"h0: expected shape \(2, 3, 3\), got \(2, 2, 3\)"):
        lstm(packed, (np.zeros((2, 2, 3), np.float32),) * 2)
    out, _ = lstm(packed)
    with pytest.raises(TypeError, match=r"expected a PackedSequence .* got ndarray"):
        lstm.backward(np.zeros((5, 3, 3), np.float32))
    out, _ = lstm(packed)
    other = pack_padded_sequence(_x(), [4, 5, 1], enforce_sorted=False)
    with pytest.raises(ValueError, match=r"expected batch_sizes \[3, 2, 1, 1, 1\] "
                                         r"\(the output's\), got \[3, 2, 2, 2, 1\]"):
        lstm.backward(PackedSequence(np.zeros((10, 3), np.float32), *other[1:]))
    out, _ = lstm(packed)
    unsorted = pack_padded_sequence(_x(), [5, 2, 1])
    with pytest.raises(ValueError, match=r"expected sorted_indices \[1, 0, 2\] \(the output's\), "
                                         r"got None"):
        lstm.backward(PackedSequence(np.zeros((8, 3), np.float32), *unsorted[1:]))
    out, _ = lstm(packed)
    with pytest.raises(ValueError, match=r"grad_output PackedSequence.data: expected shape "
                                         r"\(8, 3\), got \(8, 4\)"):
        lstm.backward(PackedSequence(np.zeros((8, 4), np.float32), *out[1:]))


def test_bad_packed_sequence_fields():
    good = pack_padded_sequence(_x(), [5, 2, 1], enforce_sorted=False)
    with pytest.raises(ValueError, match=r"expected batch_sizes summing to the 7 rows of data, "
                                         r"got a sum of 8"):
        pad_packed_sequence(PackedSequence(good.data[:7], *good[1:]))
    with pytest.raises(ValueError, match=r"expected batch_sizes ≥ 1 in non-increasing order, "
                                         r"got \[1, 3\]"):
        pad_packed_sequence(PackedSequence(good.data[:4], np.array([1, 3])))
    with pytest.raises(ValueError, match=r"expected total_length ≥ 5 .*, got 4"):
        pad_packed_sequence(good, total_length=4)
    with pytest.raises(ValueError, match=r"expected sorted_indices as a permutation of 0..2"):
        pad_packed_sequence(PackedSequence(good.data, good.batch_sizes, np.array([0, 0, 1])))
    with pytest.raises(TypeError, match=r"expected a PackedSequence, got tuple"):
        pad_packed_sequence(tuple(good))
    with pytest.raises(ValueError, match=r"expected every sequence of shape \(L, 3\) and dtype "
                                         r"float64 .* got \(2, 4\) float64 at index 1"):
        pad_sequence([np.zeros((3, 3)), np.zeros((2, 4))])


# ------------------------------------------------------------------ the benchmark's steps


@pytest.mark.parametrize("model", ["lstm", "gru", "rnn"])
def test_benchmark_packed_step_trains_as_the_padded_one_at_full_length(model):
    """With every length T, the packed and the padded training steps of
    rnnlab.bench.packed are the same computation: the same losses, step after step (the
    SGD updates included); with shorter lengths the packed loss differs."""
    from rnnlab.bench.packed import PackedConfig, _training_step

    config = PackedConfig(model=model, d=5, n=3, m=4, T=6, k=2)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((6, 5, 3)).astype(np.float32)
    y = rng.standard_normal((5, 2)).astype(np.float32)
    full = np.full(5, 6)
    packed, padded = (_training_step(config, x, full, y, packed=p) for p in (True, False))
    losses = [(packed(), padded()) for _ in range(3)]
    for a, b in losses:
        assert abs(a - b) <= 1e-5 * abs(b)
    assert losses[0][0] != losses[2][0]  # the updates changed the weights
    shorter = _training_step(config, x, np.array([6, 1, 3, 6, 2]), y, packed=True)
    assert abs(shorter() - losses[0][1]) > 1e-3 * abs(losses[0][1])


def test_cli_bench_packed_user_errors(capsys, tmp_path):
    from rnnlab.cli import main

    assert main(["bench", "--packed", "--memory", "--out", str(tmp_path)]) == 2
    assert "--packed times a step and --memory traces one" in capsys.readouterr().err
    (tmp_path / "file").write_text("")
    assert main(["bench", "--packed", "--out", str(tmp_path / "file" / "x")]) == 2
    assert "cannot create the output folder" in capsys.readouterr().err
