"""The GRU's time loops for large steps: NumPy's forward, a fused compiled backward.

Same signatures and equations as the GRU loops of
:mod:`rnnlab.functional._loops_numpy`, and the same buffers, so a cache
written by one backend's forward is read right by another's backward.

- Forward: the NumPy reference. Its exp and tanh run on NumPy's SIMD
  ufuncs, which a compiled pass with scalar exp and tanh did not beat.
- Backward: per step, one compiled pass (the kernel of
  :mod:`rnnlab.kernels.loops_numba`: no transcendental functions, a dozen
  NumPy calls and their passes over memory in one) and the dh product.
  Measured with one BLAS thread against the reference backward:
  1.07× faster at 32 × 128, 1.25-1.55× at 8-256 × 512 and 256 × 128, 2× at 16 × 64.
- The per-step products of both directions run on a W_hh packed once per
  sequence (see :mod:`.packed_gemm`), on OpenBLAS's threads or one core, under the
  LSTM's rules and knobs (``KNOBS`` is the LSTM loops' own dict, so the planner's
  settings reach both), wherever they can run; else on NumPy's BLAS.
"""

from __future__ import annotations

import numpy as np

from ..functional import _loops_numpy
from ..functional._loops_numpy import state_views, sweep
from . import packed_gemm
from .loops_fused import KNOBS, _product_threads, _step_product  # noqa: F401 (KNOBS: the planner's)
from .loops_numba import _grad_or_dummy, gru_gates_backward

__all__ = ["gru_forward_loop", "gru_backward_loop"]


def gru_forward_loop(gates, gh_n, states, weight_hh, bias_hn, reverse, zero_start=False):
    """The NumPy reference's forward, with its products h_{t-1} W_hhᵀ (N, 3H) on a packed
    W_hhᵀ where they can run (see the module docstring)."""
    T, N, G = gates.shape
    products = T - 1 if zero_start else T
    threads = _product_threads(N, G // 3, G, gates.dtype, inner=G // 3) if products > 0 else 0
    step_product = None
    if threads:
        panels = packed_gemm.pack_transposed(weight_hh)  # W_hhᵀ (H, 3H), packed once for all steps

        def step_product(recur, prev):
            return _step_product(panels, recur, prev, threads)
    _loops_numpy.gru_forward_loop(gates, gh_n, states, weight_hh, bias_hn, reverse,
                                  zero_start=zero_start, step_product=step_product)


def gru_backward_loop(gates, gh_n, states, weight_hh, grad_output, dh, reverse, last_dh=True):
    """Overwrite gates (T, N, 3H) with dL/dgx_t and gh_n (T, N, H) with dL/dgh_n; dh (N, H)
    enters as dL/dh_T and leaves as dL/dh_0 (stale with ``last_dh=False``)."""
    T, N, G = gates.shape
    _, prev = state_views(states, reverse)
    grad_output, has = _grad_or_dummy(grad_output, gates)
    d_gh = np.empty((N, G), dtype=gates.dtype)  # dL/dgh_t = [dgx_r, dgx_z, dgh_n]
    recur = np.empty_like(dh)  # dL/dgh_t W_hh
    products = T if last_dh else T - 1
    threads = _product_threads(N, G // 3, G // 3, gates.dtype, inner=G) if products > 0 else 0
    if threads:
        panels = packed_gemm.pack_columns(weight_hh)  # W_hh (3H, H), packed once for all steps
        # The same d_gh every step: a (T, N, 3H) view of it with a zero step stride.
        product = _step_product(panels, recur, np.broadcast_to(d_gh, (T, N, G)), threads)
    for k, t in enumerate(sweep(T, not reverse)):  # BPTT runs the sweep backwards
        gru_gates_backward(gates[t], gh_n[t], prev[t], grad_output[t] if has else grad_output[0],
                           has, dh, d_gh)  # leaves dh = dh_t ⊙ z_t
        if last_dh or k < T - 1:
            if threads:
                product(t)  # recur = d_gh W_hh
            else:
                np.matmul(d_gh, weight_hh, out=recur)
            dh += recur  # dL/dh_{t-1}
