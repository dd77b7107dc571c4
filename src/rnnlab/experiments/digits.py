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
"""

from __future__ import annotations

import time

import numpy as np

from ..data import load_digits_sequences, minibatches
from ..models import SequenceModel
from ..nn import CrossEntropyLoss
from ..optim import Adam
from ..report import style
from ..report.format import sig_figs
from .base import Claim, Table, plt, time_stats

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


def run(config, *, rng, progress):
    """Train the MLP, the RNN and the LSTM on the same digits minibatches."""
    data = load_digits_sequences(rng=rng)
    seed = int(rng.integers(2**31))
    models = {kind: train_one(kind, data, config, seed, progress) for kind in KINDS}
    return {"config": dict(config), "n_train": int(data.y_train.size),
            "n_test": int(data.y_test.size), "models": models}


# ------------------------------------------------------------------ report


def summary_table(result) -> Table:
    """The one table of the first compare: parameters, step time, accuracy."""
    rows = []
    for kind, m in result["models"].items():
        st = m["step_time"]
        rows.append([kind.upper(), m["parameters"], f"{st['median'] * 1e3:.3f}",
                     f"{st['p10'] * 1e3:.3f}", f"{st['p90'] * 1e3:.3f}", st["n"],
                     f"{m['train_accuracy']:.3f}", f"{m['test_accuracy']:.3f}"])
    return Table("Digits: parameters, training step time (forward + backward + update) and accuracy",
                 ["model", "parameters", "step ms (median)", "p10", "p90", "steps timed",
                  "train acc", "test acc"], rows)


def tables(result):
    target = result["config"]["target_accuracy"]
    reach_rows = []
    for kind, m in result["models"].items():
        r = m["reached_target"]
        reach_rows.append([kind.upper(), "never" if r is None else r["step"],
                           "never" if r is None else f"{r['seconds']:.2f}"])
    fractions = list(next(iter(result["models"].values()))["robustness"])
    robust_rows = [[kind.upper()] + [f"{m['robustness'][f]:.3f}" for f in fractions]
                   for kind, m in result["models"].items()]
    return [summary_table(result),
            Table(f"Steps and training seconds to first reach {target:.0%} test accuracy",
                  ["model", "steps", "seconds"], reach_rows),
            Table("Test accuracy with a fraction of the pixels missing (zeroed at test time)",
                  ["model"] + [f"{float(f):.0%} missing" for f in fractions], robust_rows)]


def claims(result):
    models = result["models"]
    out = []
    best = max(models, key=lambda k: models[k]["test_accuracy"])
    accs = {k: m["test_accuracy"] for k, m in models.items()}
    spread = max(accs.values()) - min(accs.values())
    claim = "On real sequence data, the LSTM is more accurate than the MLP and the vanilla RNN."
    if best == "lstm" and spread > 0.02:
        verdict = "supported"
    elif accs["lstm"] >= max(accs.values()) - 0.02:
        verdict = "nuanced"
    else:
        verdict = "not supported"
    out.append(Claim("digits-accuracy", claim, verdict,
                     "Test accuracy " + ", ".join(f"{k.upper()} {v:.3f}" for k, v in accs.items())
                     + f"; spread {spread:.3f} (a gap under 0.02 counts as a tie).",
                     " vs ".join(f"{k.upper()} {v:.3f}" for k, v in sorted(accs.items(), key=lambda kv: -kv[1]))))

    fractions = sorted(next(iter(models.values()))["robustness"], key=float)
    worst = fractions[-1]
    drops = {k: m["robustness"][fractions[0]] - m["robustness"][worst] for k, m in models.items()}
    rec_drop = min(drops["rnn"], drops["lstm"])
    claim = ("Recurrent networks work with incomplete information: their accuracy degrades "
             "less than the MLP's when inputs are missing.")
    if rec_drop < drops["mlp"] - 0.02:
        verdict = "supported"
    elif rec_drop <= drops["mlp"] + 0.02:
        verdict = "nuanced"
    else:
        verdict = "not supported"
    out.append(Claim("digits-missing-inputs", claim, verdict,
                     f"Accuracy lost with {float(worst):.0%} of pixels missing: "
                     + ", ".join(f"{k.upper()} {v:.3f}" for k, v in drops.items()) + ".",
                     f"lost at {float(worst):.0%} missing: "
                     + ", ".join(f"{k.upper()} {v:.2f}" for k, v in drops.items())))

    times = {k: m["step_time"]["median"] for k, m in models.items()}
    claim = "An MLP trains faster per step than an RNN, and an RNN faster than an LSTM."
    ordered = times["mlp"] < times["rnn"] < times["lstm"]
    verdict = "supported" if ordered else ("nuanced" if times["mlp"] < times["lstm"] else "not supported")
    out.append(Claim("digits-step-time", claim, verdict,
                     "Median step time " + ", ".join(f"{k.upper()} {v * 1e3:.3f} ms"
                                                     for k, v in times.items()) + ".",
                     ", ".join(f"{k.upper()} {sig_figs(v * 1e3)} ms" for k, v in times.items())))
    return out


def plots(result, out_dir):
    pyplot = plt()
    fig, (ax_steps, ax_robust) = pyplot.subplots(1, 2, figsize=(10, 3.6))
    for kind, m in result["models"].items():
        steps = [p["step"] for p in m["curve"]]
        ax_steps.plot(steps, [p["test_accuracy"] for p in m["curve"]], markevery=max(len(steps) // 8, 1),
                      **style.model_style(kind))
        fr = sorted(m["robustness"], key=float)
        ax_robust.plot([float(f) for f in fr], [m["robustness"][f] for f in fr], **style.model_style(kind))
    target = result["config"]["target_accuracy"]
    ax_steps.axhline(target, color=style.NEUTRAL, lw=0.8, ls="--")
    ax_steps.set(xlabel="training step", ylabel="test accuracy", title="Learning curves")
    ax_robust.set(xlabel="fraction of pixels missing", ylabel="test accuracy",
                  title="Missing inputs at test time")
    style.legend_outside(ax_robust)
    fig.tight_layout()
    best = max(result["models"], key=lambda k: result["models"][k]["test_accuracy"])
    return [style.save(fig, out_dir / "digits.png",
                       f"Left: test accuracy while training (dashed: the {target:.0%} target); right: how "
                       f"much each model keeps when pixels go missing. Best final accuracy: "
                       f"{style.model_label(best)}.")]
