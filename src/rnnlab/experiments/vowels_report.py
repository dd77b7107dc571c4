"""The report side of :mod:`rnnlab.experiments.vowels`: its tables and figure.

Both read only the result dict of :func:`rnnlab.experiments.vowels.combine`.
Models are drawn in the report's colours (:mod:`rnnlab.report.style`); the two
MLP variants share the MLP's blue, the padded one filled and solid, the cut
one hollow and dashed.
"""

from __future__ import annotations

import numpy as np

from ..report import style
from ..report.format import sig_figs
from ..stats import fmt_interval
from .base import Table, plt
from .vowels import THRESHOLDS, label


def model_look(kind) -> dict:
    """Colour, marker, marker face and line style of ``kind``; "mlp_cut" is an MLP drawn hollow
    and dashed."""
    if kind == "mlp_cut":
        return {"color": style.model_color("mlp"), "marker": style.model_marker("mlp"),
                "facecolor": "none", "ls": "--"}
    color = style.model_color(kind)
    return {"color": color, "marker": style.model_marker(kind), "facecolor": color, "ls": "-"}


def _tick(result, kind):
    """A short axis label: "MLP\npadded to 26", "MLP\ncut to 7", "LSTM"."""
    if kind not in ("mlp", "mlp_cut"):
        return label(result, kind)
    how = "padded" if kind == "mlp" else "cut"
    return f"MLP\n{how} to {result['runs'][kind][0]['mlp_length']}"


def tables(result):
    """Accuracy, step time and time to 90 % / 95 % per model; the published numbers beside."""
    rows = []
    for kind, m in result["models"].items():
        t = m["time_to"]
        reach = [("never" if t[str(th)]["median"] is None else sig_figs(t[str(th)]["median"]))
                 + f" ({t[str(th)]['reached']}/{t[str(th)]['seeds']})" for th in THRESHOLDS]
        rows.append([label(result, kind), m["parameters"], fmt_interval(m["accuracy"]),
                     " ".join(f"{a:.3f}" for a in m["accuracies"]),
                     fmt_interval(m["step_ms"], ".3g"), *reach])
    n = len(result["seeds"])
    main = Table(f"Japanese Vowels: test accuracy, mean [95 % t interval] over {n} seeds, training "
                 "step time (geometric mean of the seeds' medians, measured while other tasks may "
                 "share the machine), and training seconds to reach 90 % / 95 % test accuracy "
                 "(checked after every eval_every epochs; median over the seeds that reached it, "
                 "reached/seeds)",
                 ["model", "parameters", "test accuracy", "per seed", "step ms",
                  "s to 90 %", "s to 95 %"], rows)
    published = Table("Published test accuracies on the same split, beside ours",
                      ["method", "test accuracy"],
                      [list(p) for p in result["published"]]
                      + [[f"rnnlab {label(result, k)} (this run, mean of "
                          f"{m['accuracy']['n']} seeds)",
                          f"{m['accuracy']['mean']:.3f}"] for k, m in result["models"].items()])
    out = [main, published]
    if result["notes"]:
        out.append(Table("Notes", ["note"], [[n] for n in result["notes"]]))
    return out


def plots(result, out_dir):
    """Accuracy per seed with its interval, and test accuracy against training seconds."""
    pyplot = plt()
    fig, (ax_acc, ax_time) = pyplot.subplots(1, 2, figsize=(11, 4))
    for i, (kind, m) in enumerate(result["models"].items()):
        look = model_look(kind)
        iv = m["accuracy"]
        xs = i + np.linspace(-0.15, 0.15, len(m["accuracies"]))
        ax_acc.scatter(xs, m["accuracies"], edgecolors=look["color"], facecolors=look["facecolor"],
                       marker=look["marker"], s=16, alpha=0.8)
        err = None if iv["low"] is None else [[iv["mean"] - iv["low"]], [iv["high"] - iv["mean"]]]
        ax_acc.errorbar([i + 0.3], [iv["mean"]], yerr=err, fmt=look["marker"], color=look["color"],
                        mfc=look["facecolor"], capsize=3)
        for j, r in enumerate(result["runs"][kind]):
            ax_time.plot([p["seconds"] for p in r["curve"]],
                         [p["test_accuracy"] for p in r["curve"]], color=look["color"],
                         ls=look["ls"], lw=0.9, alpha=0.7,
                         label=label(result, kind) if j == 0 else None)
    ax_acc.axhline(0.941, color=style.NEUTRAL, lw=0.8, ls=":", label="Kudo et al. 1999 (0.941)")
    ax_acc.axhline(0.95, color=style.NEUTRAL, lw=0.8, ls="--", label="1-NN DTW (≈ 0.95)")
    ax_acc.axhspan(0.97, 0.99, color=style.NEUTRAL, alpha=0.12, label="best published (0.97-0.99)")
    ax_acc.set_xticks(range(len(result["models"])),
                      [_tick(result, k) for k in result["models"]], fontsize=8)
    lowest = min(min(m["accuracies"]) for m in result["models"].values())
    ax_acc.set_ylim(min(0.7, lowest - 0.05), 1.01)  # a 2-seed interval may pass 1: cut there
    ax_acc.set(ylabel="test accuracy", title="Test accuracy per seed, mean and 95 % interval")
    ax_acc.grid(axis="x", visible=False)
    for th in THRESHOLDS:
        ax_time.axhline(th, color=style.NEUTRAL, lw=0.8, ls="--")
    ax_time.set(xlabel="training seconds", ylabel="test accuracy",
                ylim=(min(0.7, lowest - 0.05), 1.0),
                title="Test accuracy against training time (one line per seed)")
    style.legend_outside(ax_acc, loc="below", ncol=2)
    style.legend_outside(ax_time)
    fig.tight_layout()
    return [style.save(fig, out_dir / "vowels.png",
                       "Left: every seed's test accuracy (dots) with the mean and 95 % interval, "
                       "against published results; right: test accuracy along training, one line "
                       "per seed (dashed lines: 90 % and 95 %).")]
