"""Run independent (experiment, seed) tasks: in this process, on a local process pool, or on Ray.

A :class:`Task` names an experiment, a seed and the config; :func:`run_task`
runs it anywhere (it imports the experiment, pins BLAS threads, calls
``run_seed``) and returns a JSON-ready payload. Every random draw of a task
comes from :func:`task_seed` (the seed and the experiment's name alone), and
every task runs on the same number of BLAS threads, so its numbers are the
same bit for bit whichever runner ran it, in whatever order.

Runners call ``on_done(task, payload)`` in the driver as each task finishes,
so that the caller can save it at once (:func:`save_task`); a task that fails
is reported with ``payload["error"]`` and costs only itself.
"""

from __future__ import annotations

import importlib
import json
import multiprocessing
import os
import socket
import sys
import time
import zlib
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["Task", "task_seed", "run_task", "run_local", "run_ray", "default_workers",
           "save_task", "load_task", "jsonable"]


@dataclass(frozen=True)
class Task:
    """One unit of work: ``experiment``'s ``run_seed(config, task_seed(experiment, seed))``.

    Attributes:
        experiment: module name in :mod:`rnnlab.experiments`.
        seed: the user-level seed (``--seed`` + k for the k-th of ``--seeds K``).
        config: the experiment's preset config (plain JSON).
        threads: BLAS threads the task runs with.
    """

    experiment: str
    seed: int
    config: dict
    threads: int = 1

    @property
    def key(self) -> str:
        """The task's file stem, e.g. "digits-seed3"."""
        return f"{self.experiment}-seed{self.seed}"


def task_seed(experiment: str, seed: int) -> int:
    """The int that seeds every draw of (experiment, seed): a hash of both, nothing else."""
    state = np.random.SeedSequence([int(seed), zlib.crc32(experiment.encode())]).generate_state(2)
    return int(state[0]) << 32 | int(state[1]) >> 1


def jsonable(value):
    """``json.dumps(default=...)``: NumPy scalars and arrays as Python values."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _where() -> dict:
    """Who ran the task: host, process, and the Ray node id inside a Ray worker."""
    where = {"host": socket.gethostname(), "pid": os.getpid(), "node": None}
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        where["node"] = ray.get_runtime_context().get_node_id()
    return where


def run_task(task: Task) -> dict:
    """Run one task (in any process) -> dict(experiment, seed, config, result, seconds, host,
    pid, node); the result passed through JSON, so that it is what a saved file holds."""
    from threadpoolctl import threadpool_limits

    module = importlib.import_module(f"rnnlab.experiments.{task.experiment}")
    start = time.perf_counter()
    with threadpool_limits(limits=task.threads, user_api="blas"):
        result = module.run_seed(task.config, task_seed(task.experiment, task.seed))
    seconds = time.perf_counter() - start
    result = json.loads(json.dumps(result, default=jsonable))
    return {"experiment": task.experiment, "seed": task.seed, "config": task.config,
            "result": result, "seconds": seconds, **_where()}


def _failed(task: Task, exc: BaseException) -> dict:
    return {"experiment": task.experiment, "seed": task.seed,
            "error": f"{type(exc).__name__}: {exc}"}


def default_workers(threads_per_task: int) -> int:
    """Cores divided by the BLAS threads per task (at least 1): workers × threads ≤ cores."""
    from .bench.machine import _usable_cpus

    return max(1, (_usable_cpus() or 1) // max(1, threads_per_task))


def _pool_context():
    """A start method that does not copy the driver's threads and BLAS state (fork would)."""
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


def _init_worker(threads: int) -> None:
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=threads, user_api="blas")  # for the worker's whole life


def run_local(tasks, workers: int, on_done) -> None:
    """Run ``tasks`` here (workers == 1) or on a process pool of ``workers``.

    ``on_done(task, payload)`` is called in this process as each task ends.
    """
    tasks = list(tasks)
    if not tasks:
        return
    if workers <= 1:
        for task in tasks:
            try:
                payload = run_task(task)
            except Exception as exc:  # one task's failure costs only itself
                payload = _failed(task, exc)
            on_done(task, payload)
        return
    threads = max(t.threads for t in tasks)
    with ProcessPoolExecutor(max_workers=workers, mp_context=_pool_context(),
                             initializer=_init_worker, initargs=(threads,)) as pool:
        pending = {pool.submit(run_task, task): task for task in tasks}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                task = pending.pop(future)
                try:
                    payload = future.result()
                except Exception as exc:  # includes a worker killed under the pool
                    payload = _failed(task, exc)
                on_done(task, payload)


def run_ray(tasks, address: str, on_done) -> str:
    """Run ``tasks`` on a Ray cluster; returns a description of the cluster.

    ``address``: "local" starts a Ray instance on this machine; anything else
    is passed to ``ray.init(address=...)`` (e.g. "auto", "ray://head:10001").
    rnnlab must be importable on every node. A task whose worker dies is
    retried by Ray; one that still fails is reported and costs only itself.

    Raises:
        ValueError: Ray is not installed.
    """
    try:
        import ray
    except ImportError:
        raise ValueError("--ray needs Ray: pip install 'rnnlab[ray]'") from None
    started_here = not ray.is_initialized()
    if started_here:  # "local" starts a new instance whatever RAY_ADDRESS says; its workers
        ray.init(address=address, log_to_driver=False)  # inherit this environment (PYTHONPATH)
    try:
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        description = (f"a Ray cluster of {len(nodes)} node(s), "
                       f"{int(ray.cluster_resources().get('CPU', 0))} CPUs")
        tasks = list(tasks)
        if tasks:
            remote = ray.remote(run_task)
            refs = {remote.options(num_cpus=task.threads).remote(task): task for task in tasks}
            while refs:
                done, _ = ray.wait(list(refs), num_returns=1)
                task = refs.pop(done[0])
                try:
                    payload = ray.get(done[0])
                except Exception as exc:
                    payload = _failed(task, exc)
                on_done(task, payload)
        return description
    finally:
        if started_here:
            ray.shutdown()


def save_task(path: Path, payload: dict) -> None:
    """Write a task's payload atomically (temporary file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(payload, default=jsonable) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def load_task(path: Path) -> dict | None:
    """A saved task payload, or None when the file is missing or not a whole JSON object."""
    try:
        payload = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return payload if isinstance(payload, dict) and "result" in payload else None
