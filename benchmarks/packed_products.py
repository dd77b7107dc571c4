#!/usr/bin/env python
"""The LSTM's per-step recurrent products: OpenBLAS against the packed-weight kernel.

For each batch N and hidden size H it times both products of a step, the
forward h (N, H) · W_hhᵀ (H, 4H) and the backward dpre (N, 4H) · W_hh (4H, H),
three ways, the calls alternating as in a training step (so that OpenBLAS's
idle worker spins as it would in a step):

- ``blas``: OpenBLAS, in the layout the fused loops would give it
  (feature-major for N ≤ H/8, batch-major above);
- ``one``: :mod:`rnnlab.kernels.packed_gemm` on a weight packed once, one core;
- ``pool``: the same kernel with the panels split over OpenBLAS's own threads
  (:mod:`rnnlab.kernels.blas_pool`), called as the loops call it
  (:class:`rnnlab.kernels.packed_gemm.PanelProduct`).

It prints the median µs of each and marks with * the way rnnlab takes
(``loops_fused._product_threads``). The rules in ``loops_fused`` and
``packed_gemm.POOL_MIN_MACS`` come from this table.

    python benchmarks/packed_products.py --threads 2
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

try:
    import rnnlab  # noqa: F401
except ImportError:  # a checkout that is not installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from rnnlab.bench.machine import pinned_threads  # noqa: E402
from rnnlab.kernels import loops_fused, packed_gemm  # noqa: E402


def alternate(calls, repeats: int) -> list[float]:
    """Median seconds of each callable, run one after the other ``repeats`` times."""
    for _ in range(5):
        for call in calls:
            call()
    times = [[] for _ in calls]
    for _ in range(repeats):
        for call, samples in zip(calls, times):
            t0 = time.perf_counter()
            call()
            samples.append(time.perf_counter() - t0)
    return [float(np.median(samples)) for samples in times]


def _products(n: int, hidden: int, rng):
    """(label, blas, one, pool, taken) for the forward and the backward product."""
    from rnnlab.kernels import blas_pool
    G = 4 * hidden
    w = rng.standard_normal((G, hidden)).astype(np.float32)
    w_t = np.ascontiguousarray(w.T)  # (H, 4H): the backward's feature-major copy
    h = rng.standard_normal((n, hidden)).astype(np.float32)
    d = rng.standard_normal((n, G)).astype(np.float32)
    out, out_t = np.empty((n, G), np.float32), np.empty((G, n), np.float32)
    dh, dh_t = np.empty((n, hidden), np.float32), np.empty((hidden, n), np.float32)
    feature_major = loops_fused._feature_major_product(n, hidden)
    pool = blas_pool.threads()
    rows = []
    for label, a, panels, result, want, blas in (
            ("fwd", h, packed_gemm.pack_transposed(w), out, h @ w.T,
             (lambda: np.matmul(w, h.T, out=out_t)) if feature_major
             else (lambda: np.matmul(h, w.T, out=out))),
            ("bwd", d, packed_gemm.pack_columns(w), dh, d @ w,
             (lambda: np.matmul(w_t, d.T, out=dh_t)) if feature_major
             else (lambda: np.matmul(d, w, out=dh)))):
        packed_gemm.packed_matmul(a, panels, result)
        np.testing.assert_allclose(result, want, rtol=1e-4, atol=1e-3)

        def one(a=a, panels=panels, result=result):
            packed_gemm.packed_matmul(a, panels, result, threads=1)

        product = packed_gemm.PanelProduct(panels, result, n, a.strides[0] // 4, pool) if pool > 1 else None

        def pooled(a=a, address=a.ctypes.data, product=product):
            product(address, a)  # as the loops call it, with A's address known

        taken = loops_fused._product_threads(n, hidden, result.shape[1], np.float32)
        rows.append((label, blas, one, pooled if pool > 1 else None,
                     "blas" if taken == 0 else "one" if taken == 1 else "pool"))
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="BLAS threads [2]")
    parser.add_argument("--repeats", type=int, default=100)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    print("median µs per product; * = the way rnnlab takes")
    print(f"{'H':>4} {'N':>4} dir {'blas':>9} {'one':>9} {'pool':>9}")
    with pinned_threads(args.threads):
        for hidden in (64, 128, 256, 512):
            for n in (4, 8, 16, 32, 64, 128, 256):
                for label, blas, one, pooled, taken in _products(n, hidden, rng):
                    ways = {"blas": blas, "one": one, "pool": pooled}
                    ways = {name: call for name, call in ways.items() if call is not None}
                    medians = dict(zip(ways, alternate(list(ways.values()), args.repeats)))
                    cells = [f"{medians[name] * 1e6:8.0f}{'*' if name == taken else ' '}"
                             if name in medians else f"{'-':>8} " for name in ("blas", "one", "pool")]
                    print(f"{hidden:>4} {n:>4} {label} " + " ".join(cells), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
