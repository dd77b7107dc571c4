"""``rnnlab compare``: run every experiment over K seeds, save results.json, write the report.

Each experiment (see :mod:`rnnlab.experiments.base`) runs under one preset
("quick", "default" or "full"). A learned experiment is split into one task
per seed, (experiment, seed); the tasks are independent and run in parallel
(:mod:`rnnlab.sweep`: here, on a process pool, or on Ray), each seeded from
(seed, experiment) alone, so the numbers do not depend on who ran them. A
timing experiment (``TIMING = True``) runs once, alone on the driver, after
the parallel part, with ``threads`` BLAS threads.

Every finished task is saved at once to ``<out>/tasks/<experiment>-seed<k>.json``
(``<experiment>.json`` for a timing experiment), atomically: a killed run
loses only unfinished tasks, and ``resume`` runs what is missing. Then each
learned experiment's ``combine`` turns its per-seed results into means with
95 % intervals, and results.json, report.md and report.html are written.
"""

from __future__ import annotations

import importlib
import json
import socket
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .bench.machine import machine_facts, pinned_threads
from .experiments.base import Progress
from .report.builder import build_report, collect_claims, summary_table
from .sweep import (Task, default_workers, jsonable, load_task, run_local, run_ray, save_task,
                    task_seed)

# Run order: cheap and headline results first.
EXPERIMENTS = ("digits", "vowels", "training_time", "scaling", "gradient_flow", "memory_tasks",
               "parallelism")
PRESETS = ("quick", "default", "full")
SEEDS = {"quick": 2, "default": 5, "full": 10}  # --seeds K per preset


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


def _module(name):
    return importlib.import_module(f"rnnlab.experiments.{name}")


def is_timing(name: str) -> bool:
    """Does the experiment measure time (and so run alone on the driver)?"""
    return bool(getattr(_module(name), "TIMING", False))


def new_config(preset="default", seed=0, threads=2, only=None, seeds=None, task_threads=1,
               presets=None) -> dict:
    """The config of a compare run (saved as config.json; ``resume`` reads it back).

    ``presets`` maps an experiment name to its preset dict, overriding
    ``module.PRESETS[preset]`` (tests use it for tiny configs).
    """
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {PRESETS}, got {preset!r}")
    if seeds is None:
        seeds = SEEDS[preset]
    if not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"--seeds must be at least 1, got {seeds}")
    names = available_experiments()
    if only:
        unknown = sorted(set(only) - set(names))
        if unknown:
            raise ValueError(f"unknown experiment(s) {unknown}; available: {names}")
        names = [n for n in names if n in only]
    presets = presets or {}
    return {"preset": preset, "seed": int(seed), "seeds": [int(seed) + k for k in range(seeds)],
            "threads": int(threads), "task_threads": int(task_threads), "experiments": names,
            "experiment_configs": {n: presets.get(n, _module(n).PRESETS[preset]) for n in names}}


def run_compare(preset="default", out_dir=None, seed=0, threads=2, only=None, console=None, *,
                seeds=None, workers=None, ray=None, task_threads=1, resume=None, log=None,
                presets=None) -> dict:
    """Run the experiments and write results.json, report.md, report.html and plots.

    Args:
        preset: "quick" (minutes), "default" or "full" (hours on 2 cores; wall times in the
            README).
        out_dir: output folder; default runs/<UTC timestamp>/.
        seed: the first seed; the k-th of ``seeds`` is seed + k.
        threads: BLAS threads of the timing experiments (on the driver, alone).
        only: names of experiments to run (default: all available).
        console: a rich Console for a live progress bar (None: no bar).
        seeds: K, the number of seeds of every learned experiment (default: SEEDS[preset]).
        workers: local processes for the (experiment, seed) tasks (default:
            cores // task_threads; 1 runs them in this process).
        ray: a Ray address ("local" starts an instance) to run the tasks on instead.
        task_threads: BLAS threads of each learned task.
        resume: an output folder of an earlier run: its config is used, its saved
            tasks are kept, the missing ones run, and the report is rebuilt.
        log: a callable taking one line per finished task (for a non-terminal output).
        presets: {experiment: config} overriding the preset's (tests).

    Returns:
        dict with the results and the paths written ("results", "report").
    """
    stamp = datetime.now(timezone.utc)
    if resume is not None:
        out_dir = Path(resume)
        try:
            config = json.loads((out_dir / "config.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"cannot resume {out_dir}: no readable config.json ({exc})") from None
        if "seeds" not in config:
            raise ValueError(f"cannot resume {out_dir}: its config.json predates --seeds")
    else:
        config = new_config(preset, seed, threads, only, seeds, task_threads, presets)
        if out_dir is None:
            out_dir = Path("runs") / stamp.strftime("%Y%m%d-%H%M%S")
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    if workers is not None and workers < 1:
        raise ValueError(f"--workers must be at least 1, got {workers}")
    names, configs = config["experiments"], config["experiment_configs"]
    timing = [n for n in names if is_timing(n)]
    tasks = [Task(n, s, configs[n], config["task_threads"])
             for n in names if n not in timing for s in config["seeds"]]
    tasks_dir = out_dir / "tasks"
    done = {}
    for key, expected in [(t.key, t) for t in tasks] + [(n, None) for n in timing]:
        payload = load_task(tasks_dir / f"{key}.json")
        if payload is not None and payload.get("config") == (configs[key] if expected is None
                                                             else expected.config):
            done[key] = payload
    todo = [t for t in tasks if t.key not in done]
    failures = []

    with TaskProgress(len(tasks) + len(timing), len(done), console, log) as progress:
        def on_done(task, payload):
            if "error" in payload:
                failures.append(f"{task.key}: {payload['error']}")
                progress.failed(task.key, payload["error"])
                return
            save_task(tasks_dir / f"{task.key}.json", payload)
            done[task.key] = payload
            progress.finished(task.key, payload)

        if workers is None:
            workers = default_workers(config["task_threads"])
        if ray is not None:
            runner = run_ray(todo, ray, on_done)
        else:
            run_local(todo, workers, on_done)
            runner = "this process" if workers <= 1 else f"a local pool of {workers} processes"
        with pinned_threads(config["threads"]):
            machine = machine_facts(config["threads"])
            for name in timing:  # alone on the machine, after the parallel part
                if name in done:
                    continue
                start = time.perf_counter()
                rng = np.random.default_rng(task_seed(name, config["seed"]))
                result = _module(name).run(configs[name], rng=rng,
                                           progress=progress.experiment_progress())
                payload = {"experiment": name, "seed": config["seed"], "config": configs[name],
                           "result": json.loads(json.dumps(result, default=jsonable)),
                           "seconds": time.perf_counter() - start, "host": socket.gethostname(),
                           "pid": None, "node": "driver"}
                save_task(tasks_dir / f"{name}.json", payload)
                done[name] = payload
                progress.finished(name, payload)
    if failures:
        raise TaskFailures(failures, out_dir)

    results = {"config": config, "started": stamp.isoformat(timespec="seconds"),
               "machine": machine, "experiments": {}, "seconds": {}, "tasks": [],
               "schedule": {"runner": runner, "workers": None if ray is not None else workers,
                            "ray": ray, "timing_alone": timing}}
    for name in names:
        if name in timing:
            results["experiments"][name] = done[name]["result"]
            payloads = [done[name]]
        else:
            payloads = [done[Task(name, s, configs[name]).key] for s in config["seeds"]]
            results["experiments"][name] = _module(name).combine(
                configs[name], [{"seed": p["seed"], **p["result"]} for p in payloads])
        results["seconds"][name] = sum(p["seconds"] for p in payloads)
        results["tasks"] += [{"experiment": name, "seed": p["seed"], "seconds": p["seconds"],
                              "host": p.get("host"), "pid": p.get("pid"), "node": p.get("node")}
                             for p in payloads]
    results["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    results_path = out_dir / "results.json"
    tmp = results_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=1, default=jsonable) + "\n", encoding="utf-8")
    tmp.replace(results_path)
    if console is None and log is not None:  # off a terminal the report build prints plain lines too
        from rich.console import Console

        console = Console(file=sys.stdout, force_terminal=False)
    report = build_report(json.loads(results_path.read_text(encoding="utf-8")), out_dir, console=console)
    return {"results": results, "results_path": results_path, "report": report, "out_dir": out_dir}


class TaskFailures(RuntimeError):
    """Some tasks failed; the others are saved, and ``--resume`` reruns the failed ones."""

    def __init__(self, failures, out_dir):
        self.failures = failures
        super().__init__(f"{len(failures)} task(s) failed ({failures[0]}"
                         f"{' ...' if len(failures) > 1 else ''}); the finished ones are saved: "
                         f"rnnlab compare --resume {out_dir}")


class TaskProgress:
    """Tasks done / total with an ETA: a live rich bar on a terminal (``console``), or one
    plain line per finished task (``log``), or silence (neither)."""

    def __init__(self, total: int, already: int, console=None, log=None):
        self.total, self.done, self.already = total, already, already
        self.console, self.log = console, log
        self._bar = self._task = None

    def __enter__(self):
        self._start = time.perf_counter()
        if self.console is not None:
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress as RichProgress,
                                       TextColumn, TimeElapsedColumn)

            # The ETA is ours (:meth:`eta`): rich's rate window is shorter than one task.
            self._bar = RichProgress(TextColumn("{task.description}"), BarColumn(),
                                     MofNCompleteColumn(), TimeElapsedColumn(),
                                     TextColumn("ETA {task.fields[eta]}"), console=self.console,
                                     transient=False)
            self._bar.__enter__()
            self._task = self._bar.add_task("rnnlab compare: tasks", total=self.total,
                                            completed=self.already, eta="?")
        elif self.log is not None and self.already:
            self.log(f"[{self.done}/{self.total}] {self.already} task(s) already saved")
        return self

    def __exit__(self, *exc):
        if self._bar is not None:
            self._bar.__exit__(*exc)
        return False

    def experiment_progress(self) -> Progress:
        """The :class:`Progress` a timing experiment reports its own steps to."""
        return Progress(self._bar)

    def eta(self) -> float | None:
        """Seconds left at the pace of this run's finished tasks (None before the first)."""
        ran = self.done - self.already
        if ran == 0:
            return None
        return (time.perf_counter() - self._start) / ran * (self.total - self.done)

    def finished(self, key: str, payload: dict) -> None:
        self.done += 1
        eta = self.eta()
        if self._bar is not None:
            self._bar.update(self._task, advance=1, eta=_clock(eta))
        elif self.log is not None:
            node = payload.get("node")
            where = (f"Ray node {node[:8]}" if node and node != "driver" else node
                     or payload.get("host") or "?")
            self.log(f"[{self.done}/{self.total}] {key} done in {payload['seconds']:.1f} s on "
                     f"{where}; ETA {_clock(eta)}")

    def failed(self, key: str, error: str) -> None:
        message = f"{key} FAILED: {error}"
        if self._bar is not None:
            self.console.print(message)
        elif self.log is not None:
            self.log(message)


def _clock(seconds) -> str:
    """'1:02:03' (or '?' for None)."""
    if seconds is None:
        return "?"
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}"


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
