"""Safe files for models: checkpoints that cannot run code, and PyTorch interchange.

Everything here is safetensors (tensors) plus JSON (metadata). No pickle is
read or written anywhere, so opening a file that someone sent you can, at
worst, raise :class:`CheckpointError`.

Two kinds of file:

**Checkpoints** (:func:`save_checkpoint`, :func:`load_checkpoint`,
:func:`read_checkpoint`) hold a whole training state::

    tensors   "model.<parameter name>"            the weights, e.g. "model.body.weight_ih_l0"
              "optim.<buffer>.<parameter name>"    optimizer buffers, e.g.
                                                   "optim.exp_avg.body.weight_ih_l0"
    metadata  (safetensors allows str -> str only; every value but the first two is JSON)
              "format"          "rnnlab.checkpoint"
              "format_version"  "1"
              "step"            completed optimizer updates, e.g. "120"
              "config"          the run configuration (a JSON object, or null)
              "rng"             the data Generator's ``bit_generator.state`` (or null)
              "optimizer"       {"type": "Adam", "hyperparameters": {...}, "step": 120} or null
              "metrics"         a summary, e.g. {"loss": ..., "best_loss": ...}
              "sha256"          digest of every other metadata entry and of every tensor's
                                name, dtype, shape and bytes

The digest makes any change after writing (a flipped byte, a cut-off tail, an
edited header) an error rather than silently different weights.

**Torch-compatible files** (:func:`save_torch_compatible`,
:func:`load_torch_file`) hold only tensors, keyed by the torch ``state_dict``
names (rnnlab's parameter names are torch's), so that::

    torch_module.load_state_dict(safetensors.torch.load_file(path))

works for ``torch.nn.Linear``, ``RNN``, ``LSTM``, ``GRU`` and a ``Sequential`` of them,
and a file written by ``safetensors.torch.save_file(torch_module.state_dict())``
loads into the equal rnnlab module.

Loading always checks first and assigns last: names, shapes, dtypes and
finiteness of every tensor are checked against the module (and optimizer)
before anything is assigned, so a bad file leaves the objects in memory
exactly as they were.

Writing is atomic: the bytes go to a temporary file in the target folder,
which is flushed and fsynced, renamed over the target (``os.replace``), and
the folder is fsynced. A crash leaves either the old file or the new one,
never half of one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np

__all__ = [
    "CheckpointError", "CheckpointInfo", "Checkpoint", "FORMAT", "FORMAT_VERSION",
    "save_checkpoint", "load_checkpoint", "read_checkpoint",
    "save_torch_compatible", "load_torch_file", "atomic_write_bytes",
]

FORMAT = "rnnlab.checkpoint"
FORMAT_VERSION = 1

MODEL_PREFIX = "model."
OPTIM_PREFIX = "optim."
_JSON_FIELDS = ("step", "config", "rng", "optimizer", "metrics")
_METADATA_KEYS = frozenset(("format", "format_version", "sha256") + _JSON_FIELDS)


class CheckpointError(ValueError):
    """A file that cannot be loaded: unreadable, truncated, corrupted, foreign, or not
    matching the module. The message says which file and what is wrong; the objects
    the caller passed are unchanged."""


# ---------------------------------------------------------------- writing


def _fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable (POSIX; a no-op where folders cannot be opened)."""
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)
    try:
        fd = os.open(directory, flags)
    except OSError:  # e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path, data: bytes) -> Path:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never a part.

    A temporary file in the same folder is written, flushed and fsynced, then
    renamed over ``path`` with ``os.replace``; finally the folder is fsynced so
    that the rename survives a power cut. On any error (Ctrl-C included) the
    temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(directory)
    return path


def _as_saveable(name: str, value) -> np.ndarray:
    if hasattr(value, "detach") and hasattr(value, "numpy"):  # a torch tensor, duck-typed
        value = value.detach().cpu().numpy()
    if not isinstance(value, np.ndarray):
        raise TypeError(f"{name!r}: expected an ndarray, got {type(value).__name__}")
    return np.ascontiguousarray(value)


def _json(value) -> str:
    """Strict JSON (no NaN/inf: a non-finite number is refused, not written as a non-standard token)."""
    return json.dumps(value, sort_keys=True, allow_nan=False, separators=(",", ":"))


def _digest(tensors: Mapping[str, np.ndarray], metadata: Mapping[str, str]) -> str:
    """sha256 over the metadata (without "sha256") and every tensor's name, dtype, shape, bytes."""
    h = hashlib.sha256()
    h.update(_json({k: v for k, v in metadata.items() if k != "sha256"}).encode())
    for name in sorted(tensors):
        a = tensors[name]
        a = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<"))
        h.update(_json([name, a.dtype.name, list(a.shape)]).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _named_parameters(module) -> dict:
    try:
        return dict(module.named_parameters())
    except AttributeError:
        raise TypeError(f"expected an rnnlab Module, got {type(module).__name__}") from None


def _optimizer_param_names(model_params: dict, optimizer) -> list[str]:
    """The model's name of each of ``optimizer.params``, in the optimizer's order."""
    by_id = {id(p): name for name, p in model_params.items()}
    params = getattr(optimizer, "params", None)
    if params is None or not hasattr(optimizer, "state_dict"):
        raise TypeError(f"expected an rnnlab optimizer, got {type(optimizer).__name__}")
    names = []
    for i, p in enumerate(params):
        if id(p) not in by_id:
            raise ValueError(f"optimizer parameter {i} (shape {p.shape}) is not a parameter "
                             f"of the model; the checkpoint could not name its state")
        names.append(by_id[id(p)])
    return names


def save_checkpoint(path, model, optimizer=None, *, step: int = 0, config: Mapping | None = None,
                    rng=None, metrics: Mapping | None = None) -> Path:
    """Write a training checkpoint (safetensors + JSON metadata), atomically.

    Args:
        path: the file to write (its folder must exist); replaced atomically.
        model: an rnnlab Module; its parameters are stored as "model.<name>".
        optimizer: an rnnlab ``SGD``/``Adam`` over parameters of ``model``, or None.
            Its buffers are stored as "optim.<buffer>.<parameter name>", its
            type, hyperparameters and step count in the metadata.
        step: completed training steps, an int >= 0.
        config: a JSON-able mapping that describes how to rebuild the model.
        rng: a ``numpy.random.Generator`` (its ``bit_generator.state`` is stored),
            such a state dict, or None.
        metrics: a JSON-able summary (finite numbers only).

    Returns:
        the path written.

    Raises:
        ValueError: a non-finite weight or buffer (a checkpoint is never written
            from a diverged state), a negative step, or non-JSON metadata.
        TypeError: arguments of the wrong type.
    """
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
        raise ValueError(f"step must be an int >= 0, got {step!r}")
    params = _named_parameters(model)
    tensors: dict[str, np.ndarray] = {}
    for name, p in params.items():
        tensors[MODEL_PREFIX + name] = _as_saveable(name, p.data)
    optim_meta = None
    if optimizer is not None:
        names = _optimizer_param_names(params, optimizer)
        state = optimizer.state_dict()
        for key, buf in state["buffers"].items():
            index, buffer = key.split(".", 1)
            tensors[f"{OPTIM_PREFIX}{buffer}.{names[int(index)]}"] = _as_saveable(key, buf)
        optim_meta = {"type": type(optimizer).__name__,
                      "hyperparameters": dict(state["hyperparameters"]),
                      "step": int(state["step"])}
    for key, a in tensors.items():
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            raise ValueError(f"refusing to write a checkpoint: {key!r} contains NaN or inf")
    if isinstance(rng, np.random.Generator):
        rng = rng.bit_generator.state
    try:
        metadata = {"format": FORMAT, "format_version": str(FORMAT_VERSION),
                    "step": _json(int(step)), "config": _json(None if config is None else dict(config)),
                    "rng": _json(rng), "optimizer": _json(optim_meta),
                    "metrics": _json(dict(metrics or {}))}
    except (TypeError, ValueError) as exc:
        raise ValueError(f"checkpoint metadata must be JSON with finite numbers: {exc}") from None
    metadata["sha256"] = _digest(tensors, metadata)

    from safetensors.numpy import save

    return atomic_write_bytes(path, save(tensors, metadata=metadata))


# ---------------------------------------------------------------- reading


def _read_safetensors(path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """All tensors (own copies) and the metadata of a safetensors file, or CheckpointError."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder, expected a .safetensors file")
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read: {exc.strerror or exc}") from None

    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="np") as f:
            metadata = f.metadata() or {}
            tensors = {key: np.array(f.get_tensor(key), copy=True) for key in f.keys()}
    except Exception as exc:  # noqa: BLE001 - any failure to parse means a bad file
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: not a readable safetensors file (truncated, corrupted "
                              f"or another format): {detail}") from None
    return tensors, dict(metadata)


@dataclass(frozen=True)
class CheckpointInfo:
    """What a checkpoint says besides its tensors (all plain JSON values).

    Attributes:
        path: the file.
        step: completed training steps.
        config: the run configuration, or None.
        rng: a ``bit_generator.state`` dict, or None.
        optimizer: {"type", "hyperparameters", "step"}, or None.
        metrics: the metrics summary.
        format_version: the file format version.
    """

    path: Path
    step: int
    config: dict | None
    rng: dict | None
    optimizer: dict | None
    metrics: dict
    format_version: int = FORMAT_VERSION


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint file read and verified (format, metadata, digest), not yet matched to a model.

    Attributes:
        info: the metadata, parsed.
        model: {parameter name: array}.
        optim: {(buffer name, parameter name): array}.
    """

    info: CheckpointInfo
    model: dict = field(repr=False)
    optim: dict = field(repr=False)


def _parse_json(path, metadata, key, kinds):
    try:
        value = json.loads(metadata[key], parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        raise CheckpointError(f"{path}: metadata {key!r} is not valid JSON ({exc})") from None
    if not isinstance(value, kinds):
        names = " or ".join("null" if k is type(None) else k.__name__ for k in kinds)
        raise CheckpointError(f"{path}: metadata {key!r} must be {names}, "
                              f"got {type(value).__name__}")
    return value


def _no_constant(name):
    raise ValueError(f"non-finite number {name}")


def read_checkpoint(path) -> Checkpoint:
    """Read and verify a checkpoint file without touching any model.

    Use it to learn the config (to build the model) before :func:`load_checkpoint`.

    Raises:
        CheckpointError: the file is missing, unreadable, not safetensors, not an
            rnnlab checkpoint, of a newer format version, has malformed metadata,
            or fails its sha256 digest (changed after it was written).
    """
    path = Path(path)
    tensors, metadata = _read_safetensors(path)
    if metadata.get("format") != FORMAT:
        got = metadata.get("format")
        raise CheckpointError(f"{path}: not an rnnlab checkpoint: expected metadata "
                              f"format={FORMAT!r}, got "
                              f"{'no format entry' if got is None else repr(got)[:60]}"
                              f" (metadata keys {sorted(metadata)[:8]})")
    version = metadata.get("format_version")
    if version != str(FORMAT_VERSION):
        raise CheckpointError(f"{path}: checkpoint format version {version!r} is not supported "
                              f"(this rnnlab reads version {FORMAT_VERSION})")
    missing = sorted(_METADATA_KEYS - set(metadata))
    unexpected = sorted(set(metadata) - _METADATA_KEYS)
    if missing or unexpected:
        raise CheckpointError(f"{path}: checkpoint metadata: missing keys {missing}, "
                              f"unexpected keys {unexpected}")
    if _digest(tensors, metadata) != metadata["sha256"]:
        raise CheckpointError(f"{path}: sha256 digest mismatch: the file was changed or "
                              f"corrupted after it was written")

    step = _parse_json(path, metadata, "step", (int,))
    if isinstance(step, bool) or step < 0:
        raise CheckpointError(f"{path}: metadata 'step' must be an int >= 0, got {step!r}")
    config = _parse_json(path, metadata, "config", (dict, type(None)))
    rng = _parse_json(path, metadata, "rng", (dict, type(None)))
    optim_meta = _parse_json(path, metadata, "optimizer", (dict, type(None)))
    metrics = _parse_json(path, metadata, "metrics", (dict,))
    if optim_meta is not None:
        keys = {"type", "hyperparameters", "step"}
        if (set(optim_meta) != keys or not isinstance(optim_meta["type"], str)
                or not isinstance(optim_meta["hyperparameters"], dict)
                or isinstance(optim_meta["step"], bool) or not isinstance(optim_meta["step"], int)):
            raise CheckpointError(f"{path}: metadata 'optimizer' must be {{'type': str, "
                                  f"'hyperparameters': object, 'step': int}}, got "
                                  f"{_json(optim_meta)[:120]}")

    model, optim = {}, {}
    for key, value in tensors.items():
        if key.startswith(MODEL_PREFIX) and len(key) > len(MODEL_PREFIX):
            model[key[len(MODEL_PREFIX):]] = value
        elif key.startswith(OPTIM_PREFIX) and key.count(".") >= 2:
            buffer, name = key[len(OPTIM_PREFIX):].split(".", 1)
            optim[(buffer, name)] = value
        else:
            raise CheckpointError(f"{path}: unexpected tensor {key!r} (expected 'model.<name>' "
                                  f"or 'optim.<buffer>.<name>')")
    if optim and optim_meta is None:
        raise CheckpointError(f"{path}: holds optimizer buffers but no 'optimizer' metadata")
    info = CheckpointInfo(path=path, step=step, config=config, rng=rng, optimizer=optim_meta,
                          metrics=metrics)
    return Checkpoint(info=info, model=model, optim=optim)


def _check_tensor(path, what: str, value: np.ndarray, param, *, cast: bool = False) -> np.ndarray:
    """``value`` checked against ``param`` (shape, dtype, finite); returns the array to assign."""
    if value.shape != param.shape:
        raise CheckpointError(f"{path}: {what}: expected shape {tuple(param.shape)}, "
                              f"got {tuple(value.shape)}")
    if value.dtype != param.dtype:
        if not (cast and value.dtype.kind == "f"):
            hint = " (pass cast=True to convert)" if value.dtype.kind == "f" and not cast else ""
            raise CheckpointError(f"{path}: {what}: expected dtype {param.dtype}, "
                                  f"got {value.dtype}{hint}")
    if value.dtype.kind != "f":
        raise CheckpointError(f"{path}: {what}: expected a floating-point tensor, got {value.dtype}")
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


def _check_names(path, what: str, expected, got) -> None:
    missing = [k for k in expected if k not in got]
    unexpected = sorted(k for k in got if k not in expected)
    if missing or unexpected:
        raise CheckpointError(f"{path}: {what} do not match: missing {missing[:6]}"
                              f"{' ...' if len(missing) > 6 else ''}, unexpected "
                              f"{unexpected[:6]}{' ...' if len(unexpected) > 6 else ''}")


def _restore(model_params: dict, saved_model: dict, optimizer, saved_optim) -> None:
    for name, p in model_params.items():
        p.data[...] = saved_model[name]
    if optimizer is not None:
        optimizer.load_state_dict(saved_optim)


def load_checkpoint(path, model, optimizer=None) -> CheckpointInfo:
    """Load a checkpoint into ``model`` (and ``optimizer``), checking everything first.

    Checks, in order: the file (see :func:`read_checkpoint`), the parameter
    names against ``model.named_parameters()``, each shape and dtype (exactly
    equal: a resumed run must be bit-exact), finite values; then, with an
    optimizer, its type, buffer names, shapes, dtypes, finite values and the
    hyperparameters. Only when all pass are the values assigned, and should
    assignment fail anyway the previous state is put back.

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
    ckpt = read_checkpoint(path)
    path = ckpt.info.path
    params = _named_parameters(model)
    _check_names(path, "model parameters", list(params), ckpt.model)
    new_model = {name: _check_tensor(path, f"parameter {name!r}", ckpt.model[name], p)
                 for name, p in params.items()}

    new_optim = None
    if optimizer is not None:
        names = _optimizer_param_names(params, optimizer)
        meta = ckpt.info.optimizer
        if meta is None:
            raise CheckpointError(f"{path}: holds no optimizer state, but an optimizer "
                                  f"({type(optimizer).__name__}) was given to load into")
        if meta["type"] != type(optimizer).__name__:
            raise CheckpointError(f"{path}: optimizer type: expected {type(optimizer).__name__}, "
                                  f"got {meta['type']!r}")
        buffer_names = tuple(getattr(optimizer, "_buffer_names", ()))
        expected = [(b, n) for n in names for b in buffer_names]
        unexpected = sorted(k for k in ckpt.optim if k not in expected)
        if unexpected:
            raise CheckpointError(f"{path}: unexpected optimizer buffers "
                                  f"{['optim.%s.%s' % k for k in unexpected[:6]]}")
        buffers = {}
        for i, name in enumerate(names):
            for b in buffer_names:
                if (b, name) in ckpt.optim:
                    buffers[f"{i}.{b}"] = _check_tensor(
                        path, f"optimizer buffer {b!r} of {name!r}", ckpt.optim[(b, name)],
                        params[name])
        new_optim = {"hyperparameters": meta["hyperparameters"], "step": meta["step"],
                     "buffers": buffers}
    saved_model = {name: p.data.copy() for name, p in params.items()}
    saved_optim = optimizer.state_dict() if optimizer is not None else None
    if optimizer is not None:
        # Optimizer.load_state_dict checks everything before it assigns, so a
        # rejection here leaves the optimizer as it was, and the model is untouched.
        try:
            optimizer.load_state_dict(new_optim)
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"{path}: optimizer state: {exc}") from None
    try:
        for name, p in params.items():
            p.data[...] = new_model[name]
    except BaseException:  # e.g. Ctrl-C halfway: put everything back
        _restore(params, saved_model, optimizer, saved_optim)
        raise
    return ckpt.info


# ---------------------------------------------------------------- PyTorch interchange


def save_torch_compatible(module, path) -> Path:
    """Write ``module``'s weights as a safetensors file that torch loads directly.

    The keys are the torch ``state_dict`` keys (rnnlab's parameter names are
    torch's: "weight_ih_l0", "0.weight", ...), the dtypes are kept, and the
    metadata is ``{"format": "pt"}`` as ``safetensors.torch.save_file`` writes.
    Written atomically.

    Example::

        save_torch_compatible(lstm, "lstm.safetensors")
        torch_lstm.load_state_dict(safetensors.torch.load_file("lstm.safetensors"))

    Raises:
        ValueError: a parameter holds NaN or inf.
    """
    tensors = {}
    for name, p in _named_parameters(module).items():
        a = _as_saveable(name, p.data)
        if not np.isfinite(a).all():
            raise ValueError(f"refusing to write {name!r}: it contains NaN or inf")
        tensors[name] = a

    from safetensors.numpy import save

    return atomic_write_bytes(path, save(tensors, metadata={"format": "pt"}))


def load_torch_file(module, path, *, strict: bool = True, cast: bool = False) -> list[str]:
    """Load a safetensors file of torch ``state_dict`` keys into an rnnlab module.

    Reads files written by ``safetensors.torch.save_file(torch_module.state_dict())``
    (or by :func:`save_torch_compatible`) without importing torch. Every tensor
    is checked (name, shape, dtype, finite) before anything is assigned.

    Args:
        module: the rnnlab module, built with the same sizes as the torch one.
        path: the .safetensors file.
        strict: every parameter must be in the file and the file must hold
            nothing else (as torch's ``strict=True``). With False, missing and
            unexpected keys are skipped.
        cast: accept another floating dtype (e.g. a float64 torch model into a
            float32 rnnlab one) and convert; by default the dtype must match.

    Returns:
        the names loaded.

    Raises:
        CheckpointError: unreadable/corrupted file, missing or unexpected keys
            (with ``strict``), wrong shape or dtype, NaN/inf. ``module`` is then
            unchanged.
    """
    path = Path(path)
    tensors, _ = _read_safetensors(path)
    params = _named_parameters(module)
    if strict:
        _check_names(path, "state_dict keys", list(params), tensors)
    new = {name: _check_tensor(path, f"tensor {name!r}", tensors[name], p, cast=cast)
           for name, p in params.items() if name in tensors}
    if not new:
        raise CheckpointError(f"{path}: none of the module's parameters "
                              f"{list(params)[:6]} is in the file (keys {sorted(tensors)[:6]})")
    for name, value in new.items():
        params[name].data[...] = value
    return list(new)
