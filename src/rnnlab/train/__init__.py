"""The training loop behind ``rnnlab train``: checkpoints, exact resume, Ctrl-C, a NaN guard.

A run lives in one folder::

    OUT/.lock                              held by the process that trains in OUT
    OUT/config.json                        the resolved TrainConfig (JSON)
    OUT/metrics.jsonl                      one line per step: {"step", "loss", "grad_norm", "lr",
                                           "time", "seconds"}, and "held_out_loss" every
                                           ``every`` steps
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

Modules: :mod:`.config` (TrainConfig), :mod:`.tasks`, :mod:`.folder` (files,
lock, leftovers), :mod:`.budget` (memory estimate), :mod:`.health` (what a good
checkpoint is), :mod:`.saved_state` (checkpoint fields, validated),
:mod:`.trainer` (the loop), :mod:`.progress` (the bar).
"""


from .config import (ACTIVATIONS, DEFAULT_LR, DEFAULT_MOMENTUM, DIGITS_TEST_FRACTION, DTYPES,
                     OPTIMIZERS, RESUMABLE_OVERRIDES, TASK_OPTIONS, TASKS, TrainConfig, TrainError)
from .folder import (CHECKPOINT_DIR, checkpoint_path, latest_checkpoint, list_checkpoints,
                     read_metrics)
from .tasks import _make_task
from .trainer import Trainer, TrainingDiverged, TrainResult

__all__ = ["TrainConfig", "Trainer", "TrainResult", "TrainError", "TrainingDiverged",
           "TASKS", "OPTIMIZERS", "ACTIVATIONS", "DTYPES", "TASK_OPTIONS", "DEFAULT_LR",
           "DEFAULT_MOMENTUM", "DIGITS_TEST_FRACTION", "RESUMABLE_OVERRIDES", "CHECKPOINT_DIR",
           "checkpoint_path", "list_checkpoints", "latest_checkpoint", "read_metrics",
           "_make_task"]
