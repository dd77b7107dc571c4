#!/usr/bin/env python
"""The LSTM's per-step recurrent product: OpenBLAS against the packed-weight kernel.

For each batch N and hidden size H it times h (N, H) · W_hhᵀ (H, 4H) as the
fused forward runs it without packing (OpenBLAS, feature-major for N ≤ H/8,
batch-major above) and as :mod:`rnnlab.functional._packed` runs it (W_hh
packed once, one core), alternating the two calls as a training step does,
so that OpenBLAS's idle worker is spinning as it would be in a step. It
prints BLAS time / packed time (above 1: packed wins) and marks with * the
cells where rnnlab takes the packed kernel (``PACKED_MAX_UNITS``).

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
from rnnlab.functional import _loops_fused, _packed  # noqa: E402


def alternate(first, second, repeats: int):
    """Median seconds of each of two callables, run one after the other ``repeats`` times."""
    for _ in range(5):
        first()
        second()
    a, b = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        first()
        t1 = time.perf_counter()
        second()
        b.append(time.perf_counter() - t1)
        a.append(t1 - t0)
    return float(np.median(a)), float(np.median(b))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="BLAS threads [2]")
    parser.add_argument("--repeats", type=int, default=150)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    batches = (4, 8, 16, 32, 64, 128)
    print("BLAS time / packed time of h · W_hhᵀ; * = rnnlab packs")
    print(f"{'H':>4} " + " ".join(f"{'N=' + str(n):>9}" for n in batches))
    with pinned_threads(args.threads):
        for hidden in (64, 128, 256, 512):
            G = 4 * hidden
            w = rng.standard_normal((G, hidden)).astype(np.float32)
            panels = _packed.pack_transposed(w)
            cells = []
            for n in batches:
                h = rng.standard_normal((n, hidden)).astype(np.float32)
                out, out_t = np.empty((n, G), np.float32), np.empty((G, n), np.float32)
                if _loops_fused._feature_major_product(n, hidden):
                    def blas():
                        np.matmul(w, h.T, out=out_t)
                else:
                    def blas():
                        np.matmul(h, w.T, out=out)
                blas()
                _packed.packed_matmul(h, panels, out)
                np.testing.assert_allclose(out, h @ w.T, rtol=1e-4, atol=1e-3)
                t_blas, t_packed = alternate(blas, lambda: _packed.packed_matmul(h, panels, out),
                                             args.repeats)
                mark = "*" if _loops_fused._packed_product(n, hidden, G, np.float32) else " "
                cells.append(f"{t_blas / t_packed:8.2f}{mark}")
            print(f"{hidden:>4} " + " ".join(cells), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
