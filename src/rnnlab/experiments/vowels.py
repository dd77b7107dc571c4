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
only; :func:`run_seed` runs every model for one seed (one task of ``rnnlab
compare``, seeds in separate processes) and :func:`combine` joins the seeds.

Measured per model: test accuracy over the seeds (mean, 95 % t interval of
:mod:`rnnlab.stats`, every seed's value), the training seconds to first reach
90 % and 95 % test accuracy, parameters, and the time of a training step
(forward, loss, backward, clip, update: median after a warm-up). Comparisons
are paired by seed (same seed: same batches). The GRU's cost against the LSTM
is judged on counts that no other process can change, parameters and GEMM
FLOPs per training step (:mod:`rnnlab.analysis`); the measured step times,
taken while other tasks may share the machine, are context only.
"""

from __future__ import annotations

import math
import time

import numpy as np

from ..analysis import (gru_params, gru_training_flops, linear_params, lstm_params,
                        lstm_training_flops)
from ..bench.machine import pinned_threads
from ..data import load_japanese_vowels, load_vowels_standardized, pad_or_cut, pad_sequences
from ..data.vowels import VOWELS_CLASSES, VOWELS_FEATURES
from ..last_step import LastStepClassifier, available_kinds
from ..models import SequenceModel
from ..nn import CrossEntropyLoss
from ..optim import Adam, clip_grad_norm_
from ..stats import (classify_against, classify_difference, fmt_interval, geometric_interval,
                     mean_interval, paired_difference)
from .base import Claim, time_stats

NAME = "vowels"
TITLE = "Sequences of any length: Japanese Vowels (9 speakers, 7-29 frames)"
MLPS = ("mlp", "mlp_cut")  # padded to the longest, cut to the shortest
MODELS = MLPS + ("rnn", "lstm", "gru")
THRESHOLDS = (0.9, 0.95)

_COMMON = {"models": list(MODELS), "hidden": 64, "mlp_hidden": 128, "mlp_length": None,
           "mlp_cut_length": None, "batch": 32, "lr": 0.01, "cosine": True, "clip": 1.0,
           "eval_every": 1, "warmup": 5, "threads": 1,
           "tie_band": 0.01, "cost_target": 0.75, "cost_slack": 0.05}
# The seeds are compare's (--seeds K): one task per seed runs every model.
PRESETS = {
    "quick": {**_COMMON, "epochs": 20},
    "default": {**_COMMON, "epochs": 40},
    "full": {**_COMMON, "epochs": 60},
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


def run_seed(config, seed) -> dict:
    """One seed: every model of ``config["models"]`` this installation has, by :func:`run_one`.

    Returns dict(runs: model -> run_one's dict, notes: the models skipped,
    n_train, n_test, max_train_length: the longest training utterance).
    """
    have = MLPS + available_kinds()
    notes = [f"rnnlab.nn has no {k.upper()} in this installation: the {k.upper()} was skipped"
             for k in config["models"] if k not in have]
    runs = {k: run_one(config, k, seed) for k in config["models"] if k in have}
    train, test = load_japanese_vowels("train")[0], load_japanese_vowels("test")[0]
    return {"runs": runs, "notes": notes, "n_train": len(train), "n_test": len(test),
            "max_train_length": max(s.shape[0] for s in train)}


def run(config, *, rng, progress):
    """One seed, for a caller without the task runner (the seed drawn from ``rng``)."""
    return combine(config, [{"seed": 0, **run_seed(config, int(rng.integers(2**31)))}])


def recurrent_cost(kind, config, T) -> dict:
    """Parameters (recurrent layer + head) and GEMM FLOPs of one training step (forward and
    BPTT of the layer on a (T, batch, 12) batch, no input gradient) of the GRU or the LSTM,
    from :mod:`rnnlab.analysis`: counts, the same on every machine."""
    H, d = config["hidden"], config["batch"]
    layer, flops = {"gru": (gru_params, gru_training_flops),
                    "lstm": (lstm_params, lstm_training_flops)}[kind]
    return {"parameters": sum(layer(VOWELS_FEATURES, H).values())
            + linear_params(H, VOWELS_CLASSES),
            "flops": flops(d, T, VOWELS_FEATURES, H, input_grad=False)}


def combine(config, per_seed) -> dict:
    """Per model: accuracy interval over the seeds, time to each threshold, step time; the
    paired differences (best recurrent − best MLP, GRU − LSTM) and the GRU/LSTM cost."""
    kinds = [k for k in per_seed[0]["runs"] if all(k in s["runs"] for s in per_seed)]
    runs = {k: [s["runs"][k] for s in per_seed] for k in kinds}
    models = {}
    for kind, seeds_runs in runs.items():
        accs = [r["test_accuracy"] for r in seeds_runs]
        times = {}
        for th in THRESHOLDS:
            hit = [r["reached"][str(th)]["seconds"] for r in seeds_runs if r["reached"][str(th)]]
            times[str(th)] = {"median": float(np.median(hit)) if hit else None,
                              "reached": len(hit), "seeds": len(seeds_runs)}
        models[kind] = {"accuracy": mean_interval(accs), "accuracies": accs,
                        "parameters": seeds_runs[0]["parameters"],
                        "step_ms": geometric_interval([r["step_time"]["median"] * 1e3
                                                       for r in seeds_runs]),
                        "train_seconds": float(np.median([r["train_seconds"]
                                                          for r in seeds_runs])),
                        "time_to": times}
    pairs = {}
    recurrent = [k for k in models if k not in MLPS]
    mlps = [k for k in models if k in MLPS]
    if mlps and recurrent:
        def best(group):
            return max(group, key=lambda k: models[k]["accuracy"]["mean"])
        pairs["recurrent_vs_mlp"] = _paired(runs, best(recurrent), best(mlps))
    first = per_seed[0]
    if "gru" in models and "lstm" in models:
        T = first.get("max_train_length", 26)
        cost = {k: recurrent_cost(k, config, T) for k in ("gru", "lstm")}
        pairs["gru_vs_lstm"] = {
            **_paired(runs, "gru", "lstm"), "cost": cost, "T": T,
            "param_ratio": cost["gru"]["parameters"] / cost["lstm"]["parameters"],
            "flops_ratio": cost["gru"]["flops"] / cost["lstm"]["flops"],
            "time_ratio": geometric_interval([g["step_time"]["median"] / m["step_time"]["median"]
                                              for g, m in zip(runs["gru"], runs["lstm"])])}
    return {"config": dict(config), "seeds": [s["seed"] for s in per_seed],
            "n_train": first["n_train"], "n_test": first["n_test"], "notes": first["notes"],
            "runs": runs, "models": models, "pairs": pairs, "published": PUBLISHED}


def _paired(runs, a, b) -> dict:
    """acc(a) - acc(b), seed by seed (same seed: same batches), with its t interval."""
    a_acc = [r["test_accuracy"] for r in runs[a]]
    b_acc = [r["test_accuracy"] for r in runs[b]]
    return {"a": a, "b": b, "diffs": [x - y for x, y in zip(a_acc, b_acc)],
            "difference": paired_difference(a_acc, b_acc)}


# ------------------------------------------------------------------ claims


def label(result, kind):
    """The model's name in the report; an MLP's says the length it was padded or cut to."""
    if kind not in MLPS:
        return kind.upper()
    run = result["runs"][kind][0]
    if kind == "mlp":
        return f"MLP padded to {run['mlp_length']} ({run['test_sequences_cut']} test cut)"
    return f"MLP cut to {run['mlp_length']}"


def any_length_verdict(difference, band) -> str:
    """"An MLP loses accuracy for padding or cutting", from the paired interval of best
    recurrent − best MLP: supported above 0, not supported below 0 or inside ±band (a tie),
    undecided when the interval holds 0 and leaves the band."""
    return {"above": "supported", "below": "not supported", "tie": "not supported",
            "unclear": "undecided"}[classify_difference(difference, band)]


def gru_verdict(difference, band, param_ratio, flops_ratio, limit) -> str:
    """"A GRU matches an LSTM's accuracy at three quarters of its cost".

    Accuracy: the paired GRU − LSTM interval lies above -band (a tie or better:
    a match), below -band (worse), or holds -band (undecided). Cost: parameters
    and FLOPs per step both at most ``limit`` times the LSTM's. supported: a
    match and the cost; not supported: worse, or no cheaper at all (both
    ratios ≥ 1); nuanced: a match, cheaper but not by a quarter.
    """
    accuracy = classify_against(difference, -band)
    if accuracy == "below":
        return "not supported"
    if accuracy == "unclear":
        return "undecided"
    if param_ratio <= limit and flops_ratio <= limit:
        return "supported"
    return "not supported" if param_ratio >= 1 and flops_ratio >= 1 else "nuanced"


def claims(result):
    cfg, pairs, out, n = result["config"], result["pairs"], [], len(result["seeds"])
    band = cfg["tie_band"]
    if "recurrent_vs_mlp" in pairs:
        p = pairs["recurrent_vs_mlp"]
        iv = p["difference"]
        out.append(Claim(
            "vowels-any-length",
            "Recurrent networks take sequences of any length; an MLP must pad or cut them, and "
            "loses accuracy for it.", any_length_verdict(iv, band),
            f"Test accuracy of the {label(result, p['a'])} minus the best MLP's "
            f"({label(result, p['b'])}), paired over {n} seeds: {fmt_interval(iv)} (95 % t "
            f"interval); an interval above 0 supports the claim, one inside ±{band} or below 0 "
            "refutes it. Mean test accuracy: " + ", ".join(
                f"{label(result, k)} {m['accuracy']['mean']:.3f}"
                for k, m in result["models"].items()) + ".",
            f"{p['a'].upper()} − best MLP: {iv['mean']:+.3f} accuracy (mean of {n} seeds)"))
    if "gru_vs_lstm" in pairs:
        p = pairs["gru_vs_lstm"]
        iv, limit = p["difference"], cfg["cost_target"] + cfg["cost_slack"]
        cost, tr = p["cost"], p["time_ratio"]
        timed = f"{tr['mean']:.2f}" + ("" if tr["low"] is None
                                       else f" [{tr['low']:.2f}, {tr['high']:.2f}]")
        out.append(Claim(
            "vowels-gru-vs-lstm", "A GRU matches an LSTM's accuracy at three quarters of its cost.",
            gru_verdict(iv, band, p["param_ratio"], p["flops_ratio"], limit),
            f"GRU minus LSTM test accuracy, paired over {n} seeds: {fmt_interval(iv)} (a match: "
            f"the interval above -{band}). Cost, counted: parameters {cost['gru']['parameters']:,} "
            f"/ {cost['lstm']['parameters']:,} = {p['param_ratio']:.2f}, GEMM FLOPs per training "
            f"step (batch {cfg['batch']}, T={p['T']}) {p['flops_ratio']:.2f} (three quarters: "
            f"both at most {limit:.2f}). Measured step time GRU/LSTM {timed} (geometric mean of "
            "the seeds' ratios), as context only: the seeds' tasks may run side by side, so the "
            "verdict rests on the counts.",
            f"GRU − LSTM {iv['mean']:+.3f} accuracy at {p['flops_ratio']:.2f}× the FLOPs"))
    return out


def tables(result):
    """The tables of the report (:mod:`rnnlab.experiments.vowels_report`)."""
    from .vowels_report import tables as report_tables

    return report_tables(result)


def plots(result, out_dir):
    """The figure of the report (:mod:`rnnlab.experiments.vowels_report`)."""
    from .vowels_report import plots as report_plots

    return report_plots(result, out_dir)
