"""The trainer: one model, one task, one folder; checkpoints, exact resume, Ctrl-C, guards."""

from __future__ import annotations

import json
import math
import signal
import threading
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Callable

import numpy as np

from .. import __version__
from ..io import CheckpointError, load_checkpoint, save_checkpoint
from ..kernels import planner
from ..models import SequenceModel
from ..nn._checks import NonFiniteError
from ..optim import SGD, Adam, clip_grad_norm_
from .budget import require_training_memory
from .config import TrainConfig, TrainError
from .folder import (CHECKPOINT_DIR, RunLock, checkpoint_path, list_checkpoints, read_metrics,
                     remove_temporaries, run_files, write_json)
from .health import Health
from .progress import progress_bar
from .results import TrainingDiverged, TrainResult
from .resume import resume_run
from .saved_state import checked_metrics, data_rng_from
from .tasks import HELD_OUT, _make_task

__all__ = ["Trainer", "TrainResult", "TrainingDiverged"]


def _sum_squares(a: np.ndarray) -> float:
    """sum(a²) in float64 without an a-sized temporary; inf/NaN if any entry is (or overflows)."""
    v = a.reshape(-1)
    return float(np.einsum("i,i->", v, v, dtype=np.float64))


class Trainer:
    """Trains one :class:`~rnnlab.models.SequenceModel` on one task, into one folder.

    Build a new run with ``Trainer(config, out_dir)`` or continue one with
    ``Trainer.resume(run_dir)``; then call :meth:`run`. A new run writes nothing
    before :meth:`run`; :meth:`resume` takes the folder's lock at once.

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
        MemoryBudgetError: the run's estimated memory exceeds what is available.
    """

    def __init__(self, config: TrainConfig, out_dir, *, progress: bool | None = None,
                 console=None, _resuming: bool = False):
        if not isinstance(config, TrainConfig):
            raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
        self.config = config.resolved()
        self.out_dir = Path(out_dir)
        self._fresh = not _resuming
        if self._fresh:
            self._check_fresh_folder()
        self.progress, self.console = progress, console
        self.lock = RunLock(self.out_dir)
        c = self.config
        init_seq, data_seq, split_seq, held_out_seq = np.random.SeedSequence(c.seed).spawn(4)
        self.task = _make_task(c, np.random.default_rng(split_seq))
        eval_n = HELD_OUT if self.task.held_out is None else len(self.task.held_out.y)
        require_training_memory(c, self.task.input_size, self.task.output_size,
                                self.task.seq_len, eval_n)
        if self.task.held_out is None:
            self.task.held_out = self.task.batch(HELD_OUT, np.random.default_rng(held_out_seq))
        init_rng = np.random.default_rng(init_seq)
        if self.task.make_model is not None:  # a task with its own model (vowels' recurrent ones)
            self.model = self.task.make_model(init_rng)
        else:
            self.model = SequenceModel(
                c.model, self.task.input_size, c.hidden, self.task.output_size,
                seq_len=self.task.seq_len, num_layers=c.layers, activation=c.activation,
                every_step=self.task.every_step, dtype=np.dtype(c.dtype), rng=init_rng)
        self.optimizer = self._make_optimizer()
        self.data_rng = np.random.default_rng(data_seq)
        self.step = 0
        self.seconds = 0.0
        self.last_loss: float | None = None
        self.best_loss: float | None = None
        self.best_step: int | None = None
        self.last_checkpoint: Path | None = None
        # A checkpoint's weights are judged by the step after it (their loss and gradient):
        # written, it is pending; that step healthy, it is the last good one.
        self.pending: Path | None = None
        self.last_good: tuple[Path, str] | None = None  # (path, why it is good)
        self.health = Health()
        self._unhealthy: str | None = None  # why the current step is not healthy
        self._loaded_from: Path | None = None
        self._stop_requested = False
        self._session_steps = 0

    def _make_optimizer(self):
        c, params = self.config, self.model.parameters()
        if c.optimizer == "sgd":
            return SGD(params, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay)
        return Adam(params, lr=c.lr, weight_decay=c.weight_decay)

    def _check_fresh_folder(self):
        out = self.out_dir
        if out.exists() and not out.is_dir():
            raise TrainError(f"--out {out}: exists and is not a folder")
        taken = run_files(out)
        if taken:
            raise TrainError(f"--out {out} already holds a run ({', '.join(taken)}); continue it "
                             f"with --resume {out}, or choose another --out")

    def close(self) -> None:
        """Release the run folder's lock (done by :meth:`run` at its end)."""
        self.lock.release()

    # ------------------------------------------------------------ resume
    @classmethod
    def resume(cls, run_dir, *, progress: bool | None = None, console=None,
               expect: dict | None = None, **overrides) -> "Trainer":
        """Rebuild a run from the newest checkpoint in ``run_dir``, holding its lock.

        A run that never wrote a checkpoint (killed, diverged or out of disk space
        before its first) restarts at step 0 from the config.json it saved.

        Args:
            run_dir: the folder of an earlier run (its ``out_dir``).
            expect: options the caller wants to hold (e.g. from the command
                line); each must equal the checkpoint's config, else TrainError.
            **overrides: new values for any of ``steps``, ``lr``, ``clip``,
                ``every``, ``keep``. With none, the continued run is bit-exact
                with an uninterrupted one; ``steps`` keeps it exact too.

        Raises:
            TrainError: no such folder, unreadable, in use by another run, nothing
                to resume, an override that is not allowed, or ``steps`` below the
                checkpoint's step.
            CheckpointError: the newest checkpoint (or config.json) is corrupted,
                foreign, or holds a field of the wrong type or a size that cannot fit.
        """
        return resume_run(cls, run_dir, progress=progress, console=console, expect=expect,
                          **overrides)

    def _load(self, path: Path) -> None:
        info = load_checkpoint(path, self.model, self.optimizer)
        metrics = checked_metrics(path, info.metrics, info.step)
        self.data_rng, self.step = data_rng_from(path, info.rng), info.step
        self.seconds = metrics["seconds"]
        self.last_loss, self.best_loss = metrics["loss"], metrics["best_loss"]
        self.best_step = metrics["best_step"]
        # Overrides (e.g. a lower --lr after a divergence) win over the saved hyperparameters.
        self.optimizer.lr = self.config.lr
        # The paths the interrupted run took, whatever this machine's plan cache says now:
        # another path would round differently (see rnnlab.kernels.planner).
        try:
            planner.pin(info.metrics.get("plans") or {})
        except (ValueError, TypeError, AttributeError) as exc:
            raise CheckpointError(f"{path}: recorded plans: {exc}") from None
        self.last_checkpoint = self._loaded_from = path
        rows = [r for r in read_metrics(self.out_dir) if r["step"] <= self.step]
        self.health = Health((r.get("loss", math.nan), r.get("grad_norm", math.nan))
                             for r in rows if isinstance(r.get("loss"), (int, float))
                             and isinstance(r.get("grad_norm"), (int, float)))
        self.last_good = (path, "the checkpoint this run resumed from")

    # ------------------------------------------------------------ one step
    def train_step(self) -> dict:
        """Run step ``self.step + 1``: batch, forward, backward, guard, clip, update.

        Returns:
            the metrics row {"step", "loss", "grad_norm", "lr", "time", "seconds"}
            (grad_norm before clipping; time: the wall clock at its end, Unix seconds);
            "unhealthy": why, when the step's loss or gradient norm explodes
            (see :mod:`rnnlab.train.health`).

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
        try:
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                out = self.model(x)
                loss, grad_out = self.task.loss(out, y)
                loss = float(loss)
                if math.isfinite(loss):
                    self.model.backward(grad_out, input_grad=False)
        except NonFiniteError as exc:  # the data is finite: the model's activations overflowed
            self._diverged(step, "activation", None, math.nan, detail=str(exc))
        if not math.isfinite(loss):
            self._diverged(step, "loss", None, loss)
        total = 0.0
        for name, p in named:
            ss = _sum_squares(p.grad)
            if not math.isfinite(ss):
                self._diverged(step, "gradient", name, loss, overflow=bool(np.isfinite(p.grad).all()))
            total += ss
        grad_norm = math.sqrt(total)
        # The loss and gradient of the weights before this update: they judge the
        # checkpoint written at the previous step, if any.
        self._unhealthy = self.health.check(loss, grad_norm)
        if self._unhealthy is None and self.pending == checkpoint_path(self.out_dir, step - 1):
            ref_loss, ref_grad = self.health.reference()
            self.last_good = (self.pending, f"its weights gave the next step a loss of {loss:.4g} "
                                            f"and a gradient norm of {grad_norm:.4g}, within the "
                                            f"run's medians {ref_loss:.4g} and {ref_grad:.4g}")
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
        self.last_loss, self.last_grad_norm = loss, grad_norm
        seconds = time.perf_counter() - start
        self.seconds += seconds
        row = {"step": step, "loss": loss, "grad_norm": grad_norm, "lr": self.optimizer.lr,
               "time": round(time.time(), 3), "seconds": seconds}
        if self._unhealthy:
            row["unhealthy"] = self._unhealthy
        return row

    def held_out_loss(self) -> float:
        """The loss on the task's held-out data (forward only; nothing else changes)."""
        x, y = self.task.held_out
        try:
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                return float(self.task.loss(self.model(x), y)[0])
        except NonFiniteError:
            return math.inf

    def _diverged(self, step, what, name, loss, overflow=False, detail=None):
        c = self.config
        if what == "activation":
            detail = f"an activation is not finite ({detail})"
        elif what == "loss":
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
        good = self._keep_only_good()
        suggestion = (f"try --clip 1.0 or a lower --lr (now {c.lr:g})" if c.clip is None
                      else f"try a lower --lr (now {c.lr:g}) or a smaller --clip (now {c.clip:g})")
        raise TrainingDiverged(f"training diverged at step {step}: {detail}; {good}; {suggestion}",
                               step=step, what=what, parameter=name, loss=loss,
                               checkpoint=self.last_good[0] if self.last_good else None)

    def _keep_only_good(self) -> str:
        """Delete the checkpoints written after the last good one (their steps were
        exploding); describe what is kept and why it counts as good."""
        if self.last_good is None:
            removed = list_checkpoints(self.out_dir)
            for _, path in removed:
                path.unlink(missing_ok=True)
            return ("no good checkpoint was written yet" + (
                f" (removed {len(removed)} written while exploding)" if removed else "")
                + f"; --resume {self.out_dir} restarts at step 0")
        path, why = self.last_good
        later = [p for s, p in list_checkpoints(self.out_dir) if p.name > path.name]
        for p in later:
            p.unlink(missing_ok=True)
        return (f"the last good checkpoint is {path} ({why})" + (
            f"; removed {len(later)} later one(s), whose weights had not yet given a healthy step"
            if later else ""))

    # ------------------------------------------------------------ checkpoints
    def metrics_summary(self) -> dict:
        return {"loss": self.last_loss, "best_loss": self.best_loss, "best_step": self.best_step,
                "seconds": self.seconds, "plans": planner.in_use()}

    def save_checkpoint(self) -> Path:
        """Write the checkpoint of the current step (atomically) and prune to ``keep``,
        never deleting the last good one."""
        path = checkpoint_path(self.out_dir, self.step)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_checkpoint(path, self.model, self.optimizer, step=self.step,
                        config=self.config.to_dict(), rng=self.data_rng,
                        metrics=self.metrics_summary())
        self.last_checkpoint = self.pending = path
        good = self.last_good[0] if self.last_good else None
        for _, old in list_checkpoints(self.out_dir)[:-self.config.keep]:
            if old != good:
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
        """Under the lock: check that no one else got here first, clean up, write config.json."""
        if self._fresh and self.step == 0:
            self._check_fresh_folder()
        elif self._loaded_from is not None and (
                list_checkpoints(self.out_dir)[-1:] != [(self.step, self._loaded_from)]):
            raise TrainError(f"{self.out_dir}: the run moved on since it was loaded "
                             f"(another process); resume it again")
        (self.out_dir / CHECKPOINT_DIR).mkdir(exist_ok=True)
        remove_temporaries(self.out_dir)
        config = {**self.config.to_dict(), "rnnlab_version": __version__}
        write_json(self.out_dir / "config.json", config)
        metrics = self.out_dir / "metrics.jsonl"
        if metrics.exists():
            # Lines after the current step were written by a run that then crashed or
            # was killed after its last checkpoint: drop them so that the log matches
            # the weights (a run restarted at step 0 starts an empty log).
            keep = [r for r in read_metrics(self.out_dir) if r["step"] <= self.step]
            from ..io import atomic_write_bytes
            atomic_write_bytes(metrics, "".join(json.dumps(r) + "\n" for r in keep).encode())

    def run(self, *, handle_sigint: bool = True, on_step: Callable[[dict], None] | None = None
            ) -> TrainResult:
        """Train until ``config.steps`` (or Ctrl-C), writing metrics and checkpoints.

        Holds the run folder's lock throughout (another run on it is refused with a
        TrainError naming this one) and removes what a killed run left (temporary files).

        Args:
            handle_sigint: turn the first Ctrl-C into a clean stop with a checkpoint
                (only possible in the main thread; ignored elsewhere).
            on_step: called with each metrics row after it is written.

        Returns:
            a :class:`TrainResult` with status "completed" or "interrupted".

        Raises:
            TrainingDiverged: see :meth:`train_step`; no checkpoint of the bad
                state is written, and the last good one is kept.
            TrainError: the folder is in use by another run.
        """
        c = self.config
        self._stop_requested = False
        guard = self._stop_on_sigint() if handle_sigint else nullcontext()
        self.lock.acquire()
        try:
            with guard:
                self._prepare_folder()
                self._loop(c, on_step)
        finally:
            self.lock.release()
        status = "completed" if self.step >= c.steps else "interrupted"
        return TrainResult(status, self.step, self.last_checkpoint, self.last_loss,
                           self.best_loss, self.best_step, self.seconds)

    def _loop(self, c: TrainConfig, on_step) -> None:
        with open(self.out_dir / "metrics.jsonl", "a", encoding="utf-8") as log, \
                progress_bar(self.progress, self.console, f"{c.model} {c.task}", c.steps,
                             self.step, self.last_loss) as bar:
            while self.step < c.steps and not self._stop_requested:
                row = self.train_step()
                self._session_steps += 1
                if self._session_steps == 1:
                    row["includes_compile"] = True  # numba's compile and first-call set-up
                if self.step % c.every == 0 or self.step == c.steps:
                    held_out = self.held_out_loss()
                    row["held_out_loss"] = held_out if math.isfinite(held_out) else None
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
