"""Real data: scikit-learn's digits, read as 8 time steps of 8 pixels.

The MLP sees the flattened 64 pixels, the RNN and the LSTM read one image row
per step; all three see the same minibatches in the same order and take the
same update (Adam, same learning rate, same number of steps). Measured:

- final train and test accuracy, and the parameter count;
- the time of each training step (forward + loss + backward + update), as
  median, p10 and p90 after a warm-up;
- steps and seconds until the test accuracy first reaches the target (90 %);
- robustness: test accuracy when a fraction of the input pixels is missing
  (set to zero at test time only), for "works with incomplete information".

Each seed draws its own train/test split, initial weights and batch order;
the three models share them within a seed, so differences between models are
paired by seed. Verdicts rest on the 95 % t intervals of those differences
(:mod:`rnnlab.stats`).
"""

from __future__ import annotations

import math
import time

import numpy as np

from ..data import load_digits_sequences, minibatches
from ..models import SequenceModel
from ..nn import CrossEntropyLoss
from ..optim import Adam
from ..report import style
from ..report.format import sig_figs
from ..stats import (classify_difference, fmt_interval, geometric_interval, mean_interval,
                     paired_difference)
from .base import Claim, Progress, Table, plt, time_stats

NAME = "digits"
TITLE = "Accuracy on real data: scikit-learn digits as sequences"
KINDS = ("mlp", "rnn", "lstm")

PRESETS = {
    "quick": {"hidden": 64, "batch": 64, "steps": 300, "lr": 0.01, "warmup": 10,
              "eval_every": 25, "target_accuracy": 0.9, "missing_fractions": [0.0, 0.25, 0.5]},
    "default": {"hidden": 64, "batch": 64, "steps": 600, "lr": 0.01, "warmup": 10,
                "eval_every": 25, "target_accuracy": 0.9,
                "missing_fractions": [0.0, 0.1, 0.25, 0.5, 0.75]},
    "full": {"hidden": 128, "batch": 64, "steps": 1500, "lr": 0.005, "warmup": 20,
             "eval_every": 25, "target_accuracy": 0.9,
             "missing_fractions": [0.0, 0.1, 0.25, 0.5, 0.75]},
}


def accuracy(model, x, y) -> float:
    """Fraction of argmax(logits) == y. Shapes: x (T, N, F), y (N,)."""
    return float(np.mean(np.argmax(model(x), axis=1) == y))


def _with_missing(x, fraction, rng):
    """A copy of x (T, N, F) with ``fraction`` of its pixels set to zero, uniformly at random."""
    if fraction == 0:
        return x
    keep = rng.random(x.shape) >= fraction
    return (x * keep).astype(x.dtype)


def train_one(kind, data, config, seed, progress):
    """Train one model; returns its metrics. The minibatch order depends on ``seed`` only."""
    T, _, F = data.x_train.shape
    model = SequenceModel(kind, F, config["hidden"], 10, seq_len=T, dtype=np.float32,
                          rng=np.random.default_rng(seed))
    loss_fn, optimizer = CrossEntropyLoss(), Adam(model.parameters(), lr=config["lr"])
    batch_rng = np.random.default_rng(seed + 1)

    def batches():
        while True:
            yield from minibatches(data.x_train, data.y_train, config["batch"], rng=batch_rng,
                                   drop_last=True)

    step_times, curve, losses = [], [], []
    reached = None
    train_seconds = 0.0
    stream = batches()
    for step in progress.track(range(1, config["steps"] + 1), f"digits: {kind}"):
        x, y = next(stream)
        start = time.perf_counter()
        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        model.backward(loss_fn.backward(), input_grad=False)
        optimizer.step()
        elapsed = time.perf_counter() - start
        train_seconds += elapsed
        if step > config["warmup"]:
            step_times.append(elapsed)
        losses.append(loss)
        if step % config["eval_every"] == 0 or step == config["steps"]:
            test_acc = accuracy(model, data.x_test, data.y_test)
            curve.append({"step": step, "seconds": train_seconds, "loss": loss,
                          "test_accuracy": test_acc})
            if reached is None and test_acc >= config["target_accuracy"]:
                reached = {"step": step, "seconds": train_seconds}
    robust_rng = np.random.default_rng(seed + 2)
    robustness = {str(f): accuracy(model, _with_missing(data.x_test, f, robust_rng), data.y_test)
                  for f in config["missing_fractions"]}
    return {
        "parameters": sum(p.data.size for p in model.parameters()),
        "train_accuracy": accuracy(model, data.x_train, data.y_train),
        "test_accuracy": accuracy(model, data.x_test, data.y_test),
        "step_time": time_stats(step_times),
        "reached_target": reached,
        "curve": curve,
        "final_loss": losses[-1],
        "robustness": robustness,
    }


def run_seed(config, seed):
    """One seed: a train/test split, initial weights and batch order drawn from ``seed``; the
    MLP, the RNN and the LSTM trained on the same split and minibatches."""
    rng = np.random.default_rng(seed)
    data = load_digits_sequences(rng=rng)
    model_seed = int(rng.integers(2**31))
    models = {kind: train_one(kind, data, config, model_seed, Progress()) for kind in KINDS}
    return {"n_train": int(data.y_train.size), "n_test": int(data.y_test.size), "models": models}


def run(config, *, rng, progress):
    """One seed, for a caller without the task runner (the seed drawn from ``rng``)."""
    return combine(config, [{"seed": 0, **run_seed(config, int(rng.integers(2**31)))}])


def _drop(m, fractions):
    """Accuracy lost from no missing pixels to the most missing."""
    return m["robustness"][fractions[0]] - m["robustness"][fractions[-1]]


def combine(config, per_seed):
    """Means and 95 % t intervals over seeds of the accuracies, the accuracy lost with missing
    pixels, the step time and the steps to the target; the per-seed results kept."""
    fractions = sorted(per_seed[0]["models"]["mlp"]["robustness"], key=float)
    summary = {}
    for kind in KINDS:
        runs = [s["models"][kind] for s in per_seed]
        reached = [r["reached_target"]["step"] for r in runs if r["reached_target"] is not None]
        summary[kind] = {
            "parameters": runs[0]["parameters"],
            "test_accuracy": mean_interval([r["test_accuracy"] for r in runs]),
            "train_accuracy": mean_interval([r["train_accuracy"] for r in runs]),
            "missing_drop": mean_interval([_drop(r, fractions) for r in runs]),
            "robustness": {f: mean_interval([r["robustness"][f] for r in runs]) for f in fractions},
            "step_ms": geometric_interval([r["step_time"]["median"] * 1e3 for r in runs]),
            "steps_to_target": mean_interval(reached) if reached else None,
            "never_reached": len(runs) - len(reached),
        }
    return {"config": dict(config), "seeds": [s["seed"] for s in per_seed],
            "fractions": fractions, "summary": summary, "per_seed": per_seed}


# ------------------------------------------------------------------ report

# Practical bands: accuracy differences within them are a tie (1 and 2 points of accuracy;
# one test image is ~0.3 points).
ACCURACY_BAND = 0.01
DROP_BAND = 0.02
# Step times within 5 % of each other are a tie.
TIME_BAND = 0.05


def summary_table(result) -> Table:
    """The one table of the first compare: parameters, step time, accuracy (mean [95 % CI])."""
    rows = []
    for kind, s in result["summary"].items():
        rows.append([kind.upper(), s["parameters"], fmt_interval(s["step_ms"]),
                     fmt_interval(s["train_accuracy"]), fmt_interval(s["test_accuracy"])])
    return Table(f"Digits: parameters, training step time (forward + backward + update) and "
                 f"accuracy, mean [95 % t interval] over {len(result['seeds'])} seeds",
                 ["model", "parameters", "step ms (geometric mean of seeds' medians)", "train acc",
                  "test acc"],
                 rows)


def tables(result):
    target = result["config"]["target_accuracy"]
    n = len(result["seeds"])
    reach_rows = [[kind.upper(), "never" if s["steps_to_target"] is None
                   else fmt_interval(s["steps_to_target"], ".0f"), f"{n - s['never_reached']}/{n}"]
                  for kind, s in result["summary"].items()]
    fractions = result["fractions"]
    robust_rows = [[kind.upper()] + [fmt_interval(s["robustness"][f]) for f in fractions]
                   for kind, s in result["summary"].items()]
    return [summary_table(result),
            Table(f"Steps to first reach {target:.0%} test accuracy (mean [95 % CI] over the seeds "
                  f"that reached it)", ["model", "steps", "seeds that reached it"], reach_rows),
            Table("Test accuracy with a fraction of the pixels missing (zeroed at test time)",
                  ["model"] + [f"{float(f):.0%} missing" for f in fractions], robust_rows)]


def _pairwise(per_seed, value, a, b):
    """Paired interval of value(a) - value(b) over the seeds."""
    return paired_difference([value(s["models"][a]) for s in per_seed],
                             [value(s["models"][b]) for s in per_seed])


def better_verdict(outcomes):
    """"X is better than every other model", from the classified differences X - other.

    supported: X is above every other; not supported: below one of them;
    nuanced: above some and tied with the rest, or tied with all (decided, but
    not "better"); undecided: an interval holds 0 and leaves the band.
    """
    if "below" in outcomes:
        return "not supported"
    if "unclear" in outcomes:
        return "undecided"
    return "supported" if all(o == "above" for o in outcomes) else "nuanced"


def _diff_text(name, iv, outcome):
    return f"{name} {fmt_interval(iv)} ({outcome})"


def claims(result):
    per_seed, summary, n = result["per_seed"], result["summary"], len(result["seeds"])
    out = []
    diffs = {other: _pairwise(per_seed, lambda m: m["test_accuracy"], "lstm", other)
             for other in ("mlp", "rnn")}
    outcomes = {k: classify_difference(iv, ACCURACY_BAND) for k, iv in diffs.items()}
    out.append(Claim(
        "digits-accuracy",
        "On real sequence data, the LSTM is more accurate than the MLP and the vanilla RNN.",
        better_verdict(list(outcomes.values())),
        "Test accuracy over " + f"{n} seeds: " + ", ".join(
            f"{k.upper()} {fmt_interval(s['test_accuracy'])}" for k, s in summary.items())
        + "; paired LSTM − other: " + ", ".join(
            _diff_text(k.upper(), diffs[k], outcomes[k]) for k in diffs)
        + f" (tie: interval inside ±{ACCURACY_BAND}; more accurate: above 0).",
        " vs ".join(f"{k.upper()} {s['test_accuracy']['mean']:.3f}" for k, s in
                    sorted(summary.items(), key=lambda kv: -kv[1]["test_accuracy"]["mean"]))
        + f" (mean of {n} seeds)"))

    fractions = result["fractions"]
    diffs = {other: _pairwise(per_seed, lambda m: _drop(m, fractions), "mlp", other)
             for other in ("rnn", "lstm")}
    outcomes = {k: classify_difference(iv, DROP_BAND) for k, iv in diffs.items()}
    out.append(Claim(
        "digits-missing-inputs",
        "Recurrent networks work with incomplete information: their accuracy degrades "
        "less than the MLP's when inputs are missing.",
        better_verdict(list(outcomes.values())),
        f"Accuracy lost with {float(fractions[-1]):.0%} of pixels missing: " + ", ".join(
            f"{k.upper()} {fmt_interval(s['missing_drop'])}" for k, s in summary.items())
        + "; paired MLP loss − other's: " + ", ".join(
            _diff_text(k.upper(), diffs[k], outcomes[k]) for k in diffs)
        + f" (tie: inside ±{DROP_BAND}).",
        f"lost at {float(fractions[-1]):.0%} missing: "
        + ", ".join(f"{k.upper()} {s['missing_drop']['mean']:.2f}" for k, s in summary.items())))

    logt = {(a, b): _pairwise(per_seed, lambda m: math.log(m["step_time"]["median"]), b, a)
            for a, b in (("mlp", "rnn"), ("rnn", "lstm"))}
    band = math.log1p(TIME_BAND)
    outcomes = {k: classify_difference(iv, band) for k, iv in logt.items()}
    if all(o == "above" for o in outcomes.values()):
        verdict = "supported"
    elif "below" in outcomes.values() or all(o == "tie" for o in outcomes.values()):
        verdict = "not supported"
    elif "unclear" in outcomes.values():
        verdict = "undecided"
    else:
        verdict = "nuanced"
    out.append(Claim(
        "digits-step-time",
        "An MLP trains faster per step than an RNN, and an RNN faster than an LSTM.", verdict,
        "Median step time " + ", ".join(f"{k.upper()} {fmt_interval(s['step_ms'])} ms"
                                        for k, s in summary.items())
        + "; paired time ratios " + ", ".join(
            f"{b.upper()}/{a.upper()} {math.exp(iv['mean']):.2f}×" + (
                "" if iv["low"] is None
                else f" [{math.exp(iv['low']):.2f}, {math.exp(iv['high']):.2f}]")
            + f" ({outcomes[(a, b)]})" for (a, b), iv in logt.items())
        + f" (tie: within {TIME_BAND:.0%}). Each seed times the three models in one task, "
          "which may share the machine with other tasks.",
        ", ".join(f"{k.upper()} {sig_figs(s['step_ms']['mean'])} ms" for k, s in summary.items())))
    return out


def plots(result, out_dir):
    pyplot = plt()
    fig, (ax_steps, ax_robust, ax_seeds) = pyplot.subplots(1, 3, figsize=(14, 3.6))
    fractions = result["fractions"]
    xs = [float(f) for f in fractions]
    for i, kind in enumerate(KINDS):
        color, marker = style.model_color(kind), style.model_marker(kind)
        runs = [s["models"][kind] for s in result["per_seed"]]
        for m in runs:  # every seed a thin line
            ax_steps.plot([p["step"] for p in m["curve"]], [p["test_accuracy"] for p in m["curve"]],
                          color=color, lw=0.8, alpha=0.5)
        s = result["summary"][kind]
        ax_robust.plot(xs, [s["robustness"][f]["mean"] for f in fractions], **style.model_style(kind))
        for m in runs:  # per-seed points
            ax_robust.scatter(xs, [m["robustness"][f] for f in fractions], color=color, marker=marker,
                              s=10, alpha=0.5)
        accs = s["test_accuracy"]["values"]
        jitter = np.linspace(-0.15, 0.15, len(accs)) if len(accs) > 1 else [0.0]
        ax_seeds.scatter(i + np.asarray(jitter), accs, color=color, marker=marker, s=18, alpha=0.7)
        iv = s["test_accuracy"]
        if iv["low"] is not None:
            ax_seeds.errorbar(i, iv["mean"], color="black", capsize=4, marker="_", ms=14,
                              yerr=[[iv["mean"] - iv["low"]], [iv["high"] - iv["mean"]]])
    target = result["config"]["target_accuracy"]
    ax_steps.axhline(target, color=style.NEUTRAL, lw=0.8, ls="--")
    ax_steps.set(xlabel="training step", ylabel="test accuracy",
                 title="Learning curves (one line per seed)")
    ax_robust.set(xlabel="fraction of pixels missing", ylabel="test accuracy",
                  title="Missing inputs at test time (dots: seeds)")
    ax_seeds.set_xticks(range(len(KINDS)), [style.model_label(k) for k in KINDS])
    ax_seeds.set(ylabel="test accuracy", title="Test accuracy per seed, mean and 95 % CI")
    ax_seeds.grid(axis="x", visible=False)
    handles, labels = ax_robust.get_legend_handles_labels()  # one legend for the three panels
    style.legend_outside(ax_seeds, handles=handles, labels=labels)
    fig.tight_layout()
    best = max(KINDS, key=lambda k: result["summary"][k]["test_accuracy"]["mean"])
    return [style.save(fig, out_dir / "digits.png",
                       f"Left: test accuracy while training, one line per seed (dashed: the {target:.0%} "
                       f"target); middle: accuracy kept when pixels go missing; right: each seed's test "
                       f"accuracy with the mean and 95 % interval. Best mean: {style.model_label(best)}.")]
