"""Parallelism: "an MLP's computations are independent", "an RNN is sequential in time".

Samples per second of a whole training step (forward, backward, SGD update)
against the batch size d and against the sequence length T, with BLAS pinned
to 1 and to 2 threads (threadpoolctl, :func:`rnnlab.bench.machine.pinned_threads`).

What the two models do with the work:

- the MLP reads the flattened sequence: T widens its input, and the whole
  step is a few GEMMs of d rows, one call each, that BLAS can split across
  cores;
- the RNN and the LSTM run T steps one after the other; each step is a GEMM
  of d rows plus elementwise work that NumPy runs on one core. Only the batch
  (and the gate/hidden width) is parallel inside a step; a longer sequence adds
  steps, not parallel work.

Hence what is measured: the 1 → 2 thread speedup of each model at the largest
batch, how the speedup moves with d and with T, the slope of step time
against T, and the throughput gain from batching.

At every point the models are timed interleaved (A B C A B C ...); the thread
counts are run back to back at the same point, alternating which goes first.
The CPU time other processes took during each measurement is recorded
(``other_load_cores``): a 2-thread speedup means little when another process
held a core. With OpenBLAS's pthreads pool on a 2-core machine, one busy core
makes a 2-thread GEMM an order of magnitude *slower* than 1 thread (a BLAS
thread waits for a core), so disturbed measurements are retried within
``retry_budget`` seconds, the least disturbed attempt is kept, and a claim
built on a still-disturbed measurement gets a "nuanced" verdict that says so.
A measurement whose rounds are so slow that ``min_repeats`` of them would pass
``time_cap`` seconds times fewer rounds (at least two).

At long T the gradient of the RNN vanishes into subnormal floats, whose
arithmetic is slow (see :mod:`rnnlab.experiments.scaling`; from T ≈ 120 here,
where a step can become 10-20× dearer). The presets keep T below that, so that
the T sweep measures sequential steps; it records how much of ∂L/∂x has
underflowed at each T, so that a super-linear slope can be told apart.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..bench.machine import backend, cpu_model, loadavg, pinned_threads
from ..bench.models import Point, make_pair
from ..bench.timing import interleave
from ..report import style
from .base import Claim, Progress, Table, log_slope, plt, time_stats
from .scaling import (COLORS, MODEL_NAMES, _value_ticks, consistent, disturbed, end_slope, fmt_fit,
                      gradient_underflow, measure_undisturbed, new_retry_budget, seed_from, usable_cpus)

NAME = "parallelism"
TITLE = "Parallelism: independent samples against sequential time steps"
TIMING = True  # measures time: runs alone on the driver, never beside another task

# Speedups closer than this are a tie (timing noise on a shared machine).
SPEEDUP_MARGIN = 0.1

PRESETS = {
    # ~3 s on a quiet machine (up to ~10 s when another process holds a core)
    "quick": {
        "models": ["mlp", "rnn", "lstm"], "k": 10, "threads": [1, 2], "backend": "numpy",
        "n": 32, "m": 64,
        "batch": {"T": 16, "d": [2, 16, 128]},
        "length": {"d": 32, "T": [4, 16, 64]},
        "budget": 0.08, "warmup": 1, "min_repeats": 3, "max_repeats": 200,
        "retry_budget": 0.0,  # seconds spent at most re-measuring points disturbed by other processes
        "time_cap": 0.5,  # seconds one measurement may take before it times fewer rounds
    },
    # ~25 s on a quiet machine, ~60 s beside another process
    "default": {
        "models": ["mlp", "rnn", "lstm"], "k": 10, "threads": [1, 2], "backend": "numpy",
        "n": 32, "m": 128,
        "batch": {"T": 16, "d": [4, 16, 64, 256, 1024]},
        "length": {"d": 128, "T": [2, 8, 32, 96]},
        "budget": 0.3, "warmup": 2, "min_repeats": 5, "max_repeats": 500,
        "retry_budget": 20.0, "time_cap": 2.0,
    },
    # ~2.5 min
    "full": {
        "models": ["mlp", "rnn", "lstm"], "k": 10, "threads": [1, 2], "backend": "numpy",
        "n": 32, "m": 256,
        "batch": {"T": 16, "d": [1, 4, 16, 64, 256, 1024, 2048]},
        "length": {"d": 256, "T": [1, 4, 16, 48, 96]},
        "budget": 1.0, "warmup": 3, "min_repeats": 7, "max_repeats": 2000,
        "retry_budget": 60.0, "time_cap": 6.0,
    },
}


def _measure(models, shape: dict, threads: list, cfg: dict, seed: int, flip: bool, retry: dict) -> dict:
    """Time every model at ``shape`` under each thread count (retried when disturbed,
    see :func:`rnnlab.experiments.scaling.measure_undisturbed`).

    Returns {str(threads): {"stats": {model: time_stats}, "other_load_cores": float | None,
    "attempts": int}}.
    """
    steps = [make_pair(Point(m, k=cfg["k"], **shape), seed=seed, with_torch=False).rnnlab_step
             for m in models]
    out = {}
    for t in (reversed(threads) if flip else threads):
        def measure(t=t):
            with pinned_threads(int(t)):
                # one untimed round first (the first warm-up round) sizes the run: when a
                # round is so slow (a contended multi-thread run can be 30x slower) that
                # min_repeats rounds would overrun time_cap, fewer rounds are timed.
                started = time.perf_counter()
                for step in steps:
                    step()
                round_s = time.perf_counter() - started
                repeats, most = int(cfg["min_repeats"]), cfg.get("max_repeats")
                cap = cfg.get("time_cap")
                if cap and round_s * (repeats + cfg["warmup"] - 1) > cap:
                    repeats = most = max(2, int(cap / round_s) - max(cfg["warmup"] - 1, 0))
                return interleave(steps, budget=cfg["budget"], warmup=max(cfg["warmup"] - 1, 0),
                                  min_repeats=repeats, max_repeats=most)

        samples, cores, attempts = measure_undisturbed(measure, int(t), retry)
        out[str(t)] = {"stats": {m: time_stats(s) for m, s in zip(models, samples)},
                       "other_load_cores": cores, "attempts": attempts}
    return out


def _sweep(models, var: str, values, fixed: dict, threads, cfg, seed, progress, label, retry) -> dict:
    """One sweep (var = "d" or "T"): time, samples/s and speedup per model and thread count."""
    def shape_of(value):
        return {"d": fixed.get("d"), "n": cfg["n"], "m": cfg["m"], "T": fixed.get("T"), var: int(value)}

    raw = []
    for i, value in enumerate(progress.track(values, label, total=len(values))):
        raw.append(_measure(models, shape_of(value), threads, cfg, seed, flip=bool(i % 2), retry=retry))
    tkeys = [str(t) for t in threads]
    sweep = {"var": var, "values": [int(v) for v in values], "fixed": fixed,
             "other_load_cores": {t: [r[t]["other_load_cores"] for r in raw] for t in tkeys},
             "attempts": {t: [r[t]["attempts"] for r in raw] for t in tkeys},
             "models": {}}
    for m in models:
        per_thread = {}
        for t in tkeys:
            stats = [r[t]["stats"][m] for r in raw]
            med = [s["median"] for s in stats]
            d_values = sweep["values"] if var == "d" else [fixed["d"]] * len(values)
            per_thread[t] = {"stats": stats, "median_s": med,
                             "samples_per_s": [d / s for d, s in zip(d_values, med)],
                             "fit": log_slope(sweep["values"], med) if len(values) >= 3 else None,
                             "end_slope": end_slope(sweep["values"], med) if len(values) >= 2 else None}
        entry = {"threads": per_thread}
        if var == "T" and m != "mlp":  # how far the gradient has vanished at each T
            entry["underflow"] = [gradient_underflow(Point(m, k=cfg["k"], **shape_of(v)), seed) for v in values]
        if len(tkeys) >= 2:
            lo, hi = tkeys[0], tkeys[-1]
            entry["speedup"] = [a / b for a, b in zip(per_thread[lo]["median_s"], per_thread[hi]["median_s"])]
        sweep["models"][m] = entry
    return sweep


def run(config: dict, *, rng=None, progress: Progress | None = None) -> dict:
    """Samples/s against d and against T, for each thread count."""
    progress = progress or Progress(None)
    cfg = config
    seed = seed_from(rng)
    models = list(cfg["models"])
    threads = sorted(int(t) for t in cfg["threads"])
    started = time.perf_counter()
    result = {"config": cfg, "seed": seed, "threads": threads,
              "machine": {"cpu_model": cpu_model(), "usable_cpus": usable_cpus(),
                          "backend": cfg.get("backend"), "loadavg_start": loadavg()}}
    retry = new_retry_budget(cfg.get("retry_budget", 0.0))
    with backend(cfg.get("backend")):
        result["batch"] = _sweep(models, "d", cfg["batch"]["d"], {"T": int(cfg["batch"]["T"])}, threads,
                                 cfg, seed, progress, "parallelism: batch sweep", retry)
        result["length"] = _sweep(models, "T", cfg["length"]["T"], {"d": int(cfg["length"]["d"])}, threads,
                                  cfg, seed, progress, "parallelism: length sweep", retry)
    result["retries"] = retry["used"]
    result["machine"]["loadavg_end"] = loadavg()
    result["elapsed_s"] = time.perf_counter() - started
    return result


# ----------------------------------------------------------------------------- claims


def _other_load(sweep: dict, t: str, indices) -> float:
    """The most cores other processes used while ``t`` threads were timed at the given points."""
    loads = [sweep["other_load_cores"][t][i] for i in indices]
    loads = [c for c in loads if c is not None]
    return max(loads) if loads else 0.0


def _contention(result: dict, sweep: dict, t: str, indices) -> str | None:
    """Evidence text when the ``t``-thread timing at these points ran beside other work, else None."""
    load = _other_load(sweep, t, indices)
    if disturbed(load, int(t), result["machine"].get("usable_cpus") or 1):
        return (f"other processes kept {load:.1f} cores busy while {t} threads were timed, so the speedup "
                f"measures contention, not parallelism (rerun on a quiet machine)")
    return None


def claims(result: dict) -> list[Claim]:
    out = []
    threads = result["threads"]
    batch, length = result["batch"], result["length"]
    models = batch["models"]
    recurrent = [m for m in ("rnn", "lstm") if m in models]
    two = len(threads) >= 2 and threads[-1] > threads[0]
    t_lo, t_hi = str(threads[0]), str(threads[-1])

    # 1. the MLP parallelises better than the recurrent models
    if "mlp" in models and recurrent:
        claim = ("MLP computations are independent, so an MLP gains more from extra cores than an RNN, "
                 "which is sequential in time.")
        if not two or result["machine"].get("usable_cpus", 2) < 2:
            out.append(Claim("parallel-mlp-vs-rnn", claim, "nuanced",
                             f"not testable here: threads {threads}, usable CPUs "
                             f"{result['machine'].get('usable_cpus')}."))
        else:
            sp = {m: models[m]["speedup"][-1] for m in ["mlp"] + recurrent}
            gaps = [sp["mlp"] - sp[m] for m in recurrent]
            busy = _contention(result, batch, t_hi, [-1])
            if busy:
                verdict = "nuanced"
            elif all(g >= SPEEDUP_MARGIN for g in gaps):
                verdict = "supported"
            elif all(g <= -SPEEDUP_MARGIN for g in gaps):
                verdict = "not supported"
            else:
                verdict = "nuanced"
            d_max = batch["values"][-1]
            out.append(Claim(
                "parallel-mlp-vs-rnn", claim, verdict,
                f"{t_lo} → {t_hi} thread speedup of a training step at d = {d_max}, T = {batch['fixed']['T']}: "
                + ", ".join(f"{MODEL_NAMES[m]} {s:.2f}×" for m, s in sp.items())
                + f" (ties within ±{SPEEDUP_MARGIN})" + (f"; but {busy}." if busy else "."),
                f"{t_hi}-thread speedup " + ", ".join(f"{MODEL_NAMES[m]} {s:.2f}×" for m, s in sp.items())))

    # 2. RNN time linear in T
    if recurrent:
        fits = {m: models_T["threads"][t_lo]["fit"] for m, models_T in length["models"].items() if m in recurrent}
        if all(consistent(f, 1.0) for f in fits.values()):
            verdict = "supported"
        elif all(0.6 <= f["slope"] <= 1.3 for f in fits.values()):
            verdict = "nuanced"
        else:
            verdict = "not supported"
        T_max = length["values"][-1]
        per_step = ", ".join(
            f"{MODEL_NAMES[m]} {length['models'][m]['threads'][t_lo]['median_s'][-1] / T_max * 1e6:.0f} µs"
            for m in recurrent)
        ev = (f"slope of step time vs T = {length['values'][0]}..{T_max} at d = {length['fixed']['d']}, "
              f"{t_lo} thread: " + "; ".join(f"{MODEL_NAMES[m]} {fmt_fit(f)}" for m, f in fits.items())
              + f"; time per time step at T = {T_max}: {per_step}")
        if "mlp" in length["models"]:
            mf = length["models"]["mlp"]["threads"][t_lo]["fit"]
            ev += f"; for contrast the MLP, whose input widens with T, {fmt_fit(mf)}"
        under = [(m, length["models"][m]["underflow"][-1]) for m in recurrent if "underflow" in length["models"][m]]
        under = [(m, u) for m, u in under if u["subnormal_fraction"] > 0]
        if under:
            ev += (f"; at T = {T_max} the vanishing gradient reaches subnormal floats ("
                   + ", ".join(f"{MODEL_NAMES[m]} {u['subnormal_fraction']:.1%} of ∂L/∂x" for m, u in under)
                   + "), whose slow arithmetic makes late steps dearer than early ones")
        out.append(Claim("parallel-rnn-linear-T",
                         "An RNN's time grows linearly with T, because its steps run one after another.",
                         verdict, ev + ".",
                         "slope " + ", ".join(f"{MODEL_NAMES[m]} {f['slope']:.2f}" for m, f in fits.items())
                         + " (1 = linear)"))

    # 3. batching raises RNN throughput (the best thread count at each end)
    if recurrent:
        def best(m, i):
            return max(models[m]["threads"][t]["samples_per_s"][i] for t in models[m]["threads"])

        ends = {m: (best(m, 0), best(m, -1)) for m in recurrent}
        gains = {m: b / a for m, (a, b) in ends.items()}
        if all(g >= 2.0 for g in gains.values()):
            verdict = "supported"
        elif all(g >= 1.2 for g in gains.values()):
            verdict = "nuanced"
        else:
            verdict = "not supported"
        d0, d1 = batch["values"][0], batch["values"][-1]
        out.append(Claim(
            "parallel-batch-throughput",
            "Batching is how a sequential RNN uses the machine: samples per second rise with the batch size.",
            verdict,
            f"samples/s (best thread count) from d = {d0} to d = {d1}: " + ", ".join(
                f"{MODEL_NAMES[m]} {a:,.0f} → {b:,.0f} ({gains[m]:.1f}×)" for m, (a, b) in ends.items())
            + f", for {d1 / d0:g}× the batch; the T = {batch['fixed']['T']} sequential steps cost "
            f"about the same per call whatever d is, so a larger batch amortises them.",
            ", ".join(f"{MODEL_NAMES[m]} {g:.1f}×" for m, g in gains.items())
            + f" samples/s for {d1 / d0:g}× the batch"))

    # 4. T adds parallel work to the MLP, not to the RNN
    if two and "mlp" in length["models"] and "rnn" in length["models"]:
        sp_m = length["models"]["mlp"]["speedup"]
        sp_r = length["models"]["rnn"]["speedup"]
        dm, dr = sp_m[-1] - sp_m[0], sp_r[-1] - sp_r[0]
        busy = _contention(result, length, t_hi, [0, -1])
        if busy:
            verdict = "nuanced"
        elif dm - dr >= SPEEDUP_MARGIN:
            verdict = "supported"
        elif dm - dr <= -SPEEDUP_MARGIN:
            verdict = "not supported"
        else:
            verdict = "nuanced"
        T0, T1 = length["values"][0], length["values"][-1]
        out.append(Claim(
            "parallel-T-adds-steps-not-width",
            "A longer sequence gives an MLP more parallel work but an RNN only more sequential steps: "
            "the MLP's thread speedup grows with T, the RNN's does not.", verdict,
            f"{t_lo} → {t_hi} thread speedup from T = {T0} to T = {T1} at d = {length['fixed']['d']}: "
            f"MLP {sp_m[0]:.2f}× → {sp_m[-1]:.2f}×, RNN {sp_r[0]:.2f}× → {sp_r[-1]:.2f}×"
            + (f"; but {busy}." if busy else "."),
            f"speedup MLP {sp_m[0]:.2f}→{sp_m[-1]:.2f}×, RNN {sp_r[0]:.2f}→{sp_r[-1]:.2f}×"))
    return out


# ----------------------------------------------------------------------------- tables


def _sweep_table(result: dict, key: str) -> Table:
    sweep = result[key]
    tkeys = [str(t) for t in result["threads"]]
    cols = [sweep["var"], "model"] + [f"samples/s, {t} thr" for t in tkeys] + [f"ms/step, {t} thr" for t in tkeys]
    if len(tkeys) >= 2:
        cols.append(f"speedup {tkeys[0]}→{tkeys[-1]}")
    cols += [f"others' cores, {t} thr" for t in tkeys]
    rows = []
    for i, value in enumerate(sweep["values"]):
        for m, entry in sweep["models"].items():
            row = [value, MODEL_NAMES[m]]
            row += [f"{entry['threads'][t]['samples_per_s'][i]:,.0f}" for t in tkeys]
            row += [f"{entry['threads'][t]['median_s'][i] * 1e3:.3g}" for t in tkeys]
            if "speedup" in entry:
                row.append(f"{entry['speedup'][i]:.2f}")
            for t in tkeys:
                load = sweep["other_load_cores"][t][i]
                row.append("" if load is None else f"{load:.2f}")
            rows.append(row)
    fixed = ", ".join(f"{k}={v}" for k, v in sweep["fixed"].items())
    cfg = result["config"]
    return Table(f"Throughput against {sweep['var']} ({fixed}, n={cfg['n']}, m={cfg['m']})", cols, rows)


def tables(result: dict) -> list[Table]:
    out = [_sweep_table(result, "batch"), _sweep_table(result, "length")]
    tkeys = [str(t) for t in result["threads"]]
    rows = []
    for m in result["batch"]["models"]:
        b, l = result["batch"]["models"][m], result["length"]["models"][m]
        row = [MODEL_NAMES[m]]
        row.append(f"{b['speedup'][-1]:.2f}" if "speedup" in b else "")
        row.append(f"{l['speedup'][-1]:.2f}" if "speedup" in l else "")
        for t in tkeys:
            f = l["threads"][t]["fit"]
            row.append(fmt_fit(f) if f else "")
        for t in tkeys:
            f = b["threads"][t]["fit"]
            row.append(fmt_fit(f) if f else "")
        rows.append(row)
    cols = (["model", f"speedup at d={result['batch']['values'][-1]}", f"speedup at T={result['length']['values'][-1]}"]
            + [f"time slope vs T, {t} thr" for t in tkeys] + [f"time slope vs d, {t} thr" for t in tkeys])
    out.append(Table("Summary: thread speedups and log-log slopes of step time (95 % CI)", cols, rows))
    return out


# ----------------------------------------------------------------------------- plots


def plots(result: dict, out_dir) -> list[Path]:
    pyplot = plt()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tkeys = [str(t) for t in result["threads"]]
    styles = ["-", "--", ":", "-."]
    fig, axes = pyplot.subplots(2, 2, figsize=(10, 7.4))
    kinds = []
    for col, key in enumerate(("batch", "length")):
        sweep = result[key]
        x = np.array(sweep["values"], dtype=float)
        fixed = ", ".join(f"{k}={v}" for k, v in sweep["fixed"].items())
        ax = axes[0, col]
        for m, entry in sweep["models"].items():
            kinds += [m] if m not in kinds else []
            for j, t in enumerate(tkeys):
                ax.plot(x, entry["threads"][t]["samples_per_s"], styles[j % len(styles)],
                        marker=style.model_marker(m), mfc="white" if j else None, color=style.model_color(m))
        _value_ticks(ax, sweep["values"])
        style.log_axis(ax)
        ax.set_xlabel(f"{sweep['var']}")
        ax.set_ylabel("training samples / s (log)")
        ax.set_title(f"Throughput vs {sweep['var']} ({fixed})")
        ax.grid(True, which="both", alpha=0.3)
        ax = axes[1, col]
        if len(tkeys) >= 2:
            for m, entry in sweep["models"].items():
                ax.plot(x, entry["speedup"], "-", marker=style.model_marker(m), color=style.model_color(m))
            ax.axhline(1.0, color=style.NEUTRAL, lw=0.8)
            ax.axhline(int(tkeys[-1]) / int(tkeys[0]), color=style.NEUTRAL, lw=1, ls="--")
        _value_ticks(ax, sweep["values"])
        ax.set_xlabel(f"{sweep['var']}")
        ax.set_ylabel(f"speedup {tkeys[0]} → {tkeys[-1]} threads")
        ax.set_title(f"Thread speedup vs {sweep['var']}")
        ax.grid(True, which="both", alpha=0.3)
    extra = [style.line_key(f"{t} thread{'s' if t != '1' else ''}", ls=styles[j % len(styles)])
             for j, t in enumerate(tkeys)]
    if len(tkeys) >= 2:
        extra.append(style.line_key(f"ideal speedup ({int(tkeys[-1]) // int(tkeys[0])}×)", ls="--", lw=1))
    style.model_legend(fig, kinds, extra, ncol=min(len(kinds) + len(extra), 6))
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    path = style.save(fig, out_dir / "parallelism.png",
                      "Top: samples per second with 1 and 2 BLAS threads; bottom: the 2-thread speedup, where "
                      "the dashed line is perfect scaling. Read the speedups against the contention in the "
                      "conditions banner.")
    return [path]
