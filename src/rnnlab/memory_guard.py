"""Refuse, before allocating, what cannot fit in memory: one clear error instead of a swap
storm, an OOM kill or a MemoryError traceback minutes later.

"Available" is the smallest of:

- ``MemAvailable`` in /proc/meminfo (what the kernel can give without swapping);
- the cgroup v2 limit, ``memory.max`` minus ``memory.current`` of this process's
  cgroup (a container or a systemd slice; "max" means no limit);
- the address-space rlimit (``ulimit -v``) minus the process's current size.

Where none of these can be read (not Linux), nothing is refused. The estimates
come from the callers: a layer's constructor counts the parameters it is about
to allocate; a training run adds gradients, optimizer buffers and the
activations that BPTT keeps (see :mod:`rnnlab.train.budget`).

``RNNLAB_MEMORY_CHECK=0`` turns the check off (for an estimate that is wrong
on some machine: please report it).
"""

from __future__ import annotations

import os
import resource
from pathlib import Path

__all__ = ["MemoryBudgetError", "available_memory", "require_memory", "format_bytes"]

MEMINFO = Path("/proc/meminfo")
CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_SELF_CGROUP = Path("/proc/self/cgroup")
PROC_SELF_STATM = Path("/proc/self/statm")

# Below this, a layer's constructor does not look (reading /proc costs ~50 µs a layer).
CHECK_FROM_BYTES = 64 << 20


class MemoryBudgetError(MemoryError, ValueError):
    """The estimated memory of a layer or a training step exceeds the memory available.

    A MemoryError (what it is about) and a ValueError (a size the caller chose).

    Attributes:
        estimate: the bytes needed (an estimate, from the shapes).
        available: the bytes available, and ``source``: where that figure came from.
    """

    def __init__(self, message, *, estimate: int, available: int, source: str):
        super().__init__(message)
        self.estimate, self.available, self.source = estimate, available, source


def format_bytes(n: float) -> str:
    """1536 -> '1.5 KiB'; 3.2e12 -> '2.9 TiB'."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def _meminfo_available() -> int | None:
    try:
        for line in MEMINFO.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024  # the figure is in kB
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_dir() -> Path:
    """This process's cgroup v2 folder (``0::/path`` in /proc/self/cgroup), else the root."""
    try:
        for line in PROC_SELF_CGROUP.read_text().splitlines():
            if line.startswith("0::"):
                candidate = CGROUP_ROOT / line[3:].lstrip("/")
                if (candidate / "memory.max").exists():
                    return candidate
    except OSError:
        pass
    return CGROUP_ROOT


def _cgroup_available() -> int | None:
    folder = _cgroup_dir()
    try:
        limit = (folder / "memory.max").read_text().strip()
    except OSError:
        return None
    if limit == "max":
        return None
    try:
        used = int((folder / "memory.current").read_text().strip())
    except (OSError, ValueError):
        used = 0
    try:
        return max(int(limit) - used, 0)
    except ValueError:
        return None


def _rlimit_available() -> int | None:
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return None
    try:
        pages = int(PROC_SELF_STATM.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        pages = 0
    return max(soft - pages * resource.getpagesize(), 0)


def available_memory() -> tuple[int | None, str]:
    """(bytes available, where the figure comes from), or (None, "unknown")."""
    found = [(value, source) for value, source in (
        (_meminfo_available(), "MemAvailable in /proc/meminfo"),
        (_cgroup_available(), "cgroup memory.max minus memory.current"),
        (_rlimit_available(), "the address-space rlimit"),
    ) if value is not None]
    if not found:
        return None, "unknown"
    return min(found)


def require_memory(nbytes: int, what: str) -> None:
    """A :class:`MemoryBudgetError` if ``nbytes`` exceed the memory available now.

    Args:
        nbytes: the estimate, in bytes.
        what: names the thing and its sizes, e.g. "LSTM(2, 10000000): its parameters".
    """
    if os.environ.get("RNNLAB_MEMORY_CHECK", "").strip() == "0":
        return
    available, source = available_memory()
    if available is None or nbytes <= available:
        return
    raise MemoryBudgetError(
        f"{what} would need about {format_bytes(nbytes)} (estimated from the sizes), but "
        f"{format_bytes(available)} is available ({source}); choose smaller sizes",
        estimate=int(nbytes), available=int(available), source=source)
