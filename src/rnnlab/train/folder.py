"""The run folder: its files, its lock, and what a crash can leave in it.

::

    OUT/.lock                                   held (flock) by the process training in OUT
    OUT/config.json                             the resolved TrainConfig
    OUT/metrics.jsonl                           one JSON line per step
    OUT/checkpoints/step-00000100.safetensors   the newest ``keep`` checkpoints (and the last good one)

A folder holds a run once it has a config.json, a metrics.jsonl or a
checkpoint; an empty checkpoints/ folder, the lock file or the temporary files
of an interrupted write do not count.
"""

from __future__ import annotations

import json
import os
import re
import socket
import sys
import time
from pathlib import Path

from ..io import atomic_write_bytes, stale_temporaries
from .config import TrainError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: runs are not locked
    fcntl = None

__all__ = ["CHECKPOINT_DIR", "checkpoint_path", "list_checkpoints", "latest_checkpoint",
           "read_metrics", "write_json", "run_files", "RunLock", "remove_temporaries"]

CHECKPOINT_DIR = "checkpoints"
LOCK_FILE = ".lock"
_CHECKPOINT_RE = re.compile(r"^step-(\d{8,})\.safetensors$")


def checkpoint_path(run_dir, step: int) -> Path:
    """OUT/checkpoints/step-00000042.safetensors for step 42."""
    return Path(run_dir) / CHECKPOINT_DIR / f"step-{step:08d}.safetensors"


def list_checkpoints(run_dir) -> list[tuple[int, Path]]:
    """(step, path) of every checkpoint of a run, oldest first.

    Raises:
        OSError: the checkpoints folder exists but cannot be listed.
    """
    folder = Path(run_dir) / CHECKPOINT_DIR
    if not folder.is_dir():
        return []
    found = []
    for name in os.listdir(folder):
        m = _CHECKPOINT_RE.match(name)
        if m:
            found.append((int(m.group(1)), folder / name))
    return sorted(found)


def latest_checkpoint(run_dir) -> Path | None:
    """The newest checkpoint of a run, or None."""
    found = list_checkpoints(run_dir)
    return found[-1][1] if found else None


def read_metrics(run_dir) -> list[dict]:
    """The lines of ``metrics.jsonl`` as dicts (a torn last line, from a crash, is skipped)."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and isinstance(row.get("step"), int):
            rows.append(row)
    return rows


def write_json(path: Path, value) -> None:
    """``value`` as indented JSON, written atomically."""
    atomic_write_bytes(path, (json.dumps(value, indent=2, sort_keys=False) + "\n").encode())


def run_files(run_dir) -> list[str]:
    """What makes ``run_dir`` hold a run: config.json, metrics.jsonl, checkpoint files."""
    run_dir = Path(run_dir)
    found = [n for n in ("config.json", "metrics.jsonl") if (run_dir / n).exists()]
    if list_checkpoints(run_dir):
        found.append(CHECKPOINT_DIR)
    return found


def remove_temporaries(run_dir) -> list[Path]:
    """Delete the temporary files that a killed atomic write left in the run folder and
    its checkpoints/ folder; the caller must hold the run's lock. Returns them."""
    run_dir = Path(run_dir)
    removed = []
    for path in stale_temporaries(run_dir) + stale_temporaries(run_dir / CHECKPOINT_DIR):
        try:
            path.unlink()
            removed.append(path)
        except FileNotFoundError:
            pass
    return removed


class RunLock:
    """An exclusive lock on a run folder, held from start to end of a run.

    ``flock`` on ``OUT/.lock``: the kernel drops it when the process ends, however it
    ends (SIGKILL included), so a lock is never stale; the file keeps its last
    holder's description, which a second run quotes when refused and which tells a
    leftover of a killed run (``stale``) from a clean exit (an empty file).
    """

    def __init__(self, run_dir):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_FILE
        self._fd = None
        self.stale: str | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> "RunLock":
        """Take the lock (creating the folder), or TrainError naming the holder."""
        if self._fd is not None:
            return self
        if self.run_dir.exists() and not self.run_dir.is_dir():
            raise TrainError(f"{self.run_dir}: exists and is not a folder")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_fd(fd) or "another process"
                os.close(fd)
                raise TrainError(f"{self.run_dir} is in use by another run ({holder}); wait "
                                 f"for it to end or stop it, or choose another --out") from None
        self.stale = _read_fd(fd) or None
        me = (f"pid {os.getpid()} on {socket.gethostname()}, since "
              f"{time.strftime('%Y-%m-%d %H:%M:%S')}: {' '.join(sys.argv)[:200]}")
        os.ftruncate(fd, 0)
        os.pwrite(fd, me.encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)  # a clean exit: nothing left to call stale
        finally:
            os.close(fd)  # drops the flock

    def __del__(self):
        self.release()


def _read_fd(fd) -> str:
    try:
        return os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
    except OSError:
        return ""
