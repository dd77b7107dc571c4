"""The packed LSTM step with its elementwise work compiled: a drop-in for
:class:`rnnlab.functional.packed_cells.LSTMStep`, chosen by
:func:`rnnlab.functional.packed_recurrent.step_for`.

Same equations, same buffers and products. What differs is the gate buffer's
contents between forward and backward: the half-angle values
[τ_i, τ_f, g, τ_o], τ = tanh(pre/2), that the compiled passes of
:mod:`.loops_fused` read (σ = ½ + ½τ, σ' = ¼(1 - τ²)). Per step the forward is
the recurrent GEMM, one ``tanh`` over the four gates, one pass for c, ``tanh(c)``
and one pass for h; the backward one pass for all gate gradients and dc, then
the dh GEMM: a handful of calls in place of the reference's twenty or so.
"""

from __future__ import annotations

import numpy as np

from .loops_fused import _cell, _gate_gradients, _hidden
from ..functional.packed_cells import LSTMStep

__all__ = ["FusedLSTMStep"]


class FusedLSTMStep(LSTMStep):
    """:class:`LSTMStep` with the passes of :mod:`.loops_fused`; its caches are its own."""

    def workspace(self, N, H, dtype):
        return {"recur": np.empty((N, 4 * H), dtype=dtype),
                "no_grad": np.zeros((1, 1), dtype=dtype)}  # the sweep adds grad_output to dh

    def forward_step(self, rows, prev, new, bufs, weight_hh_t, bias_hh, skip_recurrent, work):
        pre = bufs["pre"][rows]  # (b, 4H), i, f, o rows halved (see LSTMStep.row_scale)
        (h_prev, c_prev), (h, c) = prev, new
        tanh_c = bufs["tanh_c"][rows]
        if not skip_recurrent:
            pre += np.matmul(h_prev, weight_hh_t, out=work["recur"][:pre.shape[0]])
        np.tanh(pre, out=pre)  # [τ_i, τ_f, g, τ_o], kept as such
        half = pre.dtype.type(0.5)  # a Python float would make float32 kernels run in float64
        _cell(pre, c_prev, c, half)
        np.tanh(c, out=tanh_c)
        _hidden(pre, tanh_c, h, half)

    def backward_step(self, rows, prev, bufs, dstates, weight_hh, need_dh, work):
        act = bufs["pre"][rows]  # [τ_i, τ_f, g, τ_o] -> dL/dpre
        dh, dc = dstates
        _gate_gradients(act, bufs["tanh_c"][rows], prev[1], work["no_grad"], False, dh, dc,
                        act.dtype.type(0.5))
        if need_dh:
            np.matmul(act, weight_hh, out=dh)

