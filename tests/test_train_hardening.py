"""`rnnlab train` under attack (issue 18 items 1-3, 5, 7, 8), with real processes and signals:
two runs on one folder, SIGKILL during a checkpoint write, a folder with no checkpoint, a full
disk (file-size rlimit), checkpoint fields of the wrong type, sizes that cannot fit, and a
"last good" checkpoint that must really be good."""

from __future__ import annotations

import json
import os
import re
import resource
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from safetensors.numpy import load_file

from rnnlab import io
from rnnlab.train import checkpoint_path, list_checkpoints, read_metrics

ENV = {**os.environ, "RNNLAB_BACKEND": "numpy"}
SMALL = ["--model", "lstm", "--task", "adding", "--seq-len", "6", "--hidden", "5", "--batch", "3",
         "--no-progress"]


def _cli(*args, timeout=120, preexec_fn=None):
    return subprocess.run([sys.executable, "-m", "rnnlab", "train", *map(str, args)],
                          capture_output=True, text=True, env=ENV, timeout=timeout,
                          preexec_fn=preexec_fn)


def _start(*args):
    return subprocess.Popen([sys.executable, "-m", "rnnlab", "train", *[str(a) for a in args]],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)


def _one_line(proc, code, match):
    assert proc.returncode == code, (proc.returncode, proc.stderr[-3000:])
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert re.search(match, lines[0]), lines[0]
    return lines[0]


def _wait_for_steps(out, n, proc, limit=60):
    deadline = time.monotonic() + limit
    while len(read_metrics(out)) < n:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.02)


def _stop(proc, sig=signal.SIGINT):
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        return proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _weights(run_dir):
    return load_file(list_checkpoints(run_dir)[-1][1])


def _same_final_weights(a, b):
    wa, wb = _weights(a), _weights(b)
    return wa.keys() == wb.keys() and all(np.array_equal(wa[k], wb[k]) for k in wa)


# ---------------------------------------------------------------- item 1: one run per folder


def test_a_second_run_on_a_busy_folder_is_refused_and_names_the_holder(tmp_path):
    out = tmp_path / "run"
    first = _start(*SMALL, "--steps", 10 ** 6, "--every", 5, "--out", out)
    try:
        _wait_for_steps(out, 6, first)
        line = _one_line(_cli(*SMALL, "--steps", 5, "--out", out), 2,
                         r"already holds a run|is in use by another run")
        line = _one_line(_cli("--resume", out), 2, r"is in use by another run \(pid \d+")
        assert f"pid {first.pid} " in line
    finally:
        _, stderr = _stop(first)
    assert first.returncode == 130, stderr
    # The lock died with its holder: a resume now works, and a SIGKILLed holder leaves
    # no lock behind either.
    second = _start("--resume", out, "--steps", 10 ** 6)
    try:
        _wait_for_steps(out, len(read_metrics(out)) + 3, second)
    finally:
        _stop(second, signal.SIGKILL)
    assert second.returncode == -signal.SIGKILL
    done = _cli("--resume", out, "--steps", list_checkpoints(out)[-1][0] + 2)
    assert done.returncode == 0, done.stderr


def test_two_runs_started_at_once_on_one_folder(tmp_path):
    """Exactly one of them runs; the other exits 2 in one line (before the lock, both
    exited 0 and mixed their files)."""
    for round_ in range(3):
        out = tmp_path / f"run{round_}"
        procs = [_start(*SMALL, "--steps", 40, "--every", 10, "--out", out) for _ in range(2)]
        results = [(p.wait(timeout=120), p.communicate()[1]) for p in procs]
        codes = sorted(code for code, _ in results)
        assert codes == [0, 2], results
        loser = next(err for code, err in results if code == 2)
        assert len(loser.strip().splitlines()) == 1 and "Traceback" not in loser
        assert [r["step"] for r in read_metrics(out)] == list(range(1, 41))


# ---------------------------------------------------------------- items 2 and 3: leftovers


KILL_IN_CHECKPOINT_WRITE = textwrap.dedent("""
    import os, signal, sys
    real = os.fsync
    def fsync(fd):
        real(fd)
        if ".step-" in os.readlink(f"/proc/self/fd/{fd}"):
            os.kill(os.getpid(), signal.SIGKILL)   # after the bytes, before the rename
    os.fsync = fsync
    from rnnlab.cli import main
    sys.exit(main(sys.argv[1:]))
""")


def test_sigkill_during_a_checkpoint_write_leaves_nothing_behind(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-c", KILL_IN_CHECKPOINT_WRITE, "train", *SMALL,
                           "--steps", "8", "--every", "4", "--out", str(out)],
                          capture_output=True, text=True, env=ENV, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    leftovers = list((out / "checkpoints").glob(".step-00000004.safetensors.*.tmp"))
    assert len(leftovers) == 1 and not list_checkpoints(out)
    # No checkpoint yet: --resume starts again at step 0 from config.json, removes the
    # temporary file, and ends with the weights of a run that was never killed.
    done = _cli("--resume", out)
    assert done.returncode == 0, done.stderr
    assert not [p for p in out.rglob("*.tmp")]
    assert [r["step"] for r in read_metrics(out)] == list(range(1, 9))
    assert _cli(*SMALL, "--steps", 8, "--every", 4, "--out", tmp_path / "ref").returncode == 0
    assert _same_final_weights(out, tmp_path / "ref")


def test_a_run_killed_before_its_first_checkpoint_can_be_resumed(tmp_path):
    out = tmp_path / "run"
    proc = _start(*SMALL, "--steps", 10 ** 6, "--every", 10 ** 6, "--out", out)
    try:
        _wait_for_steps(out, 3, proc)
    finally:
        _stop(proc, signal.SIGKILL)
    assert not list_checkpoints(out) and (out / "config.json").exists()
    _one_line(_cli(*SMALL, "--steps", 5, "--out", out), 2,
              r"already holds a run .* continue it with --resume")
    done = _cli("--resume", out, "--steps", 5)
    assert done.returncode == 0, done.stderr
    assert "step 5/5" in done.stdout
    assert [r["step"] for r in read_metrics(out)] == [1, 2, 3, 4, 5]
    assert _cli(*SMALL, "--steps", 5, "--every", 10 ** 6, "--out", tmp_path / "ref").returncode == 0
    assert _same_final_weights(out, tmp_path / "ref")


def _limit_file_size():
    resource.setrlimit(resource.RLIMIT_FSIZE, (3000, 3000))  # metrics fit, a checkpoint not


def test_a_full_disk_is_one_line_and_the_folder_stays_usable(tmp_path):
    out = tmp_path / "run"
    proc = _cli(*SMALL, "--steps", 6, "--every", 3, "--out", out, preexec_fn=_limit_file_size)
    line = _one_line(proc, 2, r"File too large")
    assert f"rnnlab train --resume {out}" in line
    assert not list_checkpoints(out) and not [p for p in out.rglob("*.tmp")]
    done = _cli("--resume", out)
    assert done.returncode == 0, done.stderr
    assert _cli(*SMALL, "--steps", 6, "--every", 3, "--out", tmp_path / "ref").returncode == 0
    assert _same_final_weights(out, tmp_path / "ref")


def test_early_divergence_can_be_resumed_with_a_lower_lr(tmp_path):
    out = tmp_path / "run"
    _one_line(_cli(*SMALL, "--optimizer", "sgd", "--lr", "1e30", "--steps", 6, "--out", out), 3,
              r"no good checkpoint was written yet.*--resume \S+ restarts at step 0")
    done = _cli("--resume", out, "--lr", "0.01")
    assert done.returncode == 0, done.stderr
    assert [r["lr"] for r in read_metrics(out)] == [0.01] * 6


def test_an_empty_folder_is_not_a_dead_end(tmp_path):
    out = tmp_path / "empty"
    (out / "checkpoints").mkdir(parents=True)
    _one_line(_cli("--resume", out), 2, r"nothing to resume .* start a new run there with --out")
    assert not (out / ".lock").exists()
    assert _cli(*SMALL, "--steps", 2, "--out", out).returncode == 0


# ---------------------------------------------------------------- item 5: checkpoint fields


def _resign(path, edit):
    data = path.read_bytes()
    tensors = {k: v.copy() for k, v in load_file(path).items()}
    n = int.from_bytes(data[:8], "little")
    metadata = json.loads(data[8:8 + n])["__metadata__"]
    edit(metadata)
    metadata["sha256"] = io._digest(tensors, metadata)
    from safetensors.numpy import save
    path.write_bytes(save(tensors, metadata=metadata))


def _set(field, key, value):
    def edit(metadata):
        obj = json.loads(metadata[field])
        target = obj
        for k in key[:-1]:
            target = target[k]
        target[key[-1]] = value
        metadata[field] = json.dumps(obj)
    return edit


@pytest.mark.parametrize("edit, match", [
    (_set("metrics", ["seconds"], "abc"), r"metrics 'seconds' must be a number, got 'abc'"),
    (_set("metrics", ["best_loss"], "abc"), r"metrics 'best_loss' must be a number"),
    (_set("rng", ["state", "inc"], -1), r"rng 'inc' must be an integer in \[0, 2\^128\)"),
    (_set("rng", ["state", "inc"], 2 ** 200), r"rng 'inc' must be an integer in \[0, 2\^128\)"),
    (_set("config", ["hidden"], 10 ** 7), r"the config it holds cannot fit: training lstm "
                                          r"--hidden 10000000 .* need about"),
    (_set("optimizer", ["step"], 2 ** 70), r"metadata 'optimizer' must be"),
    (_set("metrics", ["best_step"], 99), r"metrics 'best_step' must be an int in \[0, 2\]"),
])
def test_fields_of_the_wrong_type_behind_a_valid_digest(tmp_path, edit, match):
    """The digest says the file is unchanged since written, not who wrote it: each field
    is checked and named (these gave ValueError, TypeError, OverflowError or MemoryError
    tracebacks)."""
    out = tmp_path / "run"
    assert _cli(*SMALL, "--steps", 2, "--every", 1, "--out", out).returncode == 0
    _resign(checkpoint_path(out, 2), edit)
    _one_line(_cli("--resume", out, "--steps", 3), 2, match)


# ---------------------------------------------------------------- item 7: sizes that cannot fit


def _limit_address_space():
    resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))


@pytest.mark.parametrize("hidden", [10 ** 7, 20000])
def test_a_hidden_size_that_cannot_fit_is_refused_at_once(tmp_path, hidden):
    start = time.monotonic()
    proc = _cli("--hidden", hidden, "--steps", 2, "--out", tmp_path / "run",
                preexec_fn=_limit_address_space)
    line = _one_line(proc, 2, rf"training lstm --hidden {hidden} .* need about .* but .* is "
                              rf"available")
    assert time.monotonic() - start < 30, line
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------- item 8: the last good checkpoint


def test_the_kept_checkpoint_is_good_and_a_resume_from_it_trains(tmp_path):
    """With --every 1, an update with lr 1e30 writes a checkpoint of exploded weights
    before the next step's loss is inf; the guard judges each checkpoint by the step after
    it, keeps the last one whose weights gave a healthy step, and names it."""
    out = tmp_path / "run"
    sgd = ["--optimizer", "sgd", "--every", 1]
    assert _cli(*SMALL, *sgd, "--lr", "0.01", "--steps", 5, "--out", out).returncode == 0
    line = _one_line(_cli("--resume", out, "--lr", "1e30", "--steps", 20), 3,
                     r"training diverged at step 7: .* the last good checkpoint is (\S+) ")
    kept = re.search(r"the last good checkpoint is (\S+) ", line).group(1)
    assert kept == str(checkpoint_path(out, 5)) and "removed 1 later one" in line
    assert list_checkpoints(out)[-1][1] == checkpoint_path(out, 5)
    assert max(float(np.abs(v).max()) for v in _weights(out).values()) < 100
    done = _cli("--resume", out, "--lr", "0.01", "--steps", 30)
    assert done.returncode == 0, done.stderr


def test_health_judges_against_the_runs_own_recent_history():
    from rnnlab.train.health import GRAD_FACTOR, LOSS_FACTOR, WINDOW, Health
    rng = np.random.default_rng(0)
    health = Health()
    assert health.check(5.0, 3.0) is None  # the first step sets the scale
    for _ in range(WINDOW):
        assert health.check(float(rng.uniform(0.9, 1.1)), float(rng.uniform(0.9, 1.1))) is None
    ref_loss, ref_grad = health.reference()
    assert 0.9 < ref_loss < 1.1 and 0.9 < ref_grad < 1.1  # the first step has left the window
    why = health.check(LOSS_FACTOR * ref_loss * 1.01, 1.0)
    assert why and why.startswith("loss") and f"median {ref_loss:.3g}" in why
    why = health.check(1.0, GRAD_FACTOR * ref_grad * 1.01)
    assert why and why.startswith("gradient norm")
    assert health.check(float("nan"), 1.0) == "not finite"
    assert health.reference() == (ref_loss, ref_grad)  # unhealthy steps do not move the bar
    assert health.check(LOSS_FACTOR * ref_loss * 0.99, 1.0) is None  # a spike within bounds
