"""Ctrl-C in the first second of `rnnlab`: one line and exit 130, never a traceback.

Real processes and real SIGINTs at delays that land in the imports (NumPy, the
command modules), in argument parsing, in the trainer's set-up and in its first steps.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

ENV = {**os.environ, "RNNLAB_BACKEND": "numpy"}


@pytest.mark.parametrize("delay", [0.05, 0.12, 0.2, 0.3, 0.45, 0.6, 0.8])
def test_early_ctrl_c_is_one_line_and_exit_130(tmp_path, delay):
    cmd = [sys.executable, "-m", "rnnlab", "train", "--model", "lstm", "--seq-len", "6",
           "--hidden", "5", "--batch", "3", "--steps", "1000000", "--out", str(tmp_path / "run")]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=ENV)
    try:
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, (proc.returncode, stderr)  # not -2: killed by the signal
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rnnlab"), stderr
    assert "interrupted" in lines[0], stderr
