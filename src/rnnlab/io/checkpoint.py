"""Training checkpoints: a safetensors file of weights and optimizer buffers, plus JSON metadata.

Layout::

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
edited header) an error rather than silently different weights. It checks
integrity, not authorship: anyone can write a file with a valid digest, so
what a file says is validated field by field like any other input.

Loading (:mod:`~rnnlab.io.checkpoint_load`) checks the header first (format,
metadata, tensor names, dtypes and shapes against the model and optimizer), then
reads only those tensors, each into one new array, verifies the digest and
finiteness, and assigns last.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np

from .atomic import atomic_write_bytes
from .checks import as_saveable, named_parameters
from .errors import CheckpointError
from .safetensors_file import Header, read_header, read_tensor

__all__ = ["FORMAT", "FORMAT_VERSION", "CheckpointInfo", "Checkpoint", "save_checkpoint",
           "read_checkpoint", "read_checkpoint_info"]

FORMAT = "rnnlab.checkpoint"
FORMAT_VERSION = 1

MODEL_PREFIX = "model."
OPTIM_PREFIX = "optim."
_JSON_FIELDS = ("step", "config", "rng", "optimizer", "metrics")
_METADATA_KEYS = frozenset(("format", "format_version", "sha256") + _JSON_FIELDS)
_MAX_STEP = 2 ** 53  # steps are counted in Python ints but stored in JSON: keep them exact


# ---------------------------------------------------------------- writing


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
        h.update(memoryview(a.reshape(-1).view(np.uint8)) if a.size else b"")
    return h.hexdigest()


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
    params = named_parameters(model)
    tensors: dict[str, np.ndarray] = {}
    for name, p in params.items():
        tensors[MODEL_PREFIX + name] = as_saveable(name, p.data)
    optim_meta = None
    if optimizer is not None:
        names = _optimizer_param_names(params, optimizer)
        state = optimizer.state_dict()
        for key, buf in state["buffers"].items():
            index, buffer = key.split(".", 1)
            tensors[f"{OPTIM_PREFIX}{buffer}.{names[int(index)]}"] = as_saveable(key, buf)
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


def _no_constant(name):
    raise ValueError(f"non-finite number {name}")


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


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _MAX_STEP


def _info(header: Header) -> CheckpointInfo:
    """The metadata of a checked header, validated; CheckpointError names what is wrong."""
    path, metadata = header.path, header.metadata
    if metadata.get("format") != FORMAT:
        got = metadata.get("format")
        raise CheckpointError(f"{path}: not an rnnlab checkpoint: expected metadata "
                              f"format={FORMAT!r}, got "
                              f"{'no format entry' if got is None else repr(got)[:60]}"
                              f" (metadata keys {sorted(metadata)[:8]})")
    version = metadata.get("format_version")
    if version != str(FORMAT_VERSION):
        raise CheckpointError(f"{path}: checkpoint format version {str(version)[:20]!r} is not "
                              f"supported (this rnnlab reads version {FORMAT_VERSION})")
    missing = sorted(_METADATA_KEYS - set(metadata))
    unexpected = sorted(set(metadata) - _METADATA_KEYS)
    if missing or unexpected:
        raise CheckpointError(f"{path}: checkpoint metadata: missing keys {missing}, "
                              f"unexpected keys {unexpected[:8]}")
    step = _parse_json(path, metadata, "step", (int,))
    if not _is_count(step):
        raise CheckpointError(f"{path}: metadata 'step' must be an int in [0, 2^53], "
                              f"got {str(step)[:40]}")
    config = _parse_json(path, metadata, "config", (dict, type(None)))
    rng = _parse_json(path, metadata, "rng", (dict, type(None)))
    optim_meta = _parse_json(path, metadata, "optimizer", (dict, type(None)))
    metrics = _parse_json(path, metadata, "metrics", (dict,))
    if optim_meta is not None:
        keys = {"type", "hyperparameters", "step"}
        if (set(optim_meta) != keys or not isinstance(optim_meta["type"], str)
                or not isinstance(optim_meta["hyperparameters"], dict)
                or not _is_count(optim_meta["step"])):
            raise CheckpointError(f"{path}: metadata 'optimizer' must be {{'type': str, "
                                  f"'hyperparameters': object, 'step': int in [0, 2^53]}}, got "
                                  f"{_json(optim_meta)[:120]}")
    return CheckpointInfo(path=path, step=step, config=config, rng=rng, optimizer=optim_meta,
                          metrics=metrics)


def _split_names(header: Header) -> tuple[dict, dict]:
    """{parameter name: tensor key} and {(buffer, parameter name): tensor key}."""
    model, optim = {}, {}
    for key in header.tensors:
        if key.startswith(MODEL_PREFIX) and len(key) > len(MODEL_PREFIX):
            model[key[len(MODEL_PREFIX):]] = key
        elif key.startswith(OPTIM_PREFIX) and key.count(".") >= 2:
            buffer, name = key[len(OPTIM_PREFIX):].split(".", 1)
            optim[(buffer, name)] = key
        else:
            raise CheckpointError(f"{header.path}: unexpected tensor {key[:60]!r} (expected "
                                  f"'model.<name>' or 'optim.<buffer>.<name>')")
    return model, optim


def read_checkpoint_info(path) -> CheckpointInfo:
    """The metadata of a checkpoint (step, config, rng, optimizer, metrics), from its header.

    No tensor is read and the digest is not verified here (:func:`load_checkpoint`
    verifies it before assigning anything): use it to learn the config, build the
    model, then load.

    Raises:
        CheckpointError: not a safetensors file, not an rnnlab checkpoint, a newer
            format version, malformed metadata or tensor names.
    """
    header = read_header(path)
    info = _info(header)
    _, optim = _split_names(header)
    if optim and info.optimizer is None:
        raise CheckpointError(f"{header.path}: holds optimizer buffers but no 'optimizer' "
                              f"metadata")
    return info


def _verified(header: Header, keys) -> dict:
    """{key: array} for every tensor of the file (``keys`` must be all of them), digest checked."""
    arrays = {}
    try:
        with open(header.path, "rb") as f:
            for key in keys:
                arrays[key] = read_tensor(header, key, f)
    except OSError as exc:
        raise CheckpointError(f"{header.path}: cannot read: {exc.strerror or exc}") from None
    if _digest(arrays, header.metadata) != header.metadata["sha256"]:
        raise CheckpointError(f"{header.path}: sha256 digest mismatch: the file was changed or "
                              f"corrupted after it was written")
    return arrays


def read_checkpoint(path) -> Checkpoint:
    """Read and verify a whole checkpoint file without touching any model.

    Its tensors are read only if they fit in the memory available (see
    :mod:`rnnlab.memory_guard`); to load into a model, :func:`load_checkpoint`
    checks them against it first and reads nothing else.

    Raises:
        CheckpointError: the file is missing, unreadable, not safetensors, not an
            rnnlab checkpoint, of a newer format version, has malformed metadata,
            fails its sha256 digest (changed after it was written), or is too large.
    """
    from ..memory_guard import MemoryBudgetError, require_memory

    header = read_header(path)
    info = read_checkpoint_info(path)
    model_keys, optim_keys = _split_names(header)
    try:
        require_memory(sum(e.nbytes for e in header.tensors.values()),
                       f"{header.path}: its {len(header.tensors)} tensors")
    except MemoryBudgetError as exc:
        raise CheckpointError(str(exc)) from None
    arrays = _verified(header, sorted(header.tensors))
    return Checkpoint(info=info, model={n: arrays[k] for n, k in model_keys.items()},
                      optim={b: arrays[k] for b, k in optim_keys.items()})


