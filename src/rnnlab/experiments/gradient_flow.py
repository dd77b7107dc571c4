"""Vanishing and exploding gradients: ‖∂L/∂h_t‖ along the sequence, measured exactly.

The loss sits on the last step only: L = MSE(head(h_T), y) on the adding
problem (T = 100 by default). For t = 1..T we measure the norm of the total
derivative ∂L/∂h_t (over the whole minibatch: the Frobenius norm of the
(N, H) array, L the batch mean), for the tanh RNN, the relu RNN, the LSTM and the GRU,
at initialisation (torch's U(±1/√H)) and again after a short training run on
the adding problem. The decay ratio ‖∂L/∂h_1‖ / ‖∂L/∂h_T‖ says how much of the
gradient that reaches the last state survives back to the first one.

The per-step gradients come from the backward recurrences of docs/bptt.md,
written out in float64 from the model's weights in :mod:`rnnlab.analysis.gradient_flow`
(:func:`~rnnlab.analysis.gradient_flow.hidden_state_grads`), which
tests/test_exp_gradient_flow.py checks against torch autograd.

Exploding gradients: a tanh RNN whose W_hh is rescaled to a spectral radius
of about 3 is trained with plain SGD twice from the same weights on the same
batches, once without and once with ``clip_grad_norm_``, and a control run
keeps W_hh as initialised (no clipping, same learning rate). Recorded per
step: the loss and the total gradient norm (before clipping); a run
*diverged* if a loss or gradient became non-finite or the loss grew to more
than 10× its first value.
"""

from __future__ import annotations

import time

import numpy as np
from threadpoolctl import threadpool_limits

from ..analysis.gradient_flow import grad_norms, set_spectral_radius
from ..data import adding_baseline_mse, adding_problem
from ..models import SequenceModel
from ..optim import SGD, Adam
from .base import Claim, Table, plt
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


def run(config, *, rng, progress):
    """Measure the gradient flow at init and after training, then the explosion case."""
    start = time.perf_counter()
    seeds = {k: int(rng.integers(2**31)) for k in ("init", "data", "measure", "eval")}
    with threadpool_limits(limits=config.get("blas_threads", 1), user_api="blas"):
        models = _flow(config, seeds, progress)
        explode = _explode(config, seeds, progress)
    return {"config": dict(config), "T": config["T"], "baseline_mse": adding_baseline_mse(),
            "models": models, "explode": explode, "seconds": time.perf_counter() - start}


# ------------------------------------------------------------------ verdicts


def _fmt(ratio):
    return "n/a" if ratio is None else f"{ratio:.1e}"


def _ratio(result, name, when):
    stats = result["models"][name].get(when)
    return None if stats is None else stats["decay_ratio"]


def vanishing_verdict(tanh_ratio, relu_ratio):
    """"A vanilla RNN's gradients vanish over long spans", from the init decay ratios.

    supported: both the tanh and the relu RNN keep less than VANISHED of the gradient;
    nuanced: the tanh RNN vanishes but the relu RNN does not (or explodes);
    not supported: the tanh RNN does not vanish.
    """
    if tanh_ratio is None or tanh_ratio >= VANISHED:
        return "not supported"
    if relu_ratio is not None and relu_ratio < VANISHED:
        return "supported"
    return "nuanced"


def lstm_verdict(lstm_ratios, tanh_ratios):
    """"The LSTM keeps gradients alive over long spans", from (init, trained) decay ratios.

    At each of init and after training the LSTM *keeps* its gradient if its
    ratio is ≥ VANISHED and ≥ LSTM_ADVANTAGE × the tanh RNN's. supported: both
    times; nuanced: once, or it beats the RNN by LSTM_ADVANTAGE but still
    vanishes; not supported: never better than the RNN by that factor.
    """
    kept, better = 0, 0
    for lstm, rnn in zip(lstm_ratios, tanh_ratios):
        if lstm is None:
            continue
        beats = rnn is None or lstm >= LSTM_ADVANTAGE * rnn
        better += beats
        kept += beats and lstm >= VANISHED
    measured = sum(r is not None for r in lstm_ratios)
    if measured and kept == measured:
        return "supported"
    if kept or better:
        return "nuanced"
    return "not supported"


def explosion_verdict(init_ratio, no_clip_diverged, clip_diverged, control_diverged=False):
    """"Gradients can explode, and clipping tames them".

    supported: with the large recurrent weights the unclipped run diverged, the
    clipped one did not, and the control (normal weights, no clipping, same
    learning rate) did not either;
    nuanced: the gradient grew by more than EXPLODED along the sequence, or the
    unclipped run diverged, but clipping did not make the difference or the
    control diverged too (the learning rate alone is unstable);
    not supported: no explosion at all.
    """
    if no_clip_diverged and not clip_diverged and not control_diverged:
        return "supported"
    if no_clip_diverged or (init_ratio is not None and init_ratio > EXPLODED):
        return "nuanced"
    return "not supported"


def _run_outcome(r):
    if r["non_finite"]:
        return f"became non-finite at step {r['stopped']}"
    state = "diverged" if r["diverged"] else "stayed finite"
    ratio = r["max_loss_ratio"]
    return f"{state} (largest loss {ratio:.3g}× the first)" if ratio is not None else state


def claims(result):
    T = result["T"]
    tanh_i, relu_i = _ratio(result, "rnn_tanh", "init"), _ratio(result, "rnn_relu", "init")
    tanh_t, relu_t = _ratio(result, "rnn_tanh", "trained"), _ratio(result, "rnn_relu", "trained")
    lstm_i, lstm_t = _ratio(result, "lstm", "init"), _ratio(result, "lstm", "trained")
    steps = result["config"]["train_steps"]
    out = []

    verdict = vanishing_verdict(tanh_i, relu_i)
    relu_note = ("also vanishes" if relu_i is not None and relu_i < VANISHED else
                 "explodes" if relu_i is not None and relu_i > EXPLODED else "does not vanish")
    out.append(Claim(
        "rnn-vanishing", "A vanilla RNN's gradients vanish over long spans.", verdict,
        f"‖∂L/∂h_1‖ / ‖∂L/∂h_T‖ over T={T} at init: tanh RNN {_fmt(tanh_i)}, relu RNN "
        f"{_fmt(relu_i)} ({relu_note}); after {steps} training steps: tanh {_fmt(tanh_t)}, "
        f"relu {_fmt(relu_t)}. Vanished means below {VANISHED:.0e}."))

    verdict = lstm_verdict([lstm_i, lstm_t], [tanh_i, tanh_t])
    kept = [when for when, lstm, rnn in (("at init", lstm_i, tanh_i), ("after training", lstm_t, tanh_t))
            if lstm is not None and lstm >= VANISHED and (rnn is None or lstm >= LSTM_ADVANTAGE * rnn)]
    lstm = result["models"]["lstm"]
    forget_text = ", ".join(
        f"{label} " + " → ".join(
            "n/a" if not lstm.get(w) or lstm[w].get(key) is None else f"{lstm[w][key]:.2f}"
            for w in ("init", "trained"))
        for key, label in (("forget_gate_mean", "mean over units"),
                           ("forget_gate_max_unit", "most persistent unit")))
    out.append(Claim(
        "lstm-gradient-flow", "The LSTM keeps gradients alive over long spans.", verdict,
        f"‖∂L/∂h_1‖ / ‖∂L/∂h_T‖ over T={T}: LSTM {_fmt(lstm_i)} at init and {_fmt(lstm_t)} after "
        f"{steps} training steps, against the tanh RNN's {_fmt(tanh_i)} and {_fmt(tanh_t)} "
        f"(kept alive, i.e. ≥ {VANISHED:.0e} and ≥ {LSTM_ADVANTAGE:.0f}× the RNN's: "
        f"{' and '.join(kept) if kept else 'never'}; supported needs both); "
        f"mean forget gate f_t, init → trained: {forget_text}."))

    ex = result["explode"]
    c = ex["config"]
    runs = ex["runs"]
    init_ratio = ex["init"]["decay_ratio"]
    control = runs.get("control")
    verdict = explosion_verdict(init_ratio, runs["no_clip"]["diverged"], runs["clip"]["diverged"],
                                control["diverged"] if control else False)
    control_text = ("" if control is None else
                    f"; the control with W_hh as initialised (radius {ex['radius_before']:.2f}), "
                    f"unclipped, {_run_outcome(control)}")
    out.append(Claim(
        "gradient-explosion-clipping", "Gradients can explode, and clipping tames them.", verdict,
        f"{c['nonlinearity']} RNN with W_hh at spectral radius {ex['radius']:.2f}, T={c['T']}: "
        f"‖∂L/∂h_1‖ / ‖∂L/∂h_T‖ = {_fmt(init_ratio)} at init; SGD (lr {c['lr']}) without "
        f"clipping {_run_outcome(runs['no_clip'])}, largest gradient norm "
        f"{_fmt(runs['no_clip']['max_grad_norm'])}; with clip_grad_norm_({c['max_norm']}) it "
        f"{_run_outcome(runs['clip'])}{control_text}. Diverged means non-finite or a loss above "
        f"{DIVERGENCE_FACTOR:.0f}× the first."))
    return out


_RUN_NAMES = {"no_clip": "radius {r}, no clipping", "clip": "radius {r}, clip_grad_norm_({m})",
              "control": "control: radius {r0} (as initialised), no clipping"}


def _run_name(ex, label, r):
    return _RUN_NAMES.get(label, label).format(r=f"{ex['radius']:.1f}", m=r["max_norm"],
                                               r0=f"{ex.get('radius_before', float('nan')):.2f}")


def tables(result):
    rows = []
    for name, m in result["models"].items():
        row = [m["label"]]
        for when in ("init", "trained"):
            stats = m.get(when)
            if stats is None:
                row += ["n/a"] * 4
                continue
            row += [f"{stats['h'][-1]:.2e}", f"{stats['h'][0]:.2e}", _fmt(stats["decay_ratio"]),
                    "n/a" if stats["log10_decay"] is None else f"{stats['log10_decay']:.1f}"]
        row += [f"{m['init_loss']:.4f}",
                "n/a" if m["trained_loss"] is None else f"{m['trained_loss']:.4f}"]
        for key in ("forget_gate_mean", "forget_gate_max_unit"):
            forget = [m[w].get(key) if m.get(w) else None for w in ("init", "trained")]
            row.append("–" if forget[0] is None else
                       " → ".join("n/a" if f is None else f"{f:.2f}" for f in forget))
        rows.append(row)
    c = result["config"]
    flow = Table(
        f"‖∂L/∂h_t‖ with the loss on the last step (adding problem, T={result['T']}, hidden "
        f"{c['hidden']}), at init and after {c['train_steps']} Adam steps; ratio = "
        f"‖∂L/∂h_1‖ / ‖∂L/∂h_T‖; held-out MSE (baseline {result['baseline_mse']:.4f})",
        ["model", "init ‖∂L/∂h_T‖", "init ‖∂L/∂h_1‖", "init ratio", "init log10",
         "trained ‖∂L/∂h_T‖", "trained ‖∂L/∂h_1‖", "trained ratio", "trained log10",
         "MSE at init", "MSE trained", "mean forget gate init → trained",
         "most persistent unit's mean forget gate"], rows)
    ex = result["explode"]
    ex_rows = []
    for label, r in ex["runs"].items():
        ex_rows.append([
            _run_name(ex, label, r), r["steps_run"], _fmt(r["grad_norm"][0]),
            _fmt(r["max_grad_norm"]),
            "n/a" if r["loss"][0] is None else f"{r['loss'][0]:.3f}",
            "non-finite" if r["final_loss"] is None else f"{r['final_loss']:.3g}",
            "n/a" if r["max_loss_ratio"] is None else f"{r['max_loss_ratio']:.3g}",
            "yes" if r["diverged"] else "no"])
    ec = ex["config"]
    explode = Table(
        f"Exploding gradients: {ec['nonlinearity']} RNN, hidden {ec['hidden']}, T={ec['T']}, "
        f"SGD lr {ec['lr']}, {ec['steps']} steps, the same batches for every run (gradient norm "
        f"= total norm before clipping; diverged = non-finite or loss > "
        f"{DIVERGENCE_FACTOR:.0f}× the first)",
        ["run", "steps run", "first grad norm", "largest grad norm", "first loss", "final loss",
         "largest loss / first", "diverged"], ex_rows)
    return [flow, explode]


def plots(result, out_dir):
    pyplot = plt()
    T = result["T"]
    t = np.arange(1, T + 1)
    colors = {"rnn_tanh": "C3", "rnn_relu": "C1", "lstm": "C0", "gru": "C2"}
    fig, ax = pyplot.subplots(figsize=(7, 4.2))
    for name, m in result["models"].items():
        for when, style in (("init", "-"), ("trained", "--")):
            stats = m.get(when)
            if stats is None:
                continue
            ax.plot(t, _positive(stats["h"]), ls=style, color=colors.get(name),
                    label=f"{m['label']}, {'init' if when == 'init' else 'trained'}")
    ax.set_yscale("log")
    ax.set(xlabel="time step t (loss on step T)", ylabel="‖∂L/∂h_t‖",
           title=f"Gradient reaching each hidden state (T={T}): init solid, trained dashed")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    flow_path = out_dir / "gradient_flow.png"
    fig.savefig(flow_path, dpi=110)
    pyplot.close(fig)

    ex = result["explode"]
    run_colors = {"no_clip": "C3", "clip": "C0", "control": "C7"}
    fig, (ax_t, ax_norm, ax_loss) = pyplot.subplots(1, 3, figsize=(13, 3.8))
    for key, label, color in (("init", f"radius {ex['radius']:.1f}", "C3"),
                              ("control_init", f"radius {ex.get('radius_before', 0):.2f}", "C7")):
        if ex.get(key):
            ax_t.plot(np.arange(1, len(ex[key]["h"]) + 1), _positive(ex[key]["h"]), color=color,
                      label=label)
    ax_t.set(yscale="log", xlabel="time step t (loss on step T)", ylabel="‖∂L/∂h_t‖",
             title="At init")
    for label, r in ex["runs"].items():
        name = _run_name(ex, label, r)
        steps = np.arange(1, len(r["loss"]) + 1)
        color = run_colors.get(label)
        ax_norm.plot(steps, _positive(r["grad_norm"]), color=color, label=name)
        ax_loss.plot(steps, _positive(r["loss"]), color=color, label=name)
        if r["stopped"] is not None:
            ax_loss.axvline(r["stopped"], color=color, ls=":", lw=1)
    ax_norm.set(yscale="log", xlabel="training step", ylabel="total gradient norm (before clip)",
                title="Gradient norm per step")
    ax_loss.set(yscale="log", xlabel="training step", ylabel="training MSE",
                title="Loss per step (dotted: became non-finite)")
    for ax in (ax_t, ax_norm, ax_loss):
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.tight_layout()
    explode_path = out_dir / "gradient_explosion.png"
    fig.savefig(explode_path, dpi=110)
    pyplot.close(fig)
    return [flow_path, explode_path]


def _positive(values):
    """Values for a log axis: None (non-finite) and non-positive entries become NaN (gaps)."""
    return [v if v is not None and v > 0 else float("nan") for v in values]
