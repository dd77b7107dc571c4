"""The progress bar of a run (rich, on stderr): loss, steps/s, elapsed, eta."""

from __future__ import annotations

from contextlib import contextmanager

__all__ = ["progress_bar"]


def _progress_columns():
    from rich.progress import (BarColumn, MofNCompleteColumn, ProgressColumn, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)
    from rich.text import Text

    class SpeedColumn(ProgressColumn):
        def render(self, task):
            speed = task.finished_speed or task.speed
            return Text("-- steps/s" if speed is None else f"{speed:,.1f} steps/s")

    return (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"), SpeedColumn(), TimeElapsedColumn(),
            TextColumn("eta"), TimeRemainingColumn())


@contextmanager
def progress_bar(show, console, description, total, completed, loss):
    """Yields (progress, task) to update, or None when ``show`` is false (None: stderr is a tty)."""
    if show is None:
        import sys
        show = sys.stderr.isatty()
    if not show:
        yield None
        return
    from rich.console import Console
    from rich.progress import Progress

    console = console or Console(stderr=True)
    with Progress(*_progress_columns(), console=console, transient=False) as progress:
        task = progress.add_task(description, total=total, completed=completed,
                                 loss="--" if loss is None else f"{loss:.4g}")
        yield progress, task
