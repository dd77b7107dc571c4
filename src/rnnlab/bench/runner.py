"""Run a benchmark grid and summarise it (:mod:`.render` writes and prints the results).

``run_timing`` times one training step per grid point, rnnlab against its peers
(:mod:`.peers`: torch, jax, rnnlab's NumPy reference; interleaved, same weights,
same data, same thread count), and sets each
point's achieved GFLOP/s against NumPy's float32 GEMM throughput measured in
the same run (before and after the grid; the higher of the two is the peak).
``run_memory`` traces the peak memory of an rnnlab training step per point
against the BPTT minimum.
"""

from __future__ import annotations

import datetime as _dt
import gc
import math
import time
from typing import Callable

import numpy as np
from threadpoolctl import threadpool_limits

from ..analysis.complexity import MODELS, model_params, model_training_flops
from .config import NOISY, PEERS, BenchConfig
from .grid import grid_points
from .machine import (OtherLoad, backend, loadavg, loops_for, machine_facts, pinned_threads,
                      wait_for_quiet)
from .memory import step_peak_memory
from .models import Point, import_torch
from .peers import PEER_LIBRARY, build_sides, import_jax
from .timing import gemm_throughput, idle_spin, interleave, square_gemm, summarize

__all__ = ["run_timing", "run_memory", "summarize_ratios"]



def _now() -> str:
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")


def _progress(console, enabled: bool):
    """A rich progress bar over grid points (a no-op stand-in when disabled)."""
    if not enabled:
        class _Null:
            def __enter__(self):
                return self

            def __exit__(self, *exc):
                return False

            def add_task(self, *a, **k):
                return 0

            def update(self, *a, **k):
                pass

        return _Null()
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=console, transient=True)


def _geomean(values) -> float | None:
    values = [v for v in values if v is not None and v > 0]
    if not values:
        return None
    return math.exp(sum(math.log(v) for v in values) / len(values))


# ------------------------------------------------------------------ timing


def _time_point(point: Point, config: BenchConfig, settle: list[float],
                gemm: tuple | None = None) -> dict:
    """Time one point: rnnlab's step, ``gemm`` = (callable, FLOPs) if given, then each peer's
    step (``config.vs``), in interleaved rounds in that order (``settle``: one sleep per
    callable, see :func:`_settle_times`)."""
    point_start = time.perf_counter()
    gemm_fn = None if gemm is None else gemm[0]
    sides = build_sides(point, config.vs, seed=config.seed, lr=config.lr,
                        momentum=config.momentum)
    # The GEMM goes right after rnnlab, so that each side follows what it follows at every
    # other point: rnnlab the last peer's step, the first peer an OpenBLAS call.
    fns = [sides[0].step] + ([gemm_fn] if gemm_fn is not None else []) + [s.step for s in sides[1:]]
    for fn in fns:  # the first step compiles (numba, XLA) and loads lazy libraries
        fn()
    gc.collect()
    gc_was_enabled = gc.isenabled()
    gc.disable()  # no collector pauses inside the timed rounds, on any side
    try:
        # Pin again: a BLAS library loaded by the first step is pinned too.
        with threadpool_limits(limits=config.threads, user_api="blas"), OtherLoad() as other:
            samples = interleave(fns, budget=config.budget, warmup=config.warmup,
                                 min_repeats=config.min_repeats, max_repeats=config.max_repeats,
                                 settle=settle, block=config.block,
                                 min_rounds=config.min_rounds, warmup_budget=config.budget,
                                 counted=[fn is not gemm_fn for fn in fns])
    finally:
        if gc_was_enabled:
            gc.enable()
    side_samples = [samples[0]] + samples[1 + (gemm_fn is not None):]
    shape = (point.model, point.d, point.n, point.m, point.T, point.k)
    row = {**point.as_dict(),
           "loops": None if point.model == "mlp" else loops_for(
               point.d, point.m, {"rnn": "rnn_tanh"}.get(point.model, point.model), point.T),
           "params": sum(model_params(point.model, point.n, point.m, point.T, point.k).values()),
           "flops": model_training_flops(*shape, input_grad=False),
           "flops_rnnlab": model_training_flops(*shape, input_grad=False, zero_start=True)}
    # The share of a GEMM timed in the same rounds follows the machine as the point ran;
    # the run's peak (start and end) does not: it moved 173 -> 305 GFLOP/s within one run.
    row["gemm_local_gflops"] = (None if gemm is None
                                else gemm[1] / summarize(samples[1]).median / 1e9)
    # Each side's GFLOP/s counts the GEMM work it does. None computes the gradient of the
    # data; rnnlab (and its reference) also skip the products with the zero initial state.
    for name in ("torch",) + config.vs:  # torch's columns always, None when not timed
        for key in ("median_s", "p10_s", "p90_s", "repeats", "gflops", "local_share", "loss"):
            row[f"{name}_{key}"] = None
    for side, times in zip(sides, side_samples):
        stats = summarize(times)
        g = row[side.flops_key] / stats.median / 1e9
        row.update({f"{side.name}_median_s": stats.median, f"{side.name}_p10_s": stats.p10,
                    f"{side.name}_p90_s": stats.p90, f"{side.name}_repeats": stats.n,
                    f"{side.name}_gflops": g,
                    f"{side.name}_local_share": (None if row["gemm_local_gflops"] is None
                                                 else g / row["gemm_local_gflops"])})
    row["other_load"] = other.cores
    row["elapsed_s"] = time.perf_counter() - point_start
    for side in sides:  # one more step each: the loss, to show that every side trains alike
        row[f"{side.name}_loss"] = side.loss(side.step())
    row["ratio"] = (None if row["torch_median_s"] is None
                    else row["rnnlab_median_s"] / row["torch_median_s"])
    for peer in config.vs:
        if peer != "torch":
            row[f"ratio_{peer}"] = row["rnnlab_median_s"] / row[f"{peer}_median_s"]
    del sides, fns
    gc.collect()
    return row


def _settle_times(spin: dict, libraries) -> list[float]:
    """Seconds of sleep before each callable's block: the idle spin of the library that ran
    the block before it (``libraries``: one key of ``spin`` per callable, in round order),
    with a margin. rnnlab's steps run on NumPy's OpenBLAS (~0.13 s of spin), torch's on its
    OpenMP threads (~5 ms): a uniform settle spent 0.15 s of each round waiting for threads
    that had long stopped, and so gave fewer rounds."""
    after = [spin.get(library, 0.0) for library in libraries]  # spin after each callable
    return [round(min(0.5, 1.2 * after[i - 1] + 0.02), 3) for i in range(len(after))]


def _largest_points(points: list[Point]) -> set[Point]:
    """The point of most GEMM FLOPs of each model: the one whose share of the peak is quoted."""
    largest = {}
    for p in points:
        flops = model_training_flops(p.model, p.d, p.n, p.m, p.T, p.k, input_grad=False)
        if p.model not in largest or flops > largest[p.model][0]:
            largest[p.model] = (flops, p)
    return {p for _, p in largest.values()}


def _idle_spins(torch, jax) -> dict:
    """Seconds that NumPy's BLAS, torch and XLA keep a core spinning after a call (see
    idle_spin)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((384, 384)).astype(np.float32)
    spins = {"numpy_blas": idle_spin(lambda: a @ a)}
    if torch is not None:
        ta = torch.from_numpy(a)
        spins["torch"] = idle_spin(lambda: ta @ ta)
    if jax is not None:
        ja, square = jax.numpy.asarray(a), jax.jit(lambda m: m @ m)
        square(ja).block_until_ready()  # compile outside the watch
        spins["jax"] = idle_spin(lambda: square(ja).block_until_ready())
    return spins


def _ratio_summary(rows: list[dict], key: str) -> dict | None:
    """Geometric mean, worst and best point of ``row[key]`` (a ratio) over ``rows``."""
    rows = [r for r in rows if r.get(key) is not None]
    if not rows:
        return None
    worst, best = max(rows, key=lambda r: r[key]), min(rows, key=lambda r: r[key])
    pick = ("d", "n", "m", "T")
    return {"geomean_ratio": _geomean(r[key] for r in rows),
            "worst": {**{k: worst[k] for k in pick}, "ratio": worst[key]},
            "best": {**{k: best[k] for k in pick}, "ratio": best[key]}}


def summarize_ratios(points: list[dict], peak_gflops: float | None) -> dict:
    """Per model: geometric mean of the ratios, worst and best point, and the GEMM share
    of the largest point (by FLOPs): of the run's peak, and of the GEMM timed beside it.

    The top-level ratio keys are rnnlab / torch; ``"peers"`` holds the same three for
    every peer timed (torch included), by name."""
    summary = {}
    for model in MODELS:
        rows = [r for r in points if r["model"] == model]
        if not rows:
            continue
        entry = {"points": len(rows)}
        entry.update(_ratio_summary(rows, "ratio")
                     or {"geomean_ratio": None, "worst": None, "best": None})
        entry["peers"] = {}
        for peer in PEERS:
            found = _ratio_summary(rows, "ratio" if peer == "torch" else f"ratio_{peer}")
            if found is not None:
                entry["peers"][peer] = found
        entry["noisy_points"] = sum(1 for r in rows if (r.get("other_load") or 0) > NOISY)
        largest = max(rows, key=lambda r: r["flops"])
        entry["largest"] = {k: largest[k] for k in ("d", "n", "m", "T", "flops")}
        entry["largest"]["gemm_local_gflops"] = largest.get("gemm_local_gflops")
        for side in ("rnnlab",) + PEERS:
            if f"{side}_gflops" not in largest:
                continue
            g = largest[f"{side}_gflops"]
            entry["largest"][f"{side}_gflops"] = g
            entry["largest"][f"{side}_peak_share"] = (
                None if g is None or not peak_gflops else g / peak_gflops)
            entry["largest"][f"{side}_local_share"] = largest.get(f"{side}_local_share")
        summary[model] = entry
    return summary


def _import_peers(config: BenchConfig):
    """(torch or None, jax or None, note on XLA's threads or None) for ``config.vs``.

    Raises:
        ImportError: a peer asked for does not import.
    """
    torch = jax = jax_note = None
    if "torch" in config.vs:
        torch = import_torch()
        if torch is None:
            raise ImportError("torch is not installed; use vs='none' to time rnnlab alone")
    if "jax" in config.vs:
        from ._jax_models import configure_threads

        jax_note = configure_threads(config.threads)  # before jax is imported, or a note why not
        jax = import_jax()
        if jax is None:
            raise ImportError("jax is not installed (pip install 'rnnlab[jax]')")
    return torch, jax, jax_note


def run_timing(config: BenchConfig, *, console=None, progress: bool = True,
               on_point: Callable[[dict], None] | None = None) -> dict:
    """Time every point of ``config``'s grid; returns the results as plain JSON values.

    Raises:
        ImportError: a peer of ``config.vs`` ("torch", "jax") does not import.
    """
    torch, jax, jax_note = _import_peers(config)
    points = grid_points(config.grid, config.models)
    started, t0 = _now(), time.perf_counter()
    rows = []
    load_start = loadavg()
    with pinned_threads(config.threads, torch), backend(config.backend):
        spin = _idle_spins(torch, jax)
        sides = ("rnnlab",) + config.vs
        libraries = ("numpy_blas",) + tuple(PEER_LIBRARY[p] for p in config.vs)
        settle = ([config.settle] * len(sides) if config.settle is not None
                  else _settle_times(spin, libraries))
        # The largest point of each model also times the sgemm of the peak in its rounds,
        # right after rnnlab.
        settle_gemm = ([config.settle] * (len(sides) + 1) if config.settle is not None
                       else _settle_times(spin, ("numpy_blas",) + libraries))
        largest = _largest_points(points)
        gemm = square_gemm(config.gemm_size, seed=config.seed)
        gemm_start = gemm_throughput(config.gemm_size, budget=config.gemm_budget, seed=config.seed)
        with _progress(console, progress) as bar:
            task = bar.add_task("bench", total=len(points))
            for point in points:
                bar.update(task, description=point.label())
                for attempt in range(config.retries + 1):
                    if attempt:
                        bar.update(task, description=f"{point.label()} (busy machine: retry "
                                                     f"{attempt})")
                        wait_for_quiet(NOISY, config.quiet_wait)
                    row = (_time_point(point, config, settle_gemm, gemm) if point in largest
                           else _time_point(point, config, settle))
                    row["attempts"] = attempt + 1
                    if (row["other_load"] or 0) <= NOISY:
                        break
                rows.append(row)
                if on_point is not None:
                    on_point(row)
                bar.update(task, advance=1)
        gemm_end = gemm_throughput(config.gemm_size, budget=config.gemm_budget, seed=config.seed)
        with threadpool_limits(limits=config.threads, user_api="blas"):
            machine = machine_facts(config.threads, torch)  # every BLAS loaded by now
        machine["loadavg"] = load_start
        if jax is not None:
            machine["jax"] = jax.__version__
            machine["jax_threads_note"] = jax_note
    peak = max(gemm_start["gflops"], gemm_end["gflops"])
    for row in rows:
        for side in sides + (("torch",) if "torch" not in sides else ()):
            g = row[f"{side}_gflops"]
            row[f"{side}_peak_share"] = None if g is None else g / peak
    return {
        "kind": "time",
        "started": started,
        "elapsed_s": time.perf_counter() - t0,
        "vs": "torch" if torch is not None else "none",  # whether "ratio" is rnnlab / torch
        "peers": list(config.vs),
        "config": config.as_dict(),
        "machine": machine,
        "plans": _plans(),  # the paths each recurrent shape ran, and the timings behind them
        "gemm": {"start": gemm_start, "end": gemm_end, "peak_gflops": peak},
        "interleaving": {"settle_s": dict(zip(sides, settle)),
                         "settle_with_gemm_s": dict(zip(("rnnlab", "gemm") + sides[1:],
                                                        settle_gemm)),
                         "block_s": config.block, "min_rounds": config.min_rounds,
                         "min_repeats": config.min_repeats, "idle_spin_s": spin,
                         "note": ("strict per-step alternation A B A B"
                                  if max(settle) == 0 and config.block == 0 else
                                  "rounds A B A B; in each, one side's block of back-to-back "
                                  "timed steps after its settle_s of sleep (the other side's "
                                  "idle threads stop spinning) and, for steps shorter than "
                                  "the longest settle_s, one untimed step that wakes its own "
                                  "threads")},
        "loadavg_end": loadavg(),
        "flops_note": "GEMM FLOPs of a training step (rnnlab.analysis.complexity), forward + "
                      "backward without the gradient of the data: 'flops' the textbook count, "
                      "as torch and jax compute them; 'flops_rnnlab' what rnnlab runs (the "
                      "recurrent models skip the products with their zero initial state); each "
                      "side's GFLOP/s and share of the peak use its own count",
        "torch_note": None if torch is not None else "torch not used: rnnlab timed alone",
        "points": rows,
        "summary": summarize_ratios(rows, peak),
    }


# ------------------------------------------------------------------ memory


def run_memory(config: BenchConfig, *, console=None, progress: bool = True) -> dict:
    """Traced peak memory of an rnnlab training step at every point of the grid."""
    points = grid_points(config.grid, config.models)
    started, t0 = _now(), time.perf_counter()
    rows = []
    with pinned_threads(config.threads, None), backend(config.backend):
        machine = machine_facts(config.threads, None)
        with _progress(console, progress) as bar:
            task = bar.add_task("memory", total=len(points))
            for point in points:
                bar.update(task, description=point.label())
                rows.append(step_peak_memory(point, seed=config.seed, lr=config.lr,
                                             momentum=config.momentum))
                gc.collect()
                bar.update(task, advance=1)
    summary = {}
    for model in MODELS:
        mrows = [r for r in rows if r["model"] == model]
        if mrows:
            worst = max(mrows, key=lambda r: r["ratio"])
            summary[model] = {"points": len(mrows),
                              "geomean_ratio": _geomean(r["ratio"] for r in mrows),
                              "worst": {k: worst[k] for k in ("d", "n", "m", "T", "ratio")}}
    return {"kind": "memory", "started": started, "elapsed_s": time.perf_counter() - t0,
            "config": config.as_dict(), "machine": machine,
            "method": "tracemalloc peak of the second traced training step (steady state, "
                      "input copied in), against the BPTT minimum of "
                      "rnnlab.analysis.complexity.model_bptt_memory; NumPy arrays are traced, "
                      "memory allocated inside compiled (numba) code is not",
            "points": rows, "summary": summary}


# ------------------------------------------------------------------ output


def _plans() -> list:
    """This process's plans (see rnnlab.kernels.planner), for the results."""
    from ..kernels import planner
    return planner.entries()
