"""A float32 GEMM on a weight packed once, for the per-step products of the LSTM.

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

It runs on one thread. On two (numba's ``prange``) it was 2x faster than
OpenBLAS in isolation, but 1.3-3x *slower* inside a training step: OpenBLAS's
idle worker spins on the second core for ~0.13 s after every BLAS call of the
step, and the second numba thread fought it for that core at every step. On
one core it still beats OpenBLAS's two for small products, where OpenBLAS's
per-call packing dominates: (32 × 128)·(128 × 512) 27 against 45 µs,
(8 × 512)·(512 × 2048) 213 against 319 µs, measured alternating with BLAS
calls as in a step (the rule that picks it is in :mod:`._loops_fused`).

Only float32 (the vector width is fixed); callers check :func:`usable`.
"""

from __future__ import annotations

import numba as nb
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

__all__ = ["COLS", "usable", "pack_columns", "pack_transposed", "packed_matmul"]

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
def _matmul(a, panels, c):
    M, K = a.shape
    P = panels.shape[0]
    lda, ldc = a.strides[0] // 4, c.strides[0] // 4
    a_base, p_base, c_base = a.ctypes.data, panels.ctypes.data, c.ctypes.data
    full = M - M % ROWS
    for p in range(P):
        for k0 in range(0, K, KC):
            k_len = min(KC, K - k0)
            for r0 in range(0, full, ROWS):
                _microkernel(a_base + (r0 * lda + k0) * 4, lda, p_base + (p * K + k0) * COLS * 4,
                             c_base + (r0 * ldc + p * COLS) * 4, ldc, k_len, k0)
        for r in range(full, M):
            row = c[r, p * COLS:(p + 1) * COLS]
            row[:] = 0
            for k in range(K):
                a_rk = a[r, k]
                panel_row = panels[p, k]
                for j in range(COLS):
                    row[j] += a_rk * panel_row[j]


@_jit
def _pack_transposed(w, panels):
    P, K, _ = panels.shape
    for p in range(P):
        for j in range(COLS):
            w_row = w[p * COLS + j]
            for k in range(K):
                panels[p, k, j] = w_row[k]


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
    (float32, whole 64-column panels, at least one 4-row tile, a CPU with FMA)."""
    return (HOST_HAS_FMA and np.dtype(dtype) == np.float32 and n_columns % COLS == 0
            and a_rows >= ROWS)


def pack_columns(b: np.ndarray) -> np.ndarray:
    """B (K, P·64) -> panels (P, K, 64)."""
    K, N = b.shape
    return np.ascontiguousarray(b.reshape(K, N // COLS, COLS).transpose(1, 0, 2))


def pack_transposed(w: np.ndarray) -> np.ndarray:
    """Wᵀ for W (P·64, K) -> panels (P, K, 64): the panels of B = Wᵀ, read from W's rows."""
    N, K = w.shape
    panels = np.empty((N // COLS, K, COLS), dtype=w.dtype)
    _pack_transposed(np.ascontiguousarray(w), panels)
    return panels


def packed_matmul(a: np.ndarray, panels: np.ndarray, out: np.ndarray) -> np.ndarray:
    """out (M, P·64) = a (M, K) · B, with B packed by :func:`pack_columns` or :func:`pack_transposed`.

    float32; a and out with unit column stride (rows may be strided).
    """
    _matmul(a, panels, out)
    return out
