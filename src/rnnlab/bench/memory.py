"""Peak memory of an rnnlab training step, traced with tracemalloc, against the BPTT minimum.

NumPy reports its array allocations to tracemalloc, so the traced peak counts
every array a step creates (caches, temporaries, gradients of the parameters
before they are added into ``param.grad``).

Method, for one point:

1. build the model and optimizer, and run one untraced step, so that the
   persistent state (parameters, ``.grad``, optimizer buffers) exists before tracing;
2. start tracing and run one step (its leftovers, such as caches a layer keeps
   until its next forward, are now traced);
3. reset the peak and run one more step: its traced peak is the steady-state
   working memory of a step, leftovers of the previous step included.

Inside each traced step the batch is copied in (as a data loader would hand
it over), so the input counts on both sides: in the minimum and in the peak.
The step is the timed one (:func:`rnnlab.bench.models.rnnlab_step`): the data
gets no gradient, as in torch.
The minimum is :func:`rnnlab.analysis.complexity.model_bptt_memory`.
"""

from __future__ import annotations

import gc
import tracemalloc

from ..analysis.complexity import model_bptt_memory
from ..nn import MSELoss
from ..optim import SGD
from .models import Point, build_rnnlab, make_data

__all__ = ["step_peak_memory"]


def step_peak_memory(point: Point, *, seed: int = 0, lr: float = 0.01,
                     momentum: float = 0.0) -> dict:
    """Traced peak bytes of one rnnlab training step at ``point``, and the BPTT minimum.

    Returns:
        dict with the point's fields, ``peak_bytes``, ``min_bytes``, ``ratio``
        (peak / minimum), ``param_bytes`` (the parameters, for scale) and ``loss``.
    """
    x_source, y = make_data(point, seed)
    model = build_rnnlab(point, seed)
    opt = SGD(model.parameters(), lr=lr, momentum=momentum)
    loss_fn = MSELoss()

    def step():
        x = x_source.copy()  # the batch arrives
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        model.backward(loss_fn.backward(), input_grad=False)  # as in the timed step
        opt.step()
        return loss

    step()  # persistent state first, untraced
    gc.collect()
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    try:
        step()
        tracemalloc.reset_peak()
        start, _ = tracemalloc.get_traced_memory()
        loss = step()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        if not was_tracing:
            tracemalloc.stop()
    minimum = model_bptt_memory(point.model, point.d, point.n, point.m, point.T).bytes
    param_bytes = sum(p.data.nbytes for p in model.parameters())
    return {**point.as_dict(), "peak_bytes": int(peak), "start_bytes": int(start),
            "min_bytes": int(minimum), "ratio": peak / minimum, "param_bytes": int(param_bytes),
            "loss": float(loss)}
