"""Run a benchmark grid, summarise it, write CSV/JSON, and render tables.

``run_timing`` times one training step per grid point, rnnlab against torch
(interleaved, same weights, same data, same thread count), and sets each
point's achieved GFLOP/s against NumPy's float32 GEMM throughput measured in
the same run (before and after the grid; the higher of the two is the peak).
``run_memory`` traces the peak memory of an rnnlab training step per point
against the BPTT minimum.
"""

from __future__ import annotations

import csv
import datetime as _dt
import gc
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from threadpoolctl import threadpool_limits

from ..analysis.complexity import MODELS, model_params, model_training_flops
from .grid import GRIDS, grid_points
from .machine import (OtherLoad, backend, loadavg, loops_for, machine_facts, pinned_threads,
                      wait_for_quiet)
from .memory import step_peak_memory
from .models import Point, import_torch, make_pair
from .timing import gemm_throughput, idle_spin, interleave, square_gemm, summarize

__all__ = ["BenchConfig", "run_timing", "run_memory", "write_results", "default_out_dir",
           "summarize_ratios", "render_timing", "render_memory", "timing_markdown",
           "memory_markdown"]

# Per-grid defaults: seconds of timed rounds per point, and the GEMM size of the peak.
DEFAULT_BUDGET = {"tiny": 0.05, "small": 0.3, "full": 1.0}
DEFAULT_GEMM_SIZE = {"tiny": 256, "small": 2048, "full": 2048}
NOISY = 0.25  # cores kept busy by other processes during a point, above which it is flagged
DEFAULT_GEMM_BUDGET = {"tiny": 0.02, "small": 0.5, "full": 1.0}
DEFAULT_RETRIES = {"tiny": 0, "small": 2, "full": 2}
# A burst of outside load (this machine's CPUs are shared) that covers one side's block
# moves that side's median when a point has 2-3 rounds; with 6 it moves a sixth of the
# samples. Six repeats of LSTM (256, 64, 32, 64) read 1.02-1.36 of torch at 2 rounds and
# 0.97-1.09 at 8 (sd 0.115 against 0.042); MLP (256, 64, 32, 64) sd 0.088 against 0.058,
# but MLP (256, 64, 128, 64) 0.071 against 0.114: not all of the noise is that short.
DEFAULT_MIN_ROUNDS = {"tiny": 1, "small": 2, "full": 6}
# Timed steps per side: a point whose steps outlast a block (~0.1 s and up: the large LSTM,
# RNN and MLP points) gets one step per side per round, so 6 rounds gave it 6 samples, and
# its ratio moved by up to ~0.1 between runs of the full grid. The full grid gives every
# point at least 12 (about 50 s more for the run).
DEFAULT_MIN_REPEATS = {"tiny": 5, "small": 5, "full": 12}


@dataclass
class BenchConfig:
    """Everything a run depends on; saved as config.json beside the results.

    Attributes:
        grid: "tiny", "small" or "full" (see :mod:`rnnlab.bench.grid`).
        models: which of "mlp", "rnn", "lstm", "gru".
        vs: "torch" (time torch too, interleaved) or "none" (rnnlab alone).
        threads: BLAS threads for NumPy and ``torch.set_num_threads``.
        budget: seconds of timed rounds per point (None: the grid's default).
        warmup: untimed steps per side and point (fewer, at least one, once they take
            longer than ``budget``).
        min_repeats: timed steps per side and point, even past the budget (None: the grid's
            default, 12 for full, else 5).
        max_repeats: cap on timed steps per side and point (None: none).
        settle: seconds of sleep before each block of one side's steps, for the other
            side's idle threads to stop spinning (None: measured, see
            :func:`rnnlab.bench.timing.idle_spin`; 0 with ``block=0``: strict A B A B).
        block: seconds of back-to-back timed steps of one side per round.
        min_rounds: A B rounds per point, even past the budget (None: the grid's default,
            1 for tiny, 2 for small, 6 for full).
        retries: times a point is measured again when other processes kept more than
            NOISY (0.25) of a core busy meanwhile, after waiting up to ``quiet_wait``
            seconds for the machine to calm down (None: the grid's default, 0 for tiny, else 2).
        quiet_wait: see ``retries``.
        gemm_size: side of the square sgemm of the peak, and of the one timed beside the
            largest point of each model (None: the grid's default).
        gemm_budget: seconds of timed sgemm calls, at the start and again at the end
            (None: the grid's default).
        seed: weights and data.
        lr, momentum: SGD.
        memory: trace peak memory instead of timing.
        backend: rnnlab's recurrent backend, "auto", "numpy" or "numba" (None: as set; the
            default is auto when numba imports, which picks the loops by layer size).
    """

    grid: str = "small"
    models: tuple = MODELS
    vs: str = "torch"
    threads: int = 2
    budget: float | None = None
    warmup: int = 3
    min_repeats: int | None = None
    max_repeats: int | None = None
    settle: float | None = None
    block: float = 0.05
    min_rounds: int | None = None
    retries: int | None = None
    quiet_wait: float = 20.0
    gemm_size: int | None = None
    gemm_budget: float | None = None
    seed: int = 0
    lr: float = 0.01
    momentum: float = 0.0
    memory: bool = False
    backend: str | None = None

    def __post_init__(self):
        if self.grid not in GRIDS:
            raise ValueError(f"grid must be one of {GRIDS}, got {self.grid!r}")
        self.models = tuple(self.models)
        if not self.models or any(m not in MODELS for m in self.models):
            raise ValueError(f"models must be a non-empty subset of {MODELS}, got {self.models}")
        if self.backend not in (None, "auto", "numpy", "numba"):
            raise ValueError(f"backend must be 'auto', 'numpy' or 'numba', got {self.backend!r}")
        if self.vs not in ("torch", "none"):
            raise ValueError(f"vs must be 'torch' or 'none', got {self.vs!r}")
        if not isinstance(self.threads, int) or self.threads < 1:
            raise ValueError(f"threads must be a positive integer, got {self.threads!r}")
        if self.budget is None:
            self.budget = DEFAULT_BUDGET[self.grid]
        if self.gemm_size is None:
            self.gemm_size = DEFAULT_GEMM_SIZE[self.grid]
        if self.gemm_budget is None:
            self.gemm_budget = DEFAULT_GEMM_BUDGET[self.grid]
        if self.min_rounds is None:
            self.min_rounds = DEFAULT_MIN_ROUNDS[self.grid]
        if self.min_repeats is None:
            self.min_repeats = DEFAULT_MIN_REPEATS[self.grid]
        if self.retries is None:
            self.retries = DEFAULT_RETRIES[self.grid]
        if self.retries < 0 or self.quiet_wait < 0:
            raise ValueError(f"retries and quiet_wait must be >= 0, got "
                             f"{self.retries}, {self.quiet_wait}")
        if not self.budget > 0:
            raise ValueError(f"budget must be > 0 seconds, got {self.budget!r}")
        if self.warmup < 0 or self.min_repeats < 1 or self.min_rounds < 1:
            raise ValueError(f"need warmup >= 0, min_repeats >= 1 and min_rounds >= 1, got "
                             f"{self.warmup}, {self.min_repeats}, {self.min_rounds}")
        if (self.settle is not None and self.settle < 0) or self.block < 0:
            raise ValueError(f"settle and block must be >= 0 seconds, got "
                             f"{self.settle}, {self.block}")

    def as_dict(self) -> dict:
        return asdict(self)


def default_out_dir(now: _dt.datetime | None = None) -> Path:
    """runs/bench-<YYYYmmdd-HHMMSS>/ under the current directory."""
    now = now or _dt.datetime.now()
    return Path("runs") / f"bench-{now:%Y%m%d-%H%M%S}"


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


def _time_point(point: Point, config: BenchConfig, with_torch: bool,
                settle: list[float], gemm: tuple | None = None) -> dict:
    """Time one point: rnnlab's step, ``gemm`` = (callable, FLOPs) if given, and torch's step,
    in interleaved rounds in that order (``settle``: one sleep per callable, see
    :func:`_settle_times`)."""
    point_start = time.perf_counter()
    gemm_fn = None if gemm is None else gemm[0]
    pair = make_pair(point, seed=config.seed, lr=config.lr, momentum=config.momentum,
                     with_torch=with_torch)
    # The GEMM goes between the two sides, so that each follows what it follows at every
    # other point: rnnlab torch's step (a short settle), torch an OpenBLAS call (a long one).
    fns = ([pair.rnnlab_step] + ([gemm_fn] if gemm_fn is not None else [])
           + ([pair.torch_step] if with_torch else []))
    for fn in fns:  # the first step compiles (numba) and loads lazy libraries (scipy's BLAS)
        fn()
    gc.collect()
    gc_was_enabled = gc.isenabled()
    gc.disable()  # no collector pauses inside the timed rounds, on either side
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
    shape = (point.model, point.d, point.n, point.m, point.T, point.k)
    row = {**point.as_dict(),
           "loops": None if point.model == "mlp" else loops_for(
               point.d, point.m, "lstm" if point.model == "lstm" else "rnn_tanh", point.T),
           "params": sum(model_params(point.model, point.n, point.m, point.T, point.k).values()),
           "flops": model_training_flops(*shape, input_grad=False),
           "flops_rnnlab": model_training_flops(*shape, input_grad=False, zero_start=True)}
    # Each side's GFLOP/s counts the GEMM work it does. Neither computes the gradient
    # of the data; rnnlab also skips the products with the zero initial state.
    sides = [("rnnlab", samples[0], row["flops_rnnlab"])]
    if with_torch:
        sides.append(("torch", samples[-1], row["flops"]))
    for side, times, side_flops in sides:
        stats = summarize(times)
        row[f"{side}_median_s"] = stats.median
        row[f"{side}_p10_s"] = stats.p10
        row[f"{side}_p90_s"] = stats.p90
        row[f"{side}_repeats"] = stats.n
        row[f"{side}_gflops"] = side_flops / stats.median / 1e9
    # The share of a GEMM timed in the same rounds follows the machine as the point ran;
    # the run's peak (start and end) does not: it moved 173 -> 305 GFLOP/s within one run.
    row["gemm_local_gflops"] = (None if gemm is None
                                else gemm[1] / summarize(samples[1]).median / 1e9)
    for side in ("rnnlab", "torch"):
        g = row.get(f"{side}_gflops")
        row[f"{side}_local_share"] = (None if g is None or row["gemm_local_gflops"] is None
                                      else g / row["gemm_local_gflops"])
    row["other_load"] = other.cores
    row["elapsed_s"] = time.perf_counter() - point_start
    row["rnnlab_loss"] = float(pair.rnnlab_step())
    if with_torch:
        row["torch_loss"] = float(pair.torch_step().item())
        row["ratio"] = row["rnnlab_median_s"] / row["torch_median_s"]
    else:
        row["torch_loss"] = row["ratio"] = None
        for key in ("median_s", "p10_s", "p90_s", "repeats", "gflops"):
            row[f"torch_{key}"] = None
    del pair
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


def _idle_spins(torch, threads: int) -> dict:
    """Seconds that NumPy's BLAS and torch keep a core spinning after a call (see idle_spin)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((384, 384)).astype(np.float32)
    spins = {"numpy_blas": idle_spin(lambda: a @ a)}
    if torch is not None:
        ta = torch.from_numpy(a)
        spins["torch"] = idle_spin(lambda: ta @ ta)
    return spins


def summarize_ratios(points: list[dict], peak_gflops: float | None) -> dict:
    """Per model: geometric mean of the ratios, worst and best point, and the GEMM share
    of the largest point (by FLOPs): of the run's peak, and of the GEMM timed beside it."""
    summary = {}
    for model in MODELS:
        rows = [r for r in points if r["model"] == model]
        if not rows:
            continue
        entry = {"points": len(rows)}
        ratios = [r for r in rows if r.get("ratio") is not None]
        if ratios:
            worst = max(ratios, key=lambda r: r["ratio"])
            best = min(ratios, key=lambda r: r["ratio"])
            entry["geomean_ratio"] = _geomean(r["ratio"] for r in ratios)
            entry["worst"] = {k: worst[k] for k in ("d", "n", "m", "T", "ratio")}
            entry["best"] = {k: best[k] for k in ("d", "n", "m", "T", "ratio")}
        else:
            entry["geomean_ratio"] = entry["worst"] = entry["best"] = None
        entry["noisy_points"] = sum(1 for r in rows if (r.get("other_load") or 0) > NOISY)
        largest = max(rows, key=lambda r: r["flops"])
        entry["largest"] = {k: largest[k] for k in ("d", "n", "m", "T", "flops")}
        entry["largest"]["gemm_local_gflops"] = largest.get("gemm_local_gflops")
        for side in ("rnnlab", "torch"):
            g = largest.get(f"{side}_gflops")
            entry["largest"][f"{side}_gflops"] = g
            entry["largest"][f"{side}_peak_share"] = (
                None if g is None or not peak_gflops else g / peak_gflops)
            entry["largest"][f"{side}_local_share"] = largest.get(f"{side}_local_share")
        summary[model] = entry
    return summary


def run_timing(config: BenchConfig, *, console=None, progress: bool = True,
               on_point: Callable[[dict], None] | None = None) -> dict:
    """Time every point of ``config``'s grid; returns the results as plain JSON values.

    Raises:
        ImportError: ``config.vs == "torch"`` and torch does not import.
    """
    torch = import_torch() if config.vs == "torch" else None
    if config.vs == "torch" and torch is None:
        raise ImportError("torch is not installed; use vs='none' to time rnnlab alone")
    with_torch = torch is not None
    points = grid_points(config.grid, config.models)
    started, t0 = _now(), time.perf_counter()
    rows = []
    load_start = loadavg()
    with pinned_threads(config.threads, torch), backend(config.backend):
        spin = _idle_spins(torch, config.threads)
        sides = ("rnnlab", "torch") if with_torch else ("rnnlab",)
        libraries = ("numpy_blas", "torch")[:len(sides)]
        settle = ([config.settle] * len(sides) if config.settle is not None
                  else _settle_times(spin, libraries))
        # The largest point of each model also times the sgemm of the peak in its rounds,
        # between rnnlab and torch.
        settle_gemm = ([config.settle] * (len(sides) + 1) if config.settle is not None
                       else _settle_times(spin, ("numpy_blas", "numpy_blas") + libraries[1:]))
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
                    row = (_time_point(point, config, with_torch, settle_gemm, gemm)
                           if point in largest else _time_point(point, config, with_torch, settle))
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
    peak = max(gemm_start["gflops"], gemm_end["gflops"])
    for row in rows:
        for side in ("rnnlab", "torch"):
            g = row[f"{side}_gflops"]
            row[f"{side}_peak_share"] = None if g is None else g / peak
    return {
        "kind": "time",
        "started": started,
        "elapsed_s": time.perf_counter() - t0,
        "vs": "torch" if with_torch else "none",
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
                      "as torch computes them; 'flops_rnnlab' what rnnlab runs (the recurrent "
                      "models skip the products with their zero initial state); each side's "
                      "GFLOP/s and share of the peak use its own count",
        "torch_note": None if with_torch else "torch not used: rnnlab timed alone",
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


def write_results(results: dict, out_dir, command: str | None = None) -> dict:
    """Write <name>.csv, <name>.json, <name>.md and config.json into ``out_dir`` (created).

    ``name`` is "bench" for a timing run and "memory" for a memory run; the
    Markdown file holds the tables, ready for a README, headed by ``command``.
    Returns the paths written, by kind.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    name = "bench" if results["kind"] == "time" else "memory"
    paths = {"csv": out / f"{name}.csv", "json": out / f"{name}.json",
             "markdown": out / f"{name}.md", "config": out / "config.json"}
    markdown = (timing_markdown if results["kind"] == "time" else memory_markdown)(results, command)
    paths["markdown"].write_text(markdown, encoding="utf-8")
    rows = results["points"]
    if rows:
        columns = list(rows[0])
        with open(paths["csv"], "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            for row in rows:
                writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    else:
        paths["csv"].write_text("", encoding="utf-8")
    with open(paths["json"], "w", encoding="utf-8") as f:
        json.dump(results, f, indent=2, default=str)
        f.write("\n")
    with open(paths["config"], "w", encoding="utf-8") as f:
        json.dump({**results["config"], "command": command}, f, indent=2, default=str)
        f.write("\n")
    return paths


def _ms(seconds) -> str:
    return "–" if seconds is None else f"{seconds * 1e3:.3g}"


def _spread(row, side) -> str:
    return f"{_ms(row[f'{side}_p10_s'])}–{_ms(row[f'{side}_p90_s'])}"


def _pct(share) -> str:
    return "–" if share is None else f"{100 * share:.0f}%"


def _ratio_style(ratio) -> str:
    if ratio is None:
        return ""
    return "green" if ratio <= 0.8 else ("yellow" if ratio <= 1.25 else "red")


def _timing_rows(results: dict) -> tuple[list[str], list[list[str]]]:
    """Header and text cells of the per-point table (shared by the terminal and Markdown)."""
    with_torch = results["vs"] == "torch"
    header = ["model", "d", "n", "m", "T", "MFLOP", "rnnlab ms", "p10–p90"]
    if with_torch:
        header += ["torch ms", "p10–p90", "ratio"]
    header += ["rnnlab GF/s", "%peak"]
    if with_torch:
        header += ["torch GF/s", "%peak"]
    header += ["others"]
    rows = []
    for r in results["points"]:
        cells = [r["model"], str(r["d"]), str(r["n"]), str(r["m"]), str(r["T"]),
                 f"{r['flops'] / 1e6:.3g}", _ms(r["rnnlab_median_s"]), _spread(r, "rnnlab")]
        if with_torch:
            cells += [_ms(r["torch_median_s"]), _spread(r, "torch"), f"{r['ratio']:.2f}"]
        cells += [f"{r['rnnlab_gflops']:.3g}", _pct(r["rnnlab_peak_share"])]
        if with_torch:
            cells += [f"{r['torch_gflops']:.3g}", _pct(r["torch_peak_share"])]
        other = r.get("other_load")
        cells.append("–" if other is None else f"{other:.2f}")
        rows.append(cells)
    return header, rows


def _summary_rows(results: dict) -> tuple[list[str], list[list[str]]]:
    header = ["model", "points", "noisy", "geomean ratio", "worst ratio (d, n, m, T)",
              "best ratio (d, n, m, T)", "largest point (d, n, m, T)", "rnnlab %peak",
              "torch %peak", "rnnlab %local", "torch %local"]
    rows = []
    for model, s in results["summary"].items():
        if s["geomean_ratio"] is None:
            continue
        w, b, big = s["worst"], s["best"], s["largest"]
        rows.append([model, str(s["points"]), str(s.get("noisy_points", 0)),
                     f"{s['geomean_ratio']:.2f}",
                     f"{w['ratio']:.2f} ({w['d']}, {w['n']}, {w['m']}, {w['T']})",
                     f"{b['ratio']:.2f} ({b['d']}, {b['n']}, {b['m']}, {b['T']})",
                     f"({big['d']}, {big['n']}, {big['m']}, {big['T']})",
                     _pct(big["rnnlab_peak_share"]), _pct(big["torch_peak_share"]),
                     _pct(big.get("rnnlab_local_share")), _pct(big.get("torch_local_share"))])
    return header, rows


def machine_line(results: dict) -> str:
    """One line of machine facts: CPU, threads, numpy and its BLAS, torch."""
    m = results["machine"]
    blas = ", ".join(f"{b['library']} {b['version']} ({b['kernel']})" for b in m["blas"]) or "?"
    load = m.get("loadavg")
    line = (f"{m['cpu_model']}, {m['usable_cpus']} usable CPUs, {m['threads']} threads; "
            f"Python {m['python']}, numpy {m['numpy']} on {blas}; torch {m['torch'] or 'not used'}; "
            f"rnnlab backend {m.get('rnnlab_backend', 'numpy')}"
            + (f" (numba {m['numba']})" if m.get("numba") else "")
            + (f"; load average {load[0]:.2f} at the start" if load else ""))
    if m.get("env", {}).get("OPENBLAS_CORETYPE"):
        line += f"; OPENBLAS_CORETYPE={m['env']['OPENBLAS_CORETYPE']}"
    return line


def gemm_line(results: dict) -> str:
    """The GEMM peak, and what %peak and %local divide by."""
    gemm = results["gemm"]
    local = [r["gemm_local_gflops"] for r in results["points"] if r.get("gemm_local_gflops")]
    return (f"float32 GEMM ({gemm['start']['size']}², NumPy): {gemm['start']['gflops']:.1f} "
            f"GFLOP/s at the start, {gemm['end']['gflops']:.1f} at the end; peak "
            f"{gemm['peak_gflops']:.1f} GFLOP/s (%peak)"
            + ("; %local: the same GEMM timed in the rounds of the largest point of each model, "
               + ", ".join(f"{g:.1f}" for g in local) + " GFLOP/s" if local else ""))


def render_timing(results: dict, console) -> None:
    """Print the machine line, the per-point table and the per-model summary."""
    from rich.markup import escape
    from rich.table import Table

    console.print(escape(machine_line(results)))
    console.print(escape(gemm_line(results)))
    load = results["machine"].get("loadavg")
    if load and load[0] > 1.0:
        console.print(f"[yellow]the machine was busy (load average {load[0]:.2f} at the start): "
                      f"other work skews absolute times, and thread pools that wait on a busy "
                      f"core can skew ratios too[/]")
    if results["vs"] == "none":
        console.print("[yellow]torch not used: rnnlab timed alone[/]")
    header, rows = _timing_rows(results)
    table = Table(title=f"One training step, grid {results['config']['grid']}: median and "
                        f"p10–p90 in ms; ratio = rnnlab / torch; GF/s from the GEMM work "
                        f"each side does; others = cores busy with other processes meanwhile")
    for col in header:
        table.add_column(col, justify="left" if col == "model" else "right")
    ratio_at = header.index("ratio") if "ratio" in header else None
    for r, cells in zip(results["points"], rows):
        cells = list(cells)
        if ratio_at is not None:
            cells[ratio_at] = f"[{_ratio_style(r['ratio'])}]{cells[ratio_at]}[/]"
        if (r.get("other_load") or 0) > NOISY:
            cells[-1] = f"[red]{cells[-1]}[/]"
        table.add_row(*cells)
    console.print(table)
    noisy = sum(1 for r in results["points"] if (r.get("other_load") or 0) > NOISY)
    if noisy:
        console.print(f"[yellow]{noisy} point(s) ran while other processes kept more than "
                      f"{NOISY} of a core busy: rerun them on a quiet machine[/]")
    if results["vs"] == "torch":
        header, rows = _summary_rows(results)
        summary = Table(title="Per model: rnnlab / torch, and the share of the GEMM: of the run's "
                              "peak (%peak) and of the same GEMM in the point's rounds (%local)")
        for col in header:
            summary.add_column(col, justify="left" if col == "model" else "right")
        for cells in rows:
            summary.add_row(*cells)
        console.print(summary)


def _markdown_table(header, rows) -> str:
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---" if h == "model" else "---:" for h in header) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    return "\n".join(lines)


def _ratio_matrices(results: dict) -> list[str]:
    """Per model, the ratios as a matrix: rows (d, n), columns (m, T); empty cells are absent points."""
    out = []
    for model in MODELS:
        rows = [r for r in results["points"] if r["model"] == model and r.get("ratio") is not None]
        if len(rows) < 2:
            continue
        by_key = {(r["d"], r["n"], r["m"], r["T"]): r["ratio"] for r in rows}
        row_keys = sorted({(r["d"], r["n"]) for r in rows})
        col_keys = sorted({(r["m"], r["T"]) for r in rows})
        header = ["d", "n"] + [f"m={m} T={T}" for m, T in col_keys]
        cells = [[str(d), str(n)] + [("" if (d, n, m, T) not in by_key else f"{by_key[d, n, m, T]:.2f}")
                                     for m, T in col_keys] for d, n in row_keys]
        out.append(f"**{model.upper()}**: rnnlab / torch step time\n\n" + _markdown_table(header, cells))
    return out


def timing_markdown(results: dict, command: str | None = None) -> str:
    """The run as Markdown: machine facts, the GEMM peak, the per-point and summary tables."""
    parts = []
    if command:
        parts.append(f"```\n{command}\n```")
    parts.append(f"- Machine: {machine_line(results)}\n- {gemm_line(results)}\n"
                 f"- Started {results['started']}, {results['elapsed_s']:.0f} s")
    if results["vs"] == "torch":
        parts.append(_markdown_table(*_summary_rows(results)))
        parts.extend(_ratio_matrices(results))
    parts.append(_markdown_table(*_timing_rows(results)))
    if results["vs"] != "torch":
        parts.append("torch not used: rnnlab timed alone.")
    return "\n\n".join(parts) + "\n"


def _memory_rows(results: dict):
    header = ["model", "d", "n", "m", "T", "traced peak MiB", "BPTT minimum MiB", "ratio",
              "parameters MiB"]
    rows = [[r["model"], str(r["d"]), str(r["n"]), str(r["m"]), str(r["T"]), _mb(r["peak_bytes"]),
             _mb(r["min_bytes"]), f"{r['ratio']:.2f}", _mb(r["param_bytes"])]
            for r in results["points"]]
    return header, rows


def memory_markdown(results: dict, command: str | None = None) -> str:
    parts = [f"```\n{command}\n```"] if command else []
    parts.append(f"- Machine: {machine_line(results)}\n- Method: {results['method']}")
    parts.append(_markdown_table(*_memory_rows(results)))
    return "\n\n".join(parts) + "\n"


def _mb(nbytes) -> str:
    return f"{nbytes / 2 ** 20:.3g}"


def render_memory(results: dict, console) -> None:
    """Print the per-point memory table and the per-model summary."""
    from rich.table import Table

    header, rows = _memory_rows(results)
    table = Table(title=f"Peak traced memory of an rnnlab training step, grid "
                        f"{results['config']['grid']}; target ratio <= 1.5")
    for col in header:
        table.add_column(col, justify="left" if col == "model" else "right")
    ratio_at = header.index("ratio")
    for r, cells in zip(results["points"], rows):
        style = "green" if r["ratio"] <= 1.5 else "red"
        cells[ratio_at] = f"[{style}]{cells[ratio_at]}[/]"
        table.add_row(*cells)
    console.print(table)
    for model, s in results["summary"].items():
        w = s["worst"]
        console.print(f"{model}: geometric mean {s['geomean_ratio']:.2f}× the minimum, worst "
                      f"{w['ratio']:.2f}× at d={w['d']} n={w['n']} m={w['m']} T={w['T']}")
