"""Benchmarks: one training step of rnnlab against its peers (torch, jax, its own NumPy
reference), interleaved, and its memory.

Public API:

- :class:`BenchConfig`, :func:`run_timing`, :func:`run_memory`,
  :func:`write_results`, :func:`render_timing`, :func:`render_memory`: a whole run;
- :func:`grid_points`, :class:`Point`: the grids and their points;
- :func:`make_pair`: the rnnlab and torch models, data and step closures of a point;
  :func:`build_sides`: every side of a point (``PEERS``), as timed;
- :func:`interleave`, :func:`summarize`, :func:`gemm_throughput`: the harness;
- :func:`step_peak_memory`: the traced peak of one training step;
- :func:`machine_facts`, :func:`pinned_threads`.
"""

from .grid import GRIDS, grid_points
from .machine import backend, current_backend, machine_facts, pinned_threads
from .memory import step_peak_memory
from .models import Point, SequenceRegressor, StepPair, import_torch, make_pair
from .config import PEERS, BenchConfig, default_out_dir
from .peers import build_sides
from .render import memory_markdown, render_memory, render_timing, timing_markdown, write_results
from .runner import run_memory, run_timing, summarize_ratios
from .timing import Stats, gemm_throughput, idle_spin, interleave, percentile, summarize

__all__ = [
    "GRIDS", "grid_points", "Point", "SequenceRegressor", "StepPair", "make_pair", "import_torch",
    "BenchConfig", "PEERS", "build_sides", "run_timing", "run_memory", "write_results", "default_out_dir",
    "render_timing", "render_memory", "summarize_ratios", "timing_markdown", "memory_markdown",
    "Stats", "percentile", "summarize", "interleave", "idle_spin", "gemm_throughput",
    "step_peak_memory", "machine_facts", "pinned_threads", "backend", "current_backend",
]
