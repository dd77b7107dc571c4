"""A transposed copy, dst = srcᵀ, in 16 × 16 float32 tiles transposed in registers.

Why: the fused LSTM loops transpose twice. The forward adds each step's
feature-major product (4H, N) into the batch-major gates (N, 4H), and the
backward copies W_hh (4H, H) into a contiguous W_hhᵀ once per sequence.
A scalar copy moves one element per ~2.5 cycles (numba's tiled loop: 52 µs for
a 2048 × 32 product, ~1 ms for a 2048 × 512 weight; NumPy's strided copy is
slower still). Here each 16 × 16 tile is loaded as sixteen 16-float vectors,
transposed by four rounds of two-vector shuffles, and stored as sixteen vectors.

The shuffle rounds: for w = 1, 2, 4, 8 and each pair of rows (i, i + w) with
bit w of i clear, the round swaps element (i, p) with (i + w, p - w) wherever
bit w of p is set. An element (i, p) thus has every bit in which i and p differ
flipped in both indices: it ends at (p, i).

float32 only (the vector width is fixed); other dtypes take the scalar loop.
"""

from __future__ import annotations

import numba as nb
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

__all__ = ["transpose_into", "add_transposed"]

TILE = 16


def _round_masks(w: int):
    """Shuffle masks of one round: (new row i, new row i + w) from rows i (0-15) and i + w (16-31)."""
    low = [p if not p & w else TILE + p - w for p in range(TILE)]
    high = [p + w if not p & w else TILE + p for p in range(TILE)]
    return low, high


def _row_pointer(builder, base, stride, r):
    """Address of row r (a <16 x float>*) of a float matrix with ``stride`` floats per row."""
    i64, v16 = ir.IntType(64), ir.VectorType(ir.FloatType(), TILE)
    pointer = builder.gep(base, [builder.mul(ir.Constant(i64, r), stride)])
    return builder.bitcast(pointer, v16.as_pointer())


def _transposed_rows(builder, src_addr, src_stride):
    """Load the 16 × 16 tile at src_addr and return the 16 rows of its transpose (vectors)."""
    f32, i32 = ir.FloatType(), ir.IntType(32)
    src = builder.inttoptr(src_addr, f32.as_pointer())
    rows = [builder.load(_row_pointer(builder, src, src_stride, r), align=4) for r in range(TILE)]
    w = 1
    while w < TILE:
        low_mask, high_mask = (ir.Constant(ir.VectorType(i32, TILE), m) for m in _round_masks(w))
        for i in range(TILE):
            if i & w:
                continue
            a, b = rows[i], rows[i + w]
            rows[i] = builder.shuffle_vector(a, b, low_mask)
            rows[i + w] = builder.shuffle_vector(a, b, high_mask)
        w *= 2
    return rows


@intrinsic
def _transpose_tile(typingctx, src_addr, src_stride, dst_addr, dst_stride):
    """dst[0:16, 0:16] = src[0:16, 0:16]ᵀ; addresses in bytes, row strides in floats."""
    sig = types.void(types.uintp, types.intp, types.uintp, types.intp)

    def codegen(context, builder, signature, args):
        src_addr, src_stride, dst_addr, dst_stride = args
        rows = _transposed_rows(builder, src_addr, src_stride)
        dst = builder.inttoptr(dst_addr, ir.FloatType().as_pointer())
        for r in range(TILE):
            builder.store(rows[r], _row_pointer(builder, dst, dst_stride, r), align=4)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _add_transposed_tile(typingctx, src_addr, src_stride, dst_addr, dst_stride, scale_addr,
                         bias_addr):
    """dst[i, 0:16] += scale ⊙ src[0:16, i] + bias for i < 16; scale and bias 16 floats each.

    The operations of the scalar ``dst += scale * src + bias``, in its order (no FMA).
    """
    sig = types.void(types.uintp, types.intp, types.uintp, types.intp, types.uintp, types.uintp)

    def codegen(context, builder, signature, args):
        src_addr, src_stride, dst_addr, dst_stride, scale_addr, bias_addr = args
        f32 = ir.FloatType()
        v16_pointer = ir.VectorType(f32, TILE).as_pointer()
        scale = builder.load(builder.inttoptr(scale_addr, v16_pointer), align=4)
        bias = builder.load(builder.inttoptr(bias_addr, v16_pointer), align=4)
        rows = _transposed_rows(builder, src_addr, src_stride)
        dst = builder.inttoptr(dst_addr, f32.as_pointer())
        for r in range(TILE):
            pointer = _row_pointer(builder, dst, dst_stride, r)
            term = builder.fadd(builder.fmul(scale, rows[r]), bias)
            builder.store(builder.fadd(builder.load(pointer, align=4), term), pointer, align=4)
        return context.get_dummy_value()

    return sig, codegen


_jit = nb.njit(cache=True, nogil=True, error_model="numpy")


@_jit
def _transpose_f32(src, dst):
    R, C = src.shape
    src_stride, dst_stride = src.strides[0] // 4, dst.strides[0] // 4
    src_base, dst_base = src.ctypes.data, dst.ctypes.data
    R16, C16 = R - R % TILE, C - C % TILE
    for c0 in range(0, C16, TILE):
        for r0 in range(0, R16, TILE):
            _transpose_tile(src_base + (r0 * src_stride + c0) * 4, src_stride,
                            dst_base + (c0 * dst_stride + r0) * 4, dst_stride)
    for r in range(R16, R):  # the rows and columns left over from whole tiles
        for c in range(C):
            dst[c, r] = src[r, c]
    for r in range(R16):
        for c in range(C16, C):
            dst[c, r] = src[r, c]


@_jit
def _transpose_any(src, dst):
    R, C = src.shape
    for r0 in range(0, R, TILE):
        r1 = min(r0 + TILE, R)
        for c0 in range(0, C, TILE):
            c1 = min(c0 + TILE, C)
            for c in range(c0, c1):
                d = dst[c]
                for r in range(r0, r1):
                    d[r] = src[r, c]


@_jit
def _add_transposed_f32(dst, src, scale, bias):
    N, G = dst.shape
    src_stride, dst_stride = src.strides[0] // 4, dst.strides[0] // 4
    src_base, dst_base = src.ctypes.data, dst.ctypes.data
    scale_base, bias_base = scale.ctypes.data, bias.ctypes.data
    N16, G16 = N - N % TILE, G - G % TILE
    for n0 in range(0, N16, TILE):
        for k0 in range(0, G16, TILE):
            _add_transposed_tile(src_base + (k0 * src_stride + n0) * 4, src_stride,
                                 dst_base + (n0 * dst_stride + k0) * 4, dst_stride,
                                 scale_base + k0 * 4, bias_base + k0 * 4)
    for n in range(N):  # the rows and columns left over from whole tiles
        for k in range(G16 if n < N16 else 0, G):
            dst[n, k] += scale[k] * src[k, n] + bias[k]


@_jit
def _add_transposed_any(dst, src, scale, bias):
    N, G = dst.shape
    for n in range(N):
        d = dst[n]
        for k in range(G):
            d[k] += scale[k] * src[k, n] + bias[k]


def _tiles_apply(*arrays) -> bool:
    """Whether the register-tile kernels can take these arrays (float32, unit column stride)
    and have proven themselves in a child process (see :func:`.packed_gemm.prove`)."""
    if not all(a.dtype == np.float32 and a.strides[-1] == 4 for a in arrays):
        return False
    from .packed_gemm import llvm_kernels_proven
    return llvm_kernels_proven()


def add_transposed(dst: np.ndarray, src: np.ndarray, scale: np.ndarray,
                   bias: np.ndarray) -> np.ndarray:
    """dst (N, G) += scale ⊙ srcᵀ + bias, for src (G, N), scale and bias (G,); returns dst.

    Each element as ``dst[n, k] += scale[k] * src[k, n] + bias[k]``, in that order,
    whichever path runs: register tiles for float32 arrays with unit column
    stride, a scalar loop otherwise.
    """
    if _tiles_apply(dst, src, scale, bias):
        _add_transposed_f32(dst, src, scale, bias)
    else:
        _add_transposed_any(dst, src, scale, bias)
    return dst


def transpose_into(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """dst (C, R) = src (R, C)ᵀ and return dst (both 2-D).

    float32 with unit column stride goes through the register-tile kernel;
    anything else through a scalar loop in tiles of the same size.
    """
    if _tiles_apply(src, dst):
        _transpose_f32(src, dst)
    else:
        _transpose_any(src, dst)
    return dst
