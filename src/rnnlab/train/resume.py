"""Resuming a run: the folder's lock, then the newest checkpoint, or config.json without one."""

from __future__ import annotations

import json
from pathlib import Path

from dataclasses import replace

from ..io import CheckpointError, read_checkpoint_info
from ..memory_guard import MemoryBudgetError
from .config import RESUMABLE_OVERRIDES, TrainConfig, TrainError
from .folder import CHECKPOINT_DIR, RunLock, list_checkpoints

__all__ = ["saved_config", "resume_run"]


def saved_config(run_dir: Path, path, info) -> TrainConfig:
    """The config of the newest checkpoint, or of config.json when there is none."""
    if info is not None:
        try:
            return TrainConfig.from_dict(info.config)
        except (TrainError, TypeError) as exc:
            raise CheckpointError(f"{path}: the config it holds is not valid: {exc}") from None
    saved = run_dir / "config.json"
    if not saved.exists():
        raise TrainError(f"--resume {run_dir}: nothing to resume (no checkpoint in "
                         f"{run_dir / CHECKPOINT_DIR} and no config.json); start a new run "
                         f"there with --out {run_dir}")
    try:
        data = json.loads(saved.read_text(encoding="utf-8"))
        if isinstance(data, dict):
            data.pop("rnnlab_version", None)
        return TrainConfig.from_dict(data)
    except (OSError, UnicodeDecodeError, ValueError, TypeError) as exc:
        raise TrainError(f"--resume {run_dir}: no checkpoint, and {saved} is not a valid "
                         f"config ({str(exc)[:120]}); remove the folder or choose another "
                         f"--out") from None


def resume_run(cls, run_dir, *, progress, console, expect, **overrides):
    """:meth:`Trainer.resume` (``cls`` is the Trainer class): see there."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise TrainError(f"--resume {run_dir}: no such folder")
    if not run_dir.is_dir():
        raise TrainError(f"--resume {run_dir}: not a folder (give the run's --out folder)")
    bad = sorted(set(overrides) - set(RESUMABLE_OVERRIDES))
    if bad:
        raise TrainError(f"cannot change {', '.join(bad)} when resuming; only "
                         f"{', '.join(RESUMABLE_OVERRIDES)} may change")
    try:
        found = list_checkpoints(run_dir)
        next(iter(run_dir.iterdir()), None)
    except OSError as exc:
        raise TrainError(f"--resume {run_dir}: cannot read: {exc.strerror or exc}") from None
    if not found and not (run_dir / "config.json").exists():
        saved_config(run_dir, None, None)  # says there is nothing to resume; no lock file
    lock = RunLock(run_dir).acquire()
    try:
        found = list_checkpoints(run_dir)  # again, now that no one else writes
        path = found[-1][1] if found else None
        info = read_checkpoint_info(path) if path else None
        config = saved_config(run_dir, path, info)
        for name, value in (expect or {}).items():
            if value is not None and getattr(config, name) != value:
                raise TrainError(f"--{name.replace('_', '-')} {value} conflicts with the run "
                                 f"in {run_dir} ({name} {getattr(config, name)}); a resumed "
                                 f"run keeps its model, task and data")
        new = {k: v for k, v in overrides.items() if v is not None}
        if new:
            config = replace(config, **new).resolved()
        if info is not None and info.step > config.steps:
            raise TrainError(f"the checkpoint {path.name} is at step {info.step}, "
                             f"beyond --steps {config.steps}")
        try:
            trainer = cls(config, run_dir, progress=progress, console=console, _resuming=True)
        except MemoryBudgetError as exc:
            raise CheckpointError(f"{path or run_dir / 'config.json'}: the config it holds "
                                  f"cannot fit: {exc}") from None
        trainer.lock.release()
        trainer.lock = lock
        if path is not None:
            trainer._load(path)
    except BaseException:
        lock.release()
        raise
    return trainer
