"""From how many elements a compiled helper pass beats its NumPy form, timed here once.

Three helpers of a training step have a NumPy form (2-6 ufunc calls) and a
compiled form (one pass, the same arithmetic in the same order, so the same
bits): the SGD update (:mod:`.sgd`), the rank-1 weight gradient
(:mod:`rnnlab.kernels.rank1`) and the sigmoid/tanh gradient passes
(:mod:`rnnlab.functional.activations`). Entering a compiled pass costs more
than a ufunc call (numba's dispatch of 3-4 arrays, the checks around it): an
SGD update (momentum 0) of 16 floats took 6.6 µs compiled against 3.5 µs in
NumPy, and of 2^14 floats 11.9 against 7.6 µs, on the Sapphire Rapids machine.
With momentum the compiled pass won from 2^14. So no constant decides: each
kind is timed, once per machine, versions and BLAS thread count, through the
same call its users make, with the compiled form forced on and then off, at
sizes 2^4 .. 2^20 (each the fastest of a few repeats). The compiled form is
taken from the smallest size from which it is at least the planner's MARGIN
faster there and at every larger size (never, if at none). Kept in
``calibration.json`` beside the plans; ``RNNLAB_PLAN`` rules it as it rules
the plans (``off``, or ``cached`` with nothing cached: compiled at every size,
as before this module); a crossover timed while the machine was busier than
its cores is timed again by the next process that needs it on a quieter one
(on a loaded machine, a pass handed to OpenBLAS's threads took up to 250x
longer: they wait for a core).
"""

from __future__ import annotations

import time

import numpy as np

from . import timing
from .calibrate import NEVER, cached_crossover, threshold

__all__ = ["KINDS", "SIZES", "min_elements", "forced"]

KINDS = ("sgd", "sgd_momentum", "outer", "activation")
SIZES = tuple(1 << k for k in range(4, 21, 2))
# kind -> elements, for the BLAS thread count at the first call: it matters only where
# the compiled pass goes to OpenBLAS's threads, whose own crossover follows the count
# (rnnlab.kernels.calibrate)
_memo: dict[str, int] = {}
_forced: dict[str, int] = {}  # kind -> elements, while timing


def min_elements(kind: str) -> int:
    """The element count from which the compiled pass of ``kind`` runs (0: always)."""
    if _forced and kind in _forced:  # timing and tests only: an empty dict costs nothing
        return _forced[kind]
    found = _memo.get(kind)
    if found is not None:
        return found
    from . import blas_pool
    threads = blas_pool.threads()  # asked once: OpenBLAS's count costs a ctypes call

    def measure():
        numpy_times, compiled_times = _measure(kind)
        return (threshold(numpy_times, compiled_times),
                {"numpy": numpy_times, "compiled": compiled_times})

    found = cached_crossover(f"compiled {kind} threads={threads}", measure, 0, redo_busy=True)
    _memo[kind] = found
    return found


class forced:
    """``with forced(kind, elements):`` the compiled pass of ``kind`` runs from ``elements``
    (0: always, NEVER: never), whatever was measured; for timing and tests."""

    def __init__(self, kind: str, elements: int):
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        self.kind, self.elements = kind, elements

    def __enter__(self):
        self.saved = _forced.get(self.kind)
        _forced[self.kind] = self.elements
        return self

    def __exit__(self, *exc):
        if self.saved is None:
            _forced.pop(self.kind, None)
        else:
            _forced[self.kind] = self.saved
        return False


def _call(kind: str, size: int):
    """A callable running the helper of ``kind`` on ``size`` float32 elements, as its users
    call it."""
    rng = np.random.default_rng(0)
    if kind in ("sgd", "sgd_momentum"):
        from ..nn.module import Parameter
        from ..optim import SGD
        p = Parameter(rng.standard_normal(size).astype(np.float32))
        p.grad[...] = rng.standard_normal(size).astype(np.float32)
        optimizer = SGD([p], lr=1e-9, momentum=0.9 if kind == "sgd_momentum" else 0.0)
        optimizer.step()  # the momentum buffer exists from here on
        return optimizer.step
    if kind == "outer":
        from .rank1 import outer_into
        cols = min(size, 64)
        grad = np.zeros((size // cols, cols), np.float32)
        a = rng.standard_normal(size // cols).astype(np.float32)
        b = rng.standard_normal(cols).astype(np.float32)
        return lambda: outer_into(grad, a, b, True)
    from ..functional.activations import sigmoid_backward
    grad_y = rng.standard_normal(size).astype(np.float32)
    y = rng.uniform(0, 1, size).astype(np.float32)
    return lambda: sigmoid_backward(grad_y, y)  # to a new array: in place, grad_y would
    # shrink to subnormals over the repeats, and slow both forms down


def _measure(kind: str) -> tuple[dict, dict]:
    """({size: seconds in NumPy}, {size: seconds compiled}) for ``kind``."""
    numpy_times, compiled_times = {}, {}
    with forced(kind, NEVER):  # building the call runs it once: not through this measure
        for size in SIZES:
            run = _call(kind, size)
            for times, elements in ((numpy_times, NEVER), (compiled_times, 0)):
                with forced(kind, elements):
                    run()  # warm: compiled, pages touched
                    times[size] = round(min(timing._timed(run, time.perf_counter)
                                            for _ in range(3)), 8)
    return numpy_times, compiled_times
