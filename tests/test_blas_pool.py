"""Products on NumPy's own BLAS threads (rnnlab.kernels.blas_pool) and the packed
kernel run on them: which library is taken, the thread count it follows, and results
the same bit for bit as on one thread, for random shapes."""

from __future__ import annotations

import os

import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

from rnnlab.functional.backend import numba_available

pytestmark = pytest.mark.skipif(not numba_available(), reason="the pool's jobs are compiled")


def _numpy_openblas_path():
    """The path of NumPy's bundled OpenBLAS (pthreads), or None."""
    numpy_dir = os.path.realpath(os.path.dirname(np.__file__))
    for info in threadpool_info():
        path = os.path.realpath(info["filepath"])
        if (info["internal_api"] == "openblas" and info.get("threading_layer") == "pthreads"
                and path.startswith((numpy_dir + os.sep, numpy_dir + ".libs" + os.sep))):
            return path
    return None


needs_pool = pytest.mark.skipif(
    _numpy_openblas_path() is None or (os.cpu_count() or 1) < 2
    or os.environ.get("RNNLAB_BLAS_POOL", "").strip() == "0",
    reason="needs NumPy's own pthreads OpenBLAS, two CPUs and the pool switched on")


@needs_pool
def test_the_pool_is_numpys_openblas_even_beside_scipys():
    """SciPy's wheel loads a second OpenBLAS with its own threads; the pool must be
    NumPy's, or both libraries' workers spin on the cores (steps 2-3x slower). In a fresh
    process, with SciPy's library loaded first (the choice is made once per process)."""
    pytest.importorskip("scipy.linalg")
    import subprocess
    import sys
    code = ("import scipy.linalg, os\n"
            "from threadpoolctl import threadpool_limits\n"
            "from rnnlab.kernels import blas_pool\n"
            "with threadpool_limits(2):\n"
            "    print(blas_pool.threads())\n"
            "print(os.path.realpath(blas_pool._state['controller'].filepath))\n"
            "print(blas_pool._state['shift'])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         timeout=120).stdout.split("\n")
    assert out[0] == "2"
    assert out[1] == _numpy_openblas_path()
    assert out[2] == "2"  # parts are counted in 4-byte elements


@needs_pool
def test_threads_follow_threadpool_limits():
    from rnnlab.kernels import blas_pool
    with threadpool_limits(1):
        assert blas_pool.threads() == 1
    with threadpool_limits(2):
        assert blas_pool.threads() == 2


@needs_pool
def test_run_asks_for_a_probed_pool():
    from rnnlab.kernels import blas_pool
    with threadpool_limits(2):
        blas_pool.threads()
    context = np.zeros(8, dtype=np.int64)
    with pytest.raises(RuntimeError, match="no BLAS thread pool"):
        blas_pool.run(0, 4, context, 1)
    with pytest.raises(TypeError, match="int64"):
        blas_pool.run(0, 4, context.astype(np.int32), 2)


def test_packed_product_on_one_and_on_pool_threads():
    """The packed product against float64 NumPy, and split over the BLAS threads the same
    bit for bit as on one: random sizes, leftover rows (M % 4), K across the 128-block,
    1-40 panels (fewer than threads included), strided rows of A; NaN-filled outputs catch
    a panel that no thread wrote."""
    from rnnlab.kernels import blas_pool, packed_gemm
    if not packed_gemm.HOST_HAS_FMA:
        pytest.skip("the packed products are used on CPUs with FMA only")
    rng = np.random.default_rng(131)
    with threadpool_limits(2):
        pool = blas_pool.threads()
    if (_numpy_openblas_path() is not None and (os.cpu_count() or 1) > 1
            and os.environ.get("RNNLAB_BLAS_POOL", "").strip() != "0"):
        assert pool == 2  # then the split half below runs
    with threadpool_limits(2):
        for trial in range(30):
            M, K, P = int(rng.integers(1, 70)), int(rng.integers(1, 600)), int(rng.integers(1, 41))
            wide = rng.standard_normal((M, K + 3)).astype(np.float32)
            a = wide[:, 1:1 + K]  # rows K + 3 apart
            b = rng.standard_normal((K, 64 * P)).astype(np.float32)
            panels = packed_gemm.pack_columns(b) if trial % 2 else packed_gemm.pack_transposed(b.T.copy())
            one = np.full((M, 64 * P), np.nan, dtype=np.float32)
            packed_gemm.packed_matmul(a, panels, one, threads=1)
            want = a.astype(np.float64) @ b.astype(np.float64)
            np.testing.assert_allclose(one, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
            if pool > 1:
                split = np.full_like(one, np.nan)
                packed_gemm.packed_matmul(a, panels, split, threads=pool)
                np.testing.assert_array_equal(split, one, err_msg=f"M={M} K={K} P={P}")


@needs_pool
def test_pool_threads_rule():
    """Two threads from POOL_MIN_MACS multiply-adds, with a whole 4-row tile and two panels."""
    from rnnlab.kernels import packed_gemm
    with threadpool_limits(2):
        assert packed_gemm.pool_threads(16, 128, 512) == 2  # 2^20
        assert packed_gemm.pool_threads(16, 128, 511) == 1
        assert packed_gemm.pool_threads(3, 4096, 4096) == 1  # no whole tile
        assert packed_gemm.pool_threads(4096, 4096, 64) == 1  # one panel: nothing to split
    with threadpool_limits(1):
        assert packed_gemm.pool_threads(64, 512, 2048) == 1


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pack_transposed_equals_numpy(dtype):
    """The packing of Wᵀ (register tiles for float32): panel p holds columns 64p..64p+63
    of Wᵀ, bit for bit."""
    from rnnlab.kernels import packed_gemm
    rng = np.random.default_rng(137)
    for rows, K in [(64, 1), (128, 17), (256, 130), (64 * 5, 33)]:
        w = rng.standard_normal((rows, K)).astype(dtype)
        panels = packed_gemm.pack_transposed(w)
        want = w.T.reshape(K, rows // 64, 64).transpose(1, 0, 2)
        np.testing.assert_array_equal(panels, want)


def _count_pool_runs(monkeypatch):
    """Count the jobs handed to the pool (so that a test knows the split path ran)."""
    from rnnlab.kernels import blas_pool
    runs = []
    real = blas_pool.run_chunks

    def counting(*args, **kwargs):
        runs.append(args[1])
        return real(*args, **kwargs)

    monkeypatch.setattr(blas_pool, "run_chunks", counting)
    return runs


SGD_SETTINGS = [dict(), dict(momentum=0.9), dict(momentum=0.9, nesterov=True, weight_decay=0.01),
                dict(momentum=0.5, dampening=0.3, weight_decay=0.1)]


@needs_pool
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("settings", SGD_SETTINGS, ids=lambda s: ",".join(s) or "plain")
def test_sgd_update_on_the_pool_equals_one_thread(monkeypatch, dtype, settings):
    """A parameter of >= MIN_ELEMENTS is updated in chunks on the BLAS threads: three steps
    (the first creates the momentum buffer) give the same bits as on one thread."""
    from rnnlab.nn.module import Parameter
    from rnnlab.optim import SGD
    runs = _count_pool_runs(monkeypatch)
    rng = np.random.default_rng(139)
    start = rng.standard_normal((513, 523)).astype(dtype)  # 268299 elements: chunk edges inside rows
    grads = [rng.standard_normal(start.shape).astype(dtype) for _ in range(3)]
    results = []
    for limit in (1, 2):
        param = Parameter(start.copy())
        optimizer = SGD([param], lr=0.1, **settings)
        with threadpool_limits(limit):
            for grad in grads:
                param.grad[...] = grad
                optimizer.step()
        results.append(param.data)
    np.testing.assert_array_equal(results[1], results[0])
    assert len(runs) == (2 if settings.get("momentum") else 3)  # the first momentum step is NumPy's
    assert not np.array_equal(results[1], start)


@needs_pool
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("add", [False, True])
def test_outer_product_on_the_pool_equals_one_thread(monkeypatch, dtype, add):
    from rnnlab.kernels.rank1 import outer_into
    runs = _count_pool_runs(monkeypatch)
    rng = np.random.default_rng(149)
    for rows, columns in [(512, 4096), (17, 20000), (1000, 333)]:
        a, b = rng.standard_normal(rows).astype(dtype), rng.standard_normal(columns).astype(dtype)
        start = rng.standard_normal((rows, columns)).astype(dtype)
        results = []
        for limit in (1, 2):
            grad = start.copy()
            with threadpool_limits(limit):
                outer_into(grad, a, b, add)
            results.append(grad)
        np.testing.assert_array_equal(results[1], results[0])
        np.testing.assert_allclose(results[1], start * add + np.outer(a, b), rtol=1e-6)
    assert runs == [512, 17, 1000]


@needs_pool
def test_outer_product_of_mixed_dtypes_stays_on_one_thread(monkeypatch):
    """The job reads a and b as grad's dtype: a float64 a next to a float32 grad must not
    reach it (it gave NaN), and gets the one-thread kernel's answer."""
    from rnnlab.kernels.rank1 import outer_into
    runs = _count_pool_runs(monkeypatch)
    rng = np.random.default_rng(163)
    a, b = rng.standard_normal(512), rng.standard_normal(1024).astype(np.float32)
    grad = np.zeros((512, 1024), dtype=np.float32)
    with threadpool_limits(2):
        outer_into(grad, a, b, False)
    assert not runs
    np.testing.assert_allclose(grad, np.outer(a, b), rtol=1e-6)


@needs_pool
@pytest.mark.parametrize("reverse,grad_output_dtype,N", [(False, None, 256), (True, np.float32, 260),
                                                         (False, np.float64, 256)])
def test_lstm_passes_on_the_pool_equal_one_thread(monkeypatch, reverse, grad_output_dtype, N):
    """From POOL_MIN_UNITS (batch × hidden) a fused LSTM step runs its compiled elementwise
    passes in row chunks on the BLAS threads: outputs, states and every gradient the same
    bit for bit as with them on the calling thread (260 rows: a chunk that is not whole).
    A float64 grad_output keeps the backward's gate gradients on the calling thread (the
    job reads float32 rows). Both arms run the recurrent products on the pool (from
    2^20 multiply-adds): the torch parity tests of the packed products cover those."""
    from rnnlab.kernels import loops_fused, numpy_tanh
    from rnnlab.functional import recurrent as R
    from rnnlab.functional.backend import use_backend
    runs = _count_pool_runs(monkeypatch)
    rng = np.random.default_rng(151 + N)
    T, I, H = 3, 4, 256
    f32 = np.float32
    x = rng.standard_normal((T, N, I)).astype(f32)
    w_ih = (0.3 * rng.standard_normal((4 * H, I))).astype(f32)
    w_hh = (0.1 * rng.standard_normal((4 * H, H))).astype(f32)
    b_ih, b_hh = rng.standard_normal(4 * H).astype(f32), rng.standard_normal(4 * H).astype(f32)
    h0, c0, g_h = (rng.standard_normal((N, H)).astype(f32) for _ in range(3))
    g_out = None if grad_output_dtype is None else rng.standard_normal((T, N, H)).astype(grad_output_dtype)
    results = []
    for pool in (False, True):
        monkeypatch.setattr(loops_fused, "POOL_MIN_UNITS", 1 << 16 if pool else 1 << 62)
        with threadpool_limits(2), use_backend("fused"):
            (out, h_n, c_n), cache = R.lstm_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse=reverse)
            out = out.copy()
            grad_x, grad_h0, grad_c0, grads = R.lstm_backward(cache, g_out, g_h, None)
        results.append([out, h_n, c_n, grad_x, grad_h0, grad_c0, *grads])
        if not pool:
            assert not runs
    for name, want, got in zip(["out", "h_n", "c_n", "grad_x", "grad_h0", "grad_c0", "dW_ih",
                                "dW_hh", "db"], *results):
        np.testing.assert_array_equal(got, want, err_msg=name)
    backward_runs = 0 if grad_output_dtype == np.float64 else T
    # The add, then cell and hidden: two jobs with NumPy's tanh loop in them, else three.
    forward_runs = (2 if numpy_tanh.float32_loop() else 3) * T
    assert len(runs) == forward_runs + backward_runs


def _bits(a):
    return np.ascontiguousarray(a).view(np.uint32)


@pytest.fixture
def fresh_tanh_lookup():
    """The NumPy-tanh lookup recomputed in the test, and again after it (a test that makes
    it fail must not leave a cached None behind)."""
    from rnnlab.kernels import numpy_tanh
    numpy_tanh._checked_loop.cache_clear()
    yield numpy_tanh
    numpy_tanh._checked_loop.cache_clear()


def test_numpy_tanh_loop_is_found_and_gives_numpys_bits(fresh_tanh_lookup):
    """On NumPy 2 under 64-bit CPython the layout is the documented one: the loop is found,
    and called through ctypes and from compiled code it gives np.tanh's bits on values the
    probe did not see (2-D rows, an odd length)."""
    import platform

    import numba
    m = fresh_tanh_lookup
    if platform.python_implementation() != "CPython" or int(np.__version__.split(".")[0]) != 2:
        pytest.skip("the layout read is NumPy 2's under CPython")
    found = m.float32_loop()
    assert found is not None
    loop, data = found
    rng = np.random.default_rng(167)
    x = (rng.standard_normal((37, 129)) * rng.choice([1e-3, 1, 10], (37, 1))).astype(np.float32)
    want = _bits(np.tanh(x))
    out = np.zeros_like(x)
    m._call(loop, data, x, out)
    np.testing.assert_array_equal(_bits(out), want)
    call = m.unary_loop_caller()

    @numba.njit
    def compiled(loop, data, src, dst):
        call(loop, data, src.ctypes.data, dst.ctypes.data, src.size, 4)

    out[...] = 0
    compiled(loop, data, x, out)
    np.testing.assert_array_equal(_bits(out), want)
    compiled(loop, data, x, x)  # in place
    np.testing.assert_array_equal(_bits(x), want)


def test_numpy_tanh_lookup_refuses_other_ufuncs(fresh_tanh_lookup):
    """Another ufunc is refused by its name, and, when the name is the one asked for (the
    layout read is right: sin's float32 loop is found), by its values; so are a binary
    ufunc and something that is not a ufunc."""
    m = fresh_tanh_lookup
    assert m._find(np.sin, "tanh") is None
    assert m._checked_loop(np.sin, "tanh") is None
    assert m._find(np.sin, "sin") is not None
    assert m._checked_loop(np.sin, "sin") is None  # found, but not tanh's bits
    assert m._checked_loop(np.exp, "exp") is None
    assert m._checked_loop(np.add, "add") is None
    assert m._checked_loop(len, "tanh") is None


@pytest.mark.parametrize("fault", ["last_bit", "nan_payload", "raises"])
def test_numpy_tanh_lookup_refuses_a_loop_with_wrong_bits(monkeypatch, fresh_tanh_lookup, fault):
    """A loop that differs from np.tanh in one bit of one element (the last one, in the SIMD
    tail, of the long probes only; or a NaN's payload), or that raises, is not used."""
    m = fresh_tanh_lookup
    if m.float32_loop() is None:
        pytest.skip("no NumPy tanh loop here")
    m._checked_loop.cache_clear()
    real = m._call

    def faulty(loop, data, src, dst):
        if fault == "raises":
            raise OSError("simulated")
        real(loop, data, src, dst)
        if fault == "last_bit" and dst.size > 1000:
            dst.view(np.uint32)[-1] ^= 1
        if fault == "nan_payload":
            bits = dst.view(np.uint32)
            bits[np.isnan(dst)] ^= 1

    monkeypatch.setattr(m, "_call", faulty)
    assert m.float32_loop() is None


@needs_pool
@pytest.mark.parametrize("N,H,T,reverse,zero_start", [
    (64, 512, 3, False, False), (130, 256, 7, True, False), (256, 128, 1, False, True),
    (256, 512, 3, True, True), (130, 512, 1, True, False), (64, 512, 7, False, True),
    (256, 256, 7, True, False), (260, 128, 3, False, True),
    (64, 520, 3, False, False), (64, 520, 2, True, True)])
def test_lstm_forward_tanh_in_the_pool_jobs_is_bitwise_numpys(monkeypatch, N, H, T, reverse,
                                                              zero_start):
    """From POOL_MIN_UNITS the fused forward runs NumPy's tanh loop inside its two row jobs
    per step: gates [τ_i, τ_f, g, τ_o], h, c and tanh(c) the same bit for bit as with
    np.tanh called between three jobs (the lookup forced off). 130 and 260 rows split
    80 + 50 and 144 + 116 over two threads. H = 520 takes no packed product (4H is not
    whole 64-column panels) and runs feature-major: the gates' tanh stays a NumPy call
    after the transposed add, and one job a step does c, tanh(c) and h (two from a zero
    state). The jobs' contexts show which path ran."""
    from rnnlab.kernels import blas_pool, loops_fused, numpy_tanh
    found = numpy_tanh.float32_loop()
    if found is None:
        pytest.skip("no NumPy tanh loop here")
    assert N * H >= loops_fused.POOL_MIN_UNITS
    with threadpool_limits(2):
        feature_major = (not loops_fused._product_threads(N, H, 4 * H, np.float32)
                         and loops_fused._feature_major_product(N, H))
    assert feature_major == (H == 520)
    tanh_fields = []
    real = blas_pool.run_chunks

    def recording(job, size, fields, count):
        if job == loops_fused._row_jobs()[0]:
            tanh_fields.append(fields[-2])
        return real(job, size, fields, count)

    monkeypatch.setattr(blas_pool, "run_chunks", recording)
    rng = np.random.default_rng(173 + N + H + T)
    f32 = np.float32
    G = 4 * H
    gates = rng.standard_normal((T, N, G)).astype(f32)
    weight_hh = (0.2 * rng.standard_normal((G, H))).astype(f32)
    bias = rng.standard_normal(G).astype(f32)
    h_states, c_states = (np.full((T + 1, N, H), np.nan, dtype=f32) for _ in range(2))
    first = T if reverse else 0
    h_states[first] = 0 if zero_start else rng.standard_normal((N, H))
    c_states[first] = 0 if zero_start else rng.standard_normal((N, H))
    results = {}
    for new in (False, True):
        tanh_fields.clear()
        arrays = [gates.copy(), h_states.copy(), c_states.copy(), np.full((T, N, H), np.nan, f32)]
        with monkeypatch.context() as patch, threadpool_limits(2):
            if not new:
                patch.setattr(numpy_tanh, "float32_loop", lambda: None)
            loops_fused.lstm_forward_loop(*arrays, weight_hh, reverse, zero_start, bias)
        results[new] = arrays
        if new:  # two jobs a step (one feature-major), each with the loop's address
            assert tanh_fields == [found[0]] * ((T + zero_start) if feature_major else 2 * T)
        elif feature_major:  # cell and hidden, without it
            assert tanh_fields == [0] * (2 * T)
        else:  # the add (but from a zero state), cell and hidden, without it
            assert tanh_fields == [0] * (3 * T - zero_start)
    for name, old, got in zip(["gates", "h", "c", "tanh_c"], results[False], results[True]):
        assert not np.isnan(got).any(), name
        np.testing.assert_array_equal(_bits(got), _bits(old), err_msg=name)
    assert np.abs(results[True][0]).max() <= 1  # the gates hold tanh values


def test_the_pool_can_be_switched_off():
    """RNNLAB_BLAS_POOL=0: no pool, in a fresh process (the choice is made once)."""
    import subprocess
    import sys
    code = ("from threadpoolctl import threadpool_limits\n"
            "from rnnlab.kernels import blas_pool\n"
            "with threadpool_limits(2):\n"
            "    print(blas_pool.threads())\n")
    env = dict(os.environ, RNNLAB_BLAS_POOL="0")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True, timeout=120)
    assert out.stdout.strip() == "1"


@pytest.mark.skipif(not numba_available(), reason="numba not installed")
def test_row_jobs_come_from_the_disk_cache_in_a_new_process(tmp_path):
    """A second process loads the LSTM's pool jobs from numba's disk cache instead of
    compiling them again and writing another copy (jobs that close over helpers made in
    the process missed the cache every time: ~2 s, and one more file per process)."""
    import subprocess
    import sys

    code = ("from rnnlab.kernels import loops_fused as F\n"
            "F._row_jobs()\n")
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}

    def job_files():
        return sorted(p.name for p in tmp_path.rglob("*_row_jobs*.nbc"))

    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=300)
    first = job_files()
    assert len(first) == 2, first  # forward and backward
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=300)
    assert job_files() == first
