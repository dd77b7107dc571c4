"""Real sequences of different lengths: speaker recognition on the Japanese Vowels set.

Each utterance is 7-29 frames of 12 LPC cepstrum coefficients; the task names
one of 9 speakers (270 training, 370 test utterances; see
:mod:`rnnlab.data.vowels`). Both splits are standardised with the training
split's statistics.

- The RNN, the LSTM and the GRU read each utterance to its own end: a batch is
  padded to its longest, and the head reads each sequence's own last hidden
  state (exact for a unidirectional layer; see :mod:`rnnlab.last_step`).
- The MLP needs one input width: every utterance is padded with zeros or cut
  to one length, then flattened. Two choices are measured: "mlp" pads to
  ``mlp_length`` frames (default: the longest training utterance, so that
  only test utterances longer than any training one lose frames), "mlp_cut"
  cuts to ``mlp_cut_length`` frames (default: the shortest training
  utterance, so that nothing is padded and most utterances lose frames).

Every model trains with Adam (its learning rate on a cosine decay over the
epochs when ``cosine``), gradient-norm clipping and the same minibatch
order for a given seed, for ``epochs`` passes over the training set; the test
accuracy is measured after every ``eval_every`` epochs, and the reported
accuracy is the one at the end of training (no model is chosen on the test
set). Each (model, seed) run is :func:`run_one`, a function of its arguments
only, so seeds can run in separate processes.

Measured per model: test accuracy over the preset's seeds (mean, 95 % t
interval, every seed's value), the training seconds to first reach 90 % and
95 % test accuracy, parameters, and the time of a training step (forward,
loss, backward, clip, update: median after a warm-up).
"""

from __future__ import annotations

import math
import time

import numpy as np

from ..data import load_japanese_vowels, load_vowels_standardized, pad_or_cut, pad_sequences
from ..bench.machine import pinned_threads
from ..data.vowels import VOWELS_CLASSES, VOWELS_FEATURES
from ..last_step import LastStepClassifier, available_kinds
from ..models import SequenceModel
from ..nn import CrossEntropyLoss
from ..optim import Adam, clip_grad_norm_
from .base import Claim, Table, _t975, plt, time_stats

NAME = "vowels"
TITLE = "Sequences of any length: Japanese Vowels (9 speakers, 7-29 frames)"
MLPS = ("mlp", "mlp_cut")  # padded to the longest, cut to the shortest
MODELS = MLPS + ("rnn", "lstm", "gru")
THRESHOLDS = (0.9, 0.95)

_COMMON = {"models": list(MODELS), "hidden": 64, "mlp_hidden": 128, "mlp_length": None,
           "mlp_cut_length": None, "batch": 32, "lr": 0.01, "cosine": True, "clip": 1.0,
           "eval_every": 1, "warmup": 5, "threads": 1,
           "tie_band": 0.01, "cost_target": 0.75, "cost_slack": 0.05}
PRESETS = {
    "quick": {**_COMMON, "epochs": 20, "seeds": [0, 1]},
    "default": {**_COMMON, "epochs": 40, "seeds": [0, 1, 2, 3, 4]},
    "full": {**_COMMON, "epochs": 60, "seeds": list(range(10))},
}

# Published test accuracies on this split, beside ours in the report.
PUBLISHED = [
    ("1-NN with DTW, UEA archive paper (Bagnall et al. 2018)", "≈ 0.95"),
    ("Kudo, Toyama and Shimbo 1999 (passing-through regions)", "0.941"),
    ("best archive classifiers and LSTM ensembles", "0.97-0.99"),
]


def _build(config, model, rng, mlp_length):
    if model in MLPS:
        return SequenceModel("mlp", VOWELS_FEATURES, config["mlp_hidden"], VOWELS_CLASSES,
                             seq_len=mlp_length, rng=rng)
    return LastStepClassifier(model, VOWELS_FEATURES, config["hidden"], VOWELS_CLASSES, rng=rng)


def _inputs(model, sequences, index, mlp_length):
    """The model's view of the chosen sequences: fixed-length x for the MLP, Padded otherwise."""
    if model in MLPS:
        return pad_or_cut(sequences, mlp_length, index)  # (L, N, 12)
    return pad_sequences(sequences, index)  # Padded((T_max, N, 12), (N,))


def _eval_batches(model, sequences, mlp_length, size=64):
    """(index, input) chunks for evaluation, sequences sorted by length so that little is padded."""
    order = np.argsort([s.shape[0] for s in sequences], kind="stable")
    return [(order[i:i + size], _inputs(model, sequences, order[i:i + size], mlp_length))
            for i in range(0, len(order), size)]


def _step(net, optimizer, loss_fn, x, y, clip) -> float:
    optimizer.zero_grad()
    loss = loss_fn(net(x), y)
    net.backward(loss_fn.backward(), input_grad=False)
    clip_grad_norm_(net.parameters(), clip)
    optimizer.step()
    return loss


def run_one(config, model, seed) -> dict:
    """Train one model with one seed and measure it; depends on its arguments only.

    The seed draws the weights and the minibatch order (two independent
    streams), so that every model sees the same batches for the same seed.
    Training seconds count the training steps (batch padding included), not
    the test evaluations nor the warm-up step that compiles the loops.

    BLAS runs on ``config["threads"]`` threads (1 by default): these products
    ((32, 12)·(12, 4·64) and (32, 64)·(64, 4·64) per step) are far too small
    to share, and with two threads OpenBLAS's spinning worker made a run 4×
    slower on this project's busy 2-core machine. One thread per run also
    lets seeds run side by side in separate processes.
    """
    with pinned_threads(config["threads"]):
        return _train(config, model, seed)


def _train(config, model, seed) -> dict:
    if model not in MLPS + available_kinds():
        raise ValueError(f"model must be one of {MLPS + available_kinds()}, got {model!r}")
    data = load_vowels_standardized(dtype=np.float32)
    train, y_train = data["train"]
    test, y_test = data["test"]
    lengths = [s.shape[0] for s in train]
    mlp_length = int(config["mlp_cut_length"] or min(lengths)) if model == "mlp_cut" \
        else int(config["mlp_length"] or max(lengths))
    init_seq, order_seq = np.random.SeedSequence(seed).spawn(2)
    net = _build(config, model, np.random.default_rng(init_seq), mlp_length)
    optimizer, loss_fn = Adam(net.parameters(), lr=config["lr"]), CrossEntropyLoss()
    order_rng = np.random.default_rng(order_seq)
    test_batches = _eval_batches(model, test, mlp_length)
    train_batches = _eval_batches(model, train, mlp_length)

    # Warm-up on a throwaway copy: compiles the time loops outside the timed run.
    spare = _build(config, model, np.random.default_rng(0), mlp_length)
    _step(spare, Adam(spare.parameters(), lr=config["lr"]), CrossEntropyLoss(),
          _inputs(model, train, range(config["batch"]), mlp_length),
          y_train[:config["batch"]], config["clip"])

    def accuracy(batches, y):
        hits = sum(int(np.sum(np.argmax(net(x), axis=1) == y[index])) for index, x in batches)
        return hits / len(y)

    step_times, curve, reached, seconds, step = [], [], {}, 0.0, 0
    n, batch = len(train), config["batch"]
    for epoch in range(1, config["epochs"] + 1):
        if config["cosine"]:  # lr_e = lr · (1 + cos(π (e - 1) / E)) / 2, from lr toward 0
            optimizer.lr = config["lr"] * 0.5 * (1 + math.cos(math.pi * (epoch - 1)
                                                              / config["epochs"]))
        order = order_rng.permutation(n)
        for start in range(0, n, batch):
            index = order[start:start + batch]
            began = time.perf_counter()
            loss = _step(net, optimizer, loss_fn, _inputs(model, train, index, mlp_length),
                         y_train[index], config["clip"])
            elapsed = time.perf_counter() - began
            step += 1
            seconds += elapsed
            if step > config["warmup"]:
                step_times.append(elapsed)
        if epoch % config["eval_every"] == 0 or epoch == config["epochs"]:
            acc = accuracy(test_batches, y_test)
            curve.append({"epoch": epoch, "step": step, "seconds": seconds, "loss": float(loss),
                          "test_accuracy": acc})
            for th in THRESHOLDS:
                if str(th) not in reached and acc >= th:
                    reached[str(th)] = {"epoch": epoch, "seconds": seconds}
    cut = sum(s.shape[0] > mlp_length for s in test) if model in MLPS else 0
    return {"model": model, "seed": int(seed),
            "parameters": int(sum(p.data.size for p in net.parameters())),
            "test_accuracy": curve[-1]["test_accuracy"],
            "train_accuracy": accuracy(train_batches, y_train),
            "train_seconds": seconds, "steps": step, "step_time": time_stats(step_times),
            "reached": {str(th): reached.get(str(th)) for th in THRESHOLDS},
            "curve": curve, "mlp_length": mlp_length if model in MLPS else None,
            "test_sequences_cut": int(cut)}


def interval(values) -> dict:
    """Mean and 95 % t interval, mean ± t(0.975, n-1)·s/√n (None for one value)."""
    v = np.asarray(values, dtype=float)
    mean = float(v.mean())
    if v.size < 2:
        return {"mean": mean, "low": None, "high": None, "n": int(v.size)}
    half = _t975(v.size - 1) * float(v.std(ddof=1)) / math.sqrt(v.size)
    return {"mean": mean, "low": mean - half, "high": mean + half, "n": int(v.size)}


def summarize(config, runs) -> dict:
    """Per model: accuracy interval, time to each threshold, cost; paired differences."""
    models = {}
    for kind, per_seed in runs.items():
        accs = [r["test_accuracy"] for r in per_seed]
        times = {}
        for th in THRESHOLDS:
            hit = [r["reached"][str(th)]["seconds"] for r in per_seed if r["reached"][str(th)]]
            times[str(th)] = {"median": float(np.median(hit)) if hit else None,
                              "reached": len(hit), "seeds": len(per_seed)}
        models[kind] = {"accuracy": interval(accs), "accuracies": accs,
                        "parameters": per_seed[0]["parameters"],
                        "step_median": float(np.median([r["step_time"]["median"]
                                                         for r in per_seed])),
                        "train_seconds": float(np.median([r["train_seconds"] for r in per_seed])),
                        "time_to": times}
    pairs = {}
    recurrent = [k for k in models if k not in MLPS]
    mlps = [k for k in models if k in MLPS]
    if mlps and recurrent:
        def best(kinds):
            return max(kinds, key=lambda k: models[k]["accuracy"]["mean"])
        pairs["recurrent_vs_mlp"] = _paired(runs, best(recurrent), best(mlps))
    if "gru" in models and "lstm" in models:
        gru, lstm = models["gru"], models["lstm"]
        pairs["gru_vs_lstm"] = {**_paired(runs, "gru", "lstm"),
                                "time_ratio": gru["step_median"] / lstm["step_median"],
                                "param_ratio": gru["parameters"] / lstm["parameters"]}
    return {"models": models, "pairs": pairs}


def _paired(runs, a, b) -> dict:
    """acc(a) - acc(b), seed by seed (same seed: same batches), with its interval."""
    by_seed = {r["seed"]: r["test_accuracy"] for r in runs[b]}
    diffs = [r["test_accuracy"] - by_seed[r["seed"]] for r in runs[a] if r["seed"] in by_seed]
    return {"a": a, "b": b, "diffs": diffs, "difference": interval(diffs)}


def run(config, *, rng, progress):
    """Every model over the preset's seeds. ``rng`` is unused: the seeds are the preset's list."""
    have = MLPS + available_kinds()
    kinds = [k for k in config["models"] if k in have]
    notes = [f"rnnlab.nn has no {k.upper()} in this installation: the {k.upper()} was skipped"
             for k in config["models"] if k not in have]
    jobs = [(k, s) for k in kinds for s in config["seeds"]]
    runs = {k: [] for k in kinds}
    for kind, seed in progress.track(jobs, "vowels: models x seeds"):
        runs[kind].append(run_one(config, kind, seed))
    sizes = {split: len(load_japanese_vowels(split)[1]) for split in ("train", "test")}
    return {"config": dict(config), "n_train": sizes["train"], "n_test": sizes["test"],
            "notes": notes, "runs": runs, **summarize(config, runs), "published": PUBLISHED}


# ------------------------------------------------------------------ report


def _label(result, kind):
    """The model's name in the report; an MLP's says the length it was padded or cut to."""
    if kind not in MLPS:
        return kind.upper()
    run = result["runs"][kind][0]
    if kind == "mlp":
        return f"MLP padded to {run['mlp_length']} ({run['test_sequences_cut']} test cut)"
    return f"MLP cut to {run['mlp_length']}"


def _fmt_interval(iv, digits=3):
    if iv["low"] is None:
        return f"{iv['mean']:.{digits}f}"
    return f"{iv['mean']:.{digits}f} [{iv['low']:.{digits}f}, {iv['high']:.{digits}f}]"


def tables(result):
    rows = []
    for kind, m in result["models"].items():
        t = m["time_to"]
        reach = [("never" if t[str(th)]["median"] is None else f"{t[str(th)]['median']:.2f}")
                 + f" ({t[str(th)]['reached']}/{t[str(th)]['seeds']})" for th in THRESHOLDS]
        rows.append([_label(result, kind), m["parameters"], _fmt_interval(m["accuracy"]),
                     " ".join(f"{a:.3f}" for a in m["accuracies"]),
                     f"{m['step_median'] * 1e3:.2f}", *reach])
    main = Table("Japanese Vowels: test accuracy over seeds (mean [95 % t interval]), training "
                 "step time, and training seconds to reach 90 % / 95 % test accuracy (checked "
                 "after every eval_every epochs; median over the seeds that reached it, "
                 "reached/seeds)",
                 ["model", "parameters", "test accuracy", "per seed", "step ms (median)",
                  "s to 90 %", "s to 95 %"], rows)
    published = Table("Published test accuracies on the same split, beside ours",
                      ["method", "test accuracy"],
                      [list(p) for p in result["published"]]
                      + [[f"rnnlab {_label(result, k)} (this run, mean of "
                          f"{m['accuracy']['n']} seeds)",
                          f"{m['accuracy']['mean']:.3f}"] for k, m in result["models"].items()])
    out = [main, published]
    if result["notes"]:
        out.append(Table("Notes", ["note"], [[n] for n in result["notes"]]))
    return out


def claims(result):
    cfg, pairs, out = result["config"], result["pairs"], []
    band = cfg["tie_band"]
    if "recurrent_vs_mlp" in pairs:
        p = pairs["recurrent_vs_mlp"]
        iv = p["difference"]
        lo, hi = (iv["low"], iv["high"]) if iv["low"] is not None else (iv["mean"], iv["mean"])
        if lo > 0:
            verdict = "supported"
        elif hi < 0 or (-band <= lo and hi <= band):
            verdict = "not supported"  # the MLP is better, or provably within the band
        else:
            verdict = "nuanced"
        out.append(Claim(
            "vowels-any-length",
            "Recurrent networks take sequences of any length; an MLP must pad or cut them, and "
            "loses accuracy for it.", verdict,
            f"Test accuracy of the {_label(result, p['a'])} minus the best MLP's "
            f"({_label(result, p['b'])}), seed by seed: {_fmt_interval(iv)}; a gain whose "
            f"interval lies above 0 supports the claim, one inside ±{band} or below 0 refutes "
            "it. Mean test accuracy: " + ", ".join(
                f"{_label(result, k)} {m['accuracy']['mean']:.3f}"
                for k, m in result["models"].items()) + "."))
    if "gru_vs_lstm" in pairs:
        p = pairs["gru_vs_lstm"]
        iv = p["difference"]
        lo, hi = (iv["low"], iv["high"]) if iv["low"] is not None else (iv["mean"], iv["mean"])
        limit = cfg["cost_target"] + cfg["cost_slack"]
        cheap = p["time_ratio"] <= limit and p["param_ratio"] <= limit
        matches = lo >= -band  # not worse than the band: a tie (inside it) or better
        if matches and cheap:
            verdict = "supported"
        elif hi < -band or (p["time_ratio"] >= 1 and p["param_ratio"] >= 1):
            verdict = "not supported"
        else:
            verdict = "nuanced"
        out.append(Claim(
            "vowels-gru-vs-lstm", "A GRU matches an LSTM's accuracy at three quarters of its cost.",
            verdict,
            f"GRU minus LSTM test accuracy, seed by seed: {_fmt_interval(iv)} (a match: the "
            f"interval above -{band}); GRU/LSTM step time {p['time_ratio']:.2f}, parameters "
            f"{p['param_ratio']:.2f} (three quarters: both at most {limit:.2f})."))
    return out


def plots(result, out_dir):
    pyplot = plt()
    fig, (ax_acc, ax_time) = pyplot.subplots(1, 2, figsize=(11, 4))
    colors = {"mlp": "tab:gray", "mlp_cut": "tab:brown", "rnn": "tab:blue",
              "lstm": "tab:orange", "gru": "tab:green"}
    for i, (kind, m) in enumerate(result["models"].items()):
        c = colors.get(kind, f"C{i}")
        iv = m["accuracy"]
        xs = i + np.linspace(-0.15, 0.15, len(m["accuracies"]))
        ax_acc.scatter(xs, m["accuracies"], color=c, s=14, alpha=0.7)
        err = None if iv["low"] is None else [[iv["mean"] - iv["low"]], [iv["high"] - iv["mean"]]]
        ax_acc.errorbar([i + 0.3], [iv["mean"]], yerr=err, fmt="o", color="black", capsize=3)
        for j, r in enumerate(result["runs"][kind]):
            ax_time.plot([p["seconds"] for p in r["curve"]],
                         [p["test_accuracy"] for p in r["curve"]],
                         color=c, lw=0.9, alpha=0.6, label=_label(result, kind) if j == 0 else None)
    ax_acc.axhline(0.941, color="tab:red", lw=0.8, ls=":", label="Kudo et al. 1999 (0.941)")
    ax_acc.axhline(0.95, color="tab:purple", lw=0.8, ls="--", label="1-NN DTW (≈ 0.95)")
    ax_acc.axhspan(0.97, 0.99, color="tab:green", alpha=0.12, label="best published (0.97-0.99)")
    ax_acc.set_xticks(range(len(result["models"])),
                      [_label(result, k).replace(" (", "\n(") for k in result["models"]],
                      fontsize=7)
    ax_acc.set(ylabel="test accuracy", title="Test accuracy per seed, mean and 95 % interval")
    for th in THRESHOLDS:
        ax_time.axhline(th, color="grey", lw=0.8, ls="--")
    ax_time.set(xlabel="training seconds", ylabel="test accuracy", ylim=(0.7, 1.0),
                title="Test accuracy against training time (one line per seed)")
    for ax in (ax_acc, ax_time):
        ax.legend(fontsize=7, loc="lower right")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path = out_dir / "vowels.png"
    fig.savefig(path, dpi=110)
    pyplot.close(fig)
    return [path]
