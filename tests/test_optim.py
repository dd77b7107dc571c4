"""rnnlab.optim against torch.optim: trajectories, clipping, validation, checkpoints."""

from __future__ import annotations

import copy
import math
import tracemalloc

import re

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from rnnlab.nn.module import Parameter  # noqa: E402
from rnnlab.optim import SGD, Adam, RMSprop, clip_grad_norm_  # noqa: E402


# Every optimizer test runs on the NumPy update and on the compiled one-pass SGD.
pytestmark = pytest.mark.usefixtures("optim_backend")


@pytest.fixture(params=["numpy", "auto"])
def optim_backend(request):
    from rnnlab.functional.backend import numba_available, use_backend
    if request.param == "auto" and not numba_available():
        pytest.skip("numba is not installed")
    with use_backend(request.param):
        yield request.param


SHAPES = [(7,), (5, 3), (4, 3, 2), (1,), ()]
TOL = {np.dtype(np.float64): 1e-10, np.dtype(np.float32): 1e-5}
N_STEPS = 10


def rel_err(actual: np.ndarray, expected: np.ndarray) -> float:
    """max |actual - expected| / max |expected| (computed in float64)."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    scale = np.max(np.abs(expected)) if expected.size else 0.0
    err = np.max(np.abs(actual - expected)) if expected.size else 0.0
    return float(err / scale) if scale > 0 else float(err)


def dtypes_for(kind: str) -> list:
    if kind == "mixed":
        return [np.float32 if i % 2 else np.float64 for i in range(len(SHAPES))]
    return [np.dtype(kind).type] * len(SHAPES)


def make_params(kind: str, seed: int):
    """Random rnnlab Parameters and torch leaf tensors holding the same values."""
    rng = np.random.default_rng(seed)
    ours, theirs = [], []
    for shape, dtype in zip(SHAPES, dtypes_for(kind)):
        data = rng.standard_normal(shape).astype(dtype)
        ours.append(Parameter(data.copy()))
        theirs.append(torch.tensor(data.copy(), requires_grad=True))
    return ours, theirs


def make_grads(params, n_steps: int, seed: int):
    rng = np.random.default_rng(seed)
    return [[rng.standard_normal(p.shape).astype(p.dtype) for p in params]
            for _ in range(n_steps)]


def run_against_torch(our_cls, torch_cls, kwargs, kind, seed=0):
    ours, theirs = make_params(kind, seed)
    opt = our_cls(ours, **kwargs)
    topt = torch_cls(theirs, **kwargs)
    grads = make_grads(ours, N_STEPS, seed + 1)
    for step, gs in enumerate(grads, start=1):
        for p, t, g in zip(ours, theirs, gs):
            p.grad[...] = g
            t.grad = torch.from_numpy(g.copy())
        opt.step()
        topt.step()
        for i, (p, t) in enumerate(zip(ours, theirs)):
            expected = t.detach().numpy()
            assert p.data.dtype == expected.dtype
            err = rel_err(p.data, expected)
            assert err <= TOL[p.data.dtype], (
                f"step {step}, param {i} {p.shape} {p.dtype}: rel err {err:.3g}")
    # The parameters did move (a no-op optimizer must not pass).
    start, _ = make_params(kind, seed)
    assert any(not np.array_equal(p.data, s.data) for p, s in zip(ours, start))


SGD_CONFIGS = {
    "plain": dict(lr=0.1),
    "momentum": dict(lr=0.1, momentum=0.9),
    "dampening": dict(lr=0.1, momentum=0.9, dampening=0.3),
    "nesterov": dict(lr=0.1, momentum=0.8, nesterov=True),
    "weight_decay": dict(lr=0.1, weight_decay=0.05),
    "combined": dict(lr=0.05, momentum=0.7, dampening=0.2, weight_decay=0.1),
    "nesterov_weight_decay": dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.1),
}

ADAM_CONFIGS = {
    "default": dict(),
    "weight_decay": dict(lr=1e-2, weight_decay=0.1),
    "custom": dict(lr=3e-2, betas=(0.8, 0.95), eps=1e-3),
    # beta1 < 0.5 takes torch's other lerp branch
    "low_beta1": dict(lr=1e-2, betas=(0.3, 0.5), eps=1e-6, weight_decay=0.01),
}

RMSPROP_CONFIGS = {
    "default": dict(),
    "anchor": dict(lr=1e-3, alpha=0.9),  # the copy-memory settings of Arjovsky et al. (2016)
    "weight_decay": dict(lr=3e-2, alpha=0.5, eps=1e-4, weight_decay=0.1),
}

KINDS = ["float64", "float32", "mixed"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("config", list(SGD_CONFIGS))
def test_sgd_matches_torch(config, kind):
    run_against_torch(SGD, torch.optim.SGD, SGD_CONFIGS[config], kind)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("config", list(ADAM_CONFIGS))
def test_adam_matches_torch(config, kind):
    run_against_torch(Adam, torch.optim.Adam, ADAM_CONFIGS[config], kind)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("config", list(RMSPROP_CONFIGS))
def test_rmsprop_matches_torch(config, kind):
    run_against_torch(RMSprop, torch.optim.RMSprop, RMSPROP_CONFIGS[config], kind)


@pytest.mark.parametrize("kwargs,message", [(dict(alpha=1.0), "1.0"), (dict(alpha=-0.1), "-0.1"),
                                            (dict(lr=-1.0), "-1.0"), (dict(eps=-1e-8), "-1e-08")])
def test_rmsprop_rejects_bad_hyperparameters(kwargs, message):
    ours, _ = make_params("float64", 0)
    with pytest.raises(ValueError, match=re.escape(message)):
        RMSprop(ours, **kwargs)


# ---------------------------------------------------------------- in place
@pytest.mark.parametrize("cls,kwargs", [
    (SGD, dict(lr=0.1)),
    (SGD, dict(lr=0.1, momentum=0.9, dampening=0.1, weight_decay=0.1)),
    (SGD, dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.1)),
    (Adam, dict(lr=0.1, weight_decay=0.1)),
])
def test_step_is_in_place_and_leaves_grad_alone(cls, kwargs):
    params, _ = make_params("float32", seed=3)
    opt = cls(params, **kwargs)
    data_ids = [id(p.data) for p in params]
    grad_ids = [id(p.grad) for p in params]
    before = [p.data.copy() for p in params]
    for gs in make_grads(params, 3, seed=4):
        for p, g in zip(params, gs):
            p.grad[...] = g
        opt.step()
        for p, g in zip(params, gs):
            np.testing.assert_array_equal(p.grad, g)  # step never writes the grad
    assert [id(p.data) for p in params] == data_ids
    assert [id(p.grad) for p in params] == grad_ids
    assert all(not np.array_equal(p.data, b) for p, b in zip(params, before) if b.size)


@pytest.mark.parametrize("cls,kwargs", [
    (SGD, dict(lr=0.1, momentum=0.9, dampening=0.1, weight_decay=0.1)),
    (SGD, dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.1)),
    (Adam, dict(lr=0.1, weight_decay=0.1)),
])
def test_steady_state_step_allocates_no_parameter_sized_array(cls, kwargs):
    # NumPy reports its data buffers to tracemalloc.
    p = Parameter(np.random.default_rng(0).standard_normal((512, 512)))  # 2 MiB
    p.grad[...] = 1.0
    opt = cls([p], **kwargs)
    opt.step()  # lazily created state is allowed on the first step,
    opt.step()  # and one-time work on the second (building the pool's jobs, its probe)
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        opt.step()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak - base < p.data.nbytes // 8, f"step allocated {peak - base} bytes"


def test_zero_grad_in_place():
    params, _ = make_params("float64", seed=5)
    for p in params:
        p.grad[...] = 1.5
    ids = [id(p.grad) for p in params]
    SGD(params, lr=0.1).zero_grad()
    assert [id(p.grad) for p in params] == ids
    assert all(not p.grad.any() for p in params)


def test_params_generator_is_stored_as_list():
    params, _ = make_params("float64", seed=6)
    opt = Adam(p for p in params)
    assert isinstance(opt.params, list) and len(opt.params) == len(params)
    assert all(a is b for a, b in zip(opt.params, params))


# ---------------------------------------------------------------- clipping
def clip_case(kind, seed, scale=1.0):
    ours, theirs = make_params(kind, seed)
    rng = np.random.default_rng(seed + 100)
    for p, t in zip(ours, theirs):
        g = np.asarray(scale * rng.standard_normal(p.shape), dtype=p.dtype)
        p.grad[...] = g
        t.grad = torch.from_numpy(g.copy())
    return ours, theirs


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("norm_type", [2.0, math.inf, 1.0, 3.0])
@pytest.mark.parametrize("max_norm_factor", [0.3, 10.0], ids=["clips", "no_clip"])
def test_clip_grad_norm_matches_torch(kind, norm_type, max_norm_factor):
    ours, theirs = clip_case(kind, seed=7)
    # max_norm relative to the true norm, so one case clips and the other does not.
    all_g = np.concatenate([p.grad.astype(np.float64).ravel() for p in ours])
    true_norm = np.linalg.norm(all_g, ord=norm_type)
    max_norm = max_norm_factor * true_norm
    before = [p.grad.copy() for p in ours]

    total = clip_grad_norm_(ours, max_norm, norm_type=norm_type)
    ttotal = torch.nn.utils.clip_grad_norm_(theirs, max_norm, norm_type=norm_type)

    assert isinstance(total, float)
    # torch sums float32 grads in float32, so with mixed dtypes its norm (and the
    # scale applied to the float64 grads) carries float32 rounding: float32 tolerance.
    tol = max(TOL[p.dtype] for p in ours)
    assert abs(total - ttotal.item()) <= tol * abs(ttotal.item())
    for p, t, b in zip(ours, theirs, before):
        assert rel_err(p.grad, t.grad.numpy()) <= tol
        if max_norm_factor > 1:
            np.testing.assert_array_equal(p.grad, b)
        else:
            assert not np.array_equal(p.grad, b) or not b.any()
    if max_norm_factor < 1:
        clipped = np.concatenate([p.grad.astype(np.float64).ravel() for p in ours])
        assert np.linalg.norm(clipped, ord=norm_type) <= max_norm * (1 + 1e-5)


@pytest.mark.parametrize("bad", [math.nan, math.inf])
@pytest.mark.parametrize("norm_type", [2.0, math.inf])
def test_clip_grad_norm_nonfinite_matches_torch(bad, norm_type):
    ours, theirs = clip_case("float64", seed=8)
    ours[1].grad[0, 0] = bad
    theirs[1].grad[0, 0] = bad
    total = clip_grad_norm_(ours, 1.0, norm_type=norm_type)
    ttotal = torch.nn.utils.clip_grad_norm_(theirs, 1.0, norm_type=norm_type)
    np.testing.assert_equal(total, ttotal.item())
    for p, t in zip(ours, theirs):
        np.testing.assert_array_equal(p.grad, t.grad.numpy())  # NaNs compare equal here


def test_clip_grad_norm_error_if_nonfinite_leaves_grads():
    ours, _ = clip_case("float64", seed=9)
    ours[0].grad[0] = math.nan
    before = [p.grad.copy() for p in ours]
    with pytest.raises(RuntimeError):
        clip_grad_norm_(ours, 1.0, error_if_nonfinite=True)
    for p, b in zip(ours, before):
        np.testing.assert_array_equal(p.grad, b)


def test_clip_grad_norm_single_parameter_and_empty():
    ours, theirs = clip_case("float64", seed=10, scale=5.0)
    total = clip_grad_norm_(ours[1], 1.0)
    ttotal = torch.nn.utils.clip_grad_norm_(theirs[1], 1.0)
    assert abs(total - ttotal.item()) <= 1e-10 * ttotal.item()
    assert rel_err(ours[1].grad, theirs[1].grad.numpy()) <= 1e-10
    assert clip_grad_norm_([], 1.0) == 0.0


@pytest.mark.parametrize("kwargs", [dict(max_norm=-1.0), dict(max_norm=math.nan),
                                    dict(max_norm=1.0, norm_type=0.0),
                                    dict(max_norm=1.0, norm_type=-2.0)])
def test_clip_grad_norm_invalid(kwargs):
    ours, _ = clip_case("float64", seed=11)
    with pytest.raises(ValueError):
        clip_grad_norm_(ours, **kwargs)


# ---------------------------------------------------------------- validation
INVALID = [
    (SGD, dict(lr=-0.1), "-0.1"),
    (SGD, dict(lr=math.nan), "nan"),
    (SGD, dict(lr=0.1, momentum=-0.5), "-0.5"),
    (SGD, dict(lr=0.1, weight_decay=-1e-4), "-0.0001"),
    (SGD, dict(lr=0.1, nesterov=True), "momentum=0.0"),
    (SGD, dict(lr=0.1, momentum=0.9, dampening=0.1, nesterov=True), "dampening=0.1"),
    (Adam, dict(lr=-1e-3), "-0.001"),
    (Adam, dict(betas=(1.0, 0.999)), "1.0"),
    (Adam, dict(betas=(-0.1, 0.999)), "-0.1"),
    (Adam, dict(betas=(0.9, 1.0)), "1.0"),
    (Adam, dict(betas=(0.9, 1.5)), "1.5"),
    (Adam, dict(eps=-1e-8), "-1e-08"),
    (Adam, dict(weight_decay=-0.1), "-0.1"),
]


@pytest.mark.parametrize("cls,kwargs,shown", INVALID,
                         ids=[f"{c.__name__}-{k}" for c, k, _ in INVALID])
def test_invalid_hyperparameters(cls, kwargs, shown):
    params, _ = make_params("float64", seed=12)
    with pytest.raises(ValueError) as info:
        cls(params, **kwargs)
    assert shown in str(info.value)


@pytest.mark.parametrize("cls,kwargs", [(SGD, dict(lr="0.1")), (Adam, dict(lr="0.1")),
                                        (SGD, dict(lr=None)), (Adam, dict(lr=[1e-3]))])
def test_lr_not_a_number(cls, kwargs):
    params, _ = make_params("float64", seed=13)
    with pytest.raises((TypeError, ValueError)):
        cls(params, **kwargs)


@pytest.mark.parametrize("cls,kwargs", [(SGD, dict(lr=0.1)), (Adam, dict())])
def test_empty_or_bad_params(cls, kwargs):
    with pytest.raises(ValueError):
        cls([], **kwargs)
    with pytest.raises(ValueError):
        cls(iter([]), **kwargs)
    with pytest.raises(TypeError):
        cls([np.zeros(3)], **kwargs)


def test_lr_setter_validates():
    params, _ = make_params("float64", seed=14)
    opt = SGD(params, lr=0.1)
    opt.lr = 0.01
    assert opt.lr == 0.01 and type(opt.lr) is float
    with pytest.raises(ValueError):
        opt.lr = -1.0


# ---------------------------------------------------------------- checkpoints
ROUND_TRIP = [
    (SGD, dict(lr=0.1, momentum=0.9, dampening=0.2, weight_decay=0.05)),
    (SGD, dict(lr=0.1, momentum=0.9, nesterov=True)),
    (SGD, dict(lr=0.1)),
    (Adam, dict(lr=1e-2, weight_decay=0.01)),
    (Adam, dict(lr=1e-2, betas=(0.5, 0.9), eps=1e-4)),
]


@pytest.mark.parametrize("kind", ["float64", "float32"])
@pytest.mark.parametrize("cls,kwargs", ROUND_TRIP, ids=[f"{c.__name__}{i}" for i, (c, _) in
                                                        enumerate(ROUND_TRIP)])
def test_state_dict_round_trip_is_bit_identical(cls, kwargs, kind):
    grads = make_grads(make_params(kind, 15)[0], 10, seed=16)

    def apply(opt, params, gs):
        for p, g in zip(params, gs):
            p.grad[...] = g
        opt.step()

    reference, _ = make_params(kind, 15)
    ref_opt = cls(reference, **kwargs)
    for gs in grads:
        apply(ref_opt, reference, gs)

    first, _ = make_params(kind, 15)
    opt = cls(first, **kwargs)
    for gs in grads[:5]:
        apply(opt, first, gs)
    saved = opt.state_dict()
    snapshot = [p.data.copy() for p in first]
    assert saved["step"] == 5
    assert set(saved) == {"hyperparameters", "step", "buffers"}
    frozen = copy.deepcopy(saved)
    for gs in grads[5:7]:  # the saved dict holds copies: further steps do not change it
        apply(opt, first, gs)
    assert saved["step"] == 5
    assert saved["buffers"].keys() == frozen["buffers"].keys()
    assert all(np.array_equal(saved["buffers"][k], frozen["buffers"][k]) for k in saved["buffers"])

    resumed = [Parameter(s.copy()) for s in snapshot]  # copies of the step-5 params

    # A fresh optimizer with different hyperparameters: load restores them too.
    fresh = cls(resumed, lr=123.0)
    fresh.load_state_dict(saved)
    assert fresh.state_dict()["hyperparameters"] == saved["hyperparameters"]
    assert fresh.step_count == 5
    for gs in grads[5:]:
        apply(fresh, resumed, gs)
    # load copied the buffers: stepping did not write into the loaded dict
    assert all(np.array_equal(saved["buffers"][k], frozen["buffers"][k]) for k in saved["buffers"])
    for r, ref in zip(resumed, reference):
        assert r.data.dtype == ref.data.dtype
        assert np.array_equal(r.data, ref.data)
    final = fresh.state_dict()["buffers"]
    expected = ref_opt.state_dict()["buffers"]
    assert final.keys() == expected.keys()
    assert all(np.array_equal(final[k], expected[k]) for k in final)


def test_state_dict_buffer_keys_and_laziness():
    params, _ = make_params("float64", seed=17)
    sgd = SGD(params, lr=0.1, momentum=0.9)
    assert sgd.state_dict()["buffers"] == {}
    for p in params:
        p.grad[...] = 1.0
    sgd.step()
    keys = set(sgd.state_dict()["buffers"])
    assert keys == {f"{i}.momentum_buffer" for i in range(len(params))}
    plain = SGD(params, lr=0.1)
    plain.step()
    assert plain.state_dict()["buffers"] == {}
    adam = Adam(params)
    adam.step()
    assert set(adam.state_dict()["buffers"]) == {
        f"{i}.{n}" for i in range(len(params)) for n in ("exp_avg", "exp_avg_sq")}


def _stepped_adam():
    params, _ = make_params("float32", seed=18)
    for p in params:
        p.grad[...] = 0.5
    opt = Adam(params, lr=0.1)
    opt.step()
    return opt


def _bad_shape(d):
    d["buffers"]["2.exp_avg"] = np.zeros((3, 3), np.float32)


def _bad_dtype(d):
    d["buffers"]["2.exp_avg"] = d["buffers"]["2.exp_avg"].astype(np.float64)


def _unknown_buffer(d):
    d["buffers"]["0.momentum_buffer"] = d["buffers"]["0.exp_avg"]


def _index_out_of_range(d):
    d["buffers"]["99.exp_avg"] = d["buffers"]["0.exp_avg"]


def _missing_buffer(d):
    del d["buffers"]["1.exp_avg_sq"]


def _buffers_at_step_zero(d):
    d["step"] = 0


def _negative_step(d):
    d["step"] = -1


def _bad_hyper(d):
    d["hyperparameters"]["betas"] = (0.9, 1.0)


def _unknown_hyper(d):
    d["hyperparameters"]["momentum"] = 0.9


def _missing_top_key(d):
    del d["step"]


@pytest.mark.parametrize("corrupt", [_bad_shape, _bad_dtype, _unknown_buffer,
                                     _index_out_of_range, _missing_buffer,
                                     _buffers_at_step_zero, _negative_step, _bad_hyper,
                                     _unknown_hyper, _missing_top_key])
def test_load_state_dict_rejects_mismatch_and_changes_nothing(corrupt):
    source = _stepped_adam()
    target = _stepped_adam()
    target.lr = 0.5
    before = copy.deepcopy(target.state_dict())
    bad = copy.deepcopy(source.state_dict())
    bad["buffers"]["0.exp_avg"][...] = 7.0  # would be visible if partially loaded
    corrupt(bad)
    with pytest.raises(ValueError):
        target.load_state_dict(bad)
    after = target.state_dict()
    assert after["hyperparameters"] == before["hyperparameters"]
    assert after["step"] == before["step"]
    assert after["buffers"].keys() == before["buffers"].keys()
    assert all(np.array_equal(after["buffers"][k], before["buffers"][k]) for k in after["buffers"])


def test_load_state_dict_rejects_sgd_buffer_shape():
    params, _ = make_params("float64", seed=19)
    opt = SGD(params, lr=0.1, momentum=0.9)
    opt.step()
    d = opt.state_dict()
    d["buffers"]["1.momentum_buffer"] = np.zeros(5)
    with pytest.raises(ValueError, match="1.momentum_buffer"):
        SGD(params, lr=0.1, momentum=0.9).load_state_dict(d)


def test_momentum_buffer_keeps_updating_after_parameters_change_layout():
    """A Fortran-ordered momentum buffer must still be updated in place (not a reshaped copy)."""
    def run(backend):
        from rnnlab.functional.backend import use_backend
        with use_backend(backend):
            p = Parameter(np.asfortranarray(np.ones((3, 4))))
            p.grad = np.asfortranarray(np.ones((3, 4)))
            opt = SGD([p], lr=0.1, momentum=0.9)
            opt.step()
            p.data = np.ascontiguousarray(p.data)
            p.grad = np.ascontiguousarray(p.grad)
            for _ in range(3):
                opt.step()
            return p.data.copy(), opt.state[0]["momentum_buffer"].copy()
    data_np, buf_np = run("numpy")
    data_auto, buf_auto = run("auto")
    np.testing.assert_allclose(buf_auto, buf_np, rtol=1e-12)
    np.testing.assert_allclose(data_auto, data_np, rtol=1e-12)
