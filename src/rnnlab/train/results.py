"""How a run ends: :class:`TrainResult`, or :class:`TrainingDiverged`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["TrainResult", "TrainingDiverged"]


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
