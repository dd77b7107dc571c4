"""`rnnlab train` as a user runs it: subprocesses, exit codes, one-line errors, Ctrl-C, resume.

RNNLAB_BACKEND=numpy spares every subprocess the numba compile.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from safetensors.numpy import load_file

from rnnlab.train import checkpoint_path, list_checkpoints, read_metrics

ENV = {**os.environ, "RNNLAB_BACKEND": "numpy"}
SMALL = ["--model", "lstm", "--task", "adding", "--seq-len", "6", "--hidden", "5", "--batch", "3"]


def _cli(*args, timeout=60):
    return subprocess.run([sys.executable, "-m", "rnnlab", "train", *map(str, args)],
                          capture_output=True, text=True, env=ENV, timeout=timeout)


def _one_line_error(proc, code, match):
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert re.search(match, lines[0]), lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A short finished run, shared by the resume error cases."""
    out = tmp_path_factory.mktemp("cli") / "run"
    proc = _cli(*SMALL, "--steps", 3, "--every", 1, "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert re.match(r"rnnlab train: done, step 3/3, loss \S+ \(best", proc.stdout)
    return out


@pytest.mark.parametrize("args, match", [
    (["--bogus"], "unrecognized arguments: --bogus"),
    (["--lr", "-1"], r"argument --lr: must be a finite number > 0, got -1"),
    (["--lr", "nan"], r"argument --lr: must be a finite number > 0"),
    (["--hidden", "0"], r"argument --hidden: must be >= 1, got 0"),
    (["--steps", "ten"], r"argument --steps: expected an integer, got 'ten'"),
    (["--model", "tcn"], r"argument --model: invalid choice: 'tcn'"),
    (["--task", "digits", "--seq-len", "5"], r"seq_len applies to the adding/copy/sine task"),
    (["--resume", "{tmp}/missing"], r"--resume \S+/missing: no such folder"),
    (["--resume", "{tmp}/a-file"], r"--resume \S+/a-file: not a folder"),
    (["--resume", "{tmp}"], r"--resume \S+: no checkpoint in"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, match):
    (tmp_path / "a-file").write_text("not a run")
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    if "--resume" not in args:
        args += ["--out", str(tmp_path / "out")]
    _one_line_error(_cli(*args), 2, f"^rnnlab(?: train)?: error: {match}")


def test_resume_errors_against_a_real_run(finished_run, tmp_path):
    _one_line_error(_cli("--resume", finished_run, "--hidden", 7), 2,
                    r"--hidden 7 conflicts with the run in .* \(hidden 5\)")
    _one_line_error(_cli(*SMALL, "--steps", 3, "--out", finished_run), 2,
                    r"already holds a run .* continue it with --resume")
    _one_line_error(_cli("--resume", finished_run, "--out", tmp_path), 2, "different folders")

    # a damaged newest checkpoint in a copy of the run
    import shutil
    copy = tmp_path / "copy"
    shutil.copytree(finished_run, copy)
    path = checkpoint_path(copy, 3)
    path.write_bytes(path.read_bytes()[:100])
    _one_line_error(_cli("--resume", copy, "--steps", 4), 2,
                    r"step-00000003.safetensors: not a readable safetensors file")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any folder")
def test_unreadable_resume_folder(finished_run, tmp_path):
    import shutil
    copy = tmp_path / "locked"
    shutil.copytree(finished_run, copy)
    os.chmod(copy / "checkpoints", 0)
    try:
        _one_line_error(_cli("--resume", copy), 2, r"--resume \S+: cannot read")
    finally:
        os.chmod(copy / "checkpoints", 0o755)


def test_huge_lr_exits_3_and_keeps_the_last_good_checkpoint(tmp_path):
    out = tmp_path / "run"
    proc = _cli(*SMALL, "--optimizer", "sgd", "--lr", "1e30", "--steps", 20, "--every", 1,
                "--out", out)
    line = _one_line_error(proc, 3, r"^rnnlab train: error: training diverged at step (\d+): ")
    step = int(re.search(r"at step (\d+)", line).group(1))
    good = checkpoint_path(out, step - 1)
    assert str(good) in line and "--clip" in line and "lower --lr" in line
    assert [s for s, _ in list_checkpoints(out)][-1] == step - 1
    assert good.exists()


def _final_weights(run_dir):
    _, path = list_checkpoints(run_dir)[-1]
    return load_file(path)


def test_model_gru_trains_a_gru(tmp_path):
    """`--model gru` builds the GRU: its checkpoint holds weights of 3H rows, torch's names."""
    out = tmp_path / "run"
    proc = _cli(*[a if a != "lstm" else "gru" for a in SMALL], "--steps", 2, "--out", out)
    assert proc.returncode == 0, proc.stderr
    weights = _final_weights(out)
    assert weights["model.body.weight_ih_l0"].shape == (15, 2)  # 3H × the adding task's 2 features
    assert weights["model.body.weight_hh_l0"].shape == (15, 5)


def test_sigint_saves_a_checkpoint_exits_130_and_resumes_exactly(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "rnnlab", "train", *SMALL, "--steps", "1000000",
           "--every", "5", "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=ENV)
    try:
        deadline = time.monotonic() + 30
        while not list_checkpoints(out):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no checkpoint after 30 s"
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    m = re.fullmatch(r"rnnlab train: interrupted at step (\d+)/1000000; checkpoint saved to "
                     r"(\S+); continue with: rnnlab train --resume \S+", lines[0])
    assert m, lines[0]
    stopped_at = int(m.group(1))
    assert m.group(2) == str(checkpoint_path(out, stopped_at))
    assert checkpoint_path(out, stopped_at).exists()
    assert len(read_metrics(out)) == stopped_at

    # Continue to a total of stopped_at + 6 steps; compare with an uninterrupted run.
    total = stopped_at + 6
    done = _cli("--resume", out, "--steps", total)
    assert done.returncode == 0, done.stderr
    assert f"step {total}/{total}" in done.stdout
    ref = tmp_path / "ref"
    assert _cli(*SMALL, "--steps", total, "--out", ref).returncode == 0
    resumed, uninterrupted = _final_weights(out), _final_weights(ref)
    assert resumed.keys() == uninterrupted.keys()
    for key in resumed:  # model weights and optimizer buffers
        assert np.array_equal(resumed[key], uninterrupted[key]), key
    assert ([(r["step"], r["loss"]) for r in read_metrics(out)]
            == [(r["step"], r["loss"]) for r in read_metrics(ref)])
