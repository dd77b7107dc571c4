"""The register-tile transposes of the fused LSTM loops (rnnlab.kernels.transpose),
against NumPy: random shapes around the 16 × 16 tile, strided rows, both dtypes, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

from rnnlab.functional.backend import numba_available

pytestmark = pytest.mark.skipif(not numba_available(), reason="the transposes are compiled")

DTYPES = [np.float32, np.float64]


def _shapes(rng, count):
    """Random (rows, columns): whole tiles, leftovers, and fewer than one tile."""
    fixed = [(16, 16), (1, 1), (15, 17), (32, 48)]
    return fixed + [tuple(int(v) for v in rng.integers(1, 70, size=2)) for _ in range(count)]


@pytest.mark.parametrize("dtype", DTYPES)
def test_transpose_into_equals_numpy(dtype):
    from rnnlab.kernels.transpose import transpose_into
    rng = np.random.default_rng(101)
    for R, C in _shapes(rng, 12):
        wide = rng.standard_normal((R + 3, C + 7)).astype(dtype)
        src = wide[1:R + 1, 2:C + 2]  # rows C + 7 apart
        dst_wide = np.full((C + 2, R + 5), np.nan, dtype=dtype)
        dst = dst_wide[1:C + 1, 3:R + 3]
        assert transpose_into(src, dst) is dst
        np.testing.assert_array_equal(dst, src.T, err_msg=f"{R}x{C}")
        # nothing outside dst was written
        assert np.isnan(dst_wide[0]).all() and np.isnan(dst_wide[:, :3]).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_add_transposed_equals_numpy(dtype):
    """dst += scale ⊙ srcᵀ + bias, element by element in that order: NumPy's result exactly."""
    from rnnlab.kernels.transpose import add_transposed
    rng = np.random.default_rng(103)
    for N, G in _shapes(rng, 12):
        dst = rng.standard_normal((N, G)).astype(dtype)
        src = rng.standard_normal((G, N)).astype(dtype)
        scale = rng.choice([0.5, 1.0, -2.0], size=G).astype(dtype)
        bias = rng.standard_normal(G).astype(dtype)
        want = dst + (scale * src.T + bias)
        assert add_transposed(dst, src, scale, bias) is dst
        np.testing.assert_array_equal(dst, want, err_msg=f"{N}x{G}")


@pytest.mark.parametrize("dtype", DTYPES)
def test_any_strides_take_the_scalar_loop(dtype):
    """Column-strided or Fortran-ordered arrays: still the right numbers."""
    from rnnlab.kernels.transpose import add_transposed, transpose_into
    rng = np.random.default_rng(107)
    src = np.asfortranarray(rng.standard_normal((35, 20)).astype(dtype))
    dst = np.empty((40, 35), dtype=dtype)[::2]  # rows 2 apart, unit column stride
    np.testing.assert_array_equal(transpose_into(src, dst), src.T)
    wide = rng.standard_normal((20, 70)).astype(dtype)
    src_strided = wide[:, ::2]  # (20, 35), columns 2 apart
    np.testing.assert_array_equal(transpose_into(src_strided, np.empty((35, 20), dtype)),
                                  src_strided.T)
    acc = rng.standard_normal((35, 20)).astype(dtype)
    scale, bias = rng.standard_normal(20).astype(dtype), rng.standard_normal(20).astype(dtype)
    want = acc + (scale * src_strided.T + bias)
    np.testing.assert_array_equal(add_transposed(acc, src_strided, scale, bias), want)
