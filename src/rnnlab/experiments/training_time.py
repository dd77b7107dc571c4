"""Training time per step, honestly measured, and whether random weights change it.

A typical write-up times 5 training steps of each network, reports the mean,
and explains the spread by "random weights". This experiment instead:

- trains the MLP, the RNN and the LSTM on the same inputs and labels
  (time-major x (T, d, n), targets (d, k)), with the same loss (MSE) and the
  same update (SGD with momentum);
- times forward, backward and update separately, and the whole step, over
  many repeats after a warm-up, and reports median, p10 and p90;
- repeats everything for several weight seeds, and compares the spread of
  the per-seed medians (between seeds) with the p10–p90 spread within a seed;
- sets "the mean of the first 5 steps" beside the median, to show what the
  usual 5-step measurement reports.
"""

from __future__ import annotations

import time

import numpy as np

from ..models import SequenceModel
from ..nn import MSELoss
from ..optim import SGD
from ..report import style
from ..report.format import sig_figs
from .base import Claim, Table, plt, time_stats
from .scaling import disturbed, measure_undisturbed, new_retry_budget

NAME = "training_time"
TITLE = "Training time per step"
TIMING = True  # measures time: runs alone on the driver, never beside another task
KINDS = ("mlp", "rnn", "lstm")
PHASES = ("forward", "backward", "update", "step")

PRESETS = {
    "quick": {"d": 32, "n": 16, "m": 64, "T": 16, "k": 10, "seeds": 3, "warmup": 5,
              "repeats": 30, "lr": 0.01, "retry_budget": 0.0},
    "default": {"d": 32, "n": 16, "m": 128, "T": 32, "k": 10, "seeds": 5, "warmup": 10,
                "repeats": 60, "lr": 0.01, "retry_budget": 20.0},
    "full": {"d": 64, "n": 32, "m": 256, "T": 64, "k": 10, "seeds": 5, "warmup": 10,
             "repeats": 150, "lr": 0.01, "retry_budget": 60.0},
}


def _step_timer(kind, x, y, config, seed):
    """A model for one weight seed and a function that runs and times one training step."""
    T, d, n = x.shape
    model = SequenceModel(kind, n, config["m"], config["k"], seq_len=T,
                          activation="sigmoid" if kind == "mlp" else "tanh",
                          rng=np.random.default_rng(seed))
    loss_fn = MSELoss()
    optimizer = SGD(model.parameters(), lr=config["lr"], momentum=0.9)
    times = {phase: [] for phase in PHASES}
    clock = time.perf_counter

    def step():
        t0 = clock()
        optimizer.zero_grad()
        loss_fn(model(x), y)
        t1 = clock()
        model.backward(loss_fn.backward(), input_grad=False)
        t2 = clock()
        optimizer.step()
        t3 = clock()
        for phase, dt in zip(PHASES, (t1 - t0, t2 - t1, t3 - t2, t3 - t0)):
            times[phase].append(dt)

    return step, times


def _blas_threads() -> int:
    """The BLAS threads this process runs with now (as pinned by the caller)."""
    from threadpoolctl import threadpool_info

    return max((p["num_threads"] for p in threadpool_info() if p.get("user_api") == "blas"),
               default=1)


def run(config, *, rng, progress):
    T, d, n, k = config["T"], config["d"], config["n"], config["k"]
    x = rng.standard_normal((T, d, n)).astype(np.float32)  # the same inputs for all models
    y = rng.standard_normal((d, k)).astype(np.float32)  # and the same labels
    seeds = [int(s) for s in rng.integers(2**31, size=config["seeds"])]
    warm, rounds = config["warmup"], config["warmup"] + config["repeats"]
    threads = _blas_threads()
    retry = new_retry_budget(config.get("retry_budget", 0.0))
    models = {}
    for kind in KINDS:
        def measure(kind=kind):
            timers = [_step_timer(kind, x, y, config, seed) for seed in seeds]
            # Seeds take turns step by step, so that drift in machine load hits all
            # of them alike and a difference between seeds is the weights' doing.
            for _ in progress.track(range(rounds), f"training time: {kind}"):
                for step, _ in timers:
                    step()
            return [times for _, times in timers]

        # The guard of the other timing claims: retried while other processes hold a core.
        all_times, load, attempts = measure_undisturbed(measure, threads, retry)
        runs = [{"seed": seed, "first5_mean": float(np.mean(times["step"][:5])),
                 **{phase: time_stats(times[phase][warm:]) for phase in PHASES}}
                for seed, times in zip(seeds, all_times)]
        medians = np.array([r["step"]["median"] for r in runs])
        within = np.array([(r["step"]["p90"] - r["step"]["p10"]) / r["step"]["median"] for r in runs])
        models[kind] = {
            "seeds": runs,
            "between_seed_spread": float((medians.max() - medians.min()) / np.median(medians)),
            "within_seed_spread": float(np.median(within)),
            "median_of_medians": float(np.median(medians)),
            "first5_mean_error": float(np.median([abs(r["first5_mean"] / r["step"]["median"] - 1)
                                                  for r in runs])),
            "other_load_cores": load, "attempts": attempts,
        }
    return {"config": dict(config), "models": models, "threads": threads, "cpus": retry["cpus"]}


def busy_note(result) -> str | None:
    """"Machine busy: ..." when other processes left some model's timing short of cores
    (:func:`rnnlab.experiments.scaling.disturbed`), else None."""
    threads, cpus = result.get("threads"), result.get("cpus")
    if threads is None or cpus is None:
        return None
    loads = {k: m.get("other_load_cores") for k, m in result["models"].items()}
    busy = {k: v for k, v in loads.items() if disturbed(v, threads, cpus)}
    if not busy:
        return None
    return ("Machine busy: other processes kept "
            + ", ".join(f"{v:.1f} cores busy while the {k.upper()} was timed" for k, v in busy.items())
            + f" ({threads} BLAS threads on {cpus} CPUs, after retries); no verdict from "
            "contended timings.")


def tables(result):
    rows = []
    for kind, m in result["models"].items():
        run0 = m["seeds"][0]
        cells = [kind.upper()]
        for phase in PHASES:
            st = run0[phase]
            cells.append(f"{sig_figs(st['median'] * 1e3)} [{sig_figs(st['p10'] * 1e3)}, "
                         f"{sig_figs(st['p90'] * 1e3)}]")
        rows.append(cells)
    c = result["config"]
    phase_table = Table(f"Time per phase, ms: median [p10, p90] over {c['repeats']} steps after "
                        f"{c['warmup']} warm-up (first seed; d={c['d']}, n={c['n']}, m={c['m']}, T={c['T']})",
                        ["model"] + list(PHASES), rows)
    seed_rows = [[kind.upper(), f"{m['median_of_medians'] * 1e3:.3f}",
                  f"{m['between_seed_spread']:.1%}", f"{m['within_seed_spread']:.1%}",
                  f"{m['first5_mean_error']:.1%}"] for kind, m in result["models"].items()]
    seed_table = Table(f"Do the weights change the time? {c['seeds']} weight seeds",
                       ["model", "step ms (median of seeds)", "between seeds (max-min)/median",
                        "within a seed (p90-p10)/median", "error of a 5-step mean"], seed_rows)
    return [phase_table, seed_table]


def claims(result):
    models = result["models"]
    between = {k: m["between_seed_spread"] for k, m in models.items()}
    within = {k: m["within_seed_spread"] for k, m in models.items()}
    # Weights matter only if seeds differ by more than the noise within one seed.
    matters = [k for k in models if between[k] > within[k]]
    claim = "The spread in training time comes from the random weights."
    verdict = "supported" if len(matters) == len(models) else (
        "nuanced" if matters else "not supported")
    evidence = ("Between-seed spread of median step times vs within-seed p10–p90 spread: "
                + ", ".join(f"{k.upper()} {between[k]:.1%} vs {within[k]:.1%}" for k in models)
                + ". Dense float arithmetic costs the same whatever the values.")
    headline = (f"between seeds ≤ {max(between.values()):.1%}, within a seed "
                f"{min(within.values()):.0%}–{max(within.values()):.0%}")
    busy = busy_note(result)
    if busy:  # a claim about timing noise cannot be judged from timings another process disturbed
        verdict, evidence = "undecided", f"{busy} As measured: {evidence}"
        headline = f"machine busy; as measured {headline}"
    out = [Claim("time-weights", claim, verdict, evidence, headline)]

    err = {k: m["first5_mean_error"] for k, m in models.items()}
    claim = "The mean of 5 training steps is a fair measure of a network's training time."
    worst = max(err.values())
    verdict = "supported" if worst < 0.1 else ("nuanced" if worst < 0.3 else "not supported")
    evidence = ("The mean of the first 5 steps differs from the median of the warm run by "
                + ", ".join(f"{k.upper()} {v:.0%}" for k, v in err.items())
                + " (warm-up, caches and allocation dominate the first steps).")
    headline = f"5-step mean off by up to {worst:.0%}"
    if busy:
        verdict, evidence = "undecided", f"{busy} As measured: {evidence}"
        headline = f"machine busy; as measured {headline}"
    out.append(Claim("time-five-steps", claim, verdict, evidence, headline))
    return out


def plots(result, out_dir):
    pyplot = plt()
    fig, ax = pyplot.subplots(figsize=(7.5, 3.6))
    kinds = list(result["models"])
    phases = ("forward", "backward", "update")
    width = 0.26
    values = []
    for i, phase in enumerate(phases):
        stats = [result["models"][k]["seeds"][0][phase] for k in kinds]
        med = np.array([st["median"] for st in stats]) * 1e3
        lo = med - np.array([st["p10"] for st in stats]) * 1e3
        hi = np.array([st["p90"] for st in stats]) * 1e3 - med
        values += list(med)
        ax.bar(np.arange(len(kinds)) + (i - 1) * width, med, width, yerr=[np.maximum(lo, 0), np.maximum(hi, 0)],
               capsize=3, color=style.SERIES[i], label=phase, edgecolor="white", linewidth=0.5)
    ax.set_xticks(np.arange(len(kinds)), [style.model_label(k) for k in kinds])
    logged = style.auto_log(ax, values, decades=1.0)
    ax.set(ylabel="ms per step (median, p10–p90)" + (", log scale" if logged else ""),
           title="Where a training step's time goes")
    ax.grid(axis="x", visible=False)
    style.legend_outside(ax, title="phase")
    fig.tight_layout()
    slowest = max(kinds, key=lambda k: result["models"][k]["seeds"][0]["step"]["median"])
    return [style.save(fig, out_dir / "training_time.png",
                       f"Forward, backward and update time per model (first weight seed); compare bar "
                       f"heights within a model to see which phase dominates; {style.model_label(slowest)} "
                       f"is the slowest step.")]
