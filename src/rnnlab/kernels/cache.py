"""Where rnnlab keeps what it learned about this machine, and the key that scopes it.

A probe verdict or a timed plan holds only for the machine and the library
versions it was found with. The folder is ``$XDG_CACHE_HOME/rnnlab`` (else
``~/.cache/rnnlab``), with one subfolder per key::

    ~/.cache/rnnlab/machine-<digest>/key.json      what the digest was made of
                                    /probes.json   child-process verdicts (see probes.py)
                                    /plans.json    timed plans (see planner.py)

The key holds the CPU model and flags, the core count, NumPy's BLAS (name,
version, kernel), and the versions of Python, NumPy, numba, llvmlite and
rnnlab. A new version of any of them gives a new folder: nothing is reused.
A folder that cannot be written is no error: what was learned then lives in
the process only.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
import tempfile
import threading
from functools import lru_cache
from importlib import metadata
from pathlib import Path

import numpy as np

__all__ = ["cache_root", "machine_key", "machine_dir", "read_json", "update_json"]

_lock = threading.Lock()


def cache_root() -> Path:
    """``$XDG_CACHE_HOME/rnnlab``, or ``~/.cache/rnnlab`` when XDG_CACHE_HOME is unset or empty."""
    base = os.environ.get("XDG_CACHE_HOME", "").strip()
    return Path(base if base else Path.home() / ".cache") / "rnnlab"


def _cpu() -> dict:
    """The CPU's model name and feature flags (Linux: /proc/cpuinfo; else what platform says)."""
    model, flags = "", ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                name, _, value = line.partition(":")
                name = name.strip().lower()
                if name == "model name" and not model:
                    model = value.strip()
                elif name in ("flags", "features") and not flags:
                    flags = " ".join(sorted(value.split()))
                if model and flags:
                    break
    except OSError:
        pass
    return {"cpu": model or platform.processor() or platform.machine(), "cpu_flags": flags,
            "cpu_count": os.cpu_count() or 1, "machine": platform.machine()}


def _version(package: str) -> str | None:
    """An installed distribution's version, without importing it (numba takes ~0.5 s)."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _blas() -> dict:
    """NumPy's BLAS as threadpoolctl sees it (OpenBLAS: its version and kernel)."""
    from .blas_pool import numpy_openblas
    controller = numpy_openblas()
    if controller is None:
        return {"blas": "not openblas"}
    return {"blas": "openblas", "blas_version": controller.version,
            "blas_kernel": getattr(controller, "architecture", None)}


@lru_cache(maxsize=None)
def machine_key() -> dict:
    """What the cached knowledge depends on (see the module docstring); computed once."""
    from .. import __version__
    return {**_cpu(), **_blas(), "python": f"{platform.python_implementation()} "
            f"{sys.version.split()[0]}", "numpy": np.__version__, "numba": _version("numba"),
            "llvmlite": _version("llvmlite"), "rnnlab": __version__}


def machine_dir() -> Path:
    """The cache subfolder of this machine and these versions (not created here)."""
    key = machine_key()
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return cache_root() / f"machine-{digest}"


def read_json(name: str) -> dict:
    """The JSON object in ``machine_dir()/name``, or {} (missing, unreadable, not an object)."""
    try:
        with open(machine_dir() / name, encoding="utf-8") as f:
            value = json.load(f)
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def update_json(name: str, entries: dict) -> bool:
    """Merge ``entries`` into ``machine_dir()/name``, written atomically (a temporary file
    renamed over it); another process's entries written meanwhile are kept unless the
    two wrote at the same instant. False when the folder cannot be written."""
    folder = machine_dir()
    with _lock:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            key_file = folder / "key.json"
            if not key_file.exists():
                _write_atomic(key_file, machine_key())
            _write_atomic(folder / name, {**read_json(name), **entries})
        except OSError:
            return False
    return True


def _write_atomic(path: Path, value) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(value, f, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
