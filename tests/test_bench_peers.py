"""The peers of ``rnnlab bench``: every side of a point does the same work from the same
weights, the reference side runs rnnlab's NumPy loops, and ``--vs`` checks its peers before
a run. Speed is never asserted here (the JAX side's own tests: tests/test_bench_jax.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rnnlab.bench import BenchConfig, Point, build_sides, run_timing
from rnnlab.bench import peers as bench_peers
from rnnlab.functional.backend import get_backend

POINTS = [Point(model, d, n, m, T) for model, d, n, m, T in
          [("mlp", 5, 3, 7, 4), ("rnn", 6, 4, 9, 3), ("lstm", 3, 5, 6, 5), ("gru", 4, 2, 8, 6)]]


@pytest.mark.parametrize("point", POINTS, ids=lambda p: p.model)
def test_sides_train_alike(torch, point):
    """rnnlab, its NumPy reference and torch, from one seed: three SGD steps with momentum
    give the same losses on every side (float32 rounding), and different seeds do not."""
    sides = build_sides(point, ("torch", "reference"), seed=3, lr=0.1, momentum=0.9)
    assert [s.name for s in sides] == ["rnnlab", "torch", "reference"]
    losses = {s.name: [s.loss(s.step()) for _ in range(3)] for s in sides}
    for name in ("torch", "reference"):
        np.testing.assert_allclose(losses[name], losses["rnnlab"], rtol=1e-4)
    assert losses["rnnlab"][2] != losses["rnnlab"][0]  # the steps do train
    other = build_sides(point, ("reference",), seed=4, lr=0.1, momentum=0.9)[1]
    assert not np.isclose(other.loss(other.step()), losses["rnnlab"][0], rtol=1e-4)


def test_reference_side_runs_numpy_loops(monkeypatch):
    """The reference side's step runs under the "numpy" backend, and rnnlab's does not
    change its backend; the setting is restored after each reference step."""
    seen = []

    def spy_step(model, optimizer, x, y):
        return lambda: seen.append(get_backend()) or 0.0

    monkeypatch.setattr(bench_peers, "rnnlab_step", spy_step)
    before = get_backend()
    sides = build_sides(Point("lstm", 2, 3, 4, 2), ("reference",))
    sides[1].step()
    assert seen == ["numpy"] and get_backend() == before


def test_unknown_peer_is_refused():
    with pytest.raises(ValueError, match="peers must be among"):
        build_sides(Point("rnn", 2, 3, 4, 2), ("tensorflow",))
    with pytest.raises(ValueError, match="vs must be"):
        BenchConfig(vs=("torch", "tensorflow"))
    assert BenchConfig(vs="none").vs == () and BenchConfig(vs="jax").vs == ("jax",)


def test_run_with_the_reference_reports_its_ratios(tmp_path):
    """A tiny run against the reference alone: each point's ratio_reference is rnnlab's
    median over the reference's, the summary's geomean is theirs, and the Markdown has the
    per-peer table; with no torch, the torch ratio stays empty."""
    from rnnlab.bench import write_results

    config = BenchConfig(grid="tiny", models=("rnn", "mlp"), vs="reference", budget=0.01,
                         warmup=1, min_repeats=2, gemm_size=64, gemm_budget=0.01)
    results = run_timing(config, progress=False)
    assert results["peers"] == ["reference"] and results["vs"] == "none"
    for row in results["points"]:
        assert row["ratio_reference"] == pytest.approx(
            row["rnnlab_median_s"] / row["reference_median_s"])
        assert row["ratio"] is None and row["reference_median_s"] > 0
    for model in ("rnn", "mlp"):
        ratios = [r["ratio_reference"] for r in results["points"] if r["model"] == model]
        found = results["summary"][model]["peers"]["reference"]
        assert found["geomean_ratio"] == pytest.approx(np.exp(np.mean(np.log(ratios))))
        assert found["worst"]["ratio"] == max(ratios)
    paths = write_results(results, tmp_path)
    markdown = paths["markdown"].read_text()
    assert "rnnlab / its NumPy reference step time" in markdown and "÷ ref" in markdown
    assert json.loads(paths["json"].read_text())["peers"] == ["reference"]


@pytest.mark.parametrize("args, message", [
    (["--vs", "none", "torch"], "--vs none stands alone"),
    (["--vs", "jax"], "jax is not installed"),
])
def test_cli_refuses_bad_peers(monkeypatch, tmp_path, capsys, args, message):
    """A user error in --vs is one line and exit 2, before any folder is made."""
    import importlib.util

    from rnnlab.cli import main

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "jax" else real(name, *a))
    out = tmp_path / "x"
    assert main(["bench", *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_cli_with_jax_sets_its_threads_first(tmp_path):
    """`rnnlab bench --vs jax reference --threads 1` in a fresh process: XLA's pool is sized
    before jax is imported (the machine facts say so), and every point has both ratios and
    a finite loss on every side."""
    import subprocess
    import sys

    pytest.importorskip("jax")
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "rnnlab", "bench", "--grid", "tiny", "--models",
                           "rnn,lstm", "--vs", "jax", "reference", "--threads", "1", "--budget",
                           "0.01", "--no-progress", "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    results = json.loads((out / "bench.json").read_text())
    assert results["peers"] == ["jax", "reference"]
    assert "PJRT_NPROC=1" in results["machine"]["jax_threads_note"]
    assert results["machine"]["jax"]
    for row in results["points"]:
        assert row["ratio_jax"] > 0 and row["ratio_reference"] > 0 and row["ratio"] is None
        assert all(np.isfinite(row[f"{side}_loss"]) for side in ("rnnlab", "jax", "reference"))
    assert "÷ jax" in (out / "bench.md").read_text()


def test_rows_name_each_cells_own_plan(monkeypatch):
    """The "loops" column asks the planner about the point's own cell (a GRU's row once
    showed the RNN's plan)."""
    from rnnlab.bench import runner

    asked = []
    monkeypatch.setattr(runner, "loops_for", lambda d, m, cell, T: asked.append(cell) or cell)
    monkeypatch.setattr(runner, "interleave", lambda fns, **kw: [[1e-3, 2e-3] for _ in fns])
    config = BenchConfig(grid="tiny", vs="none", warmup=1)
    for model, cell in (("rnn", "rnn_tanh"), ("lstm", "lstm"), ("gru", "gru")):
        row = runner._time_point(Point(model, 2, 3, 4, 2), config, [0.0])
        assert row["loops"] == cell
    assert asked == ["rnn_tanh", "lstm", "gru"]
