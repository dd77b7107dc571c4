"""Atomic file writes, and finding the temporary files that a killed writer left behind.

A write goes to ``.<name>.<random>.tmp`` in the target's folder, is flushed and
fsynced, renamed over the target (``os.replace``), and the folder is fsynced:
readers see the old file or the new one, never a part. A SIGKILL (or a power
cut) between the first write and the rename leaves the temporary file, which
:func:`stale_temporaries` finds so that the next user of the folder can remove it.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from pathlib import Path

__all__ = ["atomic_write_bytes", "stale_temporaries"]

# The names tempfile.mkstemp gives with the prefix and suffix below.
_TEMPORARY_RE = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")


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
    temporary file is removed and ``path`` is untouched; only a kill leaves it
    (see :func:`stale_temporaries`).
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


def stale_temporaries(folder) -> list[Path]:
    """The temporary files of :func:`atomic_write_bytes` in ``folder`` (none if it is missing).

    Only whoever holds the folder (e.g. a run's lock) may delete them: another
    writer's temporary file is indistinguishable until its rename.
    """
    folder = Path(folder)
    try:
        names = os.listdir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(folder / n for n in names if _TEMPORARY_RE.match(n))
