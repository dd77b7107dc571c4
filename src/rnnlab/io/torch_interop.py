"""PyTorch interchange: safetensors files keyed by torch ``state_dict`` names, no torch needed.

rnnlab's parameter names are torch's ("weight_ih_l0", "0.weight", ...), so::

    torch_module.load_state_dict(safetensors.torch.load_file(path))

works for a file of :func:`save_torch_compatible` (``torch.nn.Linear``, ``RNN``,
``LSTM``, ``GRU`` and a ``Sequential`` of them), and a file written by
``safetensors.torch.save_file(torch_module.state_dict())`` loads into the equal
rnnlab module with :func:`load_torch_file`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .atomic import atomic_write_bytes
from .checks import as_saveable, check_entry, check_names, checked_value, named_parameters
from .errors import CheckpointError
from .safetensors_file import read_header, read_tensor

__all__ = ["save_torch_compatible", "load_torch_file"]


def save_torch_compatible(module, path) -> Path:
    """Write ``module``'s weights as a safetensors file that torch loads directly.

    The keys are the torch ``state_dict`` keys, the dtypes are kept, and the
    metadata is ``{"format": "pt"}`` as ``safetensors.torch.save_file`` writes.
    Written atomically.

    Example::

        save_torch_compatible(lstm, "lstm.safetensors")
        torch_lstm.load_state_dict(safetensors.torch.load_file("lstm.safetensors"))

    Raises:
        ValueError: a parameter holds NaN or inf.
    """
    tensors = {}
    for name, p in named_parameters(module).items():
        a = as_saveable(name, p.data)
        if not np.isfinite(a).all():
            raise ValueError(f"refusing to write {name!r}: it contains NaN or inf")
        tensors[name] = a

    from safetensors.numpy import save

    return atomic_write_bytes(path, save(tensors, metadata={"format": "pt"}))


def load_torch_file(module, path, *, strict: bool = True, cast: bool = False) -> list[str]:
    """Load a safetensors file of torch ``state_dict`` keys into an rnnlab module.

    Reads files written by ``safetensors.torch.save_file(torch_module.state_dict())``
    (or by :func:`save_torch_compatible`) without importing torch. The header
    is checked first (names, shapes, dtypes against the module); then only the
    module's tensors are read, checked finite, and assigned.

    Args:
        module: the rnnlab module, built with the same sizes as the torch one.
        path: the .safetensors file.
        strict: every parameter must be in the file and the file must hold
            nothing else (as torch's ``strict=True``). With False, missing and
            unexpected keys are skipped (and unexpected tensors never read).
        cast: accept another floating dtype (e.g. a float64 torch model into a
            float32 rnnlab one) and convert; by default the dtype must match.

    Returns:
        the names loaded.

    Raises:
        CheckpointError: unreadable/corrupted file, missing or unexpected keys
            (with ``strict``), wrong shape or dtype, NaN/inf. ``module`` is then
            unchanged.
    """
    header = read_header(path)
    path = header.path
    params = named_parameters(module)
    if strict:
        check_names(path, "state_dict keys", list(params), header.tensors)
    names = [name for name in params if name in header.tensors]
    if not names:
        raise CheckpointError(f"{path}: none of the module's parameters "
                              f"{list(params)[:6]} is in the file (keys "
                              f"{[k[:60] for k in sorted(header.tensors)[:6]]})")
    for name in names:
        check_entry(path, f"tensor {name!r}", header.tensors[name], params[name], cast=cast)
    new = {}
    try:
        with open(path, "rb") as f:
            for name in names:
                new[name] = checked_value(path, f"tensor {name!r}", read_tensor(header, name, f),
                                          params[name])
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read: {exc.strerror or exc}") from None
    for name, value in new.items():
        params[name].data[...] = value
    return names
