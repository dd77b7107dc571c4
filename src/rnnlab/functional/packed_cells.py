"""One step of each recurrent cell on the active rows of a packed batch, forward and backward.

:mod:`rnnlab.functional.packed_recurrent` runs the sweep over the steps of a
packed batch and hands each step's rows to a cell object from this module.
A cell owns its equations (the same as :mod:`rnnlab.functional.recurrent`'s,
where they are derived) and the buffers they need; the sweep owns which rows
are active, where each row's previous state lives, and the GEMMs over all
rows. A new cell is a new class with the five methods of :class:`Cell`.

Every step works on views of b rows (the active prefix) of buffers allocated
once per sweep, with in-place NumPy calls: no allocation inside the loop.
"""

from __future__ import annotations

import numpy as np

from ._loops_numpy import _sigmoid_

__all__ = ["Cell", "RNNStep", "LSTMStep", "cell_for"]


class Cell:
    """The contract between a cell and the packed sweep (shapes: S packed rows, N sequences).

    Attributes:
        gates: G, the rows of W_ih per hidden unit.
        n_states: the carried states (h, or h and c); h is always the first, and the output.
    """

    gates = 1
    n_states = 1

    def input_bias(self, bias_ih, bias_hh):
        """The bias added once to the input projection X W_ihᵀ (G·H,), or None."""
        return bias_ih if bias_hh is None else bias_hh if bias_ih is None else bias_ih + bias_hh

    def forward_buffers(self, S: int, N: int, H: int, dtype) -> dict:
        """Buffers of one sweep: "pre" (S, G·H) receives X W_ihᵀ + bias, "states" a tuple of
        n_states (N + S, H) arrays (the N initial states, then each row's new state), plus
        what the cell keeps for its backward."""
        raise NotImplementedError

    def workspace(self, N: int, H: int, dtype) -> dict:
        """Scratch arrays of N rows, of which a step uses the first b."""
        raise NotImplementedError

    def forward_step(self, rows: slice, prev, new, bufs, weight_hh_t, skip_recurrent, work):
        """One step: ``prev`` and ``new`` are tuples of (b, H) views (the rows' previous and
        new states); ``bufs["pre"][rows]`` holds the input part. ``skip_recurrent``: the
        previous h is zero, so its product with W_hh is too."""
        raise NotImplementedError

    def backward_begin(self, bufs) -> None:
        """Work done for all rows at once before the first backward step (none by default)."""

    def backward_step(self, rows: slice, prev, bufs, dstates, weight_hh, need_dh, work):
        """One step of BPTT: ``dstates`` (b, H) views enter as dL/d(new states) and leave as
        dL/d(previous states) (dh left stale when ``need_dh`` is False); the step writes its
        pre-activation gradients where :meth:`pre_grads` finds them."""
        raise NotImplementedError

    def pre_grads(self, bufs):
        """(dL/d(X W_ihᵀ) (S, G·H), dL/d(h_prev W_hhᵀ) (S, G·H)) after the last backward step;
        the same array for cells whose recurrent product enters the pre-activation unchanged."""
        raise NotImplementedError


class RNNStep(Cell):
    """Elman step ``h = act(pre + h_prev W_hhᵀ)``, pre = x W_ihᵀ + b_ih + b_hh.

    Backward: ``dpre = dh ⊙ act'``, with act' = 1 - h² (tanh) or 1[h > 0] (relu);
    ``dh_prev = dpre W_hh``.
    """

    gates = 1
    n_states = 1

    def __init__(self, nonlinearity: str = "tanh"):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        self.relu = nonlinearity == "relu"

    def forward_buffers(self, S, N, H, dtype):
        h = np.empty((N + S, H), dtype=dtype)
        return {"states": (h,), "pre": h[N:]}  # pre_t is written where h_t will be

    def workspace(self, N, H, dtype):
        return {"recur": np.empty((N, H), dtype=dtype)}

    def forward_step(self, rows, prev, new, bufs, weight_hh_t, skip_recurrent, work):
        (h,) = new  # (b, H), holding pre_t
        if not skip_recurrent:
            h += np.matmul(prev[0], weight_hh_t, out=work["recur"][:h.shape[0]])
        if self.relu:
            np.maximum(h, 0, out=h)
        else:
            np.tanh(h, out=h)

    def backward_begin(self, bufs):
        """act' of every row at once, from the outputs; the steps multiply dh into it."""
        out = bufs["pre"]  # (S, H): h of every row
        d_pre = np.empty_like(out)
        if self.relu:
            np.greater(out, 0, out=d_pre)
        else:
            np.multiply(out, out, out=d_pre)
            np.subtract(1, d_pre, out=d_pre)
        bufs["d_pre"] = d_pre

    def backward_step(self, rows, prev, bufs, dstates, weight_hh, need_dh, work):
        (dh,) = dstates
        d_pre = bufs["d_pre"][rows]  # (b, H)
        d_pre *= dh
        if need_dh:
            np.matmul(d_pre, weight_hh, out=dh)

    def pre_grads(self, bufs):
        return bufs["d_pre"], bufs["d_pre"]


class LSTMStep(Cell):
    """LSTM step, gates i, f, g, o fused::

        pre = x W_ihᵀ + b_ih + b_hh + h_prev W_hhᵀ                 (b, 4H)
        i, f, o = σ(pre_i), σ(pre_f), σ(pre_o);  g = tanh(pre_g)
        c = f ⊙ c_prev + i ⊙ g;  h = o ⊙ tanh(c)

    Backward, with dh and dc entering as dL/dh, dL/dc of this step::

        do = dh ⊙ tanh(c);  dc += dh ⊙ o ⊙ (1 - tanh²(c))
        di = dc ⊙ g;  df = dc ⊙ c_prev;  dg = dc ⊙ i;  dc_prev = dc ⊙ f
        dpre = [di ⊙ i(1-i), df ⊙ f(1-f), dg ⊙ (1-g²), do ⊙ o(1-o)];  dh_prev = dpre W_hh

    The gate buffer holds pre, then [i f g o], then dpre (written over the activations).
    """

    gates = 4
    n_states = 2

    def forward_buffers(self, S, N, H, dtype):
        return {"pre": np.empty((S, 4 * H), dtype=dtype),
                "states": (np.empty((N + S, H), dtype=dtype), np.empty((N + S, H), dtype=dtype)),
                "tanh_c": np.empty((S, H), dtype=dtype)}

    def workspace(self, N, H, dtype):
        return {"recur": np.empty((N, 4 * H), dtype=dtype),  # h_prev W_hhᵀ, then d[i f g o]
                "local": np.empty((N, 4 * H), dtype=dtype),  # d[i f g o]/dpre
                "g": np.empty((N, H), dtype=dtype), "tmp": np.empty((N, H), dtype=dtype)}

    def forward_step(self, rows, prev, new, bufs, weight_hh_t, skip_recurrent, work):
        pre = bufs["pre"][rows]  # (b, 4H)
        b, H = pre.shape[0], pre.shape[1] // 4
        (h_prev, c_prev), (h, c) = prev, new
        tanh_c = bufs["tanh_c"][rows]
        if not skip_recurrent:
            pre += np.matmul(h_prev, weight_hh_t, out=work["recur"][:b])
        g = work["g"][:b]
        np.tanh(pre[:, 2 * H:3 * H], out=g)  # g first: σ then runs over the whole block
        _sigmoid_(pre)
        pre[:, 2 * H:3 * H] = g
        np.multiply(pre[:, H:2 * H], c_prev, out=c)
        i_g = work["tmp"][:b]
        np.multiply(pre[:, :H], g, out=i_g)
        c += i_g
        np.tanh(c, out=tanh_c)
        np.multiply(pre[:, 3 * H:], tanh_c, out=h)

    def backward_step(self, rows, prev, bufs, dstates, weight_hh, need_dh, work):
        act = bufs["pre"][rows]  # (b, 4H): [i f g o], to be replaced by dpre
        b, H = act.shape[0], act.shape[1] // 4
        i, f, g, o = act[:, :H], act[:, H:2 * H], act[:, 2 * H:3 * H], act[:, 3 * H:]
        tanh_c, c_prev = bufs["tanh_c"][rows], prev[1]
        dh, dc = dstates
        up = work["recur"][:b]  # dL/d[i f g o]
        np.multiply(dh, tanh_c, out=up[:, 3 * H:])
        dh *= o  # dL/dtanh(c)
        tanh_sq = work["tmp"][:b]
        np.multiply(tanh_c, tanh_c, out=tanh_sq)
        np.subtract(1, tanh_sq, out=tanh_sq)
        dh *= tanh_sq
        dc += dh  # dL/dc, whole
        np.multiply(dc, g, out=up[:, :H])
        np.multiply(dc, c_prev, out=up[:, H:2 * H])
        np.multiply(dc, i, out=up[:, 2 * H:3 * H])
        dc *= f  # dL/dc_prev
        local = work["local"][:b]
        np.subtract(1, act, out=local)
        local *= act  # s(1 - s); the g slot is redone below
        np.multiply(g, g, out=local[:, 2 * H:3 * H])
        np.subtract(1, local[:, 2 * H:3 * H], out=local[:, 2 * H:3 * H])
        np.multiply(up, local, out=act)
        if need_dh:
            np.matmul(act, weight_hh, out=dh)

    def pre_grads(self, bufs):
        return bufs["pre"], bufs["pre"]


def cell_for(mode: str, nonlinearity: str = "tanh") -> Cell:
    """The step of a layer's mode: "RNN" (with its nonlinearity) or "LSTM"."""
    if mode == "LSTM":
        return LSTMStep()
    if mode == "RNN":
        return RNNStep(nonlinearity)
    raise ValueError(f"mode must be 'RNN' or 'LSTM', got {mode!r}")
