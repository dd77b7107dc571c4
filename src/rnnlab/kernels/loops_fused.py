"""Per-step loops for large steps: NumPy's BLAS and SIMD ufuncs, plus small fused numba passes.

For a step of many units (batch × hidden above a few hundred) the compiled
whole-loop kernels of :mod:`.loops_numba` lose: numba's scalar exp/tanh are
not vectorised here, while NumPy's are, and NumPy's BLAS uses every core. The
NumPy reference, though, spends a dozen passes over memory per step. This
module keeps what each does best.

σ is taken as σ(x) = (1 + tanh(x/2)) / 2, so that one SIMD ``tanh`` serves all
four gates: the ½ is folded into the i, f, o rows of W_ih and the bias, and
applied to each step's recurrent product as it is added in.
The gate buffer then keeps the *half-angle* values τ = tanh(pre/2) of the
i, f, o gates (and g itself), [τ_i, τ_f, g, τ_o], and every kernel reads
σ = ½ + ½τ and σ' = σ(1 - σ) = ¼(1 - τ²) from them. Nothing is written back to
turn τ into σ: that in-place pass cost 3-4x the rest of a step's compiled work.

- forward, per step: the recurrent GEMM (feature-major for a small batch, see
  :func:`_feature_major_product`), one pass adding it and the bias,
  ``tanh`` over all four gates, one compiled pass for c = f ⊙ c_prev + i ⊙ g, ``tanh(c)``, and one
  compiled pass for h = o ⊙ tanh(c). On the BLAS pool (large steps, see POOL_MIN_UNITS) that
  is two jobs, each over its rows: the add and the gates' tanh, then c, tanh(c) and h; the
  tanh being NumPy's own loop (see :mod:`.numpy_tanh`), called from the job;
- backward, per step: one compiled pass (no transcendental functions, so it
  vectorises) for all the gate gradients and dc, then the dh GEMM (feature-major
  from a copy of W_hhᵀ for a small batch, as in the forward).

The compiled passes and their pool jobs are in :mod:`.fused_passes`.

A cache written by these loops must be backpropagated by them (the gate buffer
holds τ, not σ); :mod:`.recurrent` keeps the loops with the cache.

The RNN step is already three NumPy calls: the RNN runs the NumPy loops, but with
its per-step products on a weight packed once, by the rules of the LSTM's (see
:func:`_product_threads`: ``H`` a multiple of 64, from 4 rows, on the pool from 2^20
multiply-adds, on one core up to 4096 batch × hidden units). Those rules were
measured on the LSTM's products; on the RNN's, A/B steps at H = 128-512 gained or
held (see the commit that added them).
"""

from __future__ import annotations

import numpy as np

from ..functional import _loops_numpy
from ..functional._loops_numpy import state_views, sweep
from . import blas_pool, numpy_tanh, packed_gemm
from .fused_passes import (_add_recurrent_and_bias, _cell, _forward_pass_on_pool,
                           _gate_gradients, _hidden, _row_jobs)
from .transpose import add_transposed, transpose_into

__all__ = ["rnn_forward_loop", "rnn_backward_loop", "lstm_forward_loop", "lstm_backward_loop",
           "input_row_scale"]


def input_row_scale(G, dtype):
    """(4H,) scale: ½ on the i, f, o rows, 1 on g, so that one tanh serves all four gates.

    The caller applies it to the rows of W_ih and the bias when it computes the
    input part of the pre-activations (see recurrent._input_projection); the
    loops apply it to W_hh.
    """
    H = G // 4
    scale = np.full(G, 0.5, dtype=dtype)
    scale[2 * H:3 * H] = 1
    return scale



# The per-step products run on a weight packed once per sequence (see packed_gemm):
# - on one core for a batch of at least 4 rows (the microkernel's tile) and at most
#   PACKED_MAX_UNITS / H: there one core without repacking beats OpenBLAS's two cores
#   with it (1.2-4.6x, measured alternating with BLAS calls as in a step);
# - on OpenBLAS's own threads (see blas_pool) for a product of at least
#   packed_gemm.POOL_MIN_MACS multiply-adds with two panels or more: as fast as the one-core
#   kernel or OpenBLAS or faster in every cell measured (N = 4-256, H = 64-512: up to
#   2.2x against OpenBLAS), since it packs once where OpenBLAS packs per call.
# Elsewhere OpenBLAS runs them (see benchmarks/packed_products.py for the tables).
PACKED_MAX_UNITS = 4096


# What a plan (see rnnlab.kernels.planner) decides for the loops below, set around each call:
# "packed" True/False takes the packed product wherever it can run / never; "pool" True/False
# puts the products and the elementwise passes on OpenBLAS's threads wherever they can
# run / never. None keeps the size rules of this module and of packed_gemm.
KNOBS = {"packed": None, "pool": None}


def _product_threads(batch: int, hidden: int, columns: int, dtype, inner: int | None = None) -> int:
    """How a per-step product runs: 0 for OpenBLAS, else the threads of
    :func:`.packed_gemm.packed_matmul`. The LSTM forward's is (batch × H)·(H × 4H), its
    backward's (batch × 4H)·(4H × H): ``columns`` 4H or H tells them apart. The
    RNN's are (batch × H)·(H × H) both ways: it passes ``inner`` = H."""
    packed, pool = KNOBS["packed"], KNOBS["pool"]
    if packed is False or not (packed_gemm.ROWS <= batch and packed_gemm.usable(batch, columns, dtype)):
        return 0
    if inner is None:
        inner = hidden if columns == 4 * hidden else 4 * hidden
    if pool is None:
        threads = packed_gemm.pool_threads(batch, inner, columns)
    else:
        threads = blas_pool.threads() if pool and columns >= 2 * packed_gemm.COLS else 1
    if threads > 1 or packed:
        return threads
    return 1 if batch * hidden <= PACKED_MAX_UNITS else 0


def _feature_major_product(batch: int, hidden: int) -> bool:
    """Whether the recurrent GEMM runs feature-major, W_hh · h_{t-1}ᵀ -> (4H, N).

    For a batch of at most an eighth of the hidden size, OpenBLAS runs that
    1.2-2.2x faster than the batch-major h_{t-1} · W_hhᵀ, including the
    transposed read that adds it in (N = 1-32, H = 128-512, measured here);
    for larger batches it is as fast or slower.
    """
    return 8 * batch <= hidden


# Products a backward must run before its copy of W_hhᵀ pays (see _backward_feature_major).
BACKWARD_FM_MIN_PRODUCTS = 8
BACKWARD_FM_MIN_PRODUCTS_ONE_ROW = 32


def _backward_feature_major(batch: int, hidden: int, products: int) -> bool:
    """Whether the backward's dh GEMM runs feature-major, W_hhᵀ · dpreᵀ -> (H, N).

    For the batches the forward also runs feature-major, OpenBLAS runs that product
    1.2-1.6x faster than dpre · W_hh, given a contiguous W_hhᵀ (N = 1-64,
    H = 128-512, measured here). The copy of W_hhᵀ (~0.6 ms at H = 512) is paid
    back after ~15 products at N = 1 (40 µs saved per product) and ~4-9 at N ≥ 2
    (60-170 µs). Steps measured: 8 % slower at N = 1, T = 16 (before the copy took
    register tiles); 2-6 % faster at N = 32, T = 16, and 5-27 % at T = 64.
    """
    needed = BACKWARD_FM_MIN_PRODUCTS_ONE_ROW if batch == 1 else BACKWARD_FM_MIN_PRODUCTS
    return products >= needed and _feature_major_product(batch, hidden)


# A step's elementwise passes are split by rows over the BLAS pool (see blas_pool) from
# this many units, batch × hidden, the forward's two tanh with them when NumPy's loop can be
# called from a job (see numpy_tanh; else they stay NumPy calls): 2^15 is 2^17
# gate values, where a pass takes ~0.1 ms on one core against ~5-10 µs to hand a job
# over. Steps at N = 256, H = 128 (2^15), T = 64, measured against 2^16: 1.12 -> 1.04
# and 1.06 -> 1.03 of torch (n = 8, 64); at T = 16, n = 8, 0.97 -> 1.04. At 2^14
# (N = 32, H = 512) they lost: 1.04 -> 1.19.
POOL_MIN_UNITS = 1 << 15


def _row_threads(batch: int, hidden: int, dtype) -> int:
    """Threads for a step's elementwise passes: the pool's from POOL_MIN_UNITS (float32), else 1.

    The jobs are compiled with an LLVM IR call of NumPy's tanh loop in them (see _row_jobs),
    so they need the IR kernels proven too (see rnnlab.kernels.probes)."""
    pool = KNOBS["pool"]
    if (np.dtype(dtype) != np.float32 or pool is False
            or (pool is None and batch * hidden < POOL_MIN_UNITS)):
        return 1
    threads = blas_pool.threads()
    return threads if threads > 1 and packed_gemm.llvm_kernels_proven() else 1


def _step_product(panels, out, a_steps, threads):
    """A function of t that sets and returns out (N, ·) = a_steps[t] · B, B packed in
    ``panels``: on the pool (A found by its address, a_steps' base + t steps) or on this
    thread. The LSTM and RNN loops of both directions take their products from it."""
    if threads < 2:
        return lambda t: packed_gemm.packed_matmul(a_steps[t], panels, out)
    product = packed_gemm.PanelProduct(panels, out, out.shape[0],
                                   a_steps.strides[1] // a_steps.itemsize, threads)
    address, step = a_steps.ctypes.data, a_steps.strides[0]
    return lambda t: product(address + t * step, a_steps[t])


def lstm_forward_loop(gates, h_states, c_states, tanh_c, weight_hh, reverse, zero_start=False,
                      bias=None):
    """As the NumPy loops, but gates (T, N, 4H) arrive holding x_t (½W_ih)ᵀ only, the i, f, o
    rows halved (see :func:`input_row_scale`), and receive [τ_i, τ_f, g, τ_o]_t.

    bias (4H,) is b_ih + b_hh, or None: it is added (halved likewise) with each step's
    recurrent part, in the same pass, instead of in a pass of its own over all steps.
    """
    T, N, G = gates.shape
    h_out, h_prev = state_views(h_states, reverse)
    c_out, c_prev = state_views(c_states, reverse)
    half = gates.dtype.type(0.5)
    scale = input_row_scale(G, gates.dtype)
    bias = np.zeros(G, dtype=gates.dtype) if bias is None else bias * scale
    products = T - 1 if zero_start else T  # recurrent products to run; none at T=1 from zero
    packed = _product_threads(N, G // 4, G, gates.dtype) if products > 0 else 0
    if packed:
        panels = packed_gemm.pack_transposed(weight_hh)  # W_hhᵀ, packed once for all steps
    feature_major = not packed and _feature_major_product(N, G // 4)
    recur = np.empty((G, N) if feature_major else (N, G), dtype=gates.dtype)
    if packed:
        product = _step_product(panels, recur, h_prev, packed)  # (N, 4H) = h_prev[t] W_hhᵀ
    rows = _row_threads(N, G // 4, gates.dtype)  # > 1: the compiled passes run on the pool
    tanh = numpy_tanh.float32_loop() if rows > 1 else None  # > 1: the tanh in the jobs
    for k, t in enumerate(sweep(T, reverse)):
        act = gates[t]
        if not k and zero_start:  # a zero initial state adds nothing
            if tanh:
                _forward_pass_on_pool(rows, 0, act, None, None, bias, tanh=tanh)
            else:
                act += bias
                np.tanh(act, out=act)
        else:
            if packed:
                product(t)  # (N, 4H)
            elif feature_major:
                np.matmul(weight_hh, h_prev[t].T, out=recur)  # (4H, N)
            else:
                np.matmul(h_prev[t], weight_hh.T, out=recur)  # (N, 4H)
            if feature_major:
                add_transposed(act, recur, scale, bias)  # the same sums, in register tiles
            elif rows > 1:
                _forward_pass_on_pool(rows, 0, act, recur, scale, bias, tanh=tanh)
            else:
                _add_recurrent_and_bias(act, recur, scale, bias)
            if feature_major or not tanh:  # else the pool's job took it
                np.tanh(act, out=act)  # [τ_i, τ_f, g, τ_o]
        if tanh:  # c, tanh(c) and h in one job
            _forward_pass_on_pool(rows, 1, act, c_prev[t], c_out[t], tanh_c[t], h_out[t], tanh)
        elif rows > 1:
            _forward_pass_on_pool(rows, 1, act, c_prev[t], c_out[t])
            np.tanh(c_out[t], out=tanh_c[t])
            _forward_pass_on_pool(rows, 2, act, tanh_c[t], h_out[t])
        else:
            _cell(act, c_prev[t], c_out[t], half)
            np.tanh(c_out[t], out=tanh_c[t])
            _hidden(act, tanh_c[t], h_out[t], half)


def lstm_backward_loop(gates, c_states, tanh_c, weight_hh, grad_output, dh, dc, reverse,
                       last_dh=True):
    """As the NumPy loops, for gates (T, N, 4H) = [τ_i, τ_f, g, τ_o]_t from :func:`lstm_forward_loop`."""
    T, N, G = gates.shape
    _, c_prev = state_views(c_states, reverse)
    half = gates.dtype.type(0.5)
    no_grad = np.zeros((1, 1), dtype=gates.dtype)
    products = T if last_dh else T - 1  # dh GEMMs to run
    packed = _product_threads(N, G // 4, G // 4, gates.dtype) if products > 0 else 0
    if packed:
        panels = packed_gemm.pack_columns(weight_hh)  # W_hh (4H, H), packed once for all steps
        product = _step_product(panels, dh, gates, packed)  # dh = gates[t] W_hh
    feature_major = not packed and _backward_feature_major(N, G // 4, products)
    if feature_major:
        weight_hh_t = np.empty((G // 4, G), dtype=gates.dtype)  # (H, 4H)
        transpose_into(weight_hh, weight_hh_t)
        dh_t = np.empty((G // 4, N), dtype=gates.dtype)  # (H, N)
    rows = _row_threads(N, G // 4, gates.dtype)  # > 1: the gate gradients run on the pool
    if rows > 1 and not all(a.dtype == gates.dtype and a.flags.c_contiguous for a in (
            (dh, dc) if grad_output is None else (dh, dc, grad_output))):
        rows = 1  # the pool's job reads raw float32 rows
    for k, t in enumerate(sweep(T, not reverse)):  # BPTT runs the sweep backwards
        act = gates[t]
        if rows > 1:
            fields = [G // 4, act.ctypes.data, tanh_c[t].ctypes.data, c_prev[t].ctypes.data,
                      0 if grad_output is None else grad_output[t].ctypes.data,
                      dh.ctypes.data, dc.ctypes.data]
            blas_pool.run_chunks(_row_jobs()[1], N, fields, rows)
        elif grad_output is None:
            _gate_gradients(act, tanh_c[t], c_prev[t], no_grad, False, dh, dc, half)
        else:
            _gate_gradients(act, tanh_c[t], c_prev[t], grad_output[t], True, dh, dc, half)
        if not last_dh and k == T - 1:
            continue
        if packed:
            product(t)
        elif feature_major:
            np.matmul(weight_hh_t, act.T, out=dh_t)  # (H, N)
            transpose_into(dh_t, dh)
        else:
            np.matmul(act, weight_hh, out=dh)


def _rnn_product_threads(states: np.ndarray, products: int) -> int:
    """Threads of the RNN's per-step products on a packed W_hh (0: NumPy's loops run)."""
    N, H = states.shape[1:]
    return _product_threads(N, H, H, states.dtype, inner=H) if products > 0 else 0


def rnn_forward_loop(states, weight_hh, relu, reverse, zero_start=False):
    """:func:`._loops_numpy.rnn_forward_loop`, with the products h_{t-1} · W_hhᵀ on a
    weight packed once (see packed_gemm) where that is faster than OpenBLAS."""
    T = states.shape[0] - 1
    threads = _rnn_product_threads(states, T - 1 if zero_start else T)
    product = None
    if threads:
        prev = state_views(states, reverse)[1]
        panels = packed_gemm.pack_transposed(weight_hh)  # W_hhᵀ (H, H) in panels, once for all steps
        recur = np.empty(states.shape[1:], dtype=states.dtype)  # (N, H): h_{t-1} W_hhᵀ
        product = _step_product(panels, recur, prev, threads)
    _loops_numpy.rnn_forward_loop(states, weight_hh, relu, reverse, zero_start, product)


KEEP_PACKED_MAX_ROWS = 256


def rnn_backward_loop(states, weight_hh, grad_output, dh, d_pre, relu, reverse, last_dh=True,
                      workspace=None):
    """:func:`._loops_numpy.rnn_backward_loop`, with the products dpre_t · W_hh on a
    weight packed once (see packed_gemm) where that is faster than OpenBLAS.

    A block of at most KEEP_PACKED_MAX_ROWS rows (steps × batch) keeps its packed W_hh in
    ``workspace`` (a dict the caller keeps across the blocks of steps of one backward) for
    the next: packing costs ~90 µs at H = 512, as much as the block's own products at
    N = 32 and 2 steps (A/B step (32, 64, 512, 16): 0.94 -> 0.86 of torch). Larger
    blocks pack their own, freed before the caller's weight-gradient GEMMs: a kept copy
    (H² floats) raised the traced peak of (256, 8, 512, 16) from 1.50 to 1.62 times the
    BPTT minimum, for a saving of ~2 % of the step."""
    T = states.shape[0] - 1
    threads = _rnn_product_threads(states, T if last_dh else T - 1)
    product = None
    if threads and dh.flags.c_contiguous and dh.dtype == states.dtype:
        panels = None if workspace is None else workspace.get("packed_weight_hh")
        if panels is None:
            panels = packed_gemm.pack_columns(weight_hh)  # W_hh (H, H) in panels
            if workspace is not None and d_pre.shape[0] * d_pre.shape[1] <= KEEP_PACKED_MAX_ROWS:
                workspace["packed_weight_hh"] = panels
        product = _step_product(panels, dh, d_pre, threads)
    _loops_numpy.rnn_backward_loop(states, weight_hh, grad_output, dh, d_pre, relu, reverse,
                                   last_dh, dh_product=product)
