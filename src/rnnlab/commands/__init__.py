"""Subcommands of the ``rnnlab`` CLI: argument parsing only, the work is in the library."""

from __future__ import annotations

import os
from pathlib import Path


class CommandError(Exception):
    """A user error on the command line: printed as one line, exit code 2."""


def output_folder(path, flag: str = "--out") -> Path:
    """``path`` as a folder the command can write into, created if missing; else CommandError.

    Checked before any work starts, so that a file, a read-only place or a path
    under /proc fails in one line at once rather than in a traceback at the end.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise CommandError(f"{flag} {path}: exists and is not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CommandError(f"{flag} {path}: cannot create the folder: "
                           f"{exc.strerror or exc}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise CommandError(f"{flag} {path}: the folder is not writable")
    return path
