"""Checks shared by the loaders: module parameters, and tensors against them (declared, then read)."""

from __future__ import annotations

import numpy as np

from .errors import CheckpointError

__all__ = ["as_saveable", "named_parameters", "check_entry", "checked_value", "check_names"]


def as_saveable(name: str, value) -> np.ndarray:
    """A C-contiguous ndarray of ``value`` (an ndarray or a torch tensor), to write."""
    if hasattr(value, "detach") and hasattr(value, "numpy"):  # a torch tensor, duck-typed
        value = value.detach().cpu().numpy()
    if not isinstance(value, np.ndarray):
        raise TypeError(f"{name!r}: expected an ndarray, got {type(value).__name__}")
    return np.ascontiguousarray(value)


def named_parameters(module) -> dict:
    """{name: Parameter} of an rnnlab module; TypeError for anything else."""
    try:
        return dict(module.named_parameters())
    except AttributeError:
        raise TypeError(f"expected an rnnlab Module, got {type(module).__name__}") from None


def check_entry(path, what: str, entry, param, *, cast: bool = False) -> None:
    """A tensor's declared shape and dtype against ``param``, before it is read."""
    if entry.shape != param.shape:
        raise CheckpointError(f"{path}: {what}: expected shape {tuple(param.shape)}, "
                              f"got {entry.shape}")
    if entry.dtype != param.dtype:
        floating = entry.dtype is not None and entry.dtype.kind == "f"
        if not (cast and floating):
            hint = " (pass cast=True to convert)" if floating else ""
            raise CheckpointError(f"{path}: {what}: expected dtype {param.dtype}, "
                                  f"got {entry.describe_dtype()}{hint}")


def checked_value(path, what: str, value: np.ndarray, param) -> np.ndarray:
    """A read tensor, finite and converted to ``param``'s dtype: the array to assign."""
    if not np.isfinite(value).all():
        bad = int(np.size(value) - np.count_nonzero(np.isfinite(value)))
        raise CheckpointError(f"{path}: {what}: contains {bad} NaN or inf value(s)")
    if value.dtype != param.dtype:
        with np.errstate(over="ignore"):
            converted = value.astype(param.dtype)
        if not np.isfinite(converted).all():
            raise CheckpointError(f"{path}: {what}: values overflow {param.dtype}")
        value = converted
    return value


def check_names(path, what: str, expected, got) -> None:
    """A CheckpointError listing the missing and unexpected names, if any."""
    missing = [k for k in expected if k not in got]
    unexpected = sorted(k for k in got if k not in expected)
    if missing or unexpected:
        raise CheckpointError(f"{path}: {what} do not match: missing {missing[:6]}"
                              f"{' ...' if len(missing) > 6 else ''}, unexpected "
                              f"{[k[:60] for k in unexpected[:6]]}"
                              f"{' ...' if len(unexpected) > 6 else ''}")
