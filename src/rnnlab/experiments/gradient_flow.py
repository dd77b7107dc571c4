"""Vanishing and exploding gradients: ‖∂L/∂h_t‖ along the sequence, measured exactly.

The loss sits on the last step only: L = MSE(head(h_T), y) on the adding
problem (T = 100 by default). For t = 1..T we measure the norm of the total
derivative ∂L/∂h_t (over the whole minibatch: the Frobenius norm of the
(N, H) array, L the batch mean), for the tanh RNN, the relu RNN, the LSTM and
the GRU, at initialisation (torch's U(±1/√H)) and again after a short training run on
the adding problem. The decay ratio ‖∂L/∂h_1‖ / ‖∂L/∂h_T‖ says how much of the
gradient that reaches the last state survives back to the first one.

The per-step gradients come from the backward recurrences of docs/bptt.md,
written out in float64 from the model's weights in
:mod:`rnnlab.analysis.hidden_grads`, which tests/test_exp_gradient_flow.py
checks against torch autograd. The claims compare the tanh RNN and the LSTM;
the GRU is measured beside them (tables, figures) and named in the LSTM claim's
evidence only.

Exploding gradients: a tanh RNN whose W_hh is rescaled to a spectral radius
of about 3 is trained with plain SGD twice from the same weights on the same
batches, once without and once with ``clip_grad_norm_``, and a control run
keeps W_hh as initialised (no clipping, same learning rate). Recorded per
step: the loss and the total gradient norm (before clipping); a run
*diverged* if a loss or gradient became non-finite or the loss grew to more
than 10× its first value.

The report's tables and figures are in :mod:`rnnlab.experiments.gradient_flow_report`.
"""

from __future__ import annotations

import math
import time

import numpy as np
from threadpoolctl import threadpool_limits

from ..analysis.hidden_grads import grad_norms, set_spectral_radius
from ..data import adding_baseline_mse, adding_problem
from ..models import SequenceModel
from ..optim import SGD, Adam
from ..stats import classify_against, mean_interval
from .base import Claim, Progress
from .memory_tasks import adding_loss, evaluate, fit

NAME = "gradient_flow"
TITLE = "Vanishing and exploding gradients: ‖∂L/∂h_t‖ along the sequence"

# name -> (SequenceModel kind, RNN nonlinearity)
MODELS = {"rnn_tanh": ("rnn", "tanh"), "rnn_relu": ("rnn", "relu"), "lstm": ("lstm", "tanh"),
          "gru": ("gru", "tanh")}
LABELS = {"rnn_tanh": "RNN (tanh)", "rnn_relu": "RNN (relu)", "lstm": "LSTM", "gru": "GRU"}

# Verdict thresholds on the decay ratio ‖∂L/∂h_1‖ / ‖∂L/∂h_T‖.
VANISHED = 1e-3  # below: the gradient has vanished (lost three orders of magnitude)
EXPLODED = 1e3  # above: the gradient has exploded (grown three orders of magnitude)
LSTM_ADVANTAGE = 1e2  # the LSTM "keeps gradients alive" if its ratio is ≥ 100× the tanh RNN's
DIVERGENCE_FACTOR = 10.0  # a loss above 10× its first value counts as diverged

# Wall-clock measured on the 2-core machine (one BLAS thread, other jobs running):
# quick ≈ 5 s, default ≈ 25 s, full ≈ 95 s before the GRU joined; with it, quick took 8.9 s
# (load average ~3; default and full not measured again).
_COMMON = {"T": 100, "batch": 32, "measure_batch": 64, "lr": 0.01, "max_norm": 1.0,
           "eval_batch": 256, "blas_threads": 1}
_EXPLODE = {"nonlinearity": "tanh", "spectral_radius": 3.0, "T": 50, "lr": 0.1, "max_norm": 1.0,
            "batch": 32}
PRESETS = {
    "quick": {**_COMMON, "hidden": 32, "train_steps": 400,
              "explode": {**_EXPLODE, "hidden": 32, "steps": 60}},
    "default": {**_COMMON, "hidden": 32, "train_steps": 2000,
                "explode": {**_EXPLODE, "hidden": 32, "steps": 150}},
    "full": {**_COMMON, "hidden": 64, "train_steps": 3000,
             "explode": {**_EXPLODE, "hidden": 64, "steps": 300}},
}


# ------------------------------------------------------------------ the experiment


def _model(name, hidden, seed):
    kind, act = MODELS[name]
    return SequenceModel(kind, 2, hidden, 1, activation=act, rng=np.random.default_rng(seed))


def _flow(config, seeds, progress):
    T = config["T"]
    measure = adding_problem(config["measure_batch"], T, rng=np.random.default_rng(seeds["measure"]))
    held_out = adding_problem(config["eval_batch"], T, rng=np.random.default_rng(seeds["eval"]))
    models = {}
    for name in MODELS:
        model = _model(name, config["hidden"], seeds["init"])
        entry = {"label": LABELS[name], "init": grad_norms(model, measure.x, measure.y),
                 "init_loss": evaluate(model, held_out, adding_loss)}
        data_rng = np.random.default_rng(seeds["data"])  # the same batches for every model
        run = fit(model, lambda: adding_problem(config["batch"], T, rng=data_rng), adding_loss,
                  Adam(model.parameters(), lr=config["lr"]), config["train_steps"],
                  max_norm=config["max_norm"], log_every=max(1, config["train_steps"] // 50),
                  progress=progress, description=f"{NAME}: train {LABELS[name]} (T={T})")
        entry["train_curve"] = {"steps": run["steps"], "loss": run["loss"]}
        entry["train_stopped"] = run["stopped"]
        if run["stopped"] is None:
            entry["trained"] = grad_norms(model, measure.x, measure.y)
            entry["trained_loss"] = evaluate(model, held_out, adding_loss)
        else:
            entry["trained"], entry["trained_loss"] = None, None
        models[name] = entry
    return models


def diverged(losses, grad_norms_):
    """Did a training run diverge? Non-finite loss or gradient, or a loss above 10× the first.

    ``losses`` and ``grad_norms_`` are per-step lists (None stands for non-finite).
    Returns (diverged, non_finite, max_loss_ratio).
    """
    non_finite = any(v is None for v in losses) or any(v is None for v in grad_norms_)
    finite = [v for v in losses if v is not None]
    ratio = max(finite) / finite[0] if finite and finite[0] > 0 else None
    return non_finite or (ratio is not None and ratio > DIVERGENCE_FACTOR), non_finite, ratio


def _explode(config, seeds, progress):
    """Train a tanh (or relu) RNN with W_hh at a large spectral radius, without and with clipping.

    A third run, "control", keeps W_hh as initialised (no rescaling, no
    clipping), same learning rate: if it stays finite, a divergence of the
    unclipped run is due to the large recurrent weights, not to the learning rate.
    """
    c = config["explode"]
    T = c["T"]
    measure = adding_problem(config["measure_batch"], T, rng=np.random.default_rng(seeds["measure"]))
    out = {"config": dict(c), "runs": {}}
    for label, clip, scale in (("no_clip", None, True), ("clip", c["max_norm"], True),
                               ("control", None, False)):
        model = SequenceModel("rnn", 2, c["hidden"], 1, activation=c["nonlinearity"],
                              rng=np.random.default_rng(seeds["init"]))
        w_hh = model.body.weight_hh_l0.data
        if scale:
            out["radius_before"] = set_spectral_radius(w_hh, c["spectral_radius"])
            out["radius"] = float(np.max(np.abs(np.linalg.eigvals(w_hh.astype(np.float64)))))
        if label == "no_clip":
            out["init"] = grad_norms(model, measure.x, measure.y)
        if label == "control":
            out["control_init"] = grad_norms(model, measure.x, measure.y)
        data_rng = np.random.default_rng(seeds["data"])  # the same batches for the three runs
        run = fit(model, lambda: adding_problem(c["batch"], T, rng=data_rng), adding_loss,
                  SGD(model.parameters(), lr=c["lr"]), c["steps"], max_norm=clip, log_every=1,
                  progress=progress, description=f"{NAME}: explosion, {label.replace('_', ' ')}")
        div, non_finite, ratio = diverged(run["all_loss"], run["all_grad_norm"])
        finite_norms = [v for v in run["all_grad_norm"] if v is not None]
        out["runs"][label] = {
            "max_norm": clip, "scaled": scale, "loss": run["all_loss"],
            "grad_norm": run["all_grad_norm"], "steps_run": run["steps_run"],
            "stopped": run["stopped"], "diverged": div, "non_finite": non_finite,
            "max_loss_ratio": ratio,
            "max_grad_norm": max(finite_norms) if finite_norms else None,
            "final_loss": run["all_loss"][-1]}
    return out


def run_seed(config, seed):
    """One seed: weights, batches and measuring batch drawn from ``seed``; the gradient flow at
    init and after training, then the explosion case."""
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    seeds = {k: int(rng.integers(2**31)) for k in ("init", "data", "measure", "eval")}
    with threadpool_limits(limits=config.get("blas_threads", 1), user_api="blas"):
        models = _flow(config, seeds, Progress())
        explode = _explode(config, seeds, Progress())
    return {"models": models, "explode": explode, "seconds": time.perf_counter() - start}


def run(config, *, rng, progress):
    """One seed, for a caller without the task runner (the seed drawn from ``rng``)."""
    return combine(config, [{"seed": 0, **run_seed(config, int(rng.integers(2**31)))}])


# log10 of a decay ratio that underflowed to 0 (below the smallest float64 subnormal)
LOG_FLOOR = -324.0


def _log10(stats):
    """log10 of a decay ratio, LOG_FLOOR for 0, None when there is none (a diverged run)."""
    if stats is None or stats.get("decay_ratio") is None:
        return None
    ratio = stats["decay_ratio"]
    return math.log10(ratio) if ratio > 0 else LOG_FLOOR


def _interval(values):
    """mean_interval of the measured (not None) values; no interval when none was measured."""
    values = [v for v in values if v is not None]
    if not values:
        return {"mean": None, "low": None, "high": None, "n": 0, "values": []}
    return mean_interval(values)


def combine(config, per_seed):
    """Per model, at init and after training: the per-seed log10 decay ratios with their 95 % t
    interval; for the explosion case, in how many seeds each run diverged."""
    summary = {}
    for name in (n for n in MODELS if all(n in s["models"] for s in per_seed)):
        summary[name] = {}
        for when in ("init", "trained"):
            values = [_log10(s["models"][name].get(when)) for s in per_seed]
            summary[name][when] = {"log10": values, "interval": _interval(values)}
    explode = {label: sum(bool(s["explode"]["runs"][label]["diverged"]) for s in per_seed)
               for label in per_seed[0]["explode"]["runs"]}
    return {"config": dict(config), "T": config["T"], "baseline_mse": adding_baseline_mse(),
            "seeds": [s["seed"] for s in per_seed], "summary": summary,
            "explode_diverged": explode,
            "explode_init_log10": [_log10(s["explode"]["init"]) for s in per_seed],
            "per_seed": per_seed}


# ------------------------------------------------------------------ verdicts

LOG_VANISHED, LOG_EXPLODED = math.log10(VANISHED), math.log10(EXPLODED)
LOG_ADVANTAGE = math.log10(LSTM_ADVANTAGE)


def models_of(result):
    """The names of MODELS that ``result`` measured (a result from before the GRU joined has
    only the two RNNs and the LSTM)."""
    return [name for name in MODELS if name in result["summary"]]


def _fmt(ratio):
    return "n/a" if ratio is None else f"{ratio:.1e}"


def _fmt_mean(iv):
    """The geometric mean of a log10 interval as a number: '1.2e-23' (for a headline)."""
    return "n/a" if iv["mean"] is None else _fmt(10.0 ** iv["mean"])


def _fmt_log(iv):
    """A log10 interval as powers of ten: '1e-23 [1e-25, 1e-21]'."""
    if iv["mean"] is None:
        return "n/a"
    text = f"1e{iv['mean']:+.1f}"
    if iv["low"] is None:
        return text + " (1 seed)"
    return f"{text} [1e{iv['low']:+.1f}, 1e{iv['high']:+.1f}]"


def vanishing_verdict(tanh_log10, relu_log10):
    """"A vanilla RNN's gradients vanish over long spans", from per-seed log10 decay ratios at init.

    With the 95 % intervals of the tanh and the relu RNN against log10(VANISHED):
    supported: both lie below it; nuanced: the tanh RNN's below, the relu RNN's
    above (it does not vanish, or explodes); not supported: the tanh RNN's above;
    undecided: an interval needed for the answer holds the threshold.
    """
    tanh = classify_against(_interval(tanh_log10), LOG_VANISHED)
    if tanh != "below":
        return "not supported" if tanh == "above" else "undecided"
    relu = classify_against(_interval(relu_log10), LOG_VANISHED)
    return {"below": "supported", "above": "nuanced"}.get(relu, "undecided")


def _kept(lstm_log10, tanh_log10):
    """At one time (init or trained): "kept" (the LSTM's ratio is above VANISHED and its paired
    log10 advantage over the tanh RNN above LOG_ADVANTAGE), "better" (the advantage, but it
    vanishes), "not better", or "unclear" (an interval holds its threshold)."""
    pairs = [(a, b) for a, b in zip(lstm_log10, tanh_log10) if a is not None and b is not None]
    if not pairs:
        return "unclear"
    advantage = classify_against(_interval([a - b for a, b in pairs]), LOG_ADVANTAGE)
    if advantage != "above":
        return "not better" if advantage == "below" else "unclear"
    alive = classify_against(_interval([a for a, _ in pairs]), LOG_VANISHED)
    return {"above": "kept", "below": "better"}.get(alive, "unclear")


def lstm_verdict(lstm_log10s, tanh_log10s):
    """"The LSTM keeps gradients alive over long spans", from the per-seed log10 decay ratios
    at init and after training (two lists each): see :func:`_kept`. supported: kept both
    times; not supported: not better either time; undecided: an unclear time; nuanced otherwise."""
    states = [_kept(a, b) for a, b in zip(lstm_log10s, tanh_log10s)]
    if "unclear" in states:
        return "undecided"
    if all(s == "kept" for s in states):
        return "supported"
    if all(s == "not better" for s in states):
        return "not supported"
    return "nuanced"


def explosion_verdict(init_log10, no_clip_diverged, clip_diverged, control_diverged=None):
    """"Gradients can explode, and clipping tames them", from per-seed outcomes (lists).

    supported: in every seed the unclipped run with the large recurrent weights
    diverged, and neither the clipped run nor the control (normal weights, no
    clipping, same learning rate) did; not supported: no seed diverged and no
    seed's gradient grew by more than EXPLODED along the sequence; nuanced otherwise.
    """
    control_diverged = control_diverged or [False] * len(no_clip_diverged)
    if all(no_clip_diverged) and not any(clip_diverged) and not any(control_diverged):
        return "supported"
    if not any(no_clip_diverged) and all(v is not None and v <= LOG_EXPLODED for v in init_log10):
        return "not supported"
    return "nuanced"


def _run_outcome(r):
    if r["non_finite"]:
        return f"became non-finite at step {r['stopped']}"
    state = "diverged" if r["diverged"] else "stayed finite"
    ratio = r["max_loss_ratio"]
    return f"{state} (largest loss {ratio:.3g}× the first)" if ratio is not None else state


def claims(result):
    T, summary, n = result["T"], result["summary"], len(result["seeds"])
    log = {(name, when): summary[name][when]["log10"]
           for name in models_of(result) for when in ("init", "trained")}
    iv = {key: _interval(v) for key, v in log.items()}
    steps = result["config"]["train_steps"]
    out = []

    verdict = vanishing_verdict(log["rnn_tanh", "init"], log["rnn_relu", "init"])
    relu = classify_against(iv["rnn_relu", "init"], LOG_VANISHED)
    relu_note = {"below": "also vanishes", "above": "does not vanish"}.get(relu, "undecided")
    out.append(Claim(
        "rnn-vanishing", "A vanilla RNN's gradients vanish over long spans.", verdict,
        f"‖∂L/∂h_1‖ / ‖∂L/∂h_T‖ over T={T} at init, mean of log10 [95 % t interval] over {n} "
        f"seeds: tanh RNN {_fmt_log(iv['rnn_tanh', 'init'])}, relu RNN "
        f"{_fmt_log(iv['rnn_relu', 'init'])} ({relu_note}); after {steps} training steps: tanh "
        f"{_fmt_log(iv['rnn_tanh', 'trained'])}, relu {_fmt_log(iv['rnn_relu', 'trained'])}. "
        f"Vanished means the interval lies below {VANISHED:.0e}.",
        f"tanh RNN keeps {_fmt_mean(iv['rnn_tanh', 'init'])} of ‖∂L/∂h‖ over T={T} "
        f"(geometric mean, {n} seeds)"))

    whens = ("init", "trained")
    verdict = lstm_verdict([log["lstm", w] for w in whens], [log["rnn_tanh", w] for w in whens])
    states = {w: _kept(log["lstm", w], log["rnn_tanh", w]) for w in whens}
    first = result["per_seed"][0]["models"]["lstm"]
    forget = " → ".join("n/a" if not first.get(w) or first[w].get("forget_gate_max_unit") is None
                        else f"{first[w]['forget_gate_max_unit']:.2f}" for w in whens)
    gru = ("" if "gru" not in summary else
           f" The GRU, measured alongside and not part of the verdict: "
           f"{_fmt_log(iv['gru', 'init'])} at init, {_fmt_log(iv['gru', 'trained'])} trained.")
    out.append(Claim(
        "lstm-gradient-flow", "The LSTM keeps gradients alive over long spans.", verdict,
        f"‖∂L/∂h_1‖ / ‖∂L/∂h_T‖ over T={T} ({n} seeds): LSTM {_fmt_log(iv['lstm', 'init'])} at "
        f"init and {_fmt_log(iv['lstm', 'trained'])} after {steps} training steps, against the "
        f"tanh RNN's {_fmt_log(iv['rnn_tanh', 'init'])} and {_fmt_log(iv['rnn_tanh', 'trained'])}; "
        f"at init: {states['init']}, after training: {states['trained']} (kept alive: the "
        f"interval above {VANISHED:.0e} and the paired advantage over the RNN above "
        f"{LSTM_ADVANTAGE:.0f}×; supported needs both times); the most persistent unit's mean "
        f"forget gate, init → trained (seed {result['seeds'][0]}): {forget}.{gru}",
        f"LSTM {_fmt_mean(iv['lstm', 'init'])} vs tanh RNN {_fmt_mean(iv['rnn_tanh', 'init'])} at init"))

    per_seed = result["per_seed"]
    div = {label: [bool(s["explode"]["runs"][label]["diverged"]) for s in per_seed]
           for label in per_seed[0]["explode"]["runs"]}
    verdict = explosion_verdict(result["explode_init_log10"], div["no_clip"], div["clip"],
                                div.get("control"))
    ex = per_seed[0]["explode"]
    c = ex["config"]
    short = {"no_clip": "unclipped", "clip": "clipped", "control": "control"}
    counts = ", ".join(f"{short.get(k, k)} {sum(v)}/{n}" for k, v in div.items())
    out.append(Claim(
        "gradient-explosion-clipping", "Gradients can explode, and clipping tames them.", verdict,
        f"{c['nonlinearity']} RNN with W_hh at spectral radius {ex['radius']:.2f}, T={c['T']}, "
        f"SGD (lr {c['lr']}): ‖∂L/∂h_1‖ / ‖∂L/∂h_T‖ at init "
        f"{_fmt_log(_interval(result['explode_init_log10']))}; runs that diverged over {n} seeds: "
        f"{counts} (supported needs the unclipped run to diverge in every seed and the clipped "
        f"run and the control in none). Seed {result['seeds'][0]}: without clipping it "
        f"{_run_outcome(ex['runs']['no_clip'])}, with clip_grad_norm_({c['max_norm']}) it "
        f"{_run_outcome(ex['runs']['clip'])}. Diverged means non-finite or a loss above "
        f"{DIVERGENCE_FACTOR:.0f}× the first.",
        f"diverged: unclipped {sum(div['no_clip'])}/{n}, clipped {sum(div['clip'])}/{n} seeds"))
    return out


def _first_seed(result):
    """The first seed's measurements in the shape the detailed tables and plots read."""
    first = result["per_seed"][0]
    return {**result, "models": first["models"], "explode": first["explode"]}


def tables(result):
    """The tables of the report (:mod:`rnnlab.experiments.gradient_flow_report`)."""
    from .gradient_flow_report import tables as report_tables

    return report_tables(result)


def plots(result, out_dir):
    """The figures of the report (:mod:`rnnlab.experiments.gradient_flow_report`)."""
    from .gradient_flow_report import plots as report_plots

    return report_plots(result, out_dir)
