"""What a benchmark run depends on (:class:`BenchConfig`, saved as config.json beside the
results), the grids' defaults, and where a run writes by default."""

from __future__ import annotations

import datetime as _dt
from dataclasses import asdict, dataclass
from pathlib import Path

from ..analysis.complexity import MODELS
from .grid import GRIDS

__all__ = ["BenchConfig", "PEERS", "NOISY", "default_out_dir"]

PEERS = ("torch", "jax", "reference")  # see rnnlab.bench.peers

# Per-grid defaults: seconds of timed rounds per point, and the GEMM size of the peak.
DEFAULT_BUDGET = {"tiny": 0.05, "small": 0.3, "full": 1.0}
DEFAULT_GEMM_SIZE = {"tiny": 256, "small": 2048, "full": 2048}
NOISY = 0.25  # cores kept busy by other processes during a point, above which it is flagged
DEFAULT_GEMM_BUDGET = {"tiny": 0.02, "small": 0.5, "full": 1.0}
DEFAULT_RETRIES = {"tiny": 0, "small": 2, "full": 2}
# A burst of outside load (this machine's CPUs are shared) that covers one side's block
# moves that side's median when a point has 2-3 rounds; with 6 it moves a sixth of the
# samples. Six repeats of LSTM (256, 64, 32, 64) read 1.02-1.36 of torch at 2 rounds and
# 0.97-1.09 at 8 (sd 0.115 against 0.042); MLP (256, 64, 32, 64) sd 0.088 against 0.058,
# but MLP (256, 64, 128, 64) 0.071 against 0.114: not all of the noise is that short.
DEFAULT_MIN_ROUNDS = {"tiny": 1, "small": 2, "full": 6}
# Timed steps per side: a point whose steps outlast a block (~0.1 s and up: the large LSTM,
# RNN and MLP points) gets one step per side per round, so 6 rounds gave it 6 samples, and
# its ratio moved by up to ~0.1 between runs of the full grid. The full grid gives every
# point at least 12 (about 50 s more for the run).
DEFAULT_MIN_REPEATS = {"tiny": 5, "small": 5, "full": 12}


@dataclass
class BenchConfig:
    """Everything a run depends on; saved as config.json beside the results.

    Attributes:
        grid: "tiny", "small" or "full" (see :mod:`rnnlab.bench.grid`).
        models: which of "mlp", "rnn", "lstm", "gru".
        vs: the peers timed beside rnnlab, interleaved: a tuple of "torch", "jax" (the same
            step jitted in JAX) and "reference" (rnnlab on its NumPy reference loops), or
            "none" (rnnlab alone); a single name is a one-peer tuple. Stored as a tuple in
            PEERS order.
        threads: BLAS threads for NumPy and ``torch.set_num_threads``.
        budget: seconds of timed rounds per point (None: the grid's default).
        warmup: untimed steps per side and point (fewer, at least one, once they take
            longer than ``budget``).
        min_repeats: timed steps per side and point, even past the budget (None: the grid's
            default, 12 for full, else 5).
        max_repeats: cap on timed steps per side and point (None: none).
        settle: seconds of sleep before each block of one side's steps, for the other
            side's idle threads to stop spinning (None: measured, see
            :func:`rnnlab.bench.timing.idle_spin`; 0 with ``block=0``: strict A B A B).
        block: seconds of back-to-back timed steps of one side per round.
        min_rounds: A B rounds per point, even past the budget (None: the grid's default,
            1 for tiny, 2 for small, 6 for full).
        retries: times a point is measured again when other processes kept more than
            NOISY (0.25) of a core busy meanwhile, after waiting up to ``quiet_wait``
            seconds for the machine to calm down (None: the grid's default, 0 for tiny, else 2).
        quiet_wait: see ``retries``.
        gemm_size: side of the square sgemm of the peak, and of the one timed beside the
            largest point of each model (None: the grid's default).
        gemm_budget: seconds of timed sgemm calls, at the start and again at the end
            (None: the grid's default).
        seed: weights and data.
        lr, momentum: SGD.
        memory: trace peak memory instead of timing.
        backend: rnnlab's recurrent backend, "auto", "numpy" or "numba" (None: as set; the
            default is auto when numba imports, which picks the loops by layer size).
    """

    grid: str = "small"
    models: tuple = MODELS
    vs: tuple | str = ("torch",)
    threads: int = 2
    budget: float | None = None
    warmup: int = 3
    min_repeats: int | None = None
    max_repeats: int | None = None
    settle: float | None = None
    block: float = 0.05
    min_rounds: int | None = None
    retries: int | None = None
    quiet_wait: float = 20.0
    gemm_size: int | None = None
    gemm_budget: float | None = None
    seed: int = 0
    lr: float = 0.01
    momentum: float = 0.0
    memory: bool = False
    backend: str | None = None

    def __post_init__(self):
        if self.grid not in GRIDS:
            raise ValueError(f"grid must be one of {GRIDS}, got {self.grid!r}")
        self.models = tuple(self.models)
        if not self.models or any(m not in MODELS for m in self.models):
            raise ValueError(f"models must be a non-empty subset of {MODELS}, got {self.models}")
        if self.backend not in (None, "auto", "numpy", "numba"):
            raise ValueError(f"backend must be 'auto', 'numpy' or 'numba', got {self.backend!r}")
        vs = () if self.vs == "none" else (self.vs,) if isinstance(self.vs, str) else self.vs
        unknown = [p for p in vs if p not in PEERS]
        if unknown:
            raise ValueError(f"vs must be 'none' or peers among {PEERS}, got {self.vs!r}")
        self.vs = tuple(p for p in PEERS if p in vs)
        if not isinstance(self.threads, int) or self.threads < 1:
            raise ValueError(f"threads must be a positive integer, got {self.threads!r}")
        if self.budget is None:
            self.budget = DEFAULT_BUDGET[self.grid]
        if self.gemm_size is None:
            self.gemm_size = DEFAULT_GEMM_SIZE[self.grid]
        if self.gemm_budget is None:
            self.gemm_budget = DEFAULT_GEMM_BUDGET[self.grid]
        if self.min_rounds is None:
            self.min_rounds = DEFAULT_MIN_ROUNDS[self.grid]
        if self.min_repeats is None:
            self.min_repeats = DEFAULT_MIN_REPEATS[self.grid]
        if self.retries is None:
            self.retries = DEFAULT_RETRIES[self.grid]
        if self.retries < 0 or self.quiet_wait < 0:
            raise ValueError(f"retries and quiet_wait must be >= 0, got "
                             f"{self.retries}, {self.quiet_wait}")
        if not self.budget > 0:
            raise ValueError(f"budget must be > 0 seconds, got {self.budget!r}")
        if self.warmup < 0 or self.min_repeats < 1 or self.min_rounds < 1:
            raise ValueError(f"need warmup >= 0, min_repeats >= 1 and min_rounds >= 1, got "
                             f"{self.warmup}, {self.min_repeats}, {self.min_rounds}")
        if (self.settle is not None and self.settle < 0) or self.block < 0:
            raise ValueError(f"settle and block must be >= 0 seconds, got "
                             f"{self.settle}, {self.block}")

    def as_dict(self) -> dict:
        return asdict(self)


def default_out_dir(now: _dt.datetime | None = None) -> Path:
    """runs/bench-<YYYYmmdd-HHMMSS>/ under the current directory."""
    now = now or _dt.datetime.now()
    return Path("runs") / f"bench-{now:%Y%m%d-%H%M%S}"
