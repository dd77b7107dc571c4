"""The GRU layer and cell against torch.nn.GRU / GRUCell, finite differences, and bad input.

As in test_parity_torch.py: random shapes, layer counts, directions and
layouts per trial, random non-zero biases (b_hn sits inside r ⊙ (...): a
bias bug there shows only with a non-zero b_hn), and every output and
gradient compared, on every backend of the time loops.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from rnnlab import nn
from rnnlab.gradcheck import gradcheck
from conftest import assert_close, to_torch
from test_parity_torch import (TORCH_DTYPE, _compare_params, _load_into_torch, _randomize_biases,
                               _sequence_case)

DTYPES = [np.float64, np.float32]
F32 = np.float32


@pytest.mark.parametrize("dtype", DTYPES)
def test_gru_matches_torch(torch, backend, dtype):
    """Random T, N, I, H, 1-3 layers, both directions and layouts, given and omitted h0,
    unbatched input, bias=False: outputs, h_n and every gradient (test_parity_torch's case)."""
    rng = np.random.default_rng(zlib.crc32(f"gru-{np.dtype(dtype)}".encode()))
    worst = max(_sequence_case(torch, rng, "gru", dtype, trial) for trial in range(30))
    print(f"{backend} gru {np.dtype(dtype)}: worst relative error {worst:.2e}")


@pytest.mark.parametrize("dtype", DTYPES)
def test_gru_cell_matches_torch(torch, backend, dtype):
    rng = np.random.default_rng(71)
    tdtype = getattr(torch, TORCH_DTYPE[dtype])
    for trial in range(12):
        N, I, H = (int(v) for v in rng.integers(1, 7, size=3))
        unbatched, bias, give_h = trial % 3 == 2, trial % 4 != 3, trial % 5 != 4
        ours = nn.GRUCell(I, H, bias=bias, dtype=dtype, rng=rng)
        theirs = torch.nn.GRUCell(I, H, bias=bias, dtype=tdtype)
        if bias:
            _randomize_biases(ours, rng)
        _load_into_torch(torch, ours, theirs)
        lead = () if unbatched else (N,)
        x = rng.standard_normal(lead + (I,)).astype(dtype)
        h = rng.standard_normal(lead + (H,)).astype(dtype)
        xt, ht = to_torch(torch, x, True), to_torch(torch, h, True)
        h_new = ours(x, h if give_h else None)
        th_new = theirs(xt, ht if give_h else None)
        assert h_new.shape == lead + (H,)
        assert_close(h_new, th_new.detach().numpy(), dtype, "h'")
        g = rng.standard_normal(h_new.shape).astype(dtype)
        (th_new * to_torch(torch, g)).sum().backward()
        grad_x, grad_h = ours.backward(g)
        assert_close(grad_x, xt.grad.numpy(), dtype, "grad x")
        if give_h:
            assert_close(grad_h, ht.grad.numpy(), dtype, "grad h")
        _compare_params(torch, ours, theirs, dtype)


def test_functional_gru_returns_all_four_parameter_gradients(torch):
    """Without ``accumulate`` the functional backward returns (dW_ih, dW_hh, db_ih, db_hh);
    db_ih and db_hh differ in the n rows, and each matches torch's."""
    from rnnlab.functional import gru_backward, gru_forward
    rng = np.random.default_rng(73)
    T, N, I, H = 5, 3, 4, 6
    theirs = torch.nn.GRU(I, H, dtype=torch.float64)
    with torch.no_grad():
        for p in theirs.parameters():
            p.uniform_(-0.8, 0.8)
    w_ih, w_hh, b_ih, b_hh = (p.detach().numpy().copy() for p in theirs.parameters())
    x, h0 = rng.standard_normal((T, N, I)), rng.standard_normal((N, H))
    for reverse in (False, True):
        theirs.zero_grad()
        xt = to_torch(torch, x[::-1] if reverse else x, True)  # torch has no one-way reverse
        h0t = to_torch(torch, h0[None], True)
        tout, th_n = theirs(xt, h0t)
        (out, h_n), cache = gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh, reverse=reverse)
        assert_close(out[::-1] if reverse else out, tout.detach().numpy(), np.float64, "output")
        assert_close(h_n, th_n.detach().numpy()[0], np.float64, "h_n")
        g = rng.standard_normal(out.shape)
        (tout * to_torch(torch, g[::-1] if reverse else g)).sum().backward()
        grad_x, grad_h0, grads = gru_backward(cache, g)
        assert_close(grad_x[::-1] if reverse else grad_x, xt.grad.numpy(), np.float64, "grad x")
        assert_close(grad_h0, h0t.grad.numpy()[0], np.float64, "grad h0")
        for ours, p in zip(grads, theirs.parameters()):
            assert_close(ours, p.grad.numpy(), np.float64, "parameter grad")
        assert np.abs(grads[2][2 * H:] - grads[3][2 * H:]).max() > 1e-3  # b_in, b_hn differ


@pytest.mark.parametrize("direction", ["ours to torch", "torch to ours"])
def test_state_dict_round_trip_with_torch(torch, direction):
    """Names, shapes and values move both ways, and both sides then compute the same."""
    rng = np.random.default_rng(79)
    theirs = torch.nn.GRU(5, 6, num_layers=2, bidirectional=True, dtype=torch.float64)
    ours = nn.GRU(5, 6, num_layers=2, bidirectional=True, dtype=np.float64, rng=rng)
    assert [(k, v.shape) for k, v in ours.state_dict().items()] == \
        [(k, tuple(v.shape)) for k, v in theirs.state_dict().items()]
    if direction == "torch to ours":
        ours.load_state_dict(theirs.state_dict())  # tensors are accepted directly
    else:
        _randomize_biases(ours, rng)
        _load_into_torch(torch, ours, theirs)
    for k, v in theirs.state_dict().items():
        np.testing.assert_array_equal(ours.state_dict()[k], v.numpy(), err_msg=k)
    x = rng.standard_normal((4, 3, 5))
    out, h_n = ours(x)
    tout, th_n = theirs(torch.tensor(x))
    assert_close(out, tout.detach().numpy(), np.float64, "output after the transfer")
    assert_close(h_n, th_n.detach().numpy(), np.float64, "h_n after the transfer")


def test_torch_compatible_files_move_both_ways(torch, tmp_path):
    """save_torch_compatible -> torch, and torch's save_file -> load_torch_file, for the GRU."""
    from safetensors.torch import load_file, save_file
    from rnnlab.io import load_torch_file, save_torch_compatible
    rng = np.random.default_rng(109)
    ours = nn.GRU(4, 5, num_layers=2, batch_first=True, rng=rng)
    _randomize_biases(ours, rng)
    theirs = torch.nn.GRU(4, 5, num_layers=2, batch_first=True)
    save_torch_compatible(ours, tmp_path / "ours.safetensors")
    theirs.load_state_dict(load_file(tmp_path / "ours.safetensors"))
    x = rng.standard_normal((3, 6, 4)).astype(F32)
    with torch.no_grad():
        assert_close(ours(x)[0], theirs(torch.from_numpy(x))[0].numpy(), F32, "ours in torch")
        for p in theirs.parameters():
            p.uniform_(-0.5, 0.5)
        save_file(theirs.state_dict(), str(tmp_path / "theirs.safetensors"))
        load_torch_file(ours, tmp_path / "theirs.safetensors")
        assert_close(ours(x)[0], theirs(torch.from_numpy(x))[0].numpy(), F32, "torch's in ours")


def test_init_matches_torch_distribution():
    """Every parameter, 3H rows, lies in U(-1/√H, 1/√H) and fills most of that range."""
    H = 64
    layer = nn.GRU(16, H, num_layers=2, rng=0)
    bound = 1 / np.sqrt(H)
    assert layer.weight_ih_l0.shape == (3 * H, 16) and layer.weight_hh_l1.shape == (3 * H, H)
    assert layer.bias_ih_l1.shape == layer.bias_hh_l1.shape == (3 * H,)
    for name, p in layer.named_parameters():
        assert np.abs(p.data).max() <= bound, name
        assert np.abs(p.data).max() > 0.9 * bound, name
        assert abs(p.data.mean()) < 5 * bound / np.sqrt(3 * p.data.size), name
    assert nn.GRUCell(4, 5, rng=0).weight_hh.shape == (15, 5)


def _gradcheck_cases(rng):
    T, N, I, H = 4, 3, 3, 4
    x = rng.standard_normal((T, N, I))
    yield "GRU-2-layers-h0", nn.GRU(I, H, num_layers=2, dtype=np.float64, rng=rng), \
        (x, rng.standard_normal((2, N, H)))
    yield "GRU-bi-batch-first", nn.GRU(I, H, bidirectional=True, batch_first=True,
                                       dtype=np.float64, rng=rng), (x.transpose(1, 0, 2).copy(),)
    yield "GRU-unbatched", nn.GRU(I, H, dtype=np.float64, rng=rng), (x[:, 0].copy(),)
    yield "GRU-no-bias", nn.GRU(I, H, bias=False, dtype=np.float64, rng=rng), (x,)
    yield "GRUCell", nn.GRUCell(I, H, dtype=np.float64, rng=rng), \
        (x[0], rng.standard_normal((N, H)))


@pytest.mark.parametrize("index", range(5))
def test_gru_passes_gradcheck(backend, index):
    """Central differences, no torch: every input, state and parameter element."""
    rng = np.random.default_rng(83 + index)
    name, module, inputs = list(_gradcheck_cases(rng))[index]
    if module.bias:
        _randomize_biases(module, rng)
    report = gradcheck(module, *inputs, rng=rng, max_elements=None, eps=1e-5)
    assert report.checked > 0
    assert report.passed(1e-5), f"{name}: {report}"


def test_input_and_state_grad_false_skip_only_their_gradients(backend):
    rng = np.random.default_rng(89)
    layer = nn.GRU(3, 4, num_layers=2, bidirectional=True, dtype=np.float64, rng=rng)
    _randomize_biases(layer, rng)
    x, g = rng.standard_normal((5, 2, 3)), rng.standard_normal((5, 2, 8))
    runs = []
    for flags in ((True, True), (False, True), (True, False)):
        layer.zero_grad()
        layer(x)
        grad_x, grad_h0 = layer.backward(g, input_grad=flags[0], state_grad=flags[1])
        assert (grad_x is None) != flags[0] and (grad_h0 is None) != flags[1]
        runs.append([p.grad.copy() for p in layer.parameters()])
    for run in runs[1:]:
        for a, b in zip(runs[0], run):
            np.testing.assert_array_equal(a, b)


def test_parameter_gradients_accumulate(backend):
    """Two backward passes without zero_grad add up, as in torch."""
    rng = np.random.default_rng(97)
    layer = nn.GRU(4, 3, num_layers=2, dtype=np.float64, rng=rng)
    x, g = rng.standard_normal((5, 2, 4)), rng.standard_normal((5, 2, 3))
    layer(x)
    layer.backward(g)
    once = [p.grad.copy() for p in layer.parameters()]
    layer(x)
    layer.backward(g)
    for a, p in zip(once, layer.parameters()):
        np.testing.assert_allclose(p.grad, 2 * a, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("N,H", [(1, 32), (4, 16), (8, 32), (3, 7), (9, 40)])
def test_compiled_loops_equal_the_reference(N, H):
    """The numba whole loop (small steps) and the fused loops (large steps: NumPy's forward,
    a compiled backward) against the NumPy reference, in both directions, with and without
    a start state, bias and output gradient."""
    from rnnlab.functional.backend import numba_available, use_backend
    if not numba_available():
        pytest.skip("the compiled loops need numba")
    from rnnlab.functional import _loops_numpy, gru
    from rnnlab.kernels import gru_fused, loops_numba
    with use_backend("numba"):
        assert gru._gru_loops(N, H) is loops_numba
    with use_backend("fused"):
        assert gru._gru_loops(N, H) is gru_fused
    with use_backend("auto"):
        assert gru._gru_loops(N, H) is (loops_numba if N * H <= 256 else gru_fused)
    rng = np.random.default_rng(103 + N + H)
    T, I = 6, 5
    for trial, (reverse, give_h0, bias, give_grad) in enumerate(
            [(False, True, True, True), (True, False, True, True), (False, False, False, False),
             (True, True, False, True)]):
        w_ih, w_hh = 0.5 * rng.standard_normal((3 * H, I)), 0.5 * rng.standard_normal((3 * H, H))
        b_ih, b_hh = (rng.standard_normal(3 * H), rng.standard_normal(3 * H)) if bias \
            else (None, None)
        x, h0 = rng.standard_normal((T, N, I)), rng.standard_normal((N, H)) if give_h0 else None
        g, g_h = rng.standard_normal((T, N, H)) if give_grad else None, rng.standard_normal((N, H))
        results = []
        for loops in (_loops_numpy, loops_numba, gru_fused):
            with pytest.MonkeyPatch.context() as mp:
                mp.setattr(gru, "_gru_loops", lambda n, h, *where: loops)
                (out, h_n), cache = gru.gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh, reverse=reverse)
                results.append([out.copy(), h_n.copy()])
                grad_x, grad_h0, grads = gru.gru_backward(cache, g, g_h)
            results[-1] += [grad_x, grad_h0] + [a for a in grads if a is not None]
        assert len(results[1]) == (8 if bias else 6)
        for compiled in results[1:]:
            for want, got in zip(results[0], compiled):
                np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14,
                                           err_msg=f"trial {trial}")


@pytest.mark.parametrize("pool", [False, True])
@pytest.mark.parametrize("reverse", [False, True])
def test_packed_products_equal_the_reference(monkeypatch, pool, reverse):
    """float32, the per-step products of both directions on a packed W_hh (one core or the
    BLAS pool): the same as NumPy's loops within float32 rounding, and they did run."""
    from rnnlab.functional.backend import numba_available
    if not numba_available():
        pytest.skip("the packed products need numba")
    from rnnlab.functional import _loops_numpy, gru
    from rnnlab.kernels import blas_pool, gru_fused, packed_gemm
    N, H, T, I = 8, 64, 5, 7
    if not packed_gemm.usable(N, H, np.float32):
        pytest.skip("the packed products need numba, FMA and proven kernels")
    if pool and blas_pool.threads() < 2:
        pytest.skip("no BLAS pool here")
    calls = []
    for name in ("packed_matmul", "PanelProduct"):
        real = getattr(packed_gemm, name)
        monkeypatch.setattr(packed_gemm, name,
                            lambda *a, _real=real, _name=name, **k: calls.append(_name) or _real(*a, **k))
    monkeypatch.setitem(gru_fused.KNOBS, "packed", True)
    monkeypatch.setitem(gru_fused.KNOBS, "pool", pool)
    rng = np.random.default_rng(11)
    w_ih = (0.3 * rng.standard_normal((3 * H, I))).astype(np.float32)
    w_hh = (0.3 * rng.standard_normal((3 * H, H))).astype(np.float32)
    b_ih, b_hh = (rng.standard_normal((2, 3 * H)) * 0.5).astype(np.float32)
    x = rng.standard_normal((T, N, I)).astype(np.float32)
    h0 = rng.standard_normal((N, H)).astype(np.float32)
    g, g_h = rng.standard_normal((2, T, N, H)).astype(np.float32)
    results = []
    for loops in (_loops_numpy, gru_fused):
        monkeypatch.setattr(gru, "_gru_loops", lambda n, h, *where, _l=loops: _l)
        (out, h_n), cache = gru.gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh, reverse=reverse)
        got = [out.copy(), h_n.copy()]
        grad_x, grad_h0, grads = gru.gru_backward(cache, g, g_h[0])
        results.append(got + [grad_x, grad_h0, *grads])
    assert calls, "the packed product never ran"
    for want, got in zip(*results):
        assert_close(got, want, np.float32)


# ------------------------------------------------------------------ bad input


def test_bad_input_is_refused_with_what_was_expected():
    gru = nn.GRU(3, 4, num_layers=2, rng=0)
    with pytest.raises(ValueError, match=r"GRU input: expected a 2-D or 3-D array, got 4-D"):
        gru(np.zeros((2, 2, 2, 3), F32))
    with pytest.raises(ValueError,
                       match=r"expected last dimension \(features\) 3, got shape \(5, 2, 4\)"):
        gru(np.zeros((5, 2, 4), F32))
    with pytest.raises(ValueError, match=r"GRU h0: expected shape \(2, 2, 4\), got \(1, 2, 4\)"):
        gru(np.zeros((5, 2, 3), F32), np.zeros((1, 2, 4), F32))
    with pytest.raises(ValueError, match=r"GRU h0: expected shape \(2, 4\), got \(2, 1, 4\)"):
        gru(np.zeros((5, 3), F32), np.zeros((2, 1, 4), F32))
    with pytest.raises(TypeError, match=r"expected dtype float32, got float64"):
        gru(np.zeros((5, 2, 3)))
    with pytest.raises(TypeError, match=r"expected a numpy array"):
        gru([[[0.0, 0.0, 0.0]]])
    x = np.zeros((5, 2, 3), F32)
    x[1, 1, 1] = np.nan
    with pytest.raises(ValueError, match="GRU input: contains NaN"):
        gru(x)
    with pytest.raises(TypeError, match=r"dtype must be float32 or float64, got int32"):
        nn.GRU(3, 4, dtype=np.int32)
    with pytest.raises(ValueError, match=r"num_layers must be a positive integer, got 0"):
        nn.GRU(3, 4, num_layers=0)
    cell = nn.GRUCell(3, 4, rng=0)
    with pytest.raises(ValueError, match=r"GRUCell input: expected a 1-D or 2-D array, got 3-D"):
        cell(np.zeros((1, 2, 3), F32))
    with pytest.raises(ValueError, match=r"GRUCell h: expected shape \(2, 4\), got \(2, 5\)"):
        cell(np.zeros((2, 3), F32), np.zeros((2, 5), F32))


@pytest.mark.parametrize("module", [nn.GRU(3, 2, rng=0), nn.GRUCell(3, 2, rng=0)])
def test_backward_before_forward_and_twice_is_refused(module):
    with pytest.raises(ValueError, match="backward called before forward"):
        module.backward(np.ones((1, 1, 2), F32))
    out = module(np.ones((4, 1, 3) if isinstance(module, nn.GRU) else (1, 3), F32))
    out = out[0] if isinstance(out, tuple) else out
    module.backward(np.ones_like(out))
    with pytest.raises(ValueError, match="backward called before forward"):
        module.backward(np.ones_like(out))


def test_grad_output_of_the_wrong_shape():
    gru = nn.GRU(3, 2, batch_first=True, rng=0)
    gru(np.ones((4, 5, 3), F32))  # (N=4, T=5, 3)
    with pytest.raises(ValueError,
                       match=r"GRU grad_output: expected shape \(4, 5, 2\), got \(5, 4, 2\)"):
        gru.backward(np.ones((5, 4, 2), F32))


@pytest.mark.parametrize("wrong", ["weight_ih", "weight_hh", "bias_ih", "bias_hh", "h0"])
def test_functional_gru_refuses_mixed_dtypes(wrong):
    from rnnlab.functional import gru_forward
    rng = np.random.default_rng(101)
    T, N, I, H = 3, 4, 5, 6
    arrays = dict(x=rng.standard_normal((T, N, I)), h0=rng.standard_normal((N, H)),
                  weight_ih=rng.standard_normal((3 * H, I)),
                  weight_hh=rng.standard_normal((3 * H, H)),
                  bias_ih=rng.standard_normal(3 * H), bias_hh=rng.standard_normal(3 * H))
    arrays = {k: v.astype(np.float64 if k == wrong else np.float32) for k, v in arrays.items()}
    with pytest.raises(TypeError, match=f"{wrong}: expected dtype float32.*got float64"):
        gru_forward(**arrays)
