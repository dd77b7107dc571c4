#!/usr/bin/env python
"""Which layout of the Linear forward product is faster, batch-major or feature-major?

For each (rows, in, out) it times, interleaved A B A B under the same thread
count:

- batch-major:   y = x · Wᵀ, then y += b                        (rnnlab's default)
- feature-major: yᵀ = W · xᵀ, then y = yᵀᵀ + b in one pass      (the transposed copy included)

and prints the ratio batch-major / feature-major (above 1: feature-major wins).
:data:`rnnlab.functional.linear.FEATURE_MAJOR_ROWS` and ``FEATURE_MAJOR_MIN_WEIGHT``
were set from this table; the rule they encode is printed next to each cell (*).

    python benchmarks/linear_layout.py --threads 2
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

try:
    import rnnlab  # noqa: F401
except ImportError:  # a checkout that is not installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from rnnlab.bench.machine import pinned_threads  # noqa: E402
from rnnlab.bench.timing import interleave  # noqa: E402
from rnnlab.functional.linear import _feature_major_pays  # noqa: E402


def ratio(rows: int, n_in: int, n_out: int, budget: float, rng) -> float:
    x = rng.standard_normal((rows, n_in)).astype(np.float32)
    w = rng.standard_normal((n_out, n_in)).astype(np.float32)
    b = rng.standard_normal(n_out).astype(np.float32)
    y_t = np.empty((n_out, rows), dtype=np.float32)

    def batch_major():
        y = x @ w.T
        y += b
        return y

    def feature_major():
        np.matmul(w, x.T, out=y_t)
        y = np.empty((rows, n_out), dtype=np.float32)
        np.add(y_t.T, b, out=y)
        return y

    np.testing.assert_allclose(batch_major(), feature_major(), rtol=1e-4, atol=1e-3)
    a, f = interleave([batch_major, feature_major], budget=budget, warmup=3, min_repeats=20)
    return float(np.median(a) / np.median(f))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--budget", type=float, default=0.2, help="seconds per cell")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    rows_grid = (1, 8, 16, 32, 64, 128, 256)
    print("batch-major / feature-major time; * = rnnlab takes feature-major")
    print(f"{'out':>4} {'in':>5} " + " ".join(f"{'rows=' + str(r):>10}" for r in rows_grid))
    with pinned_threads(args.threads):
        for n_out in (32, 128, 512):
            for n_in in (8, 64, 512, 4096):
                weight = np.empty((n_out, n_in), dtype=np.float32)
                cells = []
                for rows in rows_grid:
                    mark = "*" if _feature_major_pays(rows, weight) else " "
                    cells.append(f"{ratio(rows, n_in, n_out, args.budget, rng):9.2f}{mark}")
                print(f"{n_out:>4} {n_in:>5} " + " ".join(cells), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
