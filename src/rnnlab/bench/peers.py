"""The sides timed at a grid point: rnnlab's step and the steps it is compared with.

Every side starts from the same weights (rnnlab's init at the run's seed) and
trains on the same float32 data, with the same loss (MSE) and update (SGD):

- ``"rnnlab"``: rnnlab as installed, its paths chosen by the planner;
- ``"torch"``: the torch twin (:mod:`._torch_models`), eager, no compile;
- ``"jax"``: the same step in JAX, ``jax.jit`` around ``lax.scan`` with donated
  weights (:mod:`._jax_models`), blocked on before the step returns;
- ``"reference"``: rnnlab again, on its NumPy reference loops
  (``use_backend("numpy")``: no compiled kernels, no BLAS-pool jobs). The ratio
  rnnlab / reference shows whether a planned choice lost to the plain loops.

The peers are optional: torch and jax are imported only when asked for.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..functional.backend import use_backend
from ..optim import SGD
from .config import PEERS
from ._jax_models import import_jax  # imports jax only when called
from .models import Point, build_rnnlab, make_pair, rnnlab_step

__all__ = ["PEERS", "PEER_LIBRARY", "Side", "build_sides", "import_jax"]

# Whose threads run (and may still spin after) each peer's step: the next side's settle
# sleep is that library's spin (rnnlab's own side runs on "numpy_blas").
PEER_LIBRARY = {"torch": "torch", "jax": "jax", "reference": "numpy_blas"}


@dataclass
class Side:
    """One timed side of a point.

    Attributes:
        name: "rnnlab" or one of PEERS.
        step: runs one training step (forward, loss, backward, update).
        loss: the step's return value as a float.
        flops_key: the row's FLOP count this side does ("flops": the textbook count;
            "flops_rnnlab": rnnlab's, without the products with the zero initial state).
    """

    name: str
    step: Callable[[], object]
    loss: Callable[[object], float]
    flops_key: str


def _reference(point: Point, seed: int, lr: float, momentum: float, x, y) -> Side:
    model = build_rnnlab(point, seed)
    step = rnnlab_step(model, SGD(model.parameters(), lr=lr, momentum=momentum), x, y)

    def reference_step():
        with use_backend("numpy"):
            return step()

    return Side("reference", reference_step, float, "flops_rnnlab")


def build_sides(point: Point, peers, *, seed: int = 0, lr: float = 0.01,
                momentum: float = 0.0) -> list[Side]:
    """rnnlab's side, then one per name in ``peers`` (a subset of PEERS, in that order).

    Raises:
        ImportError: torch or jax is asked for and does not import.
        ValueError: an unknown peer.
    """
    unknown = [p for p in peers if p not in PEERS]
    if unknown:
        raise ValueError(f"peers must be among {PEERS}, got {unknown}")
    pair = make_pair(point, seed=seed, lr=lr, momentum=momentum, with_torch="torch" in peers)
    sides = [Side("rnnlab", pair.rnnlab_step, float, "flops_rnnlab")]
    for peer in PEERS:
        if peer not in peers:
            continue
        if peer == "torch":
            sides.append(Side("torch", pair.torch_step, lambda t: float(t.item()), "flops"))
        elif peer == "jax":
            if import_jax() is None:
                raise ImportError("jax is not installed (pip install 'rnnlab[jax]')")
            from ._jax_models import jax_step

            step = jax_step(point, pair.rnnlab_model.state_dict(), pair.x, pair.y, lr=lr,
                            momentum=momentum)
            sides.append(Side("jax", step, float, "flops"))
        else:
            sides.append(_reference(point, seed, lr, momentum, pair.x, pair.y))
    return sides

