"""One step of each recurrent cell on the active rows of a packed batch, forward and backward.

:mod:`rnnlab.functional.packed_recurrent` runs the sweep over the steps of a
packed batch and hands each step's rows to a cell object from this module.
A cell owns its equations (the same as :mod:`rnnlab.functional.recurrent`'s,
where they are derived) and the buffers they need; the sweep owns which rows
are active, where each row's previous state lives, and the GEMMs over all
rows. A new cell is a subclass of :class:`Cell` that fills in its methods
(the GRU's, a third cell, came that way).

Every step works on views of b rows (the active prefix) of buffers allocated
once per sweep, with in-place NumPy calls: no allocation inside the loop.
"""

from __future__ import annotations

import numpy as np

from ._loops_numpy import _sigmoid_
from .recurrent import _bias_sum

__all__ = ["Cell", "RNNStep", "LSTMStep", "GRUStep", "cell_for"]


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
        return _bias_sum(bias_ih, bias_hh)

    def row_scale(self, H: int, dtype):
        """(G·H,) factors for the rows of W_ih, W_hh and the input bias in the forward, or None:
        the pre-activations the steps receive are then scaled by them."""
        return None

    def forward_buffers(self, S: int, N: int, H: int, dtype) -> dict:
        """Buffers of one sweep: "pre" (S, G·H) receives X W_ihᵀ + bias, "states" a tuple of
        n_states (N + S, H) arrays (the N initial states, then each row's new state), plus
        what the cell keeps for its backward."""
        raise NotImplementedError

    def workspace(self, N: int, H: int, dtype) -> dict:
        """Scratch arrays of N rows, of which a step uses the first b."""
        raise NotImplementedError

    def forward_step(self, rows: slice, prev, new, bufs, weight_hh_t, bias_hh, skip_recurrent,
                     work):
        """One step: ``prev`` and ``new`` are tuples of (b, H) views (the rows' previous and
        new states); ``bufs["pre"][rows]`` holds the input part. ``bias_hh`` is for cells
        whose :meth:`input_bias` leaves it out. ``skip_recurrent``: the previous h is zero,
        so its product with W_hh is too."""
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

    def forward_step(self, rows, prev, new, bufs, weight_hh_t, bias_hh, skip_recurrent, work):
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

    σ is taken as σ(x) = ½ + ½ tanh(x/2), so that one ``tanh`` runs over all four gates:
    :meth:`row_scale` puts the ½ into the i, f, o rows of the weights and bias (exact in
    floating point), and the step turns τ = tanh(pre/2) into σ = ½ + ½τ.

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

    def row_scale(self, H, dtype):
        scale = np.full(4 * H, 0.5, dtype=dtype)  # ½ for i, f, o: the half angle
        scale[2 * H:3 * H] = 1
        return scale

    def workspace(self, N, H, dtype):
        return {"recur": np.empty((N, 4 * H), dtype=dtype),  # h_prev W_hhᵀ, then d[i f g o]
                "local": np.empty((N, 4 * H), dtype=dtype),  # d[i f g o]/dpre
                "tmp": np.empty((N, H), dtype=dtype)}

    def forward_step(self, rows, prev, new, bufs, weight_hh_t, bias_hh, skip_recurrent, work):
        pre = bufs["pre"][rows]  # (b, 4H)
        b, H = pre.shape[0], pre.shape[1] // 4
        (h_prev, c_prev), (h, c) = prev, new
        tanh_c = bufs["tanh_c"][rows]
        if not skip_recurrent:
            pre += np.matmul(h_prev, weight_hh_t, out=work["recur"][:b])  # i, f, o rows halved
        np.tanh(pre, out=pre)  # [τ_i, τ_f, g, τ_o]
        for sig in (pre[:, :2 * H], pre[:, 3 * H:]):  # σ = ½ + ½τ
            sig *= 0.5
            sig += 0.5
        np.multiply(pre[:, H:2 * H], c_prev, out=c)
        i_g = work["tmp"][:b]
        np.multiply(pre[:, :H], pre[:, 2 * H:3 * H], out=i_g)
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


class GRUStep(Cell):
    """GRU step, gates r, z, n (torch's order); b_hn sits inside the reset gate's product,
    so the recurrent part gh is kept apart from the input part gx::

        gx = x W_ihᵀ + b_ih;  gh = h_prev W_hhᵀ + b_hh                (b, 3H) each
        r = σ(gx_r + gh_r);  z = σ(gx_z + gh_z);  n = tanh(gx_n + r ⊙ gh_n)
        h = (1 - z) ⊙ n + z ⊙ h_prev = n + z ⊙ (h_prev - n)

    Backward, with dh entering as dL/dh of this step::

        dz = dh ⊙ (h_prev - n);  dgx_n = dh ⊙ (1 - z) ⊙ (1 - n²);  dgh_n = dgx_n ⊙ r
        dgx_r = dgh_r = dgx_n ⊙ gh_n ⊙ r(1 - r);  dgx_z = dgh_z = dz ⊙ z(1 - z)
        dh_prev = dh ⊙ z + dgh W_hh

    gx holds gx, then [r z n], then dgx; gh holds gh, then dgh.
    """

    gates = 3
    n_states = 1

    def input_bias(self, bias_ih, bias_hh):
        return bias_ih  # b_hh enters with each step's recurrent product

    def forward_buffers(self, S, N, H, dtype):
        return {"pre": np.empty((S, 3 * H), dtype=dtype), "gh": np.empty((S, 3 * H), dtype=dtype),
                "states": (np.empty((N + S, H), dtype=dtype),)}

    def workspace(self, N, H, dtype):
        return {k: np.empty((N, H), dtype=dtype) for k in ("a", "b", "c")}

    def forward_step(self, rows, prev, new, bufs, weight_hh_t, bias_hh, skip_recurrent, work):
        gx, gh = bufs["pre"][rows], bufs["gh"][rows]  # (b, 3H) each
        H = gx.shape[1] // 3
        (h_prev,), (h,) = prev, new
        if skip_recurrent:
            gh[...] = 0 if bias_hh is None else bias_hh
        else:
            np.matmul(h_prev, weight_hh_t, out=gh)
            if bias_hh is not None:
                gh += bias_hh
        r_z = gx[:, :2 * H]
        r_z += gh[:, :2 * H]
        _sigmoid_(r_z)
        n = gx[:, 2 * H:]
        r_gh_n = work["a"][:gx.shape[0]]
        np.multiply(gx[:, :H], gh[:, 2 * H:], out=r_gh_n)
        n += r_gh_n
        np.tanh(n, out=n)
        np.subtract(h_prev, n, out=h)
        h *= gx[:, H:2 * H]
        h += n

    def backward_step(self, rows, prev, bufs, dstates, weight_hh, need_dh, work):
        gx, gh = bufs["pre"][rows], bufs["gh"][rows]  # [r z n], gh; become dgx, dgh
        b, H = gx.shape[0], gx.shape[1] // 3
        r, z, n, gh_n = gx[:, :H], gx[:, H:2 * H], gx[:, 2 * H:], gh[:, 2 * H:]
        (h_prev,), (dh,) = prev, dstates
        d_z, d_n, tmp = work["a"][:b], work["b"][:b], work["c"][:b]
        np.subtract(h_prev, n, out=d_z)
        d_z *= dh
        np.subtract(1, z, out=d_n)
        d_n *= dh
        dh *= z  # the direct path h_prev -> h; the product with W_hh is added below
        np.multiply(n, n, out=tmp)
        np.subtract(1, tmp, out=tmp)
        d_n *= tmp  # dgx_n
        np.subtract(1, z, out=tmp)
        tmp *= z
        d_z *= tmp  # dgx_z = dgh_z
        np.multiply(d_n, gh_n, out=tmp)  # dL/dr
        np.multiply(d_n, r, out=gh_n)  # dgh_n
        n[...] = d_n  # dgx_n
        np.subtract(1, r, out=d_n)
        d_n *= r
        tmp *= d_n  # dgx_r = dgh_r
        r[...] = tmp
        z[...] = d_z
        gh[:, :2 * H] = gx[:, :2 * H]
        if need_dh:
            dh += np.matmul(gh, weight_hh, out=tmp)

    def pre_grads(self, bufs):
        return bufs["pre"], bufs["gh"]


def cell_for(mode: str, nonlinearity: str = "tanh") -> Cell:
    """The step of a layer's mode: "RNN" (with its nonlinearity), "LSTM" or "GRU"."""
    if mode == "LSTM":
        return LSTMStep()
    if mode == "GRU":
        return GRUStep()
    if mode == "RNN":
        return RNNStep(nonlinearity)
    raise ValueError(f"mode must be 'RNN', 'LSTM' or 'GRU', got {mode!r}")
