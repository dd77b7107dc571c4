"""The compiled helper passes' crossovers (rnnlab.kernels.crossover): taken from the timings
(fake ones; never real speed), cached per machine, re-timed when they were timed on a busy
machine, and obeyed by the SGD update, the rank-1 gradient and the activation gradients,
whose two forms give the same bits."""

from __future__ import annotations

import numpy as np
import pytest

from rnnlab.functional import activations, backend
from rnnlab.kernels import rank1
from rnnlab.kernels import crossover, planner, sgd
from rnnlab.kernels.calibrate import NEVER
from rnnlab.nn.module import Parameter
from rnnlab.optim import SGD

needs_numba = pytest.mark.skipif(not backend.numba_available() or backend.get_backend() == "numpy",
                                 reason="the compiled passes need numba and a backend other "
                                        "than numpy")


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    """An empty cache folder and memo; _measure faked: the compiled form wins from 256."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(crossover, "_memo", {})
    monkeypatch.setattr(planner, "_state", {})
    calls = []

    def fake(kind):
        calls.append(kind)
        return {16: 1.0, 256: 2.0, 4096: 8.0}, {16: 1.5, 256: 1.0, 4096: 4.0}

    monkeypatch.setattr(crossover, "_measure", fake)
    return calls


def test_measured_once_then_read_from_disk(fresh, monkeypatch):
    planner.set_mode("measure")
    assert crossover.min_elements("sgd") == 256 and fresh == ["sgd"]
    monkeypatch.setattr(crossover, "_memo", {})  # a new process: only the disk remembers
    assert crossover.min_elements("sgd") == 256 and fresh == ["sgd"]
    assert crossover.min_elements("outer") == 256 and fresh == ["sgd", "outer"]


def test_a_busy_timing_is_redone_on_a_quieter_machine(fresh, monkeypatch):
    planner.set_mode("measure")
    monkeypatch.setattr(planner, "_load", lambda: 99.0)  # timed on a very busy machine
    assert crossover.min_elements("activation") == 256 and fresh == ["activation"]
    monkeypatch.setattr(crossover, "_memo", {})
    assert crossover.min_elements("activation") == 256 and fresh == ["activation"]  # still busy
    monkeypatch.setattr(crossover, "_memo", {})
    monkeypatch.setattr(planner, "_load", lambda: 0.1)
    assert crossover.min_elements("activation") == 256 and fresh == ["activation"] * 2


@pytest.mark.parametrize("mode", ["off", "cached"])
def test_off_and_cached_keep_the_compiled_form(fresh, mode):
    planner.set_mode(mode)
    assert crossover.min_elements("sgd_momentum") == 0 and not fresh


def test_forced_restores_and_refuses_unknown_kinds():
    with crossover.forced("sgd", 123):
        assert crossover.min_elements("sgd") == 123
        with crossover.forced("sgd", NEVER):
            assert crossover.min_elements("sgd") == NEVER
        assert crossover.min_elements("sgd") == 123
    assert "sgd" not in crossover._forced
    with pytest.raises(ValueError, match="kind must be one of"):
        crossover.forced("adam", 0)


def _spy(monkeypatch, module, getter_name):
    """Count the calls of a lazy kernel getter's kernel(s)."""
    calls = []
    real = getattr(module, getter_name)

    def wrap(found):
        if isinstance(found, tuple):  # activations: (kernel, (kernels), (kernels))
            return tuple(wrap(k) for k in found)
        return lambda *a: calls.append(1) or found(*a)

    def getter():
        found = real()
        return None if found is None else wrap(found)

    monkeypatch.setattr(module, getter_name, getter)
    return calls


@needs_numba
@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_sgd_obeys_the_crossover_with_the_same_bits(monkeypatch, momentum):
    calls = _spy(monkeypatch, sgd, "_fused_sgd_kernel")
    kind = "sgd_momentum" if momentum else "sgd"
    rng = np.random.default_rng(0)
    start = rng.standard_normal((33, 7)).astype(np.float32)
    grads = [rng.standard_normal((33, 7)).astype(np.float32) for _ in range(3)]
    results = {}
    for elements in (0, NEVER, 33 * 7, 33 * 7 + 1):
        p = Parameter(start.copy())
        opt = SGD([p], lr=0.1, momentum=momentum)
        before = len(calls)
        with crossover.forced(kind, elements):
            for g in grads:
                p.grad[...] = g
                opt.step()
        ran = len(calls) - before
        assert (ran > 0) == (elements <= 33 * 7), (elements, ran)
        results[elements] = p.data.copy()
    for data in results.values():
        np.testing.assert_array_equal(data, results[0])
    assert not np.array_equal(results[0], start)


@needs_numba
def test_outer_and_activations_obey_the_crossover_with_the_same_bits(monkeypatch):
    outer_calls = _spy(monkeypatch, rank1, "_kernel")
    act_calls = _spy(monkeypatch, activations, "_kernels")
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal(9).astype(np.float32), rng.standard_normal(5).astype(np.float32)
    grad_y = rng.standard_normal((4, 6)).astype(np.float32)
    y = rng.uniform(0, 1, (4, 6)).astype(np.float32)
    got = {}
    for elements in (0, NEVER):
        grad = np.full((9, 5), 0.5, np.float32)
        before = (len(outer_calls), len(act_calls))
        with crossover.forced("outer", elements), crossover.forced("activation", elements):
            rank1.outer_into(grad, a, b, True)
            sig = activations.sigmoid_backward(grad_y, y)
            tan = activations.tanh_backward(grad_y, y)
        ran = (len(outer_calls) - before[0], len(act_calls) - before[1])
        assert ran == ((1, 2) if elements == 0 else (0, 0)), ran
        got[elements] = (grad, sig, tan)
    for x, y_ in zip(got[0], got[NEVER]):
        np.testing.assert_array_equal(x, y_)
    np.testing.assert_allclose(got[0][1], grad_y * y * (1 - y), rtol=1e-6)


@needs_numba
def test_measure_times_both_forms(monkeypatch):
    """The real _measure, on a short ladder: both forms run at every size (the spy sees the
    compiled kernel only while the compiled form is timed) and every time is positive."""
    monkeypatch.setattr(crossover, "SIZES", (16, 64))
    calls = _spy(monkeypatch, activations, "_kernels")
    numpy_times, compiled_times = crossover._measure("activation")
    assert set(numpy_times) == set(compiled_times) == {16, 64}
    assert all(t > 0 for t in (*numpy_times.values(), *compiled_times.values()))
    assert calls  # the compiled form ran
    with crossover.forced("activation", NEVER):
        before = len(calls)
        crossover._call("activation", 64)()
        assert len(calls) == before
