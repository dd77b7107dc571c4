"""Time chosen grid points exactly as `rnnlab bench` times them (same harness, same
settle times), against torch and rnnlab's NumPy reference: to check a fix at the points
it was meant for without the whole grid.

    python benchmarks/bench_points.py lstm:1:8:128:64 lstm:1:64:128:64

Each POINT is MODEL:d:n:m:T. Prints one line per point: the plan that ran, rnnlab / torch,
rnnlab / reference and the medians in ms.
"""

from __future__ import annotations

import argparse

from rnnlab.bench import BenchConfig, Point
from rnnlab.bench.machine import pinned_threads
from rnnlab.bench.models import import_torch
from rnnlab.bench.runner import _idle_spins, _settle_times, _time_point


def _point(text: str) -> Point:
    model, *sizes = text.split(":")
    if len(sizes) != 4:
        raise argparse.ArgumentTypeError(f"expected MODEL:d:n:m:T, got {text!r}")
    return Point(model, *(int(s) for s in sizes))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("points", nargs="+", type=_point, metavar="POINT")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch = import_torch()
    if torch is None:
        parser.error("torch is not installed")
    config = BenchConfig(grid="full", vs=("torch", "reference"), threads=args.threads)
    with pinned_threads(args.threads, torch):
        settle = _settle_times(_idle_spins(torch, None), ("numpy_blas", "torch", "numpy_blas"))
        for point in args.points:
            row = _time_point(point, config, settle)
            print(f"{point.label()}: plan {row['loops']}, rnnlab / torch {row['ratio']:.3f}, "
                  f"rnnlab / reference {row['ratio_reference']:.3f}; medians "
                  f"{row['rnnlab_median_s'] * 1e3:.3f} / {row['torch_median_s'] * 1e3:.3f} / "
                  f"{row['reference_median_s'] * 1e3:.3f} ms")


if __name__ == "__main__":
    main()
