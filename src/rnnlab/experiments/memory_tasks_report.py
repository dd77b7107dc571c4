"""The report side of :mod:`rnnlab.experiments.memory_tasks`: its table and figures.

Over the seeds: each model's held-out loss / baseline as a t interval, per task
and delay T; the learning curves one thin line per seed. Both read only the
result dict; a result from before the GRU joined shows the LSTM and the RNN.
"""

from __future__ import annotations

from ..report import style
from ..stats import fmt_interval
from .base import Table, plt
from .memory_tasks import SHORT, SOLVED_RATIO, TASK_LABELS, _budget, kinds_of


def tables(result):
    """Per task and delay: the baseline and every model's loss / baseline interval."""
    rows = []
    kinds = kinds_of(result)
    for task, entries in result["summary"].items():
        for e in entries:
            row = [TASK_LABELS.get(task, task), e["T"], e["metric"], f"{e['baseline']:.4f}"]
            for kind in kinds:
                row += [fmt_interval(e[kind]["ratio"]), str(e[kind]["diverged"])]
            row.append(" / ".join(fmt_interval(e[k]["recall_accuracy"], ".2f")
                                  if "recall_accuracy" in e[k] else "–" for k in kinds))
            rows.append(row)
    budgets = "; ".join(f"{TASK_LABELS.get(t, t)}: {_budget(result['config'], t)}"
                        for t in result["summary"])
    title = (f"Final held-out loss / memoryless baseline (1 = remembers nothing), mean [95 % t "
             f"interval] over {len(result['seeds'])} seeds (a diverged run counts as 1); {budgets}")
    header = ["task", "T", "loss", "baseline"]
    for kind in kinds:
        header += [f"{SHORT[kind]} ratio", f"{SHORT[kind]} diverged"]
    header.append("recall acc. " + " / ".join(SHORT[k] for k in kinds))
    return [Table(title, header, rows)]


def plots(result, out_dir):
    """Learning curves per task and delay, and loss / baseline against the delay."""
    pyplot = plt()
    tasks = list(result["summary"])
    kinds = kinds_of(result)
    n_cols = max(len(result["summary"][t]) for t in tasks)
    fig, axes = pyplot.subplots(len(tasks), n_cols, figsize=(3.5 * n_cols, 2.9 * len(tasks) + 0.5),
                                squeeze=False)
    for row, task in enumerate(tasks):
        for col in range(n_cols):
            ax = axes[row][col]
            if col >= len(result["summary"][task]):
                ax.axis("off")
                continue
            e = result["summary"][task][col]
            values = [e["baseline"]]
            for kind in kinds:
                for s in result["per_seed"]:  # one thin line per seed
                    curve = s["runs"][task][col]["models"][kind]["curve"]
                    pts = [(x, v) for x, v in zip(curve["steps"], curve["loss"]) if v is not None]
                    if pts:
                        ax.plot(*zip(*pts), color=style.model_color(kind), lw=0.9, alpha=0.6)
                        values += [v for _, v in pts]
            ax.axhline(e["baseline"], color=style.NEUTRAL, ls="--", lw=1)
            log = style.auto_log(ax, values)
            ax.set_title(f"{TASK_LABELS.get(task, task)}, T={e['T']}")
            ax.set_xlabel("training step")
            ax.set_ylabel(f"train {e['metric']}" + (" (log)" if log else ""))
            ax.grid(alpha=0.3, which="both")
    style.model_legend(fig, kinds, [style.line_key("memoryless baseline", ls="--")])
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.45 / fig.get_figheight()))
    curves_path = style.save(fig, out_dir / "memory_tasks_curves.png",
                             "Training loss against the memoryless baseline (dashed), one thin line per seed, "
                             "one panel per task and delay T: a curve that stays on the baseline has "
                             "remembered nothing.")

    fig, axes = pyplot.subplots(1, len(tasks), figsize=(4.2 * len(tasks), 3.4), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        entries = result["summary"][task]
        Ts = [e["T"] for e in entries]
        for kind in kinds:
            ax.plot(Ts, [e[kind]["ratio"]["mean"] for e in entries], **style.model_style(kind))
            for e in entries:  # per-seed points
                ax.scatter([e["T"]] * len(e[kind]["ratio"]["values"]), e[kind]["ratio"]["values"],
                           color=style.model_color(kind), marker=style.model_marker(kind), s=12,
                           alpha=0.45)
        ax.axhline(1.0, color=style.NEUTRAL, ls="--", lw=1)
        ax.axhspan(0, SOLVED_RATIO, color=style.MODELS["lstm"][1], alpha=0.08)
        ax.set(xlabel="delay T", ylabel="held-out loss / baseline", title=TASK_LABELS.get(task, task))
        ax.set_xticks(Ts)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    style.model_legend(fig, kinds, [style.line_key("baseline (remembers nothing)", ls="--")])
    fig.tight_layout(rect=(0, 0, 1, 0.88))
    ratio_path = style.save(fig, out_dir / "memory_tasks_ratio.png",
                            f"Final held-out loss as a share of the baseline against the delay T (line: mean, "
                            f"dots: seeds): below {SOLVED_RATIO} (shaded) the model has learned to remember, "
                            f"near 1 it has not.")
    return [curves_path, ratio_path]
