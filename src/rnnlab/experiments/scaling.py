"""Complexity, analytic and measured: does a training step cost what the O(·) formulas say?

The usual claims (d batch, n input size, m hidden size):

- MLP: time O(d·n·m);
- RNN: time O(d·n·m + d·m²) per step, space O(n·m + m²) (the parameters);
- LSTM: the same orders as the RNN, with a factor of 4 (four gate blocks).

The usual analysis leaves T out: a sequence costs T times a step, and
backpropagation through time keeps O(T·d·m) activations.

What this experiment does:

1. **Analytic**, at a reference size: parameter counts, forward and training
   FLOPs and the BPTT activation minimum of :mod:`rnnlab.analysis.complexity`,
   for the three benchmark models (:mod:`rnnlab.bench.models`), and the
   LSTM/RNN ratios. Every parameter formula is checked against the arrays of
   the models really built in this run (the reference and every sweep point).
2. **Measured time**: d, n, m and T are swept one at a time around a base
   point. At each point the three models' whole training steps (forward,
   backward, SGD update) are timed interleaved (:func:`rnnlab.bench.timing.interleave`:
   warm-up, repeats under a time budget, median), with BLAS pinned to
   ``threads`` (one by default, so that the sweeps measure work, not how BLAS
   splits it; :mod:`rnnlab.experiments.parallelism` measures threads). The
   log–log slope of step time against the variable (with a 95 % CI) is set
   beside the exponent the formula predicts *at those sizes*: the local slope
   of the analytic training FLOPs between the ends of the sweep, e.g. between
   1 and 2 for the RNN against m, depending on n against m.
   Since time = FLOPs / (achieved FLOP/s), measured − predicted slope is
   exactly minus the slope of the achieved GFLOP/s: a slope below the formula
   means efficiency rises with size (per-call overhead amortised; at the
   smallest sizes time hardly moves, slope → 0), a slope above it means
   efficiency falls (a GEMM leaving the cache, elementwise and memory traffic).
3. **Vanishing gradients cost time**: in the T sweep the recurrent models are
   also timed with loss scaling (the loss gradient ×2^64, the learning rate
   ×2^-64: exactly the same updates), and the share of ∂L/∂x that has
   underflowed is recorded. Past T ≈ 100 the tanh RNN's gradient falls below
   float32's smallest normal number (1.2e-38); arithmetic on such subnormal
   floats is many times slower on x86, and the plain step slows down while
   the loss-scaled one does not.
4. **Measured memory**: the traced peak (tracemalloc) of one training step
   of the RNN and the LSTM against T, its slope (≈ 1 for O(T·d·m)) and the
   BPTT minimum of the formulas beside it.

Timings are retried when other processes left the run short of cores
(:func:`measure_undisturbed`), and a claim built on still-disturbed timings is
at most "nuanced", with the reason in its evidence.

The recurrent time loops run on the backend named in the config ("numpy" by
default: the "auto" backend switches implementation at a batch × hidden
threshold, which would put a step into the middle of a sweep).
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import numpy as np

from ..analysis.complexity import model_bptt_memory, model_forward_flops, model_params, model_training_flops
from ..bench.machine import OtherLoad, backend, cpu_model, loadavg, pinned_threads
from ..bench.memory import step_peak_memory
from ..bench.models import Point, build_rnnlab, make_data, make_pair
from ..nn import MSELoss
from ..optim import SGD
from ..bench.timing import gemm_throughput, interleave
from ..report import style
from .base import Claim, Progress, Table, log_slope, plt, time_stats

NAME = "scaling"
TITLE = "Complexity: the O(·) formulas, analytic and measured"
TIMING = True  # measures time: runs alone on the driver, never beside another task

VARIABLES = ("d", "n", "m", "T")
VARIABLE_NAMES = {"d": "batch size d", "n": "input size n", "m": "hidden size m", "T": "sequence length T"}
MODEL_NAMES = {"mlp": "MLP", "rnn": "RNN", "lstm": "LSTM"}

# A slope within SLOPE_TOL of a target exponent counts as that exponent; so
# does a fit whose 95 % CI holds it, if the CI is informative (half-width at
# most MAX_HALFWIDTH: with three points and a curved log-log line, the CI can
# span [-1, 3] and then holds every exponent).
SLOPE_TOL = 0.1
MAX_HALFWIDTH = 0.5

PRESETS = {
    # ~4 s: three points per variable, short budgets.
    "quick": {
        "models": ["mlp", "rnn", "lstm"], "k": 10, "threads": 1, "backend": "numpy",
        "base": {"d": 32, "n": 32, "m": 64, "T": 16},
        "sweeps": {"d": [8, 32, 128], "n": [8, 32, 128], "m": [32, 128, 512], "T": [4, 16, 64]},
        "budget": 0.08, "warmup": 1, "min_repeats": 3, "max_repeats": 200,
        "retry_budget": 0.0,  # seconds spent at most re-measuring points disturbed by other processes
        "loss_scale_log2": 64,  # the T sweep also times loss-scaled steps (0: off)
        "reference": {"d": 32, "n": 64, "m": 256, "T": 32},
        "memory": {"models": ["rnn", "lstm"], "d": 32, "n": 32, "m": 128, "T": [8, 32, 128]},
        "gemm": {"size": 512, "budget": 0.1},
    },
    # ~17 s: four to six points per variable.
    "default": {
        "models": ["mlp", "rnn", "lstm"], "k": 10, "threads": 1, "backend": "numpy",
        "base": {"d": 32, "n": 32, "m": 64, "T": 16},
        "sweeps": {"d": [4, 16, 64, 256, 1024], "n": [8, 32, 128, 512], "m": [32, 64, 128, 256, 512],
                   "T": [4, 8, 16, 32, 64, 128]},
        "budget": 0.5, "warmup": 2, "min_repeats": 5, "max_repeats": 500, "retry_budget": 20.0,
        "loss_scale_log2": 64,
        "reference": {"d": 32, "n": 64, "m": 256, "T": 32},
        "memory": {"models": ["rnn", "lstm"], "d": 64, "n": 32, "m": 128, "T": [8, 16, 32, 64, 128]},
        "gemm": {"size": 1024, "budget": 0.3},
    },
    # ~65 s: wider sweeps (to m = 1024, d = 1024, T = 256) and longer budgets.
    "full": {
        "models": ["mlp", "rnn", "lstm"], "k": 10, "threads": 1, "backend": "numpy",
        "base": {"d": 32, "n": 32, "m": 64, "T": 16},
        "sweeps": {"d": [1, 4, 16, 64, 256, 1024], "n": [4, 16, 64, 256, 1024],
                   "m": [16, 64, 128, 256, 512, 1024], "T": [2, 8, 32, 128, 256]},
        "budget": 1.2, "warmup": 3, "min_repeats": 7, "max_repeats": 2000, "retry_budget": 60.0,
        "loss_scale_log2": 64,
        "reference": {"d": 32, "n": 64, "m": 256, "T": 32},
        "memory": {"models": ["rnn", "lstm"], "d": 64, "n": 32, "m": 256,
                   "T": [8, 16, 32, 64, 128, 256]},
        "gemm": {"size": 1024, "budget": 1.0},
    },
}


# ----------------------------------------------------------------------------- other load

# A run with t threads is disturbed when other processes leave it fewer than
# t - CONTENTION_CORES free cores: it then waits for a core (and a multi-thread
# BLAS call for its slowest thread), so its times measure the other work.
CONTENTION_CORES = 0.5
# A disturbed measurement is retried this many times at most, each after a pause.
MAX_RETRIES = 2
RETRY_PAUSE_S = 1.0


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def disturbed(other_cores, threads: int, cpus: int) -> bool:
    """True when other processes' load (in cores) left ``threads`` threads short of cores."""
    if other_cores is None:
        return False
    return cpus - other_cores < threads - CONTENTION_CORES


def new_retry_budget(seconds: float) -> dict:
    """The retry state shared by a whole run: seconds left, retries used, usable CPUs."""
    return {"left": float(seconds), "used": 0, "cpus": usable_cpus()}


def measure_undisturbed(measure, threads: int, retry: dict):
    """Run ``measure()`` (it returns samples) under :class:`OtherLoad`, and again (after a
    pause, at most MAX_RETRIES times) while it is :func:`disturbed` and ``retry["left"]``
    seconds remain. Returns (samples, other_load_cores, attempts) of the least disturbed attempt."""
    best, attempts = None, 0
    while True:
        attempts += 1
        started = time.perf_counter()
        if attempts > 1:
            time.sleep(RETRY_PAUSE_S)  # let a burst of other work pass
        with OtherLoad() as load:
            samples = measure()
        cores = load.cores if load.cores is not None else 0.0
        if best is None or cores < best[0]:
            best = (cores, samples, load.cores)
        if not disturbed(cores, threads, retry["cpus"]) or retry["left"] <= 0 or attempts > MAX_RETRIES:
            break
        retry["left"] -= time.perf_counter() - started
        retry["used"] += 1
    return best[1], best[2], attempts


# ----------------------------------------------------------------------------- helpers


def seed_from(rng) -> int:
    """An int seed from a numpy Generator, an int, or None (0)."""
    if rng is None:
        return 0
    if isinstance(rng, (int, np.integer)):
        return int(rng)
    return int(rng.integers(0, 2**31 - 1))


def halfwidth(fit: dict) -> float:
    return (fit["ci_high"] - fit["ci_low"]) / 2


def in_ci(fit: dict, target: float) -> bool:
    return fit["ci_low"] <= target <= fit["ci_high"]


def consistent(fit: dict, target: float, tol: float = SLOPE_TOL) -> bool:
    """True when a log_slope fit agrees with exponent ``target``: the slope is
    within ``tol`` of it, or an informative 95 % CI (half-width <= MAX_HALFWIDTH) holds it."""
    if abs(fit["slope"] - target) <= tol:
        return True
    return halfwidth(fit) <= MAX_HALFWIDTH and in_ci(fit, target)


def affine_fit(x, y) -> dict:
    """Least squares time = fixed + per_unit · x, for a variable the FLOPs are linear in
    (d, T): ``fixed`` is the cost that does not grow with it (per-call overhead, and
    for d the work that does not scale with the batch), ``fixed_share`` its part of
    the first point's time."""
    per_unit, fixed = np.polyfit(np.asarray(x, dtype=float), np.asarray(y, dtype=float), 1)
    return {"fixed_s": float(fixed), "per_unit_s": float(per_unit), "fixed_share": float(fixed / y[0])}


def end_slope(x, y) -> float:
    """The log-log slope between the last two points: where the sweep is heading."""
    return math.log(y[-1] / y[-2]) / math.log(x[-1] / x[-2])


def fmt_fit(fit: dict) -> str:
    """'1.02 [0.95, 1.09]'."""
    return f"{fit['slope']:.2f} [{fit['ci_low']:.2f}, {fit['ci_high']:.2f}]"


def local_exponent(model: str, var: str, values, base: dict, k: int) -> float:
    """d log FLOPs / d log var between the ends of a sweep: the exponent the
    training-FLOP formula predicts at these sizes."""
    lo, hi = min(values), max(values)
    f_lo = model_training_flops(model, k=k, **{**base, var: lo})
    f_hi = model_training_flops(model, k=k, **{**base, var: hi})
    return math.log(f_hi / f_lo) / math.log(hi / lo)


def count_params(model) -> dict:
    """Parameters of a built model per top-level child ("0", "2" for the MLP;
    "rnn", "head" for the recurrent models), the keys of ``model_params``."""
    counts: dict[str, int] = {}
    for name, p in model.named_parameters():
        key = name.split(".", 1)[0]
        counts[key] = counts.get(key, 0) + int(p.data.size)
    return counts


def param_check(model_name: str, built, shape: dict, k: int) -> dict:
    """The formula's parameter counts beside the counted arrays of ``built``."""
    formula = model_params(model_name, shape["n"], shape["m"], shape["T"], k)
    counted = count_params(built)
    return {"model": model_name, **{v: shape[v] for v in ("n", "m", "T")}, "k": k,
            "formula": formula, "counted": counted, "equal": formula == counted}


def loss_scaled_step(point: Point, seed: int, log2_scale: int, lr: float = 0.01):
    """A training step identical in arithmetic to the plain one, with the loss gradient
    multiplied by 2**log2_scale and the learning rate divided by it (loss scaling, as in
    mixed-precision training). Powers of two are exact: the weights follow the same
    trajectory, but the backward's small gradients stay out of the subnormal range."""
    scale = 2.0 ** log2_scale
    x, y = make_data(point, seed)
    model = build_rnnlab(point, seed)
    opt = SGD(model.parameters(), lr=lr / scale)
    loss_fn = MSELoss()

    def step():
        opt.zero_grad()
        loss = loss_fn(model.forward(x), y)
        grad = loss_fn.backward()
        grad *= scale
        model.backward(grad)
        opt.step()
        return loss

    return step


def gradient_underflow(point: Point, seed: int) -> dict:
    """How far the gradient has vanished: one plain forward and backward, and the input
    gradient ∂L/∂x (T, d, n) it returns.

    Returns subnormal_fraction (elements below the smallest normal float, 1.18e-38 in
    float32, but not zero: arithmetic on them is slow on x86), zero_fraction (underflowed
    to 0), and first_step_scale (max |∂L/∂x_0|, the gradient reaching the first step).
    """
    x, y = make_data(point, seed)
    model = build_rnnlab(point, seed)
    loss_fn = MSELoss()
    loss_fn(model.forward(x), y)
    grad_x = np.abs(model.backward(loss_fn.backward()))
    tiny = np.finfo(grad_x.dtype).tiny
    return {"subnormal_fraction": float(((grad_x > 0) & (grad_x < tiny)).mean()),
            "zero_fraction": float((grad_x == 0).mean()),
            "first_step_scale": float(grad_x[0].max())}


def time_point(models, shape: dict, cfg: dict, seed: int, checks: list, retry: dict, scaled=()):
    """Time one training step of each model at ``shape``, interleaved (retried when disturbed).

    ``scaled`` names models also timed with :func:`loss_scaled_step` (keys "<model>+scaled").

    Returns ({model: time_stats dict}, other_load_cores, attempts); appends each
    model's parameter check to ``checks``.
    """
    k = cfg["k"]
    names, steps = [], []
    for model_name in models:
        pair = make_pair(Point(model_name, k=k, **shape), seed=seed, with_torch=False)
        checks.append(param_check(model_name, pair.rnnlab_model, shape, k))
        names.append(model_name)
        steps.append(pair.rnnlab_step)
    for model_name in scaled:
        names.append(f"{model_name}+scaled")
        steps.append(loss_scaled_step(Point(model_name, k=k, **shape), seed, int(cfg["loss_scale_log2"])))

    def measure():
        return interleave(steps, budget=cfg["budget"], warmup=cfg["warmup"],
                          min_repeats=cfg["min_repeats"], max_repeats=cfg.get("max_repeats"))

    samples, load, attempts = measure_undisturbed(measure, int(cfg["threads"]), retry)
    return {name: time_stats(s) for name, s in zip(names, samples)}, load, attempts


def _shape(base: dict, var: str, value: int) -> dict:
    return {**{v: int(base[v]) for v in VARIABLES}, var: int(value)}


# ----------------------------------------------------------------------------- run


def analytic_table(models, ref: dict, k: int) -> dict:
    """Formulas at the reference size, per model, and the LSTM/RNN ratios."""
    out = {}
    for model_name in models:
        fwd = model_forward_flops(model_name, k=k, **ref)
        params = model_params(model_name, ref["n"], ref["m"], ref["T"], k)
        out[model_name] = {
            "params": params, "params_total": sum(params.values()),
            "forward_gemm_flops": fwd.gemm, "forward_elementwise_flops": fwd.elementwise,
            "training_flops": model_training_flops(model_name, k=k, **ref),
            "bptt_bytes": model_bptt_memory(model_name, ref["d"], ref["n"], ref["m"], ref["T"]).bytes,
        }
    ratios = {}
    if "rnn" in out and "lstm" in out:
        r, l = out["rnn"], out["lstm"]
        ratios = {
            "params_layer": l["params"]["body"] / r["params"]["body"],
            "params_total": l["params_total"] / r["params_total"],
            "forward_gemm_flops": l["forward_gemm_flops"] / r["forward_gemm_flops"],
            "training_flops": l["training_flops"] / r["training_flops"],
            "bptt_bytes": l["bptt_bytes"] / r["bptt_bytes"],
        }
    return {"reference": dict(ref), "k": k, "models": out, "lstm_rnn": ratios}


def classify(fit: dict, predicted: float, tol: float = SLOPE_TOL) -> str:
    """Where the measured slope sits against the formula's exponent.

    time = FLOPs / achieved FLOP/s, so a slope below the formula's means the
    achieved FLOP/s rises along the sweep (fixed per-call overhead amortised),
    one above it that it falls (cache, BLAS kernel regime, memory traffic).
    """
    if consistent(fit, predicted, tol):
        return "as predicted"
    side = ("below: overhead (efficiency rises with size)" if fit["slope"] < predicted
            else "above: efficiency falls (cache/BLAS regime, memory traffic)")
    if in_ci(fit, predicted):
        return f"unresolved (CI ±{halfwidth(fit):.1f}); leans {side.split(':')[0]}"
    return side


def run(config: dict, *, rng=None, progress: Progress | None = None) -> dict:
    """Analytic table, time sweeps of d, n, m, T, and traced memory against T."""
    progress = progress or Progress(None)
    cfg = config
    seed = seed_from(rng)
    models = list(cfg["models"])
    k = int(cfg["k"])
    base = {v: int(cfg["base"][v]) for v in VARIABLES}
    started = time.perf_counter()
    result = {"config": cfg, "seed": seed}

    checks: list = []
    with backend(cfg.get("backend")), pinned_threads(int(cfg["threads"])):
        result["machine"] = {"cpu_model": cpu_model(), "threads": int(cfg["threads"]), "usable_cpus": usable_cpus(),
                             "backend": cfg.get("backend"), "loadavg_start": loadavg()}
        # 1. analytic, checked against the real arrays at the reference size
        ref = {v: int(cfg["reference"][v]) for v in VARIABLES}
        result["analytic"] = analytic_table(models, ref, k)
        for model_name in models:
            pair = make_pair(Point(model_name, k=k, **ref), seed=seed, with_torch=False)
            checks.append(param_check(model_name, pair.rnnlab_model, ref, k))
            del pair

        # 2. GEMM throughput under the same thread limit, for scale
        if cfg.get("gemm"):
            result["gemm"] = gemm_throughput(int(cfg["gemm"]["size"]), budget=float(cfg["gemm"]["budget"]))

        # 3. time sweeps
        sweeps = {}
        points = [(var, value) for var in VARIABLES for value in cfg["sweeps"][var]]
        timed: dict = {var: {} for var in VARIABLES}
        loads: dict = {var: [] for var in VARIABLES}
        attempts: dict = {var: [] for var in VARIABLES}
        retry = new_retry_budget(cfg.get("retry_budget", 0.0))
        scaled = [m for m in models if m != "mlp"] if cfg.get("loss_scale_log2") else []
        for var, value in progress.track(points, "scaling: time sweeps", total=len(points)):
            timed[var][value], load, tries = time_point(models, _shape(base, var, value), cfg, seed,
                                                        checks, retry, scaled if var == "T" else ())
            loads[var].append(load)
            attempts[var].append(tries)
        result["retries"] = retry["used"]
        for var in VARIABLES:
            values = [int(v) for v in cfg["sweeps"][var]]
            per_model = {}
            for model_name in models:
                stats = [timed[var][v][model_name] for v in values]
                medians = [s["median"] for s in stats]
                flops = [model_training_flops(model_name, k=k, **_shape(base, var, v)) for v in values]
                fit = log_slope(values, medians)
                predicted = local_exponent(model_name, var, values, base, k)
                per_model[model_name] = {
                    "stats": stats, "median_s": medians, "training_flops": flops,
                    "gflops": [f / t / 1e9 for f, t in zip(flops, medians)],
                    "fit": fit, "predicted_exponent": predicted, "regime": classify(fit, predicted),
                    "end_slope": end_slope(values, medians),
                    "affine": affine_fit(values, medians) if var in ("d", "T") else None,
                    "predicted_end_exponent": local_exponent(model_name, var, values[-2:], base, k),
                }
            if var == "T":
                for model_name in [m for m in models if m != "mlp"]:
                    entry = per_model[model_name]
                    entry["underflow"] = [gradient_underflow(Point(model_name, k=k, **_shape(base, "T", v)), seed)
                                          for v in values]
                    if model_name in scaled:
                        sc = [timed[var][v][f"{model_name}+scaled"] for v in values]
                        med = [st["median"] for st in sc]
                        entry["loss_scaled"] = {"log2_scale": int(cfg["loss_scale_log2"]), "stats": sc,
                                                "median_s": med, "fit": log_slope(values, med),
                                                "end_slope": end_slope(values, med)}
                    if entry["underflow"][-1]["subnormal_fraction"] > 0 and entry["fit"]["slope"] > entry[
                            "predicted_exponent"] and not consistent(entry["fit"], entry["predicted_exponent"]):
                        entry["regime"] = "above: subnormal floats (the vanishing gradient underflows)"
            sweeps[var] = {"values": values, "base": base, "other_load_cores": loads[var],
                           "attempts": attempts[var], "models": per_model}
        result["sweeps"] = sweeps
        result["lstm_rnn_time"] = lstm_rnn_ratios(sweeps, base, k) if {"rnn", "lstm"} <= set(models) else None

        # 4. traced memory against T
        mem_cfg = cfg["memory"]
        mem = {"point": {v: int(mem_cfg[v]) for v in ("d", "n", "m")}, "T": [int(t) for t in mem_cfg["T"]],
               "models": {}}
        mem_points = [(mm, T) for mm in mem_cfg["models"] for T in mem["T"]]
        peaks: dict = {mm: [] for mm in mem_cfg["models"]}
        for model_name, T in progress.track(mem_points, "scaling: memory", total=len(mem_points)):
            point = Point(model_name, mem["point"]["d"], mem["point"]["n"], mem["point"]["m"], T, k)
            peaks[model_name].append(step_peak_memory(point, seed=seed))
        for model_name, rows in peaks.items():
            peak = [r["peak_bytes"] for r in rows]
            minimum = [r["min_bytes"] for r in rows]
            per_step, _ = np.polyfit(mem["T"], peak, 1)
            mem["models"][model_name] = {
                "peak_bytes": peak, "min_bytes": minimum, "param_bytes": rows[0]["param_bytes"],
                "ratio": [p / m for p, m in zip(peak, minimum)],
                "fit": log_slope(mem["T"], peak), "min_fit": log_slope(mem["T"], minimum),
                "end_slope": end_slope(mem["T"], peak),
                "bytes_per_step": float(per_step),
                "min_bytes_per_step": model_bptt_memory(model_name, mem["point"]["d"], mem["point"]["n"],
                                                        mem["point"]["m"], 1).bytes,
            }
        result["memory"] = mem
        result["machine"]["loadavg_end"] = loadavg()

    result["param_checks"] = checks
    result["params_all_equal"] = all(c["equal"] for c in checks)
    result["elapsed_s"] = time.perf_counter() - started
    return result


def lstm_rnn_ratios(sweeps: dict, base: dict, k: int) -> dict:
    """LSTM/RNN median step-time ratio at every sweep point, and at the largest one
    (the point with the most RNN training FLOPs)."""
    rows = []
    for var, sweep in sweeps.items():
        for i, value in enumerate(sweep["values"]):
            shape = _shape(base, var, value)
            rnn_t = sweep["models"]["rnn"]["median_s"][i]
            lstm_t = sweep["models"]["lstm"]["median_s"][i]
            rows.append({**shape, "var": var, "rnn_s": rnn_t, "lstm_s": lstm_t, "ratio": lstm_t / rnn_t,
                         "rnn_flops": sweep["models"]["rnn"]["training_flops"][i],
                         "flop_ratio": sweep["models"]["lstm"]["training_flops"][i]
                         / sweep["models"]["rnn"]["training_flops"][i]})
    largest = max(rows, key=lambda r: r["rnn_flops"])
    return {"points": rows, "largest": largest}


# ----------------------------------------------------------------------------- claims


def _slope_verdict(fits: dict, target: float, lo: float, hi: float) -> str:
    """supported when every fit agrees with ``target`` (see :func:`consistent`);
    nuanced when every slope lies in [lo, hi]; else not supported."""
    if all(consistent(fit, target) for fit in fits.values()):
        return "supported"
    if all(lo <= fit["slope"] <= hi for fit in fits.values()):
        return "nuanced"
    return "not supported"


def _disturbance(result: dict, var: str, indices=None) -> str | None:
    """Evidence text when some timed points of a sweep ran beside other work (see :func:`disturbed`)."""
    sweep = result["sweeps"][var]
    threads = result["machine"]["threads"]
    cpus = result["machine"].get("usable_cpus") or 1
    idx = range(len(sweep["values"])) if indices is None else indices
    hit = [(sweep["values"][i], sweep["other_load_cores"][i]) for i in idx
           if disturbed(sweep["other_load_cores"][i], threads, cpus)]
    if not hit:
        return None
    return (f"other processes kept up to {max(c for _, c in hit):.1f} of {cpus} cores busy while "
            f"{var} = {', '.join(str(v) for v, _ in hit)} was timed, so those times measure contention "
            f"(rerun on a quiet machine)")


def _cap(verdict: str, evidence: str, busy: str | None):
    """A verdict from disturbed measurements is at most "nuanced", and says why."""
    if busy is None:
        return verdict, evidence
    return "nuanced", f"{evidence.rstrip('.')}; but {busy}."


def claims(result: dict) -> list[Claim]:
    out = []
    sweeps = result["sweeps"]

    # batch size: linear
    sd = sweeps["d"]
    verdict = _slope_verdict({m: s["fit"] for m, s in sd["models"].items()}, 1.0, 0.2, 1.3)
    parts = []
    for m, s in sd["models"].items():
        note = f"{MODEL_NAMES[m]} {fmt_fit(s['fit'])}"
        if not consistent(s["fit"], 1.0):
            note += (f" (last segment {s['end_slope']:.2f}; GFLOP/s {s['gflops'][0]:.1f} → "
                     f"{s['gflops'][-1]:.1f}")
            aff = s.get("affine")
            if aff and aff["fixed_s"] > 0:
                note += (f"; a fixed {aff['fixed_s'] * 1e3:.2f} ms of the line a + b·d is "
                         f"{min(aff['fixed_share'], 1.0):.0%} of the step at d = {sd['values'][0]}")
            note += ")"
        parts.append(note)
    below = [m for m, s in sd["models"].items() if not consistent(s["fit"], 1.0) and s["fit"]["slope"] < 1]
    reason = {"supported": "every slope agrees with 1",
              "nuanced": ("below 1 because a fixed per-call overhead does not grow with d "
                          "(the achieved GFLOP/s rises along the sweep)") if below
              else "above 1: efficiency falls with d",
              "not supported": "far from 1"}[verdict]
    verdict, ev = _cap(verdict, f"log-log slope of step time vs d = {sd['values'][0]}..{sd['values'][-1]} "
                       f"(95 % CI): {'; '.join(parts)}; {reason}.", _disturbance(result, "d"))
    out.append(Claim("scaling-batch-linear", "Step time grows linearly with batch size d.", verdict, ev,
                     "slope " + ", ".join(f"{MODEL_NAMES[m]} {s['fit']['slope']:.2f}"
                                          for m, s in sd["models"].items()) + " (1 = linear)"))

    # RNN: m²
    if "rnn" in sweeps["m"]["models"]:
        r = sweeps["m"]["models"]["rnn"]
        fit, pred = r["fit"], r["predicted_exponent"]
        m_vals = sweeps["m"]["values"]
        if consistent(fit, 2.0, 0.15):
            verdict = "supported"
        elif 1.0 <= fit["slope"] <= 2.5:
            verdict = "nuanced"
        else:
            verdict = "not supported"
        agree = "agrees with" if consistent(fit, pred) else ("is below" if fit["slope"] < pred else "is above")
        verdict, ev = _cap(verdict, (
            f"slope vs m = {m_vals[0]}..{m_vals[-1]} (n = {sweeps['m']['base']['n']}): {fmt_fit(fit)}, "
            f"last segment {r['end_slope']:.2f}; it {agree} the exponent the formula predicts at these "
            f"sizes, {pred:.2f} (last segment {r['predicted_end_exponent']:.2f}: the n·m term counts "
            f"until m ≫ n); GFLOP/s {r['gflops'][0]:.1f} → {r['gflops'][-1]:.1f}."), _disturbance(result, "m"))
        out.append(Claim("scaling-rnn-m2", "RNN time grows as m² in the hidden size m.", verdict, ev,
                         f"slope {fit['slope']:.2f} (formula {pred:.2f}, claim 2)"))

    # LSTM ≈ 4 RNN
    lr = result.get("lstm_rnn_time")
    if lr:
        big = lr["largest"]
        ratio = big["ratio"]
        if 3.0 <= ratio <= 5.0:
            verdict = "supported"
        elif 2.0 <= ratio <= 6.0:
            verdict = "nuanced"
        else:
            verdict = "not supported"
        span = [p["ratio"] for p in lr["points"]]
        var = big["var"]
        verdict, ev = _cap(verdict, (
            f"measured LSTM/RNN step-time ratio {ratio:.2f} at the largest point (d={big['d']}, n={big['n']}, "
            f"m={big['m']}, T={big['T']}; FLOP ratio {big['flop_ratio']:.2f}); over all sweep points "
            f"{min(span):.2f}..{max(span):.2f}."),
            _disturbance(result, var, [sweeps[var]["values"].index(big[var])]))
        out.append(Claim("scaling-lstm-4x", "An LSTM costs about four times an RNN of the same size.", verdict, ev,
                         f"LSTM / RNN time {ratio:.2f}× at the largest point"))

    # T: time and memory linear
    sT = sweeps["T"]
    rec = {m: s for m, s in sT["models"].items() if m != "mlp"}
    mems = result["memory"]["models"]
    fits = {f"{MODEL_NAMES[m]} time": s for m, s in rec.items()}
    fits.update({f"{MODEL_NAMES[m]} memory": mm for m, mm in mems.items()})
    verdict = _slope_verdict({k: v["fit"] for k, v in fits.items()}, 1.0, 0.6, 1.3)
    text = "; ".join(f"{k} {fmt_fit(v['fit'])} (last segment {v['end_slope']:.2f})" for k, v in fits.items())
    T0, T1 = sT["values"][0], sT["values"][-1]
    extra = []
    off = [m for m, s in rec.items() if not consistent(s["fit"], 1.0)]
    if off and all("loss_scaled" in rec[m] for m in off):
        scaled_ok = all(consistent(rec[m]["loss_scaled"]["fit"], 1.0) for m in off)
        if scaled_ok and all(consistent(mm["fit"], 1.0) for mm in mems.values()):
            verdict = "nuanced"
        extra.append("with loss scaling ×2^{} (the same arithmetic, small gradients kept out of the subnormal "
                     "range) ".format(rec[off[0]]["loss_scaled"]["log2_scale"]) + ", ".join(
                         f"{MODEL_NAMES[m]} {fmt_fit(rec[m]['loss_scaled']['fit'])}, plain/scaled at T = {T1} "
                         f"{rec[m]['median_s'][-1] / rec[m]['loss_scaled']['median_s'][-1]:.1f}×" for m in off))
    under = [(m, s["underflow"][-1]) for m, s in rec.items() if "underflow" in s]
    under = [(m, u) for m, u in under if u["subnormal_fraction"] > 0 or u["zero_fraction"] > 0]
    if under:
        extra.append(f"at T = {T1} the vanishing gradient underflows: " + ", ".join(
            f"{MODEL_NAMES[m]} max |∂L/∂x_0| = {u['first_step_scale']:.1e}, {u['subnormal_fraction']:.1%} of "
            f"∂L/∂x subnormal and {u['zero_fraction']:.1%} zero" for m, u in under)
            + " (arithmetic on subnormal floats is many times slower on x86)")
    fixed_notes = ", ".join(
        f"{MODEL_NAMES[m]} {s['affine']['fixed_s'] * 1e3:.2f} ms ({min(s['affine']['fixed_share'], 1.0):.0%} "
        f"of the step at T = {T0})" for m, s in rec.items() if s.get("affine") and s["affine"]["fixed_s"] > 0)
    if fixed_notes:
        extra.append(f"time = a + b·T has a fixed part a of {fixed_notes}")
    mem_notes = ", ".join(
        f"{MODEL_NAMES[m]} {mm['bytes_per_step'] / 1024:.0f} KiB/step (BPTT minimum "
        f"{mm['min_bytes_per_step'] / 1024:.0f})" for m, mm in mems.items())
    verdict, ev = _cap(verdict, (
        f"log-log slopes vs T = {T0}..{T1} (95 % CI): {text}; the traced peak grows by {mem_notes}"
        + "".join(f"; {e}" for e in extra) + "."), _disturbance(result, "T"))
    out.append(Claim("scaling-T-linear",
                     "The usual analysis leaves out T: time and BPTT memory grow linearly in T.", verdict, ev,
                     "slope " + ", ".join(f"{k} {v['fit']['slope']:.2f}" for k, v in fits.items())))

    # parameter counts
    a = result["analytic"]["models"]
    checks = result["param_checks"]
    n_bad = sum(not c["equal"] for c in checks)
    four = None
    if "rnn" in a and "lstm" in a:
        four = a["lstm"]["params"]["body"] / a["rnn"]["params"]["body"]
    if n_bad == 0 and (four is None or four == 4.0):
        verdict = "supported"
    else:
        verdict = "not supported"
    ref = result["analytic"]["reference"]
    ev = (f"{len(checks) - n_bad}/{len(checks)} built models have exactly the formula's parameters per layer"
          f" (every sweep point and the reference)")
    if four is not None:
        ev += (f"; at n={ref['n']}, m={ref['m']}: RNN layer {a['rnn']['params']['body']:,}, "
               f"LSTM layer {a['lstm']['params']['body']:,}, ratio {four:.3f}")
    out.append(Claim("scaling-param-counts",
                     "Parameter counts: an RNN layer has n·m + m² + 2m, an LSTM layer 4× that.",
                     verdict, ev + ".",
                     f"{len(checks) - n_bad}/{len(checks)} counts exact"
                     + (f"; LSTM / RNN {four:.3f}" if four is not None else "")))
    return out


# ----------------------------------------------------------------------------- tables


def _mib(b) -> str:
    return f"{b / 2**20:.2f}"


def _usual_claims_table(an: dict) -> Table:
    """The textbook orders beside the exact counts of complexity.py, valued at the reference."""
    ref, k, a = an["reference"], an["k"], an["models"]
    spec = [
        ("mlp", "MLP training FLOPs", "O(d·n·m)", "3·2·d·(T·n·m + m·k)  (input = T·n flattened)",
         lambda x: f"{x['training_flops'] / 1e6:.1f} M"),
        ("rnn", "RNN training FLOPs", "O(d·n·m + d·m²) per step", "3·2·T·d·(n·m + m²) + 3·2·d·m·k",
         lambda x: f"{x['training_flops'] / 1e6:.1f} M"),
        ("lstm", "LSTM training FLOPs", "4 × RNN", "3·2·T·d·4·(n·m + m²) + 3·2·d·m·k",
         lambda x: f"{x['training_flops'] / 1e6:.1f} M"),
        ("rnn", "RNN parameters", "O(n·m + m²)", "n·m + m² + 2m  (+ head m·k + k)",
         lambda x: f"{x['params']['body']:,} (+ {x['params']['head']:,})"),
        ("lstm", "LSTM parameters", "4 × RNN", "4·(n·m + m² + 2m)  (+ head)",
         lambda x: f"{x['params']['body']:,} (+ {x['params']['head']:,})"),
        ("rnn", "RNN BPTT activations", "left out (O(T·d·m))", "T·d·(m + n) floats",
         lambda x: f"{_mib(x['bptt_bytes'])} MiB"),
        ("lstm", "LSTM BPTT activations", "left out (O(T·d·m))", "T·d·(6m + n) floats",
         lambda x: f"{_mib(x['bptt_bytes'])} MiB"),
    ]
    rows = [[what, usual, exact, fmt(a[model])] for model, what, usual, exact, fmt in spec if model in a]
    return Table(f"The usual claims and the exact counts (values at d={ref['d']}, n={ref['n']}, "
                 f"m={ref['m']}, T={ref['T']}, k={k}; a multiply-add is 2 FLOPs)",
                 ["quantity", "usual claim", "exact (rnnlab.analysis.complexity)", "value"], rows)


def tables(result: dict) -> list[Table]:
    an = result["analytic"]
    out = [_usual_claims_table(an)]
    ref = an["reference"]
    rows = []
    counted = {c["model"]: c for c in result["param_checks"]
               if (c["n"], c["m"], c["T"]) == (ref["n"], ref["m"], ref["T"])}
    for model_name, a in an["models"].items():
        c = counted.get(model_name)
        rows.append([MODEL_NAMES[model_name], a["params_total"],
                     sum(c["counted"].values()) if c else "", a["forward_gemm_flops"] / 1e6,
                     a["forward_elementwise_flops"] / 1e6, a["training_flops"] / 1e6,
                     _mib(a["bptt_bytes"])])
    if an["lstm_rnn"]:
        r = an["lstm_rnn"]
        rows.append(["LSTM / RNN", f"{r['params_total']:.2f} (layer {r['params_layer']:.2f})", "",
                     f"{r['forward_gemm_flops']:.2f}", "", f"{r['training_flops']:.2f}",
                     f"{r['bptt_bytes']:.2f}"])
    out.append(Table(
        f"Analytic cost at d={ref['d']}, n={ref['n']}, m={ref['m']}, T={ref['T']}, k={an['k']} (float32)",
        ["model", "params (formula)", "params (counted)", "forward GEMM MFLOP", "forward elementwise MFLOP",
         "training MFLOP", "BPTT minimum MiB"], rows))

    rows = []
    for var, sweep in result["sweeps"].items():
        vals = sweep["values"]
        for model_name, s in sweep["models"].items():
            loads = [c for c in sweep.get("other_load_cores", []) if c is not None]
            rows.append([var, f"{vals[0]}..{vals[-1]}", MODEL_NAMES[model_name], fmt_fit(s["fit"]),
                         f"{s['predicted_exponent']:.2f}",
                         f"{s['median_s'][0] * 1e3:.3g} → {s['median_s'][-1] * 1e3:.3g}",
                         f"{s['gflops'][0]:.2f} → {s['gflops'][-1]:.2f}", s["regime"],
                         f"{max(loads):.2f}" if loads else ""])
    base = next(iter(result["sweeps"].values()))["base"]
    gemm = result.get("gemm")
    title = (f"Step time against each variable (others at d={base['d']}, n={base['n']}, m={base['m']}, "
             f"T={base['T']}; {result['machine']['threads']} thread(s)")
    title += f"; GEMM {gemm['size']}³ runs at {gemm['gflops']:.1f} GFLOP/s)" if gemm else ")"
    out.append(Table(title, ["variable", "range", "model", "measured slope [95 % CI]", "formula exponent",
                             "median ms", "achieved GFLOP/s", "regime", "others' cores (max)"], rows))

    lr = result.get("lstm_rnn_time")
    if lr:
        rows = [[p["var"], p["d"], p["n"], p["m"], p["T"], f"{p['rnn_s'] * 1e3:.3g}", f"{p['lstm_s'] * 1e3:.3g}",
                 f"{p['ratio']:.2f}", f"{p['flop_ratio']:.2f}"] for p in lr["points"]]
        out.append(Table("LSTM / RNN step-time ratio at every sweep point",
                         ["swept", "d", "n", "m", "T", "RNN ms", "LSTM ms", "time ratio", "FLOP ratio"], rows))

    sT = result["sweeps"]["T"]
    rows = []
    for i, T in enumerate(sT["values"]):
        for model_name, s in sT["models"].items():
            if "underflow" not in s:
                continue
            u = s["underflow"][i]
            sc = s.get("loss_scaled")
            rows.append([T, MODEL_NAMES[model_name], f"{s['median_s'][i] * 1e3:.3g}",
                         f"{sc['median_s'][i] * 1e3:.3g}" if sc else "",
                         f"{s['median_s'][i] / sc['median_s'][i]:.2f}" if sc else "",
                         f"{u['first_step_scale']:.1e}", f"{u['subnormal_fraction']:.2%}", f"{u['zero_fraction']:.2%}"])
    if rows:
        log2 = next((s["loss_scaled"]["log2_scale"] for s in sT["models"].values() if "loss_scaled" in s), None)
        out.append(Table(
            "The vanishing gradient costs time: float32 gradients below 1.2e-38 are subnormal, and slow"
            + (f" (loss-scaled: the loss gradient ×2^{log2}, the learning rate ×2^-{log2}: the same updates)"
               if log2 else ""),
            ["T", "model", "plain ms", "loss-scaled ms", "plain / scaled", "max |∂L/∂x_0|",
             "∂L/∂x subnormal", "∂L/∂x zero"], rows))

    mem = result["memory"]
    rows = []
    for model_name, mm in mem["models"].items():
        for T, peak, minimum, ratio in zip(mem["T"], mm["peak_bytes"], mm["min_bytes"], mm["ratio"]):
            rows.append([MODEL_NAMES[model_name], T, _mib(peak), _mib(minimum), f"{ratio:.2f}"])
        rows.append([MODEL_NAMES[model_name], "slope", fmt_fit(mm["fit"]), fmt_fit(mm["min_fit"]),
                     f"{mm['bytes_per_step'] / mm['min_bytes_per_step']:.2f} per step"])
    p = mem["point"]
    out.append(Table(f"Traced peak memory of a training step against T (d={p['d']}, n={p['n']}, m={p['m']})",
                     ["model", "T", "traced peak MiB", "BPTT minimum MiB", "peak / minimum"], rows))
    return out


# ----------------------------------------------------------------------------- plots


COLORS = {k: style.model_color(k) for k in ("mlp", "rnn", "lstm", "gru")}  # kept for importers


def _predicted_curve(model_name, var, values, base, k, medians):
    """The formula's curve, time ∝ training FLOPs, at the best achieved FLOP rate of the sweep:
    through the most efficient measured point, and under (or on) every other one."""
    flops = [model_training_flops(model_name, k=k, **_shape(base, var, v)) for v in values]
    rate = max(f / t for f, t in zip(flops, medians))
    xs = np.unique(np.round(np.geomspace(min(values), max(values), 30)).astype(int))
    ys = [model_training_flops(model_name, k=k, **_shape(base, var, int(x))) / rate for x in xs]
    return xs, ys


def _value_ticks(ax, values) -> None:
    """A log x axis labelled with the swept values themselves."""
    from matplotlib.ticker import NullFormatter

    ax.set_xscale("log")
    ax.set_xticks(list(values))
    ax.set_xticklabels([str(v) for v in values])
    ax.xaxis.set_minor_formatter(NullFormatter())


def plots(result: dict, out_dir) -> list[Path]:
    pyplot = plt()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    k = result["config"]["k"]
    paths = []

    fig, axes = pyplot.subplots(2, 2, figsize=(10, 7.6))
    kinds, scaled = [], False
    for ax, var in zip(axes.flat, VARIABLES):
        sweep = result["sweeps"][var]
        vals = np.array(sweep["values"], dtype=float)
        for model_name, s in sweep["models"].items():
            kinds += [model_name] if model_name not in kinds else []
            c, mk = style.model_color(model_name), style.model_marker(model_name)
            med = np.array(s["median_s"]) * 1e3
            lo = med - np.array([st["p10"] for st in s["stats"]]) * 1e3
            hi = np.array([st["p90"] for st in s["stats"]]) * 1e3 - med
            ax.errorbar(vals, med, yerr=[np.maximum(lo, 0), np.maximum(hi, 0)], fmt=mk, color=c, ms=5,
                        capsize=2)
            fit = s["fit"]
            ax.plot(vals, np.exp(fit["intercept"]) * vals ** fit["slope"] * 1e3, "-", color=c, lw=1.2)
            sc = s.get("loss_scaled")
            if sc:
                scaled = True
                ax.plot(vals, np.array(sc["median_s"]) * 1e3, ":", marker=mk, color=c, ms=5, mfc="none", lw=1)
            xs, ys = _predicted_curve(model_name, var, sweep["values"], sweep["base"], k, s["median_s"])
            ax.plot(xs, np.array(ys) * 1e3, "--", color=c, lw=1, alpha=0.8)
        _value_ticks(ax, sweep["values"])
        style.log_axis(ax)
        ax.set_xlabel(VARIABLE_NAMES[var])
        ax.set_ylabel("step time, ms (log)")
        b = sweep["base"]
        ax.set_title(f"vs {var}  (" + ", ".join(f"{v}={b[v]}" for v in VARIABLES if v != var) + ")")
        ax.grid(True, which="both", alpha=0.3)
    extra = [style.line_key("measured median, p10–p90", marker="o", ls="none"),
             style.line_key("log-log fit", ls="-"),
             style.line_key("FLOP formula at the best GFLOP/s", ls="--")]
    if scaled:
        extra.append(style.line_key("loss-scaled", ls=":", marker="o", mfc="none"))
    style.model_legend(fig, kinds, extra, ncol=4)
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    paths.append(style.save(
        fig, out_dir / "scaling_time.png",
        "Training step time against each size on log-log axes: a straight line's slope is the exponent; "
        "where the points leave the dashed formula line, overheads (not FLOPs) set the time."))

    mem = result["memory"]
    fig, ax = pyplot.subplots(figsize=(7.5, 4.2))
    Ts = np.array(mem["T"], dtype=float)
    for model_name, mm in mem["models"].items():
        c, mk = style.model_color(model_name), style.model_marker(model_name)
        ax.plot(Ts, np.array(mm["peak_bytes"]) / 2**20, "-", marker=mk, color=c,
                label=f"{style.model_label(model_name)} traced peak (slope {mm['fit']['slope']:.2f})")
        ax.plot(Ts, np.array(mm["min_bytes"]) / 2**20, "--", color=c,
                label=f"{style.model_label(model_name)} BPTT minimum")
    _value_ticks(ax, mem["T"])
    style.log_axis(ax)
    ax.set_xlabel("sequence length T")
    ax.set_ylabel("MiB (log)")
    p = mem["point"]
    ax.set_title(f"Memory of a training step vs T (d={p['d']}, n={p['n']}, m={p['m']})")
    ax.grid(True, which="both", alpha=0.3)
    style.legend_outside(ax)
    fig.tight_layout()
    paths.append(style.save(
        fig, out_dir / "scaling_memory.png",
        "Traced peak memory (solid) against the BPTT minimum (dashed): parallel lines of slope 1 mean "
        "memory grows linearly in T with a constant overhead."))
    return paths
