"""rnnlab compare's task runner: the same learned numbers whoever runs the tasks, and resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rnnlab.compare import run_compare
from rnnlab.sweep import Task, load_task, save_task, task_seed

ROOT = Path(__file__).resolve().parents[1]

# Each learned experiment at a size that trains in a second or two per seed.
TINY = {
    "digits": {"hidden": 8, "batch": 32, "steps": 30, "lr": 0.01, "warmup": 5, "eval_every": 10,
               "target_accuracy": 0.3, "missing_fractions": [0.0, 0.5]},
    "gradient_flow": {"T": 12, "batch": 8, "measure_batch": 6, "lr": 0.01, "max_norm": 1.0,
                      "eval_batch": 16, "blas_threads": 1, "hidden": 6, "train_steps": 10,
                      "explode": {"nonlinearity": "tanh", "spectral_radius": 3.0, "T": 10,
                                  "lr": 0.1, "max_norm": 1.0, "batch": 8, "hidden": 8,
                                  "steps": 8}},
    "memory_tasks": {"tasks": ["adding", "copy"], "T": [3, 6], "hidden": 8, "batch": 8,
                     "lr": 0.01, "max_norm": 1.0, "eval_batch": 16, "n_symbols": 8,
                     "copy_length": 10, "blas_threads": 1, "steps": 12, "log_every": 4,
                     "copy": {"optimizer": "rmsprop", "lr": 1e-3, "alpha": 0.9}},
}
LEARNED = list(TINY)
TIMING_KEYS = {"seconds", "step_time", "step_ms"}  # wall-clock numbers differ run to run


def learned_numbers(value):
    """The results with every timing removed: what must be identical whoever ran the tasks."""
    if isinstance(value, dict):
        return {k: learned_numbers(v) for k, v in value.items() if k not in TIMING_KEYS}
    if isinstance(value, list):
        return [learned_numbers(v) for v in value]
    return value


def compare(out, **kwargs):
    kwargs.setdefault("only", LEARNED)
    out_dict = run_compare("quick", out, seed=5, seeds=2, presets=TINY, **kwargs)
    return json.loads(out_dict["results_path"].read_text())


@pytest.fixture(scope="module")
def serial(tmp_path_factory):
    return compare(tmp_path_factory.mktemp("serial"), workers=1)


def test_serial_run_has_every_seed(serial):
    assert serial["config"]["seeds"] == [5, 6]
    assert {(t["experiment"], t["seed"]) for t in serial["tasks"]} == {
        (name, s) for name in LEARNED for s in (5, 6)}
    digits = serial["experiments"]["digits"]
    accs = [s["models"]["lstm"]["test_accuracy"] for s in digits["per_seed"]]
    assert digits["summary"]["lstm"]["test_accuracy"]["values"] == accs
    assert accs[0] != accs[1]  # the seeds differ


def test_a_process_pool_gives_the_same_numbers(serial, tmp_path):
    pooled = compare(tmp_path, workers=2)
    assert {t["pid"] for t in pooled["tasks"]} != {os.getpid()}  # ran in the workers
    assert learned_numbers(pooled["experiments"]) == learned_numbers(serial["experiments"])


def test_ray_gives_the_same_numbers(serial, tmp_path):
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        on_ray = compare(tmp_path, ray="local")
    finally:
        ray.shutdown()
    assert all(t["node"] for t in on_ray["tasks"])  # each task names the Ray node that ran it
    assert "Ray" in on_ray["schedule"]["runner"]
    assert learned_numbers(on_ray["experiments"]) == learned_numbers(serial["experiments"])


def test_task_seed_depends_on_the_experiment_and_seed_only():
    assert task_seed("digits", 3) == task_seed("digits", 3)
    assert len({task_seed("digits", 3), task_seed("digits", 4), task_seed("memory_tasks", 3)}) == 3


def test_saved_tasks_are_whole_or_ignored(tmp_path):
    path = tmp_path / "tasks" / "x-seed0.json"
    save_task(path, {"result": {"a": 1.5}})
    assert load_task(path) == {"result": {"a": 1.5}}
    assert not list(path.parent.glob("*.tmp*"))
    path.write_text('{"result": {"a": 1.')  # a file cut short
    assert load_task(path) is None
    assert Task("digits", 3, {}).key == "digits-seed3"


KILLED_RUN = """
import sys
from rnnlab.compare import run_compare
from test_sweep import TINY
run_compare("quick", sys.argv[1], seed=5, seeds=2, presets=TINY, only=list(TINY), workers=1)
"""


def test_a_killed_compare_resumes_to_the_same_numbers(serial, tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT / "tests")])}
    proc = subprocess.Popen([sys.executable, "-c", KILLED_RUN, str(tmp_path)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    tasks = tmp_path / "tasks"
    deadline = time.monotonic() + 120
    while not (tasks.exists() and len(list(tasks.glob("*.json"))) >= 2):
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, "no task finished in 120 s"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    saved = {p.name: p.stat().st_mtime_ns for p in tasks.glob("*.json")}
    assert 2 <= len(saved) < 2 * len(LEARNED) and not (tmp_path / "results.json").exists()

    out = subprocess.run([sys.executable, "-m", "rnnlab", "compare", "--resume", str(tmp_path)],
                         env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert f"{len(saved)} task(s) already saved" in out.stdout
    # one plain progress line per task that was still missing, counting up to the total
    assert f"[{2 * len(LEARNED)}/{2 * len(LEARNED)}]" in out.stdout
    ran = sum(" done in " in line for line in out.stdout.splitlines())
    assert ran == 2 * len(LEARNED) - len(saved)
    for name, mtime in saved.items():  # the finished tasks were kept, not rerun
        assert (tasks / name).stat().st_mtime_ns == mtime
    resumed = json.loads((tmp_path / "results.json").read_text())
    assert learned_numbers(resumed["experiments"]) == learned_numbers(serial["experiments"])
    assert (tmp_path / "report.md").exists()


@pytest.mark.parametrize("argv,message", [
    (["--workers", "0"], "--workers must be at least 1"),
    (["--seeds", "0"], "--seeds must be at least 1"),
    (["--workers", "2", "--ray", "local"], "exclude each other"),
    (["--resume", "/nonexistent"], "cannot resume"),
])
def test_cli_user_errors_are_one_line(argv, message):
    proc = subprocess.run([sys.executable, "-m", "rnnlab", "compare", *argv],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "RAY_ADDRESS": ""})
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
