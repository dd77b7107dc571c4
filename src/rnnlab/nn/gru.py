"""The GRU layer and cell, with torch's names, shapes, gate order (r, z, n) and init.

They run on the machinery of :mod:`rnnlab.nn.recurrent` (layers, directions,
layouts, input checks, gradient accumulation) with the GRU's math from
:mod:`rnnlab.functional.gru`; a state_dict moves to and from torch.nn.GRU unchanged.
"""

from __future__ import annotations

import numpy as np

from .cells import _SingleStateCell
from .recurrent import _SingleStateLayer


class GRU(_SingleStateLayer):
    """Multi-layer GRU with gates r, z, n (torch order), fused into one GEMM per step.

    Per layer and step (σ the sigmoid, ⊙ elementwise)::

        r = σ(x_t W_irᵀ + b_ir + h_{t-1} W_hrᵀ + b_hr)
        z = σ(x_t W_izᵀ + b_iz + h_{t-1} W_hzᵀ + b_hz)
        n = tanh(x_t W_inᵀ + b_in + r ⊙ (h_{t-1} W_hnᵀ + b_hn))
        h_t = (1 - z) ⊙ n + z ⊙ h_{t-1}

    Args: as :class:`rnnlab.nn.RNN`, without ``nonlinearity``.

    Shape (D = 2 if bidirectional else 1, L = num_layers):
        input (T, N, I), (N, T, I) with batch_first, or (T, I) unbatched;
        h0 (L·D, N, H), or (L·D, H) unbatched; None means zeros.
        output (T, N, D·H) (batch_first: (N, T, D·H)); h_n (L·D, N, H).

    Attributes:
        weight_ih_l{k}[_reverse]: (3H, I) for k = 0, (3H, D·H) after, rows [W_ir; W_iz; W_in].
        weight_hh_l{k}[_reverse]: (3H, H), rows [W_hr; W_hz; W_hn];
        bias_ih_l{k}, bias_hh_l{k}: (3H,). All drawn from U(-1/√H, 1/√H).
    """

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 bidirectional=False, *, dtype=np.float32, rng=None):
        super().__init__("GRU", input_size, hidden_size, num_layers, "tanh", bias,
                         batch_first, bidirectional, dtype=dtype, rng=rng)


class GRUCell(_SingleStateCell):
    """One GRU step: r, z, n as in :class:`GRU`, ``h' = (1 - z) ⊙ n + z ⊙ h``.

    Shape: x (N, I) or (I,); h (N, H) or (H,), None for zeros -> h' like h.
    Attributes: weight_ih (3H, I), weight_hh (3H, H), bias_ih, bias_hh (3H,), U(-1/√H, 1/√H).
    """

    def __init__(self, input_size, hidden_size, bias=True, *, dtype=np.float32, rng=None):
        super().__init__("GRU", input_size, hidden_size, bias, "tanh", dtype, rng)
