"""Loading a checkpoint into a model and optimizer: everything checked first, assigned last."""

from __future__ import annotations

from .checkpoint import (CheckpointInfo, _optimizer_param_names, _split_names, _verified,
                         read_checkpoint_info)
from .checks import check_entry, check_names, checked_value, named_parameters
from .errors import CheckpointError
from .safetensors_file import read_header

__all__ = ["load_checkpoint"]


def _restore(model_params: dict, saved_model: dict, optimizer, saved_optim) -> None:
    for name, p in model_params.items():
        p.data[...] = saved_model[name]
    if optimizer is not None:
        optimizer.load_state_dict(saved_optim)


def load_checkpoint(path, model, optimizer=None) -> CheckpointInfo:
    """Load a checkpoint into ``model`` (and ``optimizer``), checking everything first.

    Checks, in order, before any tensor byte is read: the header and metadata
    (see :func:`read_checkpoint_info`), the parameter names against
    ``model.named_parameters()``, each declared shape and dtype (exactly equal:
    a resumed run must be bit-exact); with an optimizer, its type and buffer
    names, shapes and dtypes. Then the tensors are read (the model's size, once),
    the digest verified, every value checked finite and the hyperparameters
    checked. Only when all pass are the values assigned, and should assignment
    fail anyway the previous state is put back.

    Args:
        path: a file written by :func:`save_checkpoint`.
        model: the rnnlab Module to fill, built with the checkpoint's config.
        optimizer: an rnnlab optimizer over ``model``'s parameters, or None
            (then only the weights are loaded).

    Returns:
        the :class:`CheckpointInfo` (step, config, rng state, metrics, ...).

    Raises:
        CheckpointError: anything wrong with the file or a mismatch with the
            model/optimizer. ``model`` and ``optimizer`` are then unchanged.
        TypeError: ``model``/``optimizer`` are not rnnlab objects (a caller bug).
    """
    header = read_header(path)
    path = header.path
    info = read_checkpoint_info(path)
    model_keys, optim_keys = _split_names(header)
    params = named_parameters(model)
    check_names(path, "model parameters", list(params), model_keys)
    for name, p in params.items():
        check_entry(path, f"parameter {name!r}", header.tensors[model_keys[name]], p)

    wanted = {}  # optimizer buffer key -> (index, buffer, parameter name)
    if optimizer is not None:
        names = _optimizer_param_names(params, optimizer)
        meta = info.optimizer
        if meta is None:
            raise CheckpointError(f"{path}: holds no optimizer state, but an optimizer "
                                  f"({type(optimizer).__name__}) was given to load into")
        if meta["type"] != type(optimizer).__name__:
            raise CheckpointError(f"{path}: optimizer type: expected {type(optimizer).__name__}, "
                                  f"got {meta['type'][:40]!r}")
        buffer_names = tuple(getattr(optimizer, "_buffer_names", ()))
        expected = [(b, n) for n in names for b in buffer_names]
        unexpected = sorted(k for k in optim_keys if k not in expected)
        if unexpected:
            raise CheckpointError(f"{path}: unexpected optimizer buffers "
                                  f"{[optim_keys[k][:60] for k in unexpected[:6]]}")
        for i, name in enumerate(names):
            for b in buffer_names:
                if (b, name) in optim_keys:
                    key = optim_keys[(b, name)]
                    check_entry(path, f"optimizer buffer {b!r} of {name!r}", header.tensors[key],
                                params[name])
                    wanted[key] = (i, b, name)
    else:  # the buffers are not loaded, but the digest covers them: they must fit too
        for (b, name), key in optim_keys.items():
            if name not in params:
                raise CheckpointError(f"{path}: optimizer buffer {key[:60]!r} names no "
                                      f"parameter of the model")
            check_entry(path, f"optimizer buffer {b!r} of {name!r}", header.tensors[key],
                        params[name])
    # Every tensor of the file is now known to match: read them all (the digest covers all).
    arrays = _verified(header, sorted(header.tensors))
    new_model = {name: checked_value(path, f"parameter {name!r}", arrays[model_keys[name]], p)
                 for name, p in params.items()}
    new_optim = None
    if optimizer is not None:
        buffers = {f"{i}.{b}": checked_value(path, f"optimizer buffer {b!r} of {name!r}",
                                             arrays[key], params[name])
                   for key, (i, b, name) in wanted.items()}
        new_optim = {"hyperparameters": info.optimizer["hyperparameters"],
                     "step": info.optimizer["step"], "buffers": buffers}
    del arrays
    saved_model = {name: p.data.copy() for name, p in params.items()}
    saved_optim = optimizer.state_dict() if optimizer is not None else None
    if optimizer is not None:
        # Optimizer.load_state_dict checks everything before it assigns, so a
        # rejection here leaves the optimizer as it was, and the model is untouched.
        try:
            optimizer.load_state_dict(new_optim)
        except (TypeError, ValueError, OverflowError) as exc:
            raise CheckpointError(f"{path}: optimizer state: {str(exc)[:200]}") from None
    try:
        for name, p in params.items():
            p.data[...] = new_model[name]
    except BaseException:  # e.g. Ctrl-C halfway: put everything back
        _restore(params, saved_model, optimizer, saved_optim)
        raise
    return info
