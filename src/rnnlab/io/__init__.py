"""Safe files for models: checkpoints that cannot run code, and PyTorch interchange.

Everything here is safetensors (tensors) plus JSON (metadata). No pickle is
read or written anywhere, so opening a file that someone sent you can, at
worst, raise :class:`CheckpointError`.

- :mod:`~rnnlab.io.checkpoint`: training checkpoints (:func:`save_checkpoint`,
  :func:`load_checkpoint`, :func:`read_checkpoint`, :func:`read_checkpoint_info`),
  their layout and their sha256 digest (integrity, not authorship).
- :mod:`~rnnlab.io.torch_interop`: :func:`save_torch_compatible` and
  :func:`load_torch_file`, keyed by torch's ``state_dict`` names.
- :mod:`~rnnlab.io.safetensors_file`: the reader both use; it checks a file's
  header against its size, and the names, dtypes and shapes against the module,
  before reading any tensor, and then reads only those.
- :mod:`~rnnlab.io.atomic`: :func:`atomic_write_bytes` (a crash leaves the old
  file or the new one, never half of one) and :func:`stale_temporaries` (what a
  killed writer left behind).

Loading always checks first and assigns last, so a bad file leaves the objects
in memory exactly as they were.
"""

from .atomic import atomic_write_bytes, stale_temporaries
from .checkpoint import (FORMAT, FORMAT_VERSION, MODEL_PREFIX, OPTIM_PREFIX, Checkpoint,
                         CheckpointInfo, _digest, read_checkpoint, read_checkpoint_info,
                         save_checkpoint)
from .checkpoint_load import load_checkpoint
from .errors import CheckpointError
from .torch_interop import load_torch_file, save_torch_compatible

__all__ = [
    "CheckpointError", "CheckpointInfo", "Checkpoint", "FORMAT", "FORMAT_VERSION",
    "save_checkpoint", "load_checkpoint", "read_checkpoint", "read_checkpoint_info",
    "save_torch_compatible", "load_torch_file", "atomic_write_bytes", "stale_temporaries",
    "MODEL_PREFIX", "OPTIM_PREFIX", "_digest",
]
