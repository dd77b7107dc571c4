"""The training loop behind ``rnnlab train``: checkpoints, exact resume, Ctrl-C, a NaN guard.

A run lives in one folder::

    OUT/config.json                        the resolved TrainConfig (JSON)
    OUT/metrics.jsonl                      one line per step: {"step", "loss", "grad_norm", "seconds"}
    OUT/checkpoints/step-00000100.safetensors   the last ``keep`` checkpoints, every ``every`` steps

Usage::

    from rnnlab.train import TrainConfig, Trainer
    result = Trainer(TrainConfig(model="lstm", task="adding", steps=200), "runs/a").run()
    result = Trainer.resume("runs/a", steps=400).run()      # continue to step 400

What one step does (step k, counted from 1, is the k-th update):

1. draw the batch from the run's data Generator (its state is in every checkpoint);
2. zero the gradients, forward, loss, backward;
3. the guard: a non-finite loss or gradient stops the run (:class:`TrainingDiverged`)
   before the update, naming the step and the parameter;
4. clip the gradient norm to ``clip`` (if set), ``optimizer.step()``; a parameter
   that became non-finite also stops the run;
5. append the metrics line; every ``every`` steps and at the last step, write a
   checkpoint atomically and delete all but the newest ``keep``.

Exact resume: the model is initialised, the data drawn and (for digits) the
split made from three independent streams spawned from ``seed``. A checkpoint
at step k holds the weights, the optimizer buffers and step count, and the data
Generator's state after k batches, so that continuing from it repeats the
uninterrupted run bit for bit. Ctrl-C (SIGINT) only raises a flag: the step in
progress finishes, then a checkpoint of that step is written and :meth:`Trainer.run`
returns with ``status="interrupted"``. A second Ctrl-C interrupts at once
(KeyboardInterrupt) and loses at most the steps since the last checkpoint.
On resume, metrics lines after the checkpoint's step (written before a crash)
are dropped, so the log matches the weights.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import threading
import time
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from . import __version__
from .data import adding_problem, copy_memory, load_digits_sequences, sine_forecast
from .data.loader import Batch
from .io import CheckpointError, atomic_write_bytes, load_checkpoint, read_checkpoint, save_checkpoint
from .models import KINDS, SequenceModel
from .nn import CrossEntropyLoss, MSELoss
from .kernels import planner
from .optim import SGD, Adam, clip_grad_norm_

__all__ = ["TrainConfig", "Trainer", "TrainResult", "TrainError", "TrainingDiverged",
           "TASKS", "OPTIMIZERS", "checkpoint_path", "list_checkpoints", "latest_checkpoint",
           "read_metrics"]

TASKS = ("adding", "copy", "sine", "digits")
OPTIMIZERS = ("sgd", "adam")
ACTIVATIONS = ("tanh", "relu", "sigmoid")
DTYPES = ("float32", "float64")

# Task-size options and their defaults; an option of another task must stay unset.
TASK_OPTIONS = {
    "adding": {"seq_len": 50},
    "copy": {"seq_len": 20, "n_symbols": 8, "copy_length": 10},
    "sine": {"seq_len": 50, "noise": 0.0},
    "digits": {},
}
DEFAULT_LR = {"adam": 1e-3, "sgd": 1e-2}
DEFAULT_MOMENTUM = 0.9  # SGD only
DIGITS_TEST_FRACTION = 0.25

# Options that may change when a run is resumed: none of them changes a shape,
# the data stream or the optimizer's state layout.
RESUMABLE_OVERRIDES = ("steps", "lr", "clip", "every", "keep")

CHECKPOINT_DIR = "checkpoints"
_CHECKPOINT_RE = re.compile(r"^step-(\d{8,})\.safetensors$")


class TrainError(ValueError):
    """A user error: a bad configuration, an output folder already in use, nothing to resume."""


class TrainingDiverged(RuntimeError):
    """The loss, a gradient or a parameter became non-finite; the run stopped before saving it.

    Attributes:
        step: the step (1-based) at which it happened.
        what: "loss", "gradient" or "parameter".
        parameter: the parameter's name, or None for the loss.
        loss: the step's loss (may be NaN/inf).
        checkpoint: the last good checkpoint (Path), or None if none was written yet.
    """

    def __init__(self, message, *, step, what, parameter, loss, checkpoint):
        super().__init__(message)
        self.step, self.what, self.parameter = step, what, parameter
        self.loss, self.checkpoint = loss, checkpoint


# ---------------------------------------------------------------- configuration


def _check_int(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise TrainError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_float(name, value, *, positive=False, allow_none=False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TrainError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise TrainError(f"{name} must be a finite number {'> 0' if positive else '>= 0'}, "
                         f"got {value!r}")
    return value


def _check_choice(name, value, choices):
    if value not in choices:
        raise TrainError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a run; ``resolved()`` fills the task and optimizer defaults.

    Attributes:
        model: "mlp", "rnn" or "lstm".
        task: "adding", "copy", "sine" or "digits".
        seq_len: T of adding/sine (default 50), the copy delay (default 20); unset for digits (T=8).
        n_symbols, copy_length: copy memory's alphabet K (8) and symbols to recall L (10).
        noise: sine's input noise std (0.0).
        hidden: hidden units H. layers: stacked recurrent layers / MLP hidden layers.
        activation: the MLP's activation or the RNN's nonlinearity (ignored by the LSTM).
        optimizer: "sgd" or "adam"; lr (default 1e-2 for SGD, 1e-3 for Adam);
        momentum: SGD only (default 0.9); weight_decay: L2, both.
        clip: max gradient norm, or None for no clipping.
        steps: total steps of the run (a resumed run stops at the same step).
        batch: sequences per step. seed: the root seed (init, data, split).
        dtype: "float32" or "float64".
        every: checkpoint every this many steps (and at the last step).
        keep: how many of the newest checkpoints to keep.
    """

    model: str = "lstm"
    task: str = "adding"
    seq_len: int | None = None
    n_symbols: int | None = None
    copy_length: int | None = None
    noise: float | None = None
    hidden: int = 32
    layers: int = 1
    activation: str = "tanh"
    optimizer: str = "adam"
    lr: float | None = None
    momentum: float | None = None
    weight_decay: float = 0.0
    clip: float | None = None
    steps: int = 1000
    batch: int = 32
    seed: int = 0
    dtype: str = "float32"
    every: int = 100
    keep: int = 3

    def resolved(self) -> "TrainConfig":
        """A checked copy with every default filled in.

        Raises:
            TrainError: a value out of range, or an option that does not apply
                (e.g. ``noise`` with the adding task, ``momentum`` with Adam).
        """
        c = self
        _check_choice("model", c.model, KINDS)
        task = _check_choice("task", c.task, TASKS)
        _check_choice("optimizer", c.optimizer, OPTIMIZERS)
        _check_choice("activation", c.activation, ACTIVATIONS)
        _check_choice("dtype", c.dtype, DTYPES)
        if c.model == "rnn" and c.activation == "sigmoid":
            raise TrainError("activation of the RNN must be tanh or relu, got 'sigmoid'")
        updates: dict[str, Any] = {}
        for option in ("seq_len", "n_symbols", "copy_length", "noise"):
            value = getattr(c, option)
            if option not in TASK_OPTIONS[task]:
                if value is not None:
                    applies = [t for t, opts in TASK_OPTIONS.items() if option in opts]
                    raise TrainError(f"{option} applies to the {'/'.join(applies)} task(s), "
                                     f"not to {task!r}")
                continue
            if value is None:
                value = TASK_OPTIONS[task][option]
            if option == "noise":
                value = _check_float("noise", value)
            else:
                value = _check_int(option, value, 2 if (option, task) == ("seq_len", "adding") else 1)
            updates[option] = value
        updates["hidden"] = _check_int("hidden", c.hidden, 1)
        updates["layers"] = _check_int("layers", c.layers, 1)
        lr = DEFAULT_LR[c.optimizer] if c.lr is None else c.lr
        updates["lr"] = _check_float("lr", lr, positive=True)
        if c.optimizer == "sgd":
            updates["momentum"] = _check_float(
                "momentum", DEFAULT_MOMENTUM if c.momentum is None else c.momentum)
        elif c.momentum is not None:
            raise TrainError("momentum applies to the sgd optimizer, not to adam")
        updates["weight_decay"] = _check_float("weight_decay", c.weight_decay)
        updates["clip"] = _check_float("clip", c.clip, positive=True, allow_none=True)
        updates["steps"] = _check_int("steps", c.steps, 1)
        updates["batch"] = _check_int("batch", c.batch, 1)
        updates["seed"] = _check_int("seed", c.seed, 0)
        updates["every"] = _check_int("every", c.every, 1)
        updates["keep"] = _check_int("keep", c.keep, 1)
        if task == "digits":
            n_train = 1797 - round(DIGITS_TEST_FRACTION * 1797)
            if updates["batch"] > n_train:
                raise TrainError(f"batch must be at most {n_train} (the digits training set), "
                                 f"got {updates['batch']}")
        return replace(c, **updates)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data) -> "TrainConfig":
        """The config of a dict as written by :meth:`to_dict` (exactly its keys), resolved."""
        if not isinstance(data, dict):
            raise TrainError(f"a config must be a JSON object, got {type(data).__name__}")
        names = {f.name for f in fields(cls)}
        missing, unexpected = sorted(names - set(data)), sorted(set(data) - names)
        if missing or unexpected:
            raise TrainError(f"config keys: missing {missing}, unexpected {unexpected}")
        return cls(**data).resolved()


# ---------------------------------------------------------------- tasks


@dataclass
class _Task:
    """How to draw a batch and score the model's output for one task.

    batch(n, rng) -> Batch(x (T, N, F), y); loss(out, y) -> (float, dloss/dout).
    """

    input_size: int
    output_size: int
    seq_len: int
    every_step: bool
    batch: Callable[[int, np.random.Generator], Batch]
    loss: Callable[[np.ndarray, np.ndarray], tuple[float, np.ndarray]]


def _mse(out, y):
    fn = MSELoss()
    loss = fn(out, y)
    return loss, fn.backward()


def _cross_entropy(out, y):
    fn = CrossEntropyLoss()
    loss = fn(out, y)
    return loss, fn.backward()


def _make_task(c: TrainConfig, split_rng: np.random.Generator) -> _Task:
    dtype = np.dtype(c.dtype)
    if c.task == "adding":
        return _Task(2, 1, c.seq_len, False,
                     lambda n, rng: adding_problem(n, c.seq_len, rng=rng, dtype=dtype), _mse)
    if c.task == "sine":
        return _Task(1, 1, c.seq_len, False,
                     lambda n, rng: sine_forecast(n, c.seq_len, rng=rng, dtype=dtype, noise=c.noise),
                     _mse)
    if c.task == "copy":
        k, length = c.n_symbols, c.copy_length
        steps, classes = c.seq_len + 2 * length, k + 2

        def batch(n, rng):
            return copy_memory(n, c.seq_len, rng=rng, n_symbols=k, length=length, dtype=dtype)

        if c.model == "mlp":
            # The MLP emits all steps at once, (N, T'·C): view it as (T', N, C).
            def loss(out, y):
                n = out.shape[0]
                logits = out.reshape(n, steps, classes).transpose(1, 0, 2).reshape(steps * n, classes)
                value, grad = _cross_entropy(np.ascontiguousarray(logits), y.reshape(-1))
                return value, grad.reshape(steps, n, classes).transpose(1, 0, 2).reshape(n, -1)

            return _Task(classes, steps * classes, steps, False, batch, loss)

        def loss(out, y):  # (T', N, C) logits, (T', N) classes: mean over all T'·N
            value, grad = _cross_entropy(out.reshape(-1, classes), y.reshape(-1))
            return value, grad.reshape(out.shape)

        return _Task(classes, classes, steps, True, batch, loss)
    # digits: minibatches drawn without replacement from the fixed training split
    split = load_digits_sequences(rng=split_rng, test_fraction=DIGITS_TEST_FRACTION, dtype=dtype)
    x_train, y_train = split.x_train, split.y_train

    def batch(n, rng):
        idx = rng.choice(x_train.shape[1], size=n, replace=False)
        return Batch(x_train[:, idx], y_train[idx])

    return _Task(8, 10, 8, False, batch, _cross_entropy)


# ---------------------------------------------------------------- files


def checkpoint_path(run_dir, step: int) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR / f"step-{step:08d}.safetensors"


def list_checkpoints(run_dir) -> list[tuple[int, Path]]:
    """(step, path) of every checkpoint of a run, oldest first.

    Raises:
        OSError: the checkpoints folder exists but cannot be listed.
    """
    folder = Path(run_dir) / CHECKPOINT_DIR
    if not folder.is_dir():
        return []
    found = []
    for name in os.listdir(folder):
        m = _CHECKPOINT_RE.match(name)
        if m:
            found.append((int(m.group(1)), folder / name))
    return sorted(found)


def latest_checkpoint(run_dir) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1][1] if found else None


def read_metrics(run_dir) -> list[dict]:
    """The lines of ``metrics.jsonl`` as dicts (a torn last line, from a crash, is skipped)."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and isinstance(row.get("step"), int):
            rows.append(row)
    return rows


def _write_json(path: Path, value) -> None:
    atomic_write_bytes(path, (json.dumps(value, indent=2, sort_keys=False) + "\n").encode())


# ---------------------------------------------------------------- results


@dataclass(frozen=True)
class TrainResult:
    """How :meth:`Trainer.run` ended.

    Attributes:
        status: "completed" (reached ``steps``) or "interrupted" (Ctrl-C; a
            checkpoint of the current step was written).
        step: the last completed step.
        checkpoint: the newest checkpoint (Path), or None.
        loss: the last step's loss (None before any step).
        best_loss, best_step: the lowest step loss so far and its step.
        seconds: training time over all sessions of the run.
    """

    status: str
    step: int
    checkpoint: Path | None
    loss: float | None
    best_loss: float | None
    best_step: int | None
    seconds: float


# ---------------------------------------------------------------- the trainer


def _sum_squares(a: np.ndarray) -> float:
    """sum(a²) in float64 without an a-sized temporary; inf/NaN if any entry is (or overflows)."""
    v = a.reshape(-1)
    return float(np.einsum("i,i->", v, v, dtype=np.float64))


def _progress_columns():
    from rich.progress import (BarColumn, MofNCompleteColumn, ProgressColumn, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)
    from rich.text import Text

    class SpeedColumn(ProgressColumn):
        def render(self, task):
            speed = task.finished_speed or task.speed
            return Text("-- steps/s" if speed is None else f"{speed:,.1f} steps/s")

    return (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"), SpeedColumn(), TimeElapsedColumn(),
            TextColumn("eta"), TimeRemainingColumn())


class Trainer:
    """Trains one :class:`~rnnlab.models.SequenceModel` on one task, into one folder.

    Build a new run with ``Trainer(config, out_dir)`` or continue one with
    ``Trainer.resume(run_dir)``; then call :meth:`run`. Nothing is written to
    disk before :meth:`run`.

    Args:
        config: a :class:`TrainConfig` (resolved here).
        out_dir: the run folder; must not hold another run (config.json,
            metrics.jsonl or checkpoints).
        progress: show a rich progress bar on stderr; None (default) shows it
            only when stderr is a terminal.
        console: a ``rich.console.Console`` for the bar (default: stderr).

    Attributes:
        config, out_dir, model (SequenceModel), optimizer (SGD/Adam),
        step (completed steps), data_rng (the Generator that draws batches).

    Raises:
        TrainError: a bad config or a folder already in use.
    """

    def __init__(self, config: TrainConfig, out_dir, *, progress: bool | None = None,
                 console=None, _resuming: bool = False):
        if not isinstance(config, TrainConfig):
            raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
        self.config = config.resolved()
        self.out_dir = Path(out_dir)
        if not _resuming:
            self._check_fresh_folder()
        self.progress, self.console = progress, console
        c = self.config
        init_seq, data_seq, split_seq = np.random.SeedSequence(c.seed).spawn(3)
        self.task = _make_task(c, np.random.default_rng(split_seq))
        self.model = SequenceModel(
            c.model, self.task.input_size, c.hidden, self.task.output_size,
            seq_len=self.task.seq_len, num_layers=c.layers, activation=c.activation,
            every_step=self.task.every_step, dtype=np.dtype(c.dtype),
            rng=np.random.default_rng(init_seq))
        self.optimizer = self._make_optimizer()
        self.data_rng = np.random.default_rng(data_seq)
        self.step = 0
        self.seconds = 0.0
        self.last_loss: float | None = None
        self.best_loss: float | None = None
        self.best_step: int | None = None
        self.last_checkpoint: Path | None = None
        self._stop_requested = False

    def _make_optimizer(self):
        c, params = self.config, self.model.parameters()
        if c.optimizer == "sgd":
            return SGD(params, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay)
        return Adam(params, lr=c.lr, weight_decay=c.weight_decay)

    def _check_fresh_folder(self):
        out = self.out_dir
        if out.exists() and not out.is_dir():
            raise TrainError(f"--out {out}: exists and is not a folder")
        taken = [n for n in ("config.json", "metrics.jsonl", CHECKPOINT_DIR) if (out / n).exists()]
        if taken:
            raise TrainError(f"--out {out} already holds a run ({', '.join(taken)}); continue it "
                             f"with --resume {out}, or choose another --out")

    # ------------------------------------------------------------ resume
    @classmethod
    def resume(cls, run_dir, *, progress: bool | None = None, console=None,
               expect: dict | None = None, **overrides) -> "Trainer":
        """Rebuild a run from the newest checkpoint in ``run_dir``.

        Args:
            run_dir: the folder of an earlier run (its ``out_dir``).
            expect: options the caller wants to hold (e.g. from the command
                line); each must equal the checkpoint's config, else TrainError.
            **overrides: new values for any of ``steps``, ``lr``, ``clip``,
                ``every``, ``keep``. With none, the continued run is bit-exact
                with an uninterrupted one; ``steps`` keeps it exact too.

        Raises:
            TrainError: no such folder, unreadable, no checkpoint in it, an
                override that is not allowed, or ``steps`` below the checkpoint's step.
            CheckpointError: the newest checkpoint is corrupted or foreign.
        """
        run_dir = Path(run_dir)
        if not run_dir.exists():
            raise TrainError(f"--resume {run_dir}: no such folder")
        if not run_dir.is_dir():
            raise TrainError(f"--resume {run_dir}: not a folder (give the run's --out folder)")
        try:
            found = list_checkpoints(run_dir)
            next(iter(run_dir.iterdir()), None)
        except OSError as exc:
            raise TrainError(f"--resume {run_dir}: cannot read: {exc.strerror or exc}") from None
        if not found:
            raise TrainError(f"--resume {run_dir}: no checkpoint in {run_dir / CHECKPOINT_DIR} "
                             f"(a run writes one every --every steps and when interrupted)")
        path = found[-1][1]
        bad = sorted(set(overrides) - set(RESUMABLE_OVERRIDES))
        if bad:
            raise TrainError(f"cannot change {', '.join(bad)} when resuming; only "
                             f"{', '.join(RESUMABLE_OVERRIDES)} may change")
        ckpt = read_checkpoint(path)
        try:
            config = TrainConfig.from_dict(ckpt.info.config)
        except (TrainError, TypeError) as exc:
            raise CheckpointError(f"{path}: the config it holds is not valid: {exc}") from None
        for name, value in (expect or {}).items():
            if value is not None and getattr(config, name) != value:
                raise TrainError(f"--{name.replace('_', '-')} {value} conflicts with the run in "
                                 f"{run_dir} ({name} {getattr(config, name)}); a resumed run "
                                 f"keeps its model, task and data")
        new = {k: v for k, v in overrides.items() if v is not None}
        if new:
            config = replace(config, **new).resolved()
        if ckpt.info.step > config.steps:
            raise TrainError(f"the checkpoint {path.name} is at step {ckpt.info.step}, "
                             f"beyond --steps {config.steps}")
        trainer = cls(config, run_dir, progress=progress, console=console, _resuming=True)
        trainer._load(path)
        return trainer

    def _load(self, path: Path) -> None:
        info = load_checkpoint(path, self.model, self.optimizer)
        rng = np.random.default_rng()
        try:
            if not isinstance(info.rng, dict) or info.rng.get("bit_generator") != "PCG64":
                raise ValueError(f"expected a PCG64 state, got {str(info.rng)[:80]}")
            rng.bit_generator.state = info.rng
        except (TypeError, ValueError, KeyError) as exc:
            raise CheckpointError(f"{path}: data RNG state: {exc}") from None
        m = info.metrics
        self.data_rng, self.step = rng, info.step
        self.seconds = float(m.get("seconds", 0.0) or 0.0)
        self.last_loss, self.best_loss = m.get("loss"), m.get("best_loss")
        self.best_step = m.get("best_step")
        # Overrides (e.g. a lower --lr after a divergence) win over the saved hyperparameters.
        self.optimizer.lr = self.config.lr
        # The paths the interrupted run took, whatever this machine's plan cache says now:
        # another path would round differently (see rnnlab.kernels.planner).
        try:
            planner.pin(m.get("plans") or {})
        except ValueError as exc:
            raise CheckpointError(f"{path}: recorded plans: {exc}") from None
        self.last_checkpoint = path

    # ------------------------------------------------------------ one step
    def train_step(self) -> dict:
        """Run step ``self.step + 1``: batch, forward, backward, guard, clip, update.

        Returns:
            the metrics row {"step", "loss", "grad_norm", "seconds"} (grad_norm
            before clipping).

        Raises:
            TrainingDiverged: non-finite loss or gradient (no update applied), or
                a parameter non-finite after the update.
        """
        start = time.perf_counter()
        step = self.step + 1
        x, y = self.task.batch(self.config.batch, self.data_rng)
        named = list(self.model.named_parameters())
        for _, p in named:
            p.zero_grad()
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            out = self.model(x)
            loss, grad_out = self.task.loss(out, y)
            loss = float(loss)
            if math.isfinite(loss):
                self.model.backward(grad_out, input_grad=False)
        if not math.isfinite(loss):
            self._diverged(step, "loss", None, loss)
        total = 0.0
        for name, p in named:
            ss = _sum_squares(p.grad)
            if not math.isfinite(ss):
                self._diverged(step, "gradient", name, loss, overflow=bool(np.isfinite(p.grad).all()))
            total += ss
        grad_norm = math.sqrt(total)
        if self.config.clip is not None:
            clip_grad_norm_([p for _, p in named], self.config.clip)
        self.optimizer.step()
        for name, p in named:
            if not math.isfinite(_sum_squares(p.data)):
                self._diverged(step, "parameter", name, loss,
                               overflow=bool(np.isfinite(p.data).all()))
        self.step = step
        if self.best_loss is None or loss < self.best_loss:
            self.best_loss, self.best_step = loss, step
        self.last_loss = loss
        seconds = time.perf_counter() - start
        self.seconds += seconds
        return {"step": step, "loss": loss, "grad_norm": grad_norm, "seconds": seconds}

    def _diverged(self, step, what, name, loss, overflow=False):
        c = self.config
        if what == "loss":
            # Name the weight that most likely blew it up: the largest in magnitude.
            sizes = [(float(np.max(np.abs(p.data), initial=0.0)), n)
                     for n, p in self.model.named_parameters()]
            top, name = max(sizes, key=lambda t: (not math.isfinite(t[0]), t[0]))
            detail = f"the loss is {loss} (largest weight: {name!r}, max |w| = {top:.3g})"
        elif what == "gradient":
            detail = (f"the gradient of {name!r} is "
                      f"{'too large to square' if overflow else 'not finite'} (loss {loss:.6g})")
        else:
            detail = (f"parameter {name!r} became {'too large' if overflow else 'non-finite'} "
                      f"after the update (loss {loss:.6g})")
        ckpt = (f"the last good checkpoint is {self.last_checkpoint}" if self.last_checkpoint
                else "no checkpoint was written yet")
        suggestion = (f"try --clip 1.0 or a lower --lr (now {c.lr:g})" if c.clip is None
                      else f"try a lower --lr (now {c.lr:g}) or a smaller --clip (now {c.clip:g})")
        raise TrainingDiverged(f"training diverged at step {step}: {detail}; {ckpt}; {suggestion}",
                               step=step, what=what, parameter=name, loss=loss,
                               checkpoint=self.last_checkpoint)

    # ------------------------------------------------------------ checkpoints
    def metrics_summary(self) -> dict:
        return {"loss": self.last_loss, "best_loss": self.best_loss, "best_step": self.best_step,
                "seconds": self.seconds, "plans": planner.in_use()}

    def save_checkpoint(self) -> Path:
        """Write the checkpoint of the current step (atomically) and prune to ``keep``."""
        path = checkpoint_path(self.out_dir, self.step)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_checkpoint(path, self.model, self.optimizer, step=self.step,
                        config=self.config.to_dict(), rng=self.data_rng,
                        metrics=self.metrics_summary())
        self.last_checkpoint = path
        for _, old in list_checkpoints(self.out_dir)[:-self.config.keep]:
            old.unlink(missing_ok=True)
        return path

    # ------------------------------------------------------------ the loop
    @contextmanager
    def _stop_on_sigint(self):
        """First SIGINT: finish the step, checkpoint, return. Second: KeyboardInterrupt."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = signal.getsignal(signal.SIGINT)
        if previous is None:
            previous = signal.default_int_handler

        def handler(signum, frame):
            self._stop_requested = True
            signal.signal(signal.SIGINT, signal.default_int_handler)

        signal.signal(signal.SIGINT, handler)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    def request_stop(self) -> None:
        """Stop after the current step, as Ctrl-C does (e.g. from a callback)."""
        self._stop_requested = True

    def _prepare_folder(self) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / CHECKPOINT_DIR).mkdir(exist_ok=True)
        config = {**self.config.to_dict(), "rnnlab_version": __version__}
        _write_json(self.out_dir / "config.json", config)
        metrics = self.out_dir / "metrics.jsonl"
        if metrics.exists():
            # Lines after the current step were written by a run that then crashed or
            # was killed after its last checkpoint: drop them so that the log matches
            # the weights (a fresh run, at step 0, starts an empty log).
            keep = [r for r in read_metrics(self.out_dir) if r["step"] <= self.step]
            atomic_write_bytes(metrics, "".join(json.dumps(r) + "\n" for r in keep).encode())

    def run(self, *, handle_sigint: bool = True, on_step: Callable[[dict], None] | None = None
            ) -> TrainResult:
        """Train until ``config.steps`` (or Ctrl-C), writing metrics and checkpoints.

        Args:
            handle_sigint: turn the first Ctrl-C into a clean stop with a checkpoint
                (only possible in the main thread; ignored elsewhere).
            on_step: called with each metrics row after it is written.

        Returns:
            a :class:`TrainResult` with status "completed" or "interrupted".

        Raises:
            TrainingDiverged: see :meth:`train_step`; no checkpoint of the bad
                state is written and the earlier ones are kept.
        """
        c = self.config
        self._stop_requested = False
        guard = self._stop_on_sigint() if handle_sigint else nullcontext()
        with guard:
            self._prepare_folder()
            with open(self.out_dir / "metrics.jsonl", "a", encoding="utf-8") as log, \
                    self._progress_bar() as bar:
                while self.step < c.steps and not self._stop_requested:
                    row = self.train_step()
                    log.write(json.dumps(row) + "\n")
                    log.flush()
                    if bar is not None:
                        bar[0].update(bar[1], completed=self.step, loss=f"{row['loss']:.4g}")
                    if self.step % c.every == 0 or self.step == c.steps:
                        self.save_checkpoint()
                    if on_step is not None:
                        on_step(row)
                if self._stop_requested and self.step < c.steps and (
                        self.last_checkpoint != checkpoint_path(self.out_dir, self.step)):
                    self.save_checkpoint()
        status = "completed" if self.step >= c.steps else "interrupted"
        return TrainResult(status, self.step, self.last_checkpoint, self.last_loss,
                           self.best_loss, self.best_step, self.seconds)

    @contextmanager
    def _progress_bar(self):
        show = self.progress
        if show is None:
            import sys
            show = sys.stderr.isatty()
        if not show:
            yield None
            return
        from rich.console import Console
        from rich.progress import Progress

        console = self.console or Console(stderr=True)
        c = self.config
        with Progress(*_progress_columns(), console=console, transient=False) as progress:
            task = progress.add_task(f"{c.model} {c.task}", total=c.steps, completed=self.step,
                                     loss="--" if self.last_loss is None else f"{self.last_loss:.4g}")
            yield progress, task
