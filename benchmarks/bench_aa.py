"""An A/A test of the bench harness: identical steps timed against each other.

Two instances of rnnlab's NumPy reference step and two of rnnlab's own step, at three
sub-millisecond grid points, interleaved in rounds with the settle times and budgets of
`rnnlab bench --grid full`. Identical work should give ratios of 1; the spread shows how
finely the harness resolves a ratio at such steps.

    python benchmarks/bench_aa.py
"""

from __future__ import annotations

import gc

from threadpoolctl import threadpool_limits

from rnnlab.bench import Point, build_sides, interleave, summarize
from rnnlab.bench.machine import pinned_threads
from rnnlab.bench.runner import _idle_spins, _settle_times

POINTS = [Point("rnn", 32, 8, 32, 16), Point("rnn", 32, 8, 128, 1), Point("mlp", 32, 8, 128, 16)]


def main() -> None:
    with pinned_threads(2, None):
        spin = _idle_spins(None, None)
        for point in POINTS:
            first, second = build_sides(point, ("reference",)), build_sides(point, ("reference",))
            steps = [first[0].step, first[1].step, second[1].step, second[0].step]
            for step in steps:
                step()
            gc.collect()
            gc.disable()
            try:
                with threadpool_limits(2, "blas"):
                    samples = interleave(steps, budget=1.0, warmup=3, min_repeats=12,
                                         max_repeats=None,
                                         settle=_settle_times(spin, ["numpy_blas"] * 4),
                                         block=0.05, min_rounds=6, warmup_budget=1.0,
                                         counted=[True] * 4)
            finally:
                gc.enable()
            rnnlab, reference, reference2, rnnlab2 = (summarize(s).median for s in samples)
            print(f"{point.label()}: reference' / reference {reference2 / reference:.3f}, "
                  f"rnnlab' / rnnlab {rnnlab2 / rnnlab:.3f}, rnnlab / reference "
                  f"{rnnlab / reference:.3f}")


if __name__ == "__main__":
    main()
