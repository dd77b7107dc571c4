"""Is a step healthy? The loss and the gradient norm against the run's own recent history.

A checkpoint is "good" when it is finite (the guard never writes another) and the
step it was written at is healthy: its loss is at most ``LOSS_FACTOR`` times, and
its gradient norm at most ``GRAD_FACTOR`` times, the median of the last ``WINDOW``
healthy steps. A run that explodes over several steps before it turns NaN (weights
of 1e30 with ``--every 1``) is thus told from a good state, so that a resume with a
lower --lr starts from weights that can still be trained.

Only healthy steps enter the history, so an explosion cannot raise the bar it is
judged by; the first step, with no history yet, is healthy if finite.
"""

from __future__ import annotations

import math
from collections import deque
from statistics import median

__all__ = ["Health", "LOSS_FACTOR", "GRAD_FACTOR", "WINDOW"]

LOSS_FACTOR = 10.0
GRAD_FACTOR = 100.0
WINDOW = 50


class Health:
    """The recent healthy (loss, grad_norm) pairs of a run, and the verdict on a new step."""

    def __init__(self, history=()):
        self.losses = deque(maxlen=WINDOW)
        self.grads = deque(maxlen=WINDOW)
        for loss, grad in history:
            self.check(loss, grad)

    def reference(self) -> tuple[float, float] | None:
        """(median loss, median grad norm) of the recent healthy steps, or None."""
        if not self.losses:
            return None
        return median(self.losses), median(self.grads)

    def check(self, loss: float, grad_norm: float) -> str | None:
        """Record a step: None if healthy, else why it is not (and it is not recorded)."""
        if not (math.isfinite(loss) and math.isfinite(grad_norm)):
            return "not finite"
        ref = self.reference()
        if ref is not None:
            ref_loss, ref_grad = ref
            if loss > LOSS_FACTOR * abs(ref_loss) + 1e-12:
                return (f"loss {loss:.3g} > {LOSS_FACTOR:g} × the median {ref_loss:.3g} of the "
                        f"last {len(self.losses)} healthy steps")
            if grad_norm > GRAD_FACTOR * ref_grad + 1e-12:
                return (f"gradient norm {grad_norm:.3g} > {GRAD_FACTOR:g} × the median "
                        f"{ref_grad:.3g} of the last {len(self.grads)} healthy steps")
        self.losses.append(loss)
        self.grads.append(grad_norm)
        return None
