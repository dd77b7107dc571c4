"""``rnnlab compare``: run every experiment, save results.json, write the report.

Each experiment (see :mod:`rnnlab.experiments.base`) runs under one preset
("quick", "default" or "full"), with its own random stream derived from the
seed, BLAS threads pinned, and a progress bar. Everything the report shows is
in results.json, next to the config and the machine facts.
"""

from __future__ import annotations

import importlib
import json
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .bench.machine import machine_facts, pinned_threads
from .experiments.base import Progress
from .report.builder import build_report, summary_table, collect_claims

# Run order: cheap and headline results first.
EXPERIMENTS = ("digits", "training_time", "scaling", "gradient_flow", "memory_tasks",
               "parallelism")
PRESETS = ("quick", "default", "full")


def available_experiments() -> list[str]:
    """The experiments this installation has (all of EXPERIMENTS in a complete one)."""
    names = []
    for name in EXPERIMENTS:
        try:
            importlib.import_module(f"rnnlab.experiments.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"rnnlab.experiments.{name}":
                raise
            continue
        names.append(name)
    return names


def run_compare(preset="default", out_dir=None, seed=0, threads=2, only=None, console=None) -> dict:
    """Run the experiments and write results.json, report.md, report.html and plots.

    Args:
        preset: "quick" (< 2 min), "default" (< 8 min) or "full" (< 45 min) on 2 cores.
        out_dir: output folder; default runs/<UTC timestamp>/.
        seed: the root of every random stream (weights, data, orders).
        threads: BLAS threads to pin.
        only: names of experiments to run (default: all available).
        console: a rich Console for the progress bar (None: no bar).

    Returns:
        dict with the results and the paths written ("results", "report").
    """
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {PRESETS}, got {preset!r}")
    names = available_experiments()
    if only:
        unknown = sorted(set(only) - set(names))
        if unknown:
            raise ValueError(f"unknown experiment(s) {unknown}; available: {names}")
        names = [n for n in names if n in only]
    stamp = datetime.now(timezone.utc)
    out_dir = Path(out_dir) if out_dir is not None else Path("runs") / stamp.strftime("%Y%m%d-%H%M%S")
    out_dir.mkdir(parents=True, exist_ok=True)
    modules = {name: importlib.import_module(f"rnnlab.experiments.{name}") for name in names}
    config = {"preset": preset, "seed": seed, "threads": threads, "experiments": names,
              "experiment_configs": {n: modules[n].PRESETS[preset] for n in names}}
    (out_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")

    results = {"config": config, "started": stamp.isoformat(timespec="seconds"),
               "experiments": {}, "seconds": {}}
    with pinned_threads(threads):
        results["machine"] = machine_facts(threads)
        with _progress(console) as bar:
            progress = Progress(bar)
            for index, name in enumerate(progress.track(names, f"rnnlab compare ({preset})")):
                rng = np.random.default_rng([seed, index])
                start = time.perf_counter()
                results["experiments"][name] = modules[name].run(
                    config["experiment_configs"][name], rng=rng, progress=progress)
                results["seconds"][name] = time.perf_counter() - start
    results["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    results_path = out_dir / "results.json"
    tmp = results_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=1, default=_jsonable) + "\n", encoding="utf-8")
    tmp.replace(results_path)
    report = build_report(json.loads(results_path.read_text(encoding="utf-8")), out_dir, console=console)
    return {"results": results, "results_path": results_path, "report": report, "out_dir": out_dir}


def _jsonable(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


class _NoBar:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def _progress(console):
    if console is None:
        return _NoBar()
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress as RichProgress,
                               TextColumn, TimeElapsedColumn)

    return RichProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), console=console, transient=False)


def print_summary(results: dict, console) -> None:
    """The digits table (parameters, step time, accuracy) and the claims summary, as rich tables."""
    from rich.table import Table as RichTable

    tables = []
    if "digits" in results["experiments"]:
        from .experiments.digits import summary_table as digits_table

        tables.append(digits_table(results["experiments"]["digits"]))
    tables.append(summary_table(collect_claims(results)))
    for table in tables:
        rich_table = RichTable(title=table.title, show_lines=False)
        for column in table.columns:
            rich_table.add_column(str(column), overflow="fold")
        for row in table.rows:
            rich_table.add_row(*(str(c) for c in row))
        console.print(rich_table)
