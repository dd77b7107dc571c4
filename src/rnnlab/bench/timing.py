"""The timing harness: interleaved repeats under a time budget, and their statistics.

Method (see DESIGN.md, "How performance is shown"):

1. warm-up: each callable runs ``warmup`` times, alternating, untimed;
2. timed rounds, interleaved A B A B ...: each round gives each callable a
   block of back-to-back calls, each timed with ``time.perf_counter``, after a
   short sleep that lets the other library's idle threads stop spinning
   (see :func:`interleave`); rounds go on until the budget is spent and each
   callable has at least ``min_repeats`` timed calls;
3. per callable: median, p10 and p90 of the per-call times.

Interleaving puts both sides under the same machine noise (frequency changes,
other processes), so that their ratio holds on a noisy machine even when the
absolute times drift. The settle sleep keeps the interleaving from adding a
noise of its own: without it, on this 2-core machine, OpenBLAS workers that
spin for ~0.13 s after rnnlab's step took a core from torch's next step and
made it up to 10× slower than alone.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import numpy as np

__all__ = ["Stats", "percentile", "summarize", "interleave", "idle_spin", "square_gemm",
           "gemm_throughput"]


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) of already sorted values, interpolated linearly
    between the two nearest ranks (numpy's default "linear" method)."""
    n = len(sorted_values)
    if n == 0:
        raise ValueError("percentile of an empty sample")
    if not 0 <= q <= 100:
        raise ValueError(f"q must be in [0, 100], got {q}")
    pos = (n - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, n - 1)
    frac = pos - lo
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * frac


@dataclass(frozen=True)
class Stats:
    """Summary of a sample of times (seconds)."""

    n: int
    median: float
    p10: float
    p90: float
    mean: float
    min: float
    max: float

    def as_dict(self) -> dict:
        return asdict(self)


def summarize(samples: Sequence[float]) -> Stats:
    """Median, p10, p90, mean, min and max of a non-empty sample."""
    values = sorted(float(s) for s in samples)
    if not values:
        raise ValueError("summarize: empty sample")
    return Stats(n=len(values), median=percentile(values, 50), p10=percentile(values, 10),
                 p90=percentile(values, 90), mean=sum(values) / len(values),
                 min=values[0], max=values[-1])


def interleave(fns: Sequence[Callable[[], object]], *, budget: float, warmup: int = 3,
               min_repeats: int = 5, max_repeats: int | None = None,
               settle: float | Sequence[float] = 0.0,
               block: float = 0.0, min_rounds: int = 1, warmup_budget: float | None = None,
               counted: Sequence[bool] | None = None,
               clock: Callable[[], float] = time.perf_counter,
               sleep: Callable[[float], None] = time.sleep) -> list[list[float]]:
    """Time callables in interleaved rounds, A B A B ..., until ``budget`` seconds are spent.

    Each round gives every callable, in order, one *block*:

    1. with a settle time > 0: sleep that long, so that the thread pool of the
       previous block's library stops spinning (OpenBLAS workers busy-wait about
       0.13 s after each call, and on a 2-core machine they take a core from the
       other library); then one untimed call, if this callable's last call took
       less than the longest settle time, to wake its own threads as a training loop
       has them;
    2. timed calls back to back until ``block`` seconds have passed (at least one).

    With ``settle = block = 0`` this is strict per-call alternation A B A B.

    Args:
        fns: the callables.
        budget: seconds from the first timed round on (warm-up excluded).
        warmup: untimed calls of each callable first, alternating.
        warmup_budget: end the warm-up after the first round once this many seconds
            have passed (None: all ``warmup`` rounds).
        min_repeats: timed calls per callable before stopping, even past the budget.
        max_repeats: stop once a callable has this many timed calls (None: no cap).
        settle: seconds of sleep before each block (see above): one value for all, or one
            per callable (the sleep before its blocks, which follow the previous
            callable's: OpenBLAS spins far longer than torch's OpenMP threads).
        block: seconds of back-to-back timed calls per block.
        min_rounds: rounds before stopping, even past the budget.
        counted: per callable, whether its timed calls count toward ``min_repeats`` and
            ``max_repeats`` (None: all do). A yardstick timed in the same rounds, such as a
            GEMM beside a training step, should not end or lengthen the step's rounds.
        clock, sleep: the timer and the sleep (fakes in tests).

    Returns:
        one list of per-call times (seconds) per callable.
    """
    if not fns:
        raise ValueError("interleave: no callables")
    fns = list(fns)
    settles = [float(settle)] * len(fns) if np.ndim(settle) == 0 else [float(s) for s in settle]
    if len(settles) != len(fns):
        raise ValueError(f"interleave: expected one settle time per callable ({len(fns)}), "
                         f"got {len(settles)}")
    # The first step after a sleep runs cold (measured: 53 against 46 ms for an LSTM step
    # that had 32 ms of sleep and no waking call): every side gets the waking call for
    # steps shorter than the longest settle time, so that none pays this more than another.
    wake_below = max(settles)
    counted = [True] * len(fns) if counted is None else [bool(c) for c in counted]
    if len(counted) != len(fns) or not any(counted):
        raise ValueError(f"interleave: counted needs one flag per callable ({len(fns)}), at "
                         f"least one true; got {counted}")
    if (budget < 0 or warmup < 0 or min_repeats < 1 or min(settles) < 0 or block < 0
            or min_rounds < 1):
        raise ValueError(f"interleave: need budget, warmup, settle, block >= 0 and min_repeats, "
                         f"min_rounds >= 1; got {budget}, {warmup}, {settle}, {block}, "
                         f"{min_repeats}, {min_rounds}")
    last = [0.0] * len(fns)  # the latest time of each callable
    warm_start = clock()
    for _ in range(warmup):
        for i, fn in enumerate(fns):
            t0 = clock()
            fn()
            last[i] = clock() - t0
        if warmup_budget is not None and clock() - warm_start >= warmup_budget:
            break
    samples: list[list[float]] = [[] for _ in fns]
    cap = math.inf if max_repeats is None else max_repeats
    rounds = 0
    start = clock()
    while True:
        for i, fn in enumerate(fns):
            append = samples[i].append
            if settles[i] > 0:
                sleep(settles[i])
                if last[i] < wake_below:
                    fn()
            block_start = clock()
            while True:
                t0 = clock()
                fn()
                t1 = clock()
                append(t1 - t0)
                if t1 - block_start >= block or (counted[i] and len(samples[i]) >= cap):
                    break
            last[i] = samples[i][-1]
        rounds += 1
        timed = [len(s) for s, c in zip(samples, counted) if c]
        if any(n >= cap for n in timed):
            break
        if (rounds >= min_rounds and all(n >= min_repeats for n in timed)
                and clock() - start >= budget):
            break
    return samples


def idle_spin(fn: Callable[[], object], *, limit: float = 0.5, tick: float = 0.005,
              quiet: float = 0.2) -> float:
    """Seconds during which a library's idle threads keep a CPU busy after ``fn`` returns.

    Calls ``fn`` and then sleeps in ``tick`` steps, watching this process's CPU
    time: the spin is over once 50 ms pass with less than ``quiet`` of a core in
    use. OpenBLAS workers spin about 2^28 cycles (~0.13 s here) by default;
    OpenMP (torch) a millisecond or so. It sets the settle time of :func:`interleave`.
    """
    fn()
    start = prev_wall = time.perf_counter()
    prev_cpu = time.process_time()
    last_busy = start
    while True:
        time.sleep(tick)
        wall, cpu = time.perf_counter(), time.process_time()
        if cpu - prev_cpu > quiet * (wall - prev_wall):
            last_busy = wall
        elif wall - last_busy > 0.05 or wall - start > limit:
            break
        prev_wall, prev_cpu = wall, cpu
    return last_busy - start


def square_gemm(size: int = 2048, *, dtype=np.float32,
                seed: int = 0) -> tuple[Callable[[], None], int]:
    """One square product C = A · B of NumPy's BLAS, as a callable, and its FLOPs (2·size³).

    A and B are random (size × size) arrays of ``dtype``; C is preallocated, so a
    call is ``np.matmul(a, b, out=c)`` and nothing else.
    """
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((size, size)).astype(dtype)
    b = rng.standard_normal((size, size)).astype(dtype)
    c = np.empty((size, size), dtype=dtype)

    def product():
        np.matmul(a, b, out=c)

    return product, 2 * size ** 3


def gemm_throughput(size: int = 2048, *, budget: float = 1.0, min_repeats: int = 5,
                    dtype=np.float32, seed: int = 0) -> dict:
    """The float32 GEMM throughput of NumPy's BLAS: a square (size × size) product.

    Times :func:`square_gemm` after one warm-up call, under whatever thread limit
    is active.

    Returns:
        dict with size, dtype, flops, repeats, median/p10/p90 seconds, and
        ``gflops`` (from the median) and ``gflops_best`` (from the fastest call).
    """
    product, flops = square_gemm(size, dtype=dtype, seed=seed)
    (times,) = interleave([product], budget=budget, warmup=1, min_repeats=min_repeats)
    stats = summarize(times)
    return {"size": size, "dtype": np.dtype(dtype).name, "flops": flops, "repeats": stats.n,
            "median_s": stats.median, "p10_s": stats.p10, "p90_s": stats.p90,
            "gflops": flops / stats.median / 1e9, "gflops_best": flops / stats.min / 1e9}
