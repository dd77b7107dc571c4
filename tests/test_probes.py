"""Hooks into other libraries' internals prove themselves in a child process first
(rnnlab.kernels.probes): a crash there disables the path, verdicts are cached on disk
per machine and versions, and a version change asks again."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rnnlab.kernels import cache, probes


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    """An empty cache folder and no verdicts in this process (restored afterwards)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(probes, "_memo", {})
    return tmp_path


def _counting_child(monkeypatch, tmp_path, verdict='{"ok": true, "detail": "fake"}', code=0):
    """Replace the child by one that counts its runs in a file and prints ``verdict``."""
    counter = tmp_path / "runs"
    script = (f"import pathlib; p = pathlib.Path({str(counter)!r}); "
              f"p.write_text(str(int(p.read_text() if p.exists() else 0) + 1)); "
              f"print({probes._MARK!r} + {verdict!r}); raise SystemExit({code})")
    monkeypatch.setattr(probes, "_child_argv", lambda name: [sys.executable, "-c", script])
    return lambda: int(counter.read_text()) if counter.exists() else 0


def test_cache_folder_honours_xdg_cache_home(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert cache.cache_root() == tmp_path / "x" / "rnnlab"
    monkeypatch.setenv("XDG_CACHE_HOME", "")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache.cache_root() == tmp_path / "home" / ".cache" / "rnnlab"
    assert cache.machine_dir().parent == tmp_path / "home" / ".cache" / "rnnlab"


def test_a_crashing_probe_disables_its_path_and_is_remembered(fresh, monkeypatch):
    """The real probe of NumPy's tanh loop, made to abort in its child: the verdict says
    so, the caller gets no loop (and keeps np.tanh), and the verdict is on disk."""
    from rnnlab.kernels import numpy_tanh
    monkeypatch.setenv("RNNLAB_PROBE_TEST_ABORT", "numpy_tanh")
    assert not probes.proven("numpy_tanh")
    assert "SIGABRT" in probes.verdict("numpy_tanh")["detail"]
    assert numpy_tanh.float32_loop() is None
    stored = json.loads((cache.machine_dir() / "probes.json").read_text())
    assert stored["numpy_tanh"]["ok"] is False


def test_the_pool_is_off_after_its_probe_crashed(tmp_path):
    """In a fresh process whose pool probe aborts: one thread, and an LSTM step large
    enough for the pool still matches the NumPy reference."""
    pytest.importorskip("threadpoolctl")
    from rnnlab.functional.backend import numba_available
    if not numba_available():
        pytest.skip("the pool's jobs are compiled")
    code = (
        "import numpy as np\n"
        "from threadpoolctl import threadpool_limits\n"
        "from rnnlab.functional import recurrent as R\n"
        "from rnnlab.kernels import blas_pool\n"
        "from rnnlab.functional.backend import use_backend\n"
        "rng = np.random.default_rng(0)\n"
        "x = rng.standard_normal((2, 256, 3)).astype(np.float32)\n"
        "w = [rng.uniform(-.1, .1, s).astype(np.float32)\n"
        "     for s in ((512, 3), (512, 128), (512,), (512,))]\n"
        "outs = []\n"
        "with threadpool_limits(2):\n"
        "    print(blas_pool.threads())\n"
        "    for name in ('fused', 'numpy'):\n"
        "        with use_backend(name):\n"
        "            outs.append(R.lstm_forward(x, None, None, *w)[0][0].copy())\n"
        "print(float(np.abs(outs[0] - outs[1]).max()))\n")
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path), RNNLAB_PROBE_TEST_ABORT="blas_pool",
               RNNLAB_BLAS_POOL="1")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    threads, error = done.stdout.split()
    assert threads == "1"
    assert float(error) < 1e-5
    stored = json.loads(next(Path(tmp_path).glob("rnnlab/machine-*/probes.json")).read_text())
    assert stored["blas_pool"]["ok"] is False and "SIGABRT" in stored["blas_pool"]["detail"]


def test_a_verdict_is_reused_from_disk_and_a_version_change_asks_again(fresh, monkeypatch):
    runs = _counting_child(monkeypatch, fresh)
    assert probes.proven("llvm_kernels") and runs() == 1
    probes.forget()  # as a new process would: only the disk remembers
    assert probes.proven("llvm_kernels") and runs() == 1
    key = dict(cache.machine_key(), numpy="0.0.fake")
    monkeypatch.setattr(cache, "machine_key", lambda: key)
    probes.forget()
    assert probes.proven("llvm_kernels") and runs() == 2


def test_a_failing_exit_or_a_bad_verdict_disables(fresh, monkeypatch):
    runs = _counting_child(monkeypatch, fresh, code=3)
    assert not probes.proven("blas_pool")
    assert "exited 3" in probes.verdict("blas_pool")["detail"]
    _counting_child(monkeypatch, fresh, verdict='{"ok": "yes"}')
    assert not probes.proven("numpy_tanh")
    assert runs() == 2


def test_a_timeout_disables_for_this_process_only(fresh, monkeypatch):
    monkeypatch.setattr(probes, "TIMEOUT_SECONDS", 0.5)
    monkeypatch.setattr(probes, "_child_argv",
                        lambda name: [sys.executable, "-c", "import time; time.sleep(30)"])
    assert not probes.proven("llvm_kernels")
    assert probes.verdict("llvm_kernels")["timeout"] is True
    assert "llvm_kernels" not in cache.read_json("probes.json")


def test_an_undecided_verdict_is_not_cached(fresh, monkeypatch):
    runs = _counting_child(monkeypatch, fresh, verdict='{"ok": null, "detail": "one thread"}')
    assert not probes.proven("blas_pool")
    probes.forget()
    assert not probes.proven("blas_pool") and runs() == 2


def test_numba_is_judged_by_importing_it(tmp_path):
    """A numba that is installed but fails to import (as numba 0.60 beside NumPy 2.4 does)
    counts as absent: the default backend runs NumPy, and an LSTM and an MLP work."""
    fake = tmp_path / "numba"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise ImportError('Numba needs NumPy 2.0 or less')\n")
    code = ("import numpy as np\n"
            "from rnnlab.functional.backend import numba_available, get_backend\n"
            "from rnnlab.nn import LSTM, MLP\n"
            "x = np.ones((3, 2, 4), dtype=np.float32)\n"
            "out, _ = LSTM(4, 5, rng=0)(x)\n"
            "mlp = MLP([4, 6, 2], activation='tanh', rng=0)\n"
            "mlp.backward(np.ones_like(mlp(x[0])))\n"
            "print(numba_available(), get_backend())\n")
    path = os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])
    env = dict(os.environ, PYTHONPATH=path, XDG_CACHE_HOME=str(tmp_path / "xdg"))
    env.pop("RNNLAB_BACKEND", None)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["False", "numpy"]
