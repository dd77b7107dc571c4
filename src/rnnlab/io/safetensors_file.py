"""Reading safetensors files by hand: the header first, then only the tensors wanted.

The format: an 8-byte little-endian length N, N bytes of a JSON object, then the
tensors' bytes back to back::

    {"__metadata__": {str: str}, "<name>": {"dtype": "F32", "shape": [4, 3],
                                            "data_offsets": [begin, end]}, ...}

with offsets into the byte buffer after the header. :func:`read_header` checks
all of it against the file's size before a single tensor byte is read: a header
that claims 10^12 elements, a million entries or overlapping tensors is an
error in milliseconds, with no allocation. :func:`read_tensor` then reads one
tensor into a fresh array. (The safetensors library panics, a BaseException,
on some such files, and copies every tensor before its caller can look at the
names, so it is used here for writing only.)
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import CheckpointError

__all__ = ["TensorEntry", "Header", "read_header", "read_tensor", "MAX_HEADER_BYTES"]

# A checkpoint's header is ~100 bytes per tensor plus its metadata; 4 MiB is ~40,000
# tensors. A longer one is refused before it is read.
MAX_HEADER_BYTES = 4 << 20

# safetensors dtype -> NumPy dtype (little-endian); the others (BF16, F8_*) have none.
_DTYPES = {"F16": "<f2", "F32": "<f4", "F64": "<f8", "I8": "i1", "I16": "<i2", "I32": "<i4",
           "I64": "<i8", "U8": "u1", "U16": "<u2", "U32": "<u4", "U64": "<u8", "BOOL": "?"}
_ITEMSIZE = {"BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1, **{k: np.dtype(v).itemsize
                                                        for k, v in _DTYPES.items()}}


@dataclass(frozen=True)
class TensorEntry:
    """One tensor as the header declares it.

    Attributes:
        name: its key. dtype: the NumPy dtype, or None for a type NumPy lacks (BF16, F8).
        kind: the safetensors dtype string ("F32", "BF16", ...). shape: a tuple of ints.
        begin, end: byte offsets into the data section (end - begin = size · itemsize).
    """

    name: str
    kind: str
    dtype: np.dtype | None
    shape: tuple
    begin: int
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.begin

    def describe_dtype(self) -> str:
        return self.kind if self.dtype is None else np.dtype(self.dtype).name


@dataclass(frozen=True)
class Header:
    """A checked header: ``tensors`` {name: TensorEntry}, ``metadata`` {str: str},
    ``data_start`` (the file offset of the data section) and ``path``."""

    path: Path
    tensors: dict
    metadata: dict
    data_start: int


def _bad(path, what) -> CheckpointError:
    return CheckpointError(f"{path}: not a readable safetensors file (truncated, corrupted or "
                           f"another format): {what}")


def _no_constant(name):
    raise ValueError(f"non-finite number {name}")


def _entry(path, name, spec) -> TensorEntry:
    if not isinstance(spec, dict) or set(spec) != {"dtype", "shape", "data_offsets"}:
        raise _bad(path, f"tensor {name[:60]!r}: expected {{dtype, shape, data_offsets}}")
    kind, shape, offsets = spec["dtype"], spec["shape"], spec["data_offsets"]
    if not isinstance(kind, str) or kind not in _ITEMSIZE:
        raise _bad(path, f"tensor {name[:60]!r}: unknown dtype {str(kind)[:20]!r}")
    ints = lambda v: isinstance(v, list) and all(  # noqa: E731
        isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in v)
    if not ints(shape) or len(shape) > 32:
        raise _bad(path, f"tensor {name[:60]!r}: shape must be a list of integers >= 0")
    if not ints(offsets) or len(offsets) != 2 or offsets[0] > offsets[1]:
        raise _bad(path, f"tensor {name[:60]!r}: data_offsets must be [begin, end]")
    nbytes = math.prod(shape) * _ITEMSIZE[kind]  # Python ints: no overflow
    if offsets[1] - offsets[0] != nbytes:
        raise _bad(path, f"tensor {name[:60]!r}: shape {shape} of {kind} is {nbytes} bytes, "
                         f"its offsets span {offsets[1] - offsets[0]}")
    dtype = np.dtype(_DTYPES[kind]) if kind in _DTYPES else None
    return TensorEntry(name, kind, dtype, tuple(shape), offsets[0], offsets[1])


def read_header(path, *, max_header_bytes: int = MAX_HEADER_BYTES) -> Header:
    """Read and check a safetensors header; no tensor data is read.

    Checks: the length field against the file size and ``max_header_bytes``; strict
    JSON; ``__metadata__`` a {str: str} object; each entry's dtype, shape and offsets,
    its byte size equal to shape × itemsize; the tensors tiling the data section
    exactly (no gap, no overlap), which must end where the file ends.

    Raises:
        CheckpointError: a missing, unreadable or malformed file.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder, expected a .safetensors file")
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(8)
            if len(head) < 8:
                raise _bad(path, f"{size} bytes, shorter than the 8-byte header length")
            n = int.from_bytes(head, "little")
            if n > size - 8:
                raise _bad(path, f"the header claims {n} bytes, the file has {size - 8} after "
                                 f"the length field")
            if n > max_header_bytes:
                raise _bad(path, f"a header of {n} bytes is longer than the {max_header_bytes} "
                                 f"this reader accepts")
            raw = f.read(n)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        header = json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise _bad(path, f"the header is not JSON ({str(exc)[:80]})") from None
    if not isinstance(header, dict):
        raise _bad(path, f"the header is a JSON {type(header).__name__}, not an object")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise _bad(path, "__metadata__ must map strings to strings")
    tensors = {name: _entry(path, name, spec) for name, spec in header.items()}
    data_size = size - 8 - n
    position = 0
    for entry in sorted(tensors.values(), key=lambda e: (e.begin, e.end)):
        if entry.begin != position:
            raise _bad(path, f"tensor {entry.name[:60]!r} starts at byte {entry.begin} of the "
                             f"data, expected {position} (a gap or an overlap)")
        position = entry.end
    if position != data_size:
        raise _bad(path, f"the tensors end at byte {position} of the data, the file has "
                         f"{data_size}")
    return Header(path, tensors, dict(metadata), 8 + n)


def read_tensor(header: Header, name: str, file=None) -> np.ndarray:
    """The tensor ``name`` of a checked header, as a new (native byte order) array.

    Args:
        file: an open binary file of ``header.path`` to read from (else it is opened).

    Raises:
        CheckpointError: a dtype NumPy has no type for, or the file changed under us.
    """
    entry = header.tensors[name]
    if entry.dtype is None:
        raise CheckpointError(f"{header.path}: tensor {name!r} has dtype {entry.kind}, which "
                              f"NumPy cannot hold")
    if file is None:
        with open(header.path, "rb") as f:
            return read_tensor(header, name, f)
    out = np.empty(entry.shape, dtype=entry.dtype)
    file.seek(header.data_start + entry.begin)
    view, got = memoryview(out.reshape(-1).view(np.uint8)), 0
    while got < entry.nbytes:
        n = file.readinto(view[got:])
        if not n:
            break
        got += n
    if got != entry.nbytes:
        raise CheckpointError(f"{header.path}: tensor {name!r}: read {got} of {entry.nbytes} "
                              f"bytes (the file was cut short while reading)")
    return out if out.dtype.isnative else out.astype(out.dtype.newbyteorder("="))
