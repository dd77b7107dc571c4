"""The packed path of RNN and LSTM: layers and directions over a PackedSequence.

The layer calls :func:`forward_packed` when its input is a
:class:`~rnnlab.nn.utils.rnn.PackedSequence`, and its backward then calls
:func:`backward_packed`. Each layer and direction runs
:func:`rnnlab.functional.packed_recurrent.packed_forward` on the packed rows;
the layers of a bidirectional stack read the two directions' outputs side by
side, (S, 2H). States go in and out in the caller's batch order, as in torch:
h0/c0 and the gradients of h_n/c_n are permuted to the packed (sorted) order
with ``sorted_indices``, h_n/c_n and dh0/dc0 back with ``unsorted_indices``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..functional.packed_layout import PackedLayout, check_batch_sizes
from ..functional.packed_recurrent import packed_backward, packed_forward, step_for
from ._checks import check_array
from .module import grad_sinks
from .utils.rnn import PackedSequence, _check_packed


class PackedCache(NamedTuple):
    """What the backward of a packed forward needs."""

    caches: list  # one functional cache per layer and direction
    batch_sizes: np.ndarray  # (T,)
    sorted_indices: np.ndarray | None  # (N,)
    unsorted_indices: np.ndarray | None  # (N,)
    output_shape: tuple  # (S, D·H)


def _to_sorted(arrays, sorted_indices):
    """(L·D, N, H) arrays in the caller's order -> the packed order (None entries stay)."""
    if sorted_indices is None:
        return tuple(arrays)
    return tuple(None if a is None else a[:, sorted_indices] for a in arrays)


def forward_packed(layer, packed, hx):
    """``layer(packed, hx)`` -> (PackedSequence of the outputs (S, D·H), tuple of final
    states (L·D, N, H) in the caller's order); leaves a :class:`PackedCache` on the layer."""
    name = type(layer).__name__
    data = _check_packed(packed, f"{name} input")
    check_array(data, f"{name} input PackedSequence.data", layer.dtype, ndims=(2,),
                last_dim=layer.input_size)
    batch_sizes = check_batch_sizes(packed.batch_sizes, f"{name} input", rows=data.shape[0])
    layout = PackedLayout(batch_sizes)
    states = _to_sorted(layer._check_states(hx, True, layout.batch), packed.sorted_indices)
    cell = step_for(layer.mode, layer.nonlinearity, layout.batch, layer.hidden_size)
    D = layer.num_directions
    caches, finals = [], [[] for _ in range(layer._n_states)]
    layer_input = np.ascontiguousarray(data)  # (S, I)
    for k in range(layer.num_layers):
        outputs = []
        for direction in range(D):
            index = k * D + direction
            initial = tuple(None if s is None else s[index] for s in states)  # (N, H) each
            (out, final), cache = packed_forward(
                cell, layer_input, batch_sizes, initial, *layer._weights(layer._suffixes[index]),
                reverse=direction == 1, layout=layout)
            outputs.append(out)
            caches.append(cache)
            for store, f in zip(finals, final):
                store.append(f)
        layer_input = outputs[0] if D == 1 else np.concatenate(outputs, axis=1)  # (S, D·H)
    finals = tuple(np.stack(f) for f in finals)  # (L·D, N, H) each, packed order
    if packed.unsorted_indices is not None:
        finals = tuple(f[:, packed.unsorted_indices] for f in finals)
    layer._cache = PackedCache(caches, batch_sizes, packed.sorted_indices,
                               packed.unsorted_indices, layer_input.shape)
    return PackedSequence(layer_input, batch_sizes, packed.sorted_indices,
                          packed.unsorted_indices), finals


def _check_grad_output(layer, grad_output, cache: PackedCache) -> np.ndarray:
    """The data (S, D·H) of the output's gradient, a PackedSequence laid out as the output."""
    name = type(layer).__name__
    if not isinstance(grad_output, PackedSequence):
        raise TypeError(f"{name} grad_output: expected a PackedSequence (the forward took one; "
                        f"pack a padded gradient with pack_padded_sequence(grad, lengths, ...)), "
                        f"got {type(grad_output).__name__}")
    data = _check_packed(grad_output, f"{name} grad_output")
    batch_sizes = check_batch_sizes(grad_output.batch_sizes, f"{name} grad_output")
    if not np.array_equal(batch_sizes, cache.batch_sizes):
        raise ValueError(f"{name} grad_output: expected batch_sizes {cache.batch_sizes.tolist()} "
                         f"(the output's), got {batch_sizes.tolist()}")
    want, got = cache.sorted_indices, grad_output.sorted_indices
    if (want is None) != (got is None) or (want is not None and not np.array_equal(want, got)):
        raise ValueError(f"{name} grad_output: expected sorted_indices "
                         f"{None if want is None else want.tolist()} (the output's), got "
                         f"{None if got is None else got.tolist()}")
    return check_array(data, f"{name} grad_output PackedSequence.data", layer.dtype,
                       shape=cache.output_shape)


def backward_packed(layer, grad_output, grad_states, input_grad=True, state_grad=True):
    """Backward of :func:`forward_packed`: grad_output a PackedSequence like the output (or
    None), grad_states a tuple like the final states (entries may be None). Adds every
    parameter gradient into ``param.grad``. Returns (PackedSequence of the input's
    gradient (S, I) or None without ``input_grad``, tuple of initial-state gradients
    (L·D, N, H) in the caller's order, or None without ``state_grad``)."""
    cache: PackedCache = layer._cache
    name = type(layer).__name__
    grad_data = None if grad_output is None else _check_grad_output(layer, grad_output, cache)
    N = int(cache.batch_sizes[0])
    L_D, H, D = layer.num_layers * layer.num_directions, layer.hidden_size, layer.num_directions
    for k, g in enumerate(grad_states):
        if g is not None:
            check_array(g, f"{name} grad of final state {k}", layer.dtype, shape=(L_D, N, H))
    grad_states = _to_sorted(grad_states, cache.sorted_indices)
    layer._cache = None  # the LSTM backward consumes its buffers

    grad_initial = [np.empty((L_D, N, H), dtype=layer.dtype) for _ in grad_states] \
        if state_grad else None
    grad_layer_out = grad_data  # (S, D·H) or None
    for k in reversed(range(layer.num_layers)):
        grad_x = None
        for direction in range(D):
            index = k * D + direction
            grad_dir = None if grad_layer_out is None \
                else grad_layer_out[:, direction * H:(direction + 1) * H]
            with grad_sinks(layer._params(layer._suffixes[index])) as (accumulate, overwrite):
                gx, g_init, _ = packed_backward(
                    cache.caches[index], grad_dir,
                    tuple(None if g is None else g[index] for g in grad_states),
                    input_grad=input_grad or k > 0, accumulate=accumulate, overwrite=overwrite,
                    state_grad=state_grad)
            for store, g in zip(grad_initial or (), g_init or ()):
                store[index] = g
            grad_x = gx if grad_x is None else grad_x + gx
        grad_layer_out = grad_x  # (S, input of this layer)
    if state_grad and cache.unsorted_indices is not None:
        grad_initial = [g[:, cache.unsorted_indices] for g in grad_initial]
    packed_grad = None if grad_layer_out is None else PackedSequence(
        grad_layer_out, cache.batch_sizes, cache.sorted_indices, cache.unsorted_indices)
    return packed_grad, None if grad_initial is None else tuple(grad_initial)
