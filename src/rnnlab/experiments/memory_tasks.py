"""Long-term memory: the adding problem and copy memory, the LSTM and the GRU against the tanh RNN.

Both tasks put the information a model needs far from the step where it needs
it (see :mod:`rnnlab.data.tasks` for the definitions and the baselines):

- **adding problem**: two marked values among T, y = their sum; a model that
  remembers nothing predicts the mean and scores MSE = Var(y) = 1/6;
- **copy memory**: 10 symbols from an alphabet of 8, T blanks, a delimiter,
  then the 10 symbols to recall; a memoryless model scores the cross-entropy
  10 ln 8 / (T + 20) per step.

For every task and every delay T, the LSTM, the GRU and the tanh RNN get the same
budget: same hidden size, batch, number of steps, Adam learning rate, gradient
clipping, and the same minibatches in the same order. Measured: the training
loss along the way (a learning curve, averaged over ``log_every`` steps) and
the final loss on a fresh held-out batch, reported as a ratio to the baseline
(1 = no better than remembering nothing, 0 = perfect).

:func:`fit` (the training loop) and :func:`adding_loss` are shared with
:mod:`rnnlab.experiments.gradient_flow`.
"""

from __future__ import annotations

import math
import time

import numpy as np
from threadpoolctl import threadpool_limits

from ..data import adding_baseline_mse, adding_problem, copy_baseline_cross_entropy, copy_memory
from ..functional.losses import cross_entropy, mse
from ..models import SequenceModel
from ..optim import Adam, clip_grad_norm_
from .base import Claim, Table, plt

NAME = "memory_tasks"
TITLE = "Long-term memory: adding problem and copy memory, LSTM and GRU against the tanh RNN"
KINDS = ("lstm", "gru", "rnn")
LABELS = {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN (tanh)"}
SHORT = {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN"}  # table headers
TASKS = ("adding", "copy")
TASK_LABELS = {"adding": "adding problem", "copy": "copy memory"}

# Verdict thresholds on loss / baseline at the longest T.
SOLVED_RATIO = 0.5  # below: the model has clearly learned to remember
FAILED_RATIO = 0.8  # above: the model is (close to) no better than remembering nothing

# Wall-clock measured on the 2-core machine (one BLAS thread, other jobs running), both
# tasks, LSTM and RNN: quick ≈ 11 s, default ≈ 75-100 s, full ≈ 7.5 min. With the GRU as a
# third model, quick took 19 s (load average ~3; default and full not measured again).
_COMMON = {"tasks": list(TASKS), "hidden": 32, "batch": 32, "lr": 0.01, "max_norm": 1.0,
           "eval_batch": 256, "n_symbols": 8, "copy_length": 10, "blas_threads": 1}
PRESETS = {
    "quick": {**_COMMON, "T": [10, 30], "steps": 800, "log_every": 20},
    "default": {**_COMMON, "T": [10, 50, 100], "steps": 2000, "log_every": 25},
    "full": {**_COMMON, "T": [10, 50, 100, 200], "steps": 5000, "log_every": 50},
}


# ------------------------------------------------------------------ tasks and losses


def adding_loss(out, y):
    """MSE of the prediction (N, 1) against y (N, 1) -> (loss, dloss/dout)."""
    return mse(out, y)


def copy_loss(out, y):
    """Mean per-step cross-entropy of logits (T, N, C) against classes y (T, N) -> (loss, dlogits)."""
    T, N, C = out.shape
    loss, grad = cross_entropy(out.reshape(T * N, C), y.reshape(T * N))
    return loss, grad.reshape(T, N, C)


def task_spec(task, T, config):
    """What a model for ``task`` at delay T looks like, and what remembering nothing scores.

    Returns dict(input_size, output_size, every_step, baseline, loss_fn, make_batch, metric),
    with make_batch(batch, rng) -> Batch.
    """
    if task == "adding":
        return {"input_size": 2, "output_size": 1, "every_step": False,
                "baseline": adding_baseline_mse(), "loss_fn": adding_loss, "metric": "MSE",
                "make_batch": lambda n, rng: adding_problem(n, T, rng=rng)}
    if task == "copy":
        k, length = config["n_symbols"], config["copy_length"]
        return {"input_size": k + 2, "output_size": k + 2, "every_step": True,
                "baseline": copy_baseline_cross_entropy(T, k, length), "loss_fn": copy_loss,
                "metric": "cross-entropy",
                "make_batch": lambda n, rng: copy_memory(n, T, rng=rng, n_symbols=k,
                                                         length=length)}
    raise ValueError(f"task must be one of {TASKS}, got {task!r}")


# ------------------------------------------------------------------ training


def fit(model, next_batch, loss_fn, optimizer, steps, *, max_norm=None, log_every=1,
        progress=None, description="training"):
    """Train ``model`` for ``steps`` steps; stop early at the first non-finite loss or gradient.

    Each step: forward, loss, backward, the total gradient norm (before any
    clipping), ``clip_grad_norm_`` when ``max_norm`` is set, the update.

    Arguments:
        next_batch: () -> (x, y), a fresh minibatch.
        loss_fn: (out, y) -> (loss, dloss/dout).
        log_every: the curve holds the mean training loss and the largest
            gradient norm over each window of this many steps (the last
            window may be shorter).

    Returns dict(steps, loss, grad_norm: lists, one entry per logged window,
    indexed by the window's last step; all_loss, all_grad_norm: every step's
    values; steps_run; stopped: None, or the step whose loss or gradient was not
    finite; seconds).
    """
    params = model.parameters()
    logged_steps, logged_loss, logged_norm = [], [], []
    all_loss, all_norm = [], []
    window_loss, window_norm = [], []
    stopped = None
    start = time.perf_counter()
    iterator = range(1, steps + 1)
    if progress is not None:
        iterator = progress.track(iterator, description, total=steps)
    for step in iterator:
        if stopped is not None:
            continue  # drain the progress bar quietly
        x, y = next_batch()
        for p in params:
            p.zero_grad()
        with np.errstate(over="ignore", invalid="ignore"):
            out = model(x)
            loss, grad_out = loss_fn(out, y)
            model.backward(grad_out, input_grad=False)
        norm = math.sqrt(sum(float(np.sum(np.square(p.grad, dtype=np.float64))) for p in params))
        all_loss.append(loss)
        all_norm.append(norm)
        if not (math.isfinite(loss) and math.isfinite(norm)):
            stopped = step
        else:
            if max_norm is not None:
                clip_grad_norm_(params, max_norm)
            optimizer.step()
        window_loss.append(loss)
        window_norm.append(norm)
        if step % log_every == 0 or step == steps or stopped is not None:
            logged_steps.append(step)
            logged_loss.append(float(np.mean(window_loss)))
            logged_norm.append(float(np.max(window_norm)))
            window_loss, window_norm = [], []
    return {"steps": logged_steps, "loss": _finite_or_none(logged_loss),
            "grad_norm": _finite_or_none(logged_norm),
            "all_loss": _finite_or_none(all_loss), "all_grad_norm": _finite_or_none(all_norm),
            "steps_run": len(all_loss), "stopped": stopped,
            "seconds": time.perf_counter() - start}


def _finite_or_none(values):
    """Floats for the JSON results: non-finite values become None (strict JSON has no NaN)."""
    return [float(v) if math.isfinite(v) else None for v in values]


def evaluate(model, batch, loss_fn):
    """Loss on a held-out batch, forward only."""
    with np.errstate(over="ignore", invalid="ignore"):
        loss, _ = loss_fn(model(batch.x), batch.y)
    return float(loss)


def recall_accuracy(model, batch, length):
    """Copy memory: the fraction of the ``length`` recalled symbols predicted right (chance 1/K)."""
    logits = model(batch.x)[-length:]  # (L, N, C)
    return float(np.mean(np.argmax(logits, axis=-1) == batch.y[-length:]))


def train_pair(task, T, config, seeds, progress):
    """Train the LSTM, the GRU and the tanh RNN on one task and delay with the same budget
    and batches."""
    spec = task_spec(task, T, config)
    eval_batch = spec["make_batch"](config["eval_batch"], np.random.default_rng(seeds["eval"]))
    out = {"T": T, "baseline": spec["baseline"], "metric": spec["metric"], "models": {}}
    for kind in KINDS:
        model = SequenceModel(kind, spec["input_size"], config["hidden"], spec["output_size"],
                              every_step=spec["every_step"], activation="tanh",
                              rng=np.random.default_rng(seeds["init"]))
        data_rng = np.random.default_rng(seeds["data"])  # same minibatches for every model
        run = fit(model, lambda: spec["make_batch"](config["batch"], data_rng), spec["loss_fn"],
                  Adam(model.parameters(), lr=config["lr"]), config["steps"],
                  max_norm=config["max_norm"], log_every=config["log_every"], progress=progress,
                  description=f"{NAME}: {task} T={T} {LABELS[kind]}")
        final = evaluate(model, eval_batch, spec["loss_fn"]) if run["stopped"] is None else None
        entry = {"curve": {"steps": run["steps"], "loss": run["loss"]},
                 "final_loss": final,
                 "ratio": None if final is None or not math.isfinite(final)
                 else final / spec["baseline"],
                 "stopped": run["stopped"], "seconds": run["seconds"]}
        if task == "copy" and run["stopped"] is None:
            entry["recall_accuracy"] = recall_accuracy(model, eval_batch, config["copy_length"])
        out["models"][kind] = entry
    return out


def run(config, *, rng, progress):
    """Train every model on every task and delay of ``config``; see the module docstring."""
    start = time.perf_counter()
    runs = {}
    with threadpool_limits(limits=config.get("blas_threads", 1), user_api="blas"):
        for task in config["tasks"]:
            runs[task] = []
            for T in config["T"]:
                seeds = {k: int(rng.integers(2**31)) for k in ("init", "data", "eval")}
                runs[task].append(train_pair(task, int(T), config, seeds, progress))
    return {"config": dict(config), "runs": runs, "seconds": time.perf_counter() - start}


# ------------------------------------------------------------------ report


def _ratio_text(r):
    return "diverged" if r is None else f"{r:.3f}"


def memory_verdict(lstm_ratio, rnn_ratio):
    """Verdict of "an LSTM remembers over long spans where a vanilla RNN fails" at one T.

    supported: LSTM loss/baseline < SOLVED_RATIO and RNN's > FAILED_RATIO;
    not supported: the RNN learned (ratio < FAILED_RATIO) and did clearly better
    (ratio below 0.8 × the LSTM's), or the LSTM diverged while the RNN did not;
    nuanced otherwise (both solve it, both fail, or in between).
    A diverged run (None) counts as a failure.
    """
    lstm = math.inf if lstm_ratio is None else lstm_ratio
    rnn = math.inf if rnn_ratio is None else rnn_ratio
    if lstm < SOLVED_RATIO and rnn > FAILED_RATIO:
        return "supported"
    if rnn < FAILED_RATIO and rnn < 0.8 * lstm:
        return "not supported"
    return "nuanced"


def claims(result):
    out = []
    for task, runs in result["runs"].items():
        longest = max(runs, key=lambda r: r["T"])
        lstm, rnn = longest["models"]["lstm"]["ratio"], longest["models"]["rnn"]["ratio"]
        verdict = memory_verdict(lstm, rnn)
        if verdict == "supported":
            why = "the LSTM learned the task and the RNN did not"
        elif verdict == "not supported":
            why = "the RNN did better than the LSTM"
        elif lstm is not None and rnn is not None and lstm < SOLVED_RATIO and rnn < SOLVED_RATIO:
            why = "both models solved it"
        elif (lstm is None or lstm > FAILED_RATIO) and (rnn is None or rnn > FAILED_RATIO):
            why = "neither model got clearly below the baseline within the budget"
        else:
            why = "the gap is not clear-cut"
        per_T = "; ".join(f"T={r['T']}: LSTM {_ratio_text(r['models']['lstm']['ratio'])}, "
                          f"RNN {_ratio_text(r['models']['rnn']['ratio'])}" for r in runs)
        steps = result["config"]["steps"]
        evidence = (f"Held-out loss / memoryless baseline at the longest delay T={longest['T']}: "
                    f"LSTM {_ratio_text(lstm)}, RNN {_ratio_text(rnn)} after {steps} steps each "
                    f"({why}; supported needs LSTM < {SOLVED_RATIO} and RNN > {FAILED_RATIO}). "
                    f"All delays: {per_T}.")
        out.append(Claim(f"lstm-long-memory-{task}",
                         f"An LSTM remembers over long spans where a vanilla RNN fails "
                         f"({TASK_LABELS.get(task, task)}).", verdict, evidence))
    return out


def _kinds(result):
    """The models of KINDS that every run of ``result`` holds (a result from before the GRU
    joined has only the LSTM and the RNN)."""
    runs = [r for task_runs in result["runs"].values() for r in task_runs]
    return [k for k in KINDS if all(k in r["models"] for r in runs)]


def tables(result):
    rows = []
    kinds = _kinds(result)
    for task, runs in result["runs"].items():
        for r in runs:
            row = [TASK_LABELS.get(task, task), r["T"], r["metric"], f"{r['baseline']:.4f}"]
            for kind in kinds:
                m = r["models"][kind]
                row += ["diverged" if m["final_loss"] is None else f"{m['final_loss']:.4f}",
                        _ratio_text(m["ratio"])]
            row.append(" / ".join(f"{r['models'][k]['recall_accuracy']:.2f}"
                                  if "recall_accuracy" in r["models"][k] else "–" for k in kinds))
            rows.append(row)
    c = result["config"]
    title = (f"Final held-out loss against the memoryless baseline (ratio: 1 = remembers nothing); "
             f"hidden {c['hidden']}, batch {c['batch']}, {c['steps']} Adam steps (lr {c['lr']}), "
             f"clip {c['max_norm']}")
    header = ["task", "T", "loss", "baseline"]
    for kind in kinds:
        header += [f"{SHORT[kind]} loss", f"{SHORT[kind]} ratio"]
    header.append("recall acc. " + " / ".join(SHORT[k] for k in kinds))
    return [Table(title, header, rows)]


def plots(result, out_dir):
    pyplot = plt()
    tasks = list(result["runs"])
    n_cols = max(len(result["runs"][t]) for t in tasks)
    fig, axes = pyplot.subplots(len(tasks), n_cols, figsize=(3.4 * n_cols, 2.9 * len(tasks)),
                                squeeze=False)
    colors = {"lstm": "C0", "gru": "C2", "rnn": "C3"}
    kinds = _kinds(result)
    for row, task in enumerate(tasks):
        for col in range(n_cols):
            ax = axes[row][col]
            if col >= len(result["runs"][task]):
                ax.axis("off")
                continue
            r = result["runs"][task][col]
            values = [r["baseline"]]
            for kind in kinds:
                curve = r["models"][kind]["curve"]
                pts = [(s, v) for s, v in zip(curve["steps"], curve["loss"]) if v is not None]
                if pts:
                    ax.plot(*zip(*pts), color=colors[kind], lw=1.2, label=LABELS[kind])
                    values += [v for _, v in pts]
            ax.axhline(r["baseline"], color="grey", ls="--", lw=1, label="baseline")
            if min(values) > 0 and max(values) / min(values) > 20:  # log only for a wide range
                ax.set_yscale("log")
            ax.set_title(f"{TASK_LABELS.get(task, task)}, T={r['T']}", fontsize=9)
            ax.set_xlabel("training step", fontsize=8)
            ax.set_ylabel(f"train {r['metric']}", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3, which="both")
            if row == 0 and col == 0:
                ax.legend(fontsize=7)
    fig.tight_layout()
    curves_path = out_dir / "memory_tasks_curves.png"
    fig.savefig(curves_path, dpi=110)
    pyplot.close(fig)

    fig, axes = pyplot.subplots(1, len(tasks), figsize=(4.2 * len(tasks), 3.3), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        runs = result["runs"][task]
        for kind in kinds:
            pts = [(r["T"], r["models"][kind]["ratio"]) for r in runs
                   if r["models"][kind]["ratio"] is not None]
            if pts:
                ax.plot(*zip(*pts), marker="o", color=colors[kind], label=LABELS[kind])
        ax.axhline(1.0, color="grey", ls="--", lw=1, label="baseline")
        ax.axhspan(0, SOLVED_RATIO, color="C2", alpha=0.08)
        ax.set(xlabel="delay T", ylabel="held-out loss / baseline",
               title=TASK_LABELS.get(task, task))
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    ratio_path = out_dir / "memory_tasks_ratio.png"
    fig.savefig(ratio_path, dpi=110)
    pyplot.close(fig)
    return [curves_path, ratio_path]
