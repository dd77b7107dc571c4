"""A float32 GEMM on a weight packed once, for the per-step products of the LSTM and RNN.

Why: the recurrent product of every time step multiplies a thin batch by the
same weight, h_{t-1} (N, H) · W_hhᵀ (H, 4H), and OpenBLAS packs (copies into
its blocked layout) the whole weight on every call: ~200 µs for a 512 × 2048
float32 weight, measured here as time ≈ 200 µs + 7 µs per batch row. At
N = 32 the packing is half of the product. Here the weight is packed once per
sequence, and each step runs only the arithmetic.

Layout: B (K, P·64) is stored as P panels of 64 columns, (P, K, 64), each
panel row 64 contiguous floats (four 16-float vectors). The microkernel
computes a 4-row × 64-column tile of C = A · B: sixteen vector accumulators
kept in registers, and for each k one broadcast of A[r, k] per row and four
fused multiply-adds per row. It is written as LLVM IR (an ``@intrinsic``)
because numba alone keeps such accumulators in memory (measured: 75 against
225-300 GFLOP/s on two threads). K is walked in blocks of 128, so that a block
of the panel (32 KiB) stays in L1 while the row tiles pass over it.

Threads: a product of at least ``POOL_MIN_MACS`` multiply-adds is split by
panels over OpenBLAS's own threads (:mod:`.blas_pool`), which are awake
anyway between the BLAS calls of a step. A second thread pool does not work
here: numba's ``prange`` was 2x faster than OpenBLAS in isolation but
1.3-3x *slower* inside a step, where OpenBLAS's idle worker spins on the
other core for ~0.1 s after every BLAS call and fought numba's thread for
it. Smaller products run on the calling thread, where one core without
repacking still beats OpenBLAS's two with it: (32 × 128)·(128 × 512) 27
against 45 µs. ``benchmarks/packed_products.py`` prints the table (the
rules that pick each way are in :mod:`.loops_fused`).

Only float32 (the vector width is fixed); callers check :func:`usable`. The
kernel goes through numba's and llvmlite's extension API, so :func:`prove`
compiles and checks it (and :mod:`.transpose`'s) in a child process first
(see :mod:`rnnlab.kernels.probes`); :func:`usable` is False until that passed.
"""

from __future__ import annotations

from functools import lru_cache

import numba as nb
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from .transpose import _transpose_f32

__all__ = ["COLS", "usable", "prove", "pack_columns", "pack_transposed", "packed_matmul", "pool_threads",
           "PanelProduct"]

ROWS, COLS = 4, 64  # the microkernel's tile
KC = 128  # K block: 128 × 64 float32 = 32 KiB of a panel, kept in L1


@intrinsic
def _microkernel(typingctx, a_addr, lda, b_addr, c_addr, ldc, k_len, accumulate):
    """C[0:4, 0:64] (+)= A[0:4, 0:k_len] · B[0:k_len, 0:64]; addresses in bytes, strides in floats.

    With ``accumulate`` != 0 the tile of C is loaded first (a later K block),
    else it is overwritten. k_len >= 1.
    """
    sig = types.void(types.uintp, types.intp, types.uintp, types.uintp, types.intp, types.intp,
                     types.intp)

    def codegen(context, builder, signature, args):
        a_addr, lda, b_addr, c_addr, ldc, k_len, accumulate = args
        f32 = ir.FloatType()
        v16 = ir.VectorType(f32, 16)
        i32, i64 = ir.IntType(32), ir.IntType(64)
        a0 = builder.inttoptr(a_addr, f32.as_pointer())
        b0 = builder.inttoptr(b_addr, f32.as_pointer())
        c0 = builder.inttoptr(c_addr, f32.as_pointer())
        fma = builder.module.globals.get("llvm.fma.v16f32") or ir.Function(
            builder.module, ir.FunctionType(v16, [v16, v16, v16]), "llvm.fma.v16f32")
        zero = ir.Constant(v16, [0.0] * 16)
        splat = ir.Constant(ir.VectorType(i32, 16), [0] * 16)

        def c_vector(r, q):
            row = builder.gep(c0, [builder.mul(ir.Constant(i64, r), ldc)])
            return builder.bitcast(builder.gep(row, [ir.Constant(i64, 16 * q)]), v16.as_pointer())

        use_c = builder.icmp_signed("!=", accumulate, ir.Constant(i64, 0))
        start = [[builder.select(use_c, builder.load(c_vector(r, q), align=4), zero)
                  for q in range(COLS // 16)] for r in range(ROWS)]
        entry = builder.block
        loop = builder.append_basic_block("tile.k")
        done = builder.append_basic_block("tile.store")
        builder.branch(loop)

        builder.position_at_end(loop)
        k = builder.phi(i64, "k")
        k.add_incoming(ir.Constant(i64, 0), entry)
        acc = [[builder.phi(v16) for _ in range(COLS // 16)] for _ in range(ROWS)]
        for r in range(ROWS):
            for q in range(COLS // 16):
                acc[r][q].add_incoming(start[r][q], entry)
        b_row = builder.gep(b0, [builder.mul(k, ir.Constant(i64, COLS))])
        b = [builder.load(builder.bitcast(builder.gep(b_row, [ir.Constant(i64, 16 * q)]),
                                          v16.as_pointer()), align=4)
             for q in range(COLS // 16)]
        new = []
        for r in range(ROWS):
            a = builder.load(builder.gep(a0, [builder.add(builder.mul(ir.Constant(i64, r), lda), k)]))
            a_vec = builder.insert_element(ir.Constant(v16, ir.Undefined), a, ir.Constant(i32, 0))
            a_vec = builder.shuffle_vector(a_vec, ir.Constant(v16, ir.Undefined), splat)
            new.append([builder.call(fma, [a_vec, b[q], acc[r][q]]) for q in range(COLS // 16)])
        k_next = builder.add(k, ir.Constant(i64, 1))
        k.add_incoming(k_next, builder.block)
        for r in range(ROWS):
            for q in range(COLS // 16):
                acc[r][q].add_incoming(new[r][q], builder.block)
        builder.cbranch(builder.icmp_signed("<", k_next, k_len), loop, done)

        builder.position_at_end(done)
        for r in range(ROWS):
            for q in range(COLS // 16):
                builder.store(new[r][q], c_vector(r, q), align=4)
        return context.get_dummy_value()

    return sig, codegen


_jit = nb.njit(cache=True, nogil=True, error_model="numpy")


@_jit
def _tiles(a_base, lda, p_base, c_base, ldc, rows, K, first, last):
    """C[0:rows, panels first..last) = A[0:rows] · those panels; rows a multiple of 4.

    Addresses in bytes, strides in floats: the pooled job (below) has only
    addresses. Each panel's columns are written by this call alone.
    """
    for p in range(first, last):
        for k0 in range(0, K, KC):
            k_len = min(KC, K - k0)
            for r0 in range(0, rows, ROWS):
                _microkernel(a_base + (r0 * lda + k0) * 4, lda, p_base + (p * K + k0) * COLS * 4,
                             c_base + (r0 * ldc + p * COLS) * 4, ldc, k_len, k0)


@_jit
def _leftover_rows(a, panels, c, start):
    """C[start:] = A[start:] · B, row by row: the rows after the last whole 4-row tile."""
    P, K, _ = panels.shape
    for r in range(start, a.shape[0]):
        for p in range(P):
            row = c[r, p * COLS:(p + 1) * COLS]
            row[:] = 0
            for k in range(K):
                a_rk = a[r, k]
                panel_row = panels[p, k]
                for j in range(COLS):
                    row[j] += a_rk * panel_row[j]


@_jit
def _matmul(a, panels, c):
    M, K = a.shape
    full = M - M % ROWS
    _tiles(a.ctypes.data, a.strides[0] // 4, panels.ctypes.data, c.ctypes.data, c.strides[0] // 4,
           full, K, 0, panels.shape[0])
    _leftover_rows(a, panels, c, full)


@_jit
def _pack_transposed(w, panels):
    # Each panel is the transpose of 64 rows of W, taken in 16 × 16 register tiles:
    # 4x faster than a scalar loop (0.59 against 2.35 ms for a 2048 × 512 W_hh).
    for p in range(panels.shape[0]):
        _transpose_f32(w[p * COLS:(p + 1) * COLS], panels[p])


def _host_has_fma() -> bool:
    """The kernel's llvm.fma is one instruction with FMA hardware, a libm call without it."""
    try:
        from llvmlite import binding
        features = binding.get_host_cpu_features()
        return bool(features.get("fma")) and bool(features.get("avx2"))
    except Exception:  # pragma: no cover - an llvmlite that cannot tell: stay on BLAS
        return False


HOST_HAS_FMA = _host_has_fma()


def usable(a_rows: int, n_columns: int, dtype) -> bool:
    """Whether :func:`packed_matmul` serves a product with this many rows of A and columns of C
    (float32, whole 64-column panels, at least one 4-row tile, a CPU with FMA, the kernels
    proven in a child process)."""
    return (HOST_HAS_FMA and np.dtype(dtype) == np.float32 and n_columns % COLS == 0
            and a_rows >= ROWS and llvm_kernels_proven())


def llvm_kernels_proven() -> bool:
    """Whether this module's and :mod:`.transpose`'s LLVM IR kernels passed :func:`prove`
    in a child process (see :mod:`rnnlab.kernels.probes`)."""
    from .probes import proven
    return proven("llvm_kernels")


def prove() -> dict:
    """The check run in a child process: compile the IR kernels and compare their results
    with NumPy's, the packed product within float32 rounding, the transposes bit for bit."""
    from .transpose import add_transposed, transpose_into
    rng = np.random.default_rng(7)
    for M, K, P in ((4, 5, 1), (7, 130, 2), (33, 64, 3)):
        a = rng.standard_normal((M, K)).astype(np.float32)
        w = rng.standard_normal((P * COLS, K)).astype(np.float32)
        out = np.full((M, P * COLS), np.nan, dtype=np.float32)
        packed_matmul(a, pack_transposed(w), out)
        want = a.astype(np.float64) @ w.T.astype(np.float64)
        if not np.abs(out - want).max() <= 1e-5 * K * np.abs(want).max():
            return {"ok": False, "detail": f"packed product ({M}x{K})·({K}x{P * COLS}) is wrong"}
    src = rng.standard_normal((40, 35)).astype(np.float32)
    dst = np.full((35, 40), np.nan, dtype=np.float32)
    if not np.array_equal(transpose_into(src, dst), src.T):
        return {"ok": False, "detail": "the tiled transpose is wrong"}
    scale, bias = (rng.standard_normal(40).astype(np.float32) for _ in range(2))
    acc = rng.standard_normal((35, 40)).astype(np.float32)
    want = acc + (scale * src.T + bias)
    if not np.array_equal(add_transposed(acc, src, scale, bias), want):
        return {"ok": False, "detail": "the tiled transposed add is wrong"}
    return {"ok": True, "detail": "packed product and tiled transposes match NumPy"}


def pack_columns(b: np.ndarray) -> np.ndarray:
    """B (K, P·64) -> panels (P, K, 64)."""
    K, N = b.shape
    return np.ascontiguousarray(b.reshape(K, N // COLS, COLS).transpose(1, 0, 2))


def pack_transposed(w: np.ndarray) -> np.ndarray:
    """Wᵀ for W (P·64, K) -> panels (P, K, 64): the panels of B = Wᵀ, read from W's rows."""
    if w.dtype != np.float32:  # the register tiles are float32; the kernel is too (see usable)
        return pack_columns(w.T)
    N, K = w.shape
    panels = np.empty((N // COLS, K, COLS), dtype=w.dtype)
    _pack_transposed(np.ascontiguousarray(w), panels)
    return panels


# A product runs on OpenBLAS's threads (see blas_pool) from this many multiply-adds,
# M·K·(P·64): 2^20 is (16 × 128)·(128 × 512) or (4 × 256)·(256 × 1024). Handing a job
# to the pool costs ~2 µs from a PanelProduct; below 2^20 the one-core kernel was as
# fast (measured N = 4-256, H = 64-512, both directions of the LSTM's products:
# benchmarks/packed_products.py).
POOL_MIN_MACS = 1 << 20


def pool_threads(rows: int, inner: int, columns: int) -> int:
    """The threads :func:`packed_matmul` should take for (rows × inner)·(inner × columns):
    OpenBLAS's thread count for a product of at least ``POOL_MIN_MACS`` and two panels
    to split, else 1."""
    if rows < ROWS or columns < 2 * COLS or rows * inner * columns < POOL_MIN_MACS:
        return 1
    from . import blas_pool
    return blas_pool.threads()


@lru_cache(maxsize=None)
def _pool_job():
    """The compiled job that runs panels [first, first + m) of a product on one pool thread.

    Its context c is int64 [shift, A, lda, panels, C, ldc, rows, K] (see blas_pool)."""
    from numba import carray

    from .blas_pool import job_signature

    @nb.cfunc(job_signature(), nopython=True, cache=True)
    def job(m, n, k, alpha, a, lda, b, ldb, c, ldc, sb):
        ctx = carray(c, (8,), np.int64)
        first = a >> ctx[0]
        _tiles(ctx[1], ctx[2], ctx[3], ctx[4], ctx[5], ctx[6], ctx[7], first, first + m)

    return job


class PanelProduct:
    """Repeated products out (M, P·64) = A · B on the BLAS pool, for a loop whose A moves
    through one array: the job's context is built once, and a call sets only A's address.

    Building the context per call cost ~9 µs (each ``.ctypes.data`` is ~2 µs), as long as
    the arithmetic of a 32 × 128 product on two threads. A: float32 (M, K) with rows
    ``lda`` floats apart and unit column stride; out: float32, C-contiguous rows.
    """

    def __init__(self, panels: np.ndarray, out: np.ndarray, rows: int, lda: int, threads: int):
        self.panels, self.out, self.threads = panels, out, threads
        self.full = rows - rows % ROWS  # rows in whole tiles; the rest go row by row
        self.rows = rows
        self.context = np.array([0, 0, lda, panels.ctypes.data, out.ctypes.data,
                                 out.strides[0] // 4, self.full, panels.shape[1]], dtype=np.int64)
        from . import blas_pool
        self.run = blas_pool.bound_run(_pool_job().address, panels.shape[0], self.context, threads)

    def __call__(self, a_address: int, a: np.ndarray) -> np.ndarray:
        """out = A · B for A at ``a_address``; ``a`` is that same array (its leftover rows)."""
        self.context[1] = a_address
        self.run()
        if self.full < self.rows:
            _leftover_rows(a, self.panels, self.out, self.full)
        return self.out


def packed_matmul(a: np.ndarray, panels: np.ndarray, out: np.ndarray, threads: int = 1) -> np.ndarray:
    """out (M, P·64) = a (M, K) · B, with B packed by :func:`pack_columns` or :func:`pack_transposed`.

    float32; a and out with unit column stride (rows may be strided). With
    ``threads`` > 1 (from :func:`pool_threads`) the panels are split over
    OpenBLAS's threads (see :class:`PanelProduct` for a loop of products); each
    output element is computed the same way either way, so the result is the
    same bit for bit.
    """
    if threads < 2:
        _matmul(a, panels, out)
        return out
    return PanelProduct(panels, out, a.shape[0], a.strides[0] // 4, threads)(a.ctypes.data, a)
