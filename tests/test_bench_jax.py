"""The JAX peer of the benchmark does rnnlab's training step: same losses, same weights.

rnnlab's step matches torch's (tests/test_bench.py), so rnnlab is the oracle here.
Shapes are drawn at random per case, biases are random and clearly non-zero.
The thread setting is checked in child processes, since XLA reads it once, at start.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zlib

import numpy as np
import pytest

jax = pytest.importorskip("jax")

from conftest import assert_close  # noqa: E402
from rnnlab.bench._jax_models import configure_threads, jax_step  # noqa: E402
from rnnlab.bench.models import Point, build_rnnlab, make_data, rnnlab_step  # noqa: E402
from rnnlab.optim import SGD  # noqa: E402

F32 = np.float32
SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
CASES = [(model, momentum, trial) for model in ("mlp", "rnn", "lstm", "gru")
         for momentum in (0.0, 0.9) for trial in range(2)]


def _random_case(model, trial):
    """A random small point and its rnnlab model, with clearly non-zero biases."""
    rng = np.random.default_rng(zlib.crc32(f"{model}-{trial}".encode()))
    point = Point(model, d=int(rng.integers(1, 6)), n=int(rng.integers(1, 6)),
                  m=int(rng.integers(1, 8)), T=int(rng.integers(1, 7)), k=int(rng.integers(1, 5)))
    net = build_rnnlab(point, seed=int(rng.integers(1000)))
    for name, p in net.named_parameters():
        if "bias" in name:
            p.data[...] = rng.uniform(0.2, 0.8, p.shape) * rng.choice([-1, 1], p.shape)
    return point, net


@pytest.mark.parametrize("model,momentum,trial", CASES)
def test_jax_step_is_rnnlabs_step(model, momentum, trial):
    """Three steps from the same weights and data: the same losses and weights on both sides.

    The JAX side runs first, so a step that wrote into rnnlab's arrays (through
    donation) would change the rnnlab side's losses. The total update (weights
    after − before) is compared too, since the weights alone barely move.
    """
    point, net = _random_case(model, trial)
    x, y = make_data(point, seed=trial)
    initial = {name: np.array(value) for name, value in net.state_dict().items()}

    step = jax_step(point, net.state_dict(), x, y, lr=0.1, momentum=momentum)
    jax_losses = [step() for _ in range(3)]
    for name, value in net.state_dict().items():
        assert np.array_equal(value, initial[name]), f"the JAX step changed rnnlab's {name}"

    ours = rnnlab_step(net, SGD(net.parameters(), lr=0.1, momentum=momentum), x, y)
    losses = [ours() for _ in range(3)]

    for i, (got, want) in enumerate(zip(jax_losses, losses)):
        assert isinstance(got, jax.Array) and got.dtype == F32 and got.shape == ()
        assert_close(np.asarray(got), want, F32, f"loss of step {i}")
    params = step.params()
    assert set(params) == set(initial)
    for name, value in net.state_dict().items():
        assert params[name].dtype == F32
        assert_close(params[name], value, F32, f"{name} after 3 steps")
        assert_close(params[name] - initial[name], value - initial[name], F32,
                     f"update of {name} over 3 steps")


def test_jax_step_rejects_what_does_not_fit_the_point():
    point, net = _random_case("lstm", 0)
    x, y = make_data(point)
    sd = net.state_dict()
    with pytest.raises(ValueError, match="expected keys"):
        jax_step(point, {k: v for k, v in sd.items() if k != "head.bias"}, x, y)
    with pytest.raises(ValueError, match=r"body.weight_hh_l0.*expected shape"):
        jax_step(point, {**sd, "body.weight_hh_l0": np.zeros((1, 1), F32)}, x, y)
    with pytest.raises(TypeError, match="x: expected a float32 ndarray, got float64"):
        jax_step(point, sd, x.astype(np.float64), y)
    with pytest.raises(ValueError, match="y: expected shape"):
        jax_step(point, sd, x, y[:, :0])
    with pytest.raises(ValueError, match="momentum must be a non-negative number"):
        jax_step(point, sd, x, y, momentum=-0.5)
    with pytest.raises(ValueError, match="threads must be a positive integer, got 0"):
        configure_threads(0)


def test_configure_threads_after_import_changes_nothing(monkeypatch):
    monkeypatch.delenv("PJRT_NPROC", raising=False)
    monkeypatch.setenv("XLA_FLAGS", "")
    note = configure_threads(1)  # jax is imported in this process
    assert "already imported" in note
    assert "PJRT_NPROC" not in os.environ and os.environ["XLA_FLAGS"] == ""


_CHILD = """
import json, os, sys
import rnnlab, rnnlab.bench, rnnlab.cli  # none of them may import jax (it fixes the threads)
from rnnlab.bench._jax_models import configure_threads
threads = int(sys.argv[1])
note = configure_threads(threads) if threads else ""
import jax, jax.numpy as jnp
value = float(jax.jit(lambda a: (a @ a).sum())(jnp.full((64, 64), 0.5, jnp.float32)))
print(json.dumps({"note": note, "value": value, "threads": len(os.listdir("/proc/self/task")),
                  "PJRT_NPROC": os.environ.get("PJRT_NPROC"), "XLA_FLAGS": os.environ.get("XLA_FLAGS")}))
"""


def _child(threads: int, **environ: str) -> dict:
    """Run _CHILD in a fresh interpreter (an XLA flag is read once, and a bad one aborts)."""
    env = {**os.environ, "PYTHONPATH": SRC}
    for name in ("PJRT_NPROC", "NPROC", "XLA_FLAGS"):
        env.pop(name, None)
    env.update(environ)
    done = subprocess.run([sys.executable, "-c", _CHILD, str(threads)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="counts threads in /proc")
def test_configure_threads_one_thread_in_a_child():
    """threads=1 sets PJRT_NPROC and the single-thread flag after rnnlab is imported (so
    rnnlab never imports jax), jax still runs, and XLA starts fewer threads than by default
    (on a machine with more than one core)."""
    child = _child(1)
    assert child["PJRT_NPROC"] == "1"
    assert child["XLA_FLAGS"] == "--xla_cpu_multi_thread_eigen=false"
    assert "PJRT_NPROC=1" in child["note"]
    assert child["value"] == 64 * 64 * 64 * 0.25
    if (os.cpu_count() or 1) > 1:
        assert child["threads"] < _child(0)["threads"]


def test_configure_threads_all_cores_sets_nothing():
    child = _child(os.cpu_count() or 1)
    assert child["PJRT_NPROC"] is None and child["XLA_FLAGS"] is None
    assert "nothing set" in child["note"]
    child = _child(os.cpu_count() or 1, PJRT_NPROC="3")  # the user's own setting is kept
    assert child["PJRT_NPROC"] == "3" and "PJRT_NPROC=3 from the environment" in child["note"]


def test_without_jax(monkeypatch):
    """A missing jax gives import_jax() None and jax_step a clear ImportError."""
    from rnnlab.bench._jax_models import import_jax

    point, net = _random_case("rnn", 0)
    x, y = make_data(point)
    monkeypatch.setitem(sys.modules, "jax", None)  # `import jax` raises ImportError
    assert import_jax() is None
    with pytest.raises(ImportError, match="jax is not installed"):
        jax_step(point, net.state_dict(), x, y)
