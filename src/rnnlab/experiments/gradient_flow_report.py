"""The report side of :mod:`rnnlab.experiments.gradient_flow`: its tables and figures.

Over the seeds: the decay ratios ‖∂L/∂h_1‖ / ‖∂L/∂h_T‖ as intervals of their
log10 and one dot per seed; for the first seed, the full detail (the norm at
every step, the explosion runs). Both read only the result dict.
"""

from __future__ import annotations

import numpy as np

from ..report import style
from .base import Table, plt
from .gradient_flow import (DIVERGENCE_FACTOR, LABELS, LOG_VANISHED, VANISHED, _first_seed, _fmt,
                            _fmt_log, _interval, models_of)

_RUN_NAMES = {"no_clip": "radius {r}, no clipping", "clip": "radius {r}, clip_grad_norm_({m})",
              "control": "control: radius {r0} (as initialised), no clipping"}


def _run_name(ex, label, r):
    return _RUN_NAMES.get(label, label).format(r=f"{ex['radius']:.1f}", m=r["max_norm"],
                                               r0=f"{ex.get('radius_before', float('nan')):.2f}")


def tables(result):
    """Over the seeds: the decay ratios' intervals and divergence counts; then the first seed's
    detail (every norm, loss and forget gate, and the explosion runs)."""
    n, summary = len(result["seeds"]), result["summary"]
    rows = [[LABELS[name], _fmt_log(_interval(summary[name]["init"]["log10"])),
             _fmt_log(_interval(summary[name]["trained"]["log10"])),
             f"{sum(v is not None for v in summary[name]['trained']['log10'])}/{n}"]
            for name in models_of(result)]
    seeds = Table(f"‖∂L/∂h_1‖ / ‖∂L/∂h_T‖ over {n} seeds (T={result['T']}): mean of log10 with its "
                  f"95 % t interval, shown as powers of ten",
                  ["model", "at init", "after training", "seeds trained without diverging"], rows)
    view = _first_seed(result)
    detail = _seed_tables(view)
    for table in detail:
        table.title = f"Seed {result['seeds'][0]}: {table.title}"
    return [seeds, *detail]


def _seed_tables(result):
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
    """The first seed's gradient curves and explosion runs, then every seed's decay ratios."""
    paths = _seed_plots(_first_seed(result), out_dir)
    pyplot = plt()
    fig, ax = pyplot.subplots(figsize=(7.5, 3.6))
    names = models_of(result)
    gap = len(names) + 1  # one slot per model, then a gap, for each of init and trained
    for i, name in enumerate(names):
        for j, when in enumerate(("init", "trained")):
            values = [v for v in result["summary"][name][when]["log10"] if v is not None]
            x = gap * j + i + np.linspace(-0.2, 0.2, len(values)) if len(values) > 1 else [gap * j + i]
            ax.scatter(x, values, color=style.model_color(name), marker=style.model_marker(name), s=18,
                       label=style.model_label(name) if j == 0 else None)
    ax.axhline(LOG_VANISHED, color=style.NEUTRAL, ls="--", lw=1)
    ax.set_xticks([(len(names) - 1) / 2, gap + (len(names) - 1) / 2], ["at init", "after training"])
    ax.grid(axis="x", visible=False)
    ax.set(ylabel="log10 ‖∂L/∂h_1‖ / ‖∂L/∂h_T‖", title=f"Decay ratio per seed (T={result['T']})")
    style.legend_outside(ax)
    fig.tight_layout()
    path = style.save(fig, out_dir / "gradient_flow_seeds.png",
                      f"One dot per seed and model: log10 of the gradient kept from step T back to step 1; "
                      f"below the dashed line ({VANISHED:.0e}) it has vanished.")
    return [*paths, path]


def _seed_plots(result, out_dir):
    """The gradient-flow and explosion figures of one seed (``result`` as :func:`_first_seed`)."""
    pyplot = plt()
    T = result["T"]
    t = np.arange(1, T + 1)
    seed = result["seeds"][0]
    fig, ax = pyplot.subplots(figsize=(7.5, 4))
    for name, m in result["models"].items():
        for when, ls in (("init", "-"), ("trained", "--")):
            stats = m.get(when)
            if stats is None:
                continue
            ax.plot(t, _positive(stats["h"]), ls=ls, color=style.model_color(name),
                    marker=style.model_marker(name), markevery=max(T // 8, 1),
                    label=f"{m['label']}, {'init' if when == 'init' else 'trained'}")
    ax.set_yscale("log")
    ax.set(xlabel="time step t (loss on step T)", ylabel="‖∂L/∂h_t‖ (log)",
           title=f"Gradient reaching each hidden state (T={T}, seed {seed})")
    ax.grid(alpha=0.3, which="both")
    style.legend_outside(ax)
    fig.tight_layout()
    flow_path = style.save(fig, out_dir / "gradient_flow.png",
                           "How much of the loss gradient reaches step t (solid: at init, dashed: trained; "
                           "first seed): a line falling by decades towards t = 1 is a vanishing gradient.")

    ex = result["explode"]
    run_colors = {"no_clip": style.MODELS["rnn"][1], "clip": style.SERIES[0], "control": style.NEUTRAL}
    fig, (ax_t, ax_norm, ax_loss) = pyplot.subplots(1, 3, figsize=(12, 3.6))
    for key, label, color in (("init", f"radius {ex['radius']:.1f}", run_colors["no_clip"]),
                              ("control_init", f"radius {ex.get('radius_before', 0):.2f}", style.NEUTRAL)):
        if ex.get(key):
            ax_t.plot(np.arange(1, len(ex[key]["h"]) + 1), _positive(ex[key]["h"]), color=color,
                      label=label)
    ax_t.set(yscale="log", xlabel="time step t (loss on step T)", ylabel="‖∂L/∂h_t‖ (log)",
             title="At init")
    style.legend_outside(ax_t, loc="below", ncol=2)
    handles = []
    for label, r in ex["runs"].items():
        steps = np.arange(1, len(r["loss"]) + 1)
        color = run_colors.get(label, style.ACCENT)
        handles.append(style.line_key(_run_name(ex, label, r), color=color))
        ax_norm.plot(steps, _positive(r["grad_norm"]), color=color)
        ax_loss.plot(steps, _positive(r["loss"]), color=color)
        if r["stopped"] is not None:
            ax_loss.axvline(r["stopped"], color=color, ls=":", lw=1)
    ax_norm.set(yscale="log", xlabel="training step", ylabel="gradient norm before clip (log)",
                title="Gradient norm per step")
    ax_loss.set(yscale="log", xlabel="training step", ylabel="training MSE (log)",
                title="Loss per step (dotted: non-finite)")
    for a in (ax_t, ax_norm, ax_loss):
        a.grid(alpha=0.3, which="both")
    fig.legend([h for h, _ in handles], [lbl for _, lbl in handles], loc="upper center", ncol=len(handles),
               frameon=False, bbox_to_anchor=(0.5, 1.0))
    fig.tight_layout(rect=(0, 0, 1, 0.9))
    explode_path = style.save(fig, out_dir / "gradient_explosion.png",
                              f"Large recurrent weights (seed {seed}): the gradient grows along the sequence "
                              "(left); without clipping the norm and the loss blow up, with clipping they "
                              "stay bounded.")
    return [flow_path, explode_path]


def _positive(values):
    """Values for a log axis: None (non-finite) and non-positive entries become NaN (gaps)."""
    return [v if v is not None and v > 0 else float("nan") for v in values]
