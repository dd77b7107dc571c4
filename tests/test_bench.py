"""The benchmark itself: both sides do the same work, the harness measures what it says,
and ``rnnlab bench`` runs end to end. Speed is never asserted here."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys

import numpy as np
import pytest

from conftest import assert_close
from rnnlab.bench import (BenchConfig, Point, grid_points, interleave, make_pair, percentile,
                          run_timing, step_peak_memory, summarize, summarize_ratios, write_results)
from rnnlab.bench import models as bench_models
from rnnlab.analysis.complexity import model_bptt_memory, model_training_flops

F32 = np.float32


# ------------------------------------------------------------------ same work on both sides

POINTS = [Point(model, d, n, m, T) for model in ("mlp", "rnn", "lstm", "gru")
          for d, n, m, T in [(1, 3, 5, 4), (6, 4, 7, 3), (3, 5, 6, 1)]]


@pytest.mark.parametrize("point", POINTS, ids=lambda p: p.label().replace(" ", "-"))
def test_steps_do_the_same_work(torch, point):
    """From the same weights and data, two steps give the same losses, gradients and weights.

    Two steps, with momentum: the second step also checks that each side clears its
    gradients between steps. The update (new − old weights) is compared too, since
    the weights alone barely move in one step.
    """
    pair = make_pair(point, seed=7, lr=0.1, momentum=0.9, with_torch=True)
    ours = dict(pair.rnnlab_model.named_parameters())
    theirs = dict(pair.torch_model.named_parameters())
    assert set(ours) == set(theirs)
    for name in ours:
        assert_close(ours[name].data, theirs[name].detach().numpy(), F32, f"initial {name}")
    for step in range(2):
        before = {name: p.data.copy() for name, p in ours.items()}
        loss = pair.rnnlab_step()
        torch_loss = pair.torch_step().item()
        assert isinstance(loss, float)
        assert_close(loss, torch_loss, F32, f"loss of step {step}")
        for name, p in ours.items():
            t = theirs[name]
            assert_close(p.grad, t.grad.numpy(), F32, f"grad of {name}, step {step}")
            assert_close(p.data, t.detach().numpy(), F32, f"{name} after step {step}")
            assert_close(p.data - before[name], t.detach().numpy() - before[name], F32,
                         f"update of {name}, step {step}")


def test_data_and_weights_shapes():
    point = Point("mlp", 3, 4, 5, 6)
    x, y = bench_models.make_data(point)
    assert x.shape == (3, 24) and y.shape == (3, 10) and x.dtype == y.dtype == F32
    x_seq, _ = bench_models.make_data(Point("lstm", 3, 4, 5, 6))
    assert x_seq.shape == (6, 3, 4)
    # the MLP sees sample i's sequence, flattened step-major
    np.testing.assert_array_equal(x[1], x_seq[:, 1, :].reshape(-1))


def test_point_validation():
    with pytest.raises(ValueError):
        Point("transformer", 1, 1, 1, 1)
    with pytest.raises(ValueError):
        Point("rnn", 0, 1, 1, 1)


# ------------------------------------------------------------------ statistics and harness


@pytest.mark.parametrize("size", [1, 2, 3, 10, 101, 1000])
def test_summarize_matches_numpy_percentile(size):
    rng = np.random.default_rng(size)
    data = rng.lognormal(size=size)
    stats = summarize(list(data))
    for q, value in [(50, stats.median), (10, stats.p10), (90, stats.p90)]:
        assert value == pytest.approx(np.percentile(data, q), rel=1e-12, abs=0)
    assert stats.n == size and stats.min == data.min() and stats.max == data.max()
    assert stats.mean == pytest.approx(data.mean())
    for q in rng.uniform(0, 100, size=5):
        assert percentile(sorted(data), q) == pytest.approx(np.percentile(data, q), rel=1e-12)


def test_summarize_rejects_empty():
    with pytest.raises(ValueError):
        summarize([])


class _FakeClock:
    """Advances by a fixed tick on every reading."""

    def __init__(self, tick):
        self.now, self.tick = 0.0, tick

    def __call__(self):
        self.now += self.tick
        return self.now


def test_interleave_order_is_abab():
    calls = []
    clock = _FakeClock(0.01)
    samples = interleave([lambda: calls.append("A"), lambda: calls.append("B")], budget=0.2,
                         warmup=2, min_repeats=3, clock=clock)
    assert calls == ["A", "B"] * (len(calls) // 2)
    rounds = len(calls) // 2 - 2  # minus the warm-up rounds
    assert len(samples) == 2 and len(samples[0]) == len(samples[1]) == rounds
    assert rounds >= 3
    # each timed call spans exactly one clock tick (two readings)
    assert all(s == pytest.approx(0.01) for side in samples for s in side)


def test_interleave_budget_and_repeats():
    # budget spent quickly: min_repeats still holds
    samples = interleave([lambda: None], budget=0.0, warmup=0, min_repeats=7,
                         clock=_FakeClock(1.0))
    assert len(samples[0]) == 7
    # a long budget: the rounds fill it (each round reads the clock 3 times: 2 ticks in it)
    samples = interleave([lambda: None, lambda: None], budget=10.0, warmup=0, min_repeats=1,
                         clock=_FakeClock(0.5))
    assert 3 <= len(samples[0]) <= 6
    # a warm-up budget ends the warm-up after the round that spends it
    calls = []
    interleave([lambda: calls.append(1)], budget=0.0, warmup=10, min_repeats=1,
               warmup_budget=3.5, clock=_FakeClock(1.0))
    assert len(calls) == 2 + 1  # two warm-up calls (3 clock readings each), one timed
    # max_repeats caps it
    samples = interleave([lambda: None], budget=1e9, warmup=0, min_repeats=1, max_repeats=4,
                         clock=_FakeClock(1e-6))
    assert len(samples[0]) == 4
    with pytest.raises(ValueError):
        interleave([], budget=1.0)


class _SteppedClock:
    """A clock that each callable advances by its own duration (the clock reads between calls)."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def call(self, seconds):
        def fn():
            self.now += seconds
        return fn


def test_interleave_yardstick_does_not_count_toward_repeats():
    """A callable marked not counted (a GEMM yardstick) neither ends the rounds by reaching
    max_repeats nor lengthens them for min_repeats; its blocks are not cut at the cap."""
    clock = _SteppedClock()
    step, yardstick = clock.call(1.0), clock.call(0.01)  # one step per block, ~6 yardsticks
    kw = dict(budget=0.0, warmup=0, min_repeats=3, max_repeats=3, block=0.05, clock=clock,
              sleep=lambda s: None)
    counted = interleave([step, yardstick], counted=[True, False], **kw)
    assert len(counted[0]) == 3 and len(counted[1]) >= 3 * 5  # rounds end on the step's cap
    everything = interleave([step, yardstick], **kw)
    assert len(everything[0]) == 1 and len(everything[1]) == 3  # the yardstick's cap ended it
    kw.update(max_repeats=None, min_repeats=4, min_rounds=1)
    slow_yardstick = interleave([clock.call(0.01), clock.call(1.0)], counted=[True, False], **kw)
    assert len(slow_yardstick[1]) == 1  # 6 steps in the first block: no round for its sake
    with pytest.raises(ValueError):
        interleave([step, yardstick], counted=[True], **kw)
    with pytest.raises(ValueError):
        interleave([step, yardstick], counted=[False, False], **kw)


def test_interleave_blocks_with_settle():
    """Blocks: settle sleep, one untimed waking call, then timed calls filling the block;
    the blocks alternate A B A B."""
    events = []
    clock = _FakeClock(0.01)
    sleeps = []

    def sleep(seconds):
        sleeps.append(seconds)
        events.append("sleep")

    samples = interleave([lambda: events.append("A"), lambda: events.append("B")], budget=0.0,
                         warmup=1, min_repeats=1, min_rounds=2, settle=0.5, block=0.05,
                         clock=clock, sleep=sleep)
    assert events[:2] == ["A", "B"]  # warm-up
    blocks = " ".join(events[2:]).split("sleep")[1:]
    assert [b.split()[0] for b in blocks] == ["A", "B", "A", "B"]  # interleaved blocks
    for b in blocks:  # one untimed call (warm-up took < settle) + the timed ones
        assert len(set(b.split())) == 1 and len(b.split()) >= 2
    assert sleeps == [0.5] * 4
    assert len(samples[0]) == sum(len(b.split()) - 1 for b in blocks[::2])
    # one settle time per callable: each sleep is the one before that callable's block;
    # the waking call is for calls shorter than the longest settle time, on every side
    sleeps.clear()
    events.clear()
    interleave([lambda: events.append("A"), lambda: events.append("B")], budget=0.0,
               warmup=1, min_repeats=1, min_rounds=2, settle=[0.005, 0.5], block=0.0,
               clock=clock, sleep=sleep)
    assert sleeps == [0.005, 0.5, 0.005, 0.5]
    # both wake their threads with an untimed call: their calls (0.01 s on this clock) are
    # shorter than the longest settle time, though longer than A's own
    assert " ".join(events[2:]) == "sleep A A sleep B B sleep A A sleep B B"
    with pytest.raises(ValueError, match="one settle time per callable"):
        interleave([lambda: None], budget=0.0, settle=[0.1, 0.1])
    with pytest.raises(ValueError, match="need budget, warmup, settle, block >= 0"):
        interleave([lambda: None, lambda: None], budget=0.0, settle=[0.1, -0.1])
    # a call slower than the settle is not repeated to wake the threads
    events.clear()
    interleave([lambda: events.append("A")], budget=0.0, warmup=1, min_repeats=1,
               settle=0.001, block=0.0, clock=clock, sleep=sleep)
    assert events == ["A", "sleep", "A"]


def test_summarize_ratios():
    rows = [{"model": "rnn", "d": d, "n": 8, "m": 32, "T": 4, "flops": f, "ratio": r,
             "rnnlab_gflops": 10.0, "torch_gflops": 20.0}
            for d, f, r in [(1, 100, 0.5), (32, 1000, 2.0), (256, 10, 1.0)]]
    s = summarize_ratios(rows, peak_gflops=100.0)["rnn"]
    assert s["geomean_ratio"] == pytest.approx(1.0)
    assert s["worst"]["ratio"] == 2.0 and s["worst"]["d"] == 32
    assert s["best"]["ratio"] == 0.5
    assert s["largest"]["d"] == 32
    assert s["largest"]["rnnlab_peak_share"] == pytest.approx(0.1)
    assert s["largest"]["torch_peak_share"] == pytest.approx(0.2)


def test_grids():
    tiny = grid_points("tiny")
    assert {p.model for p in tiny} == {"mlp", "rnn", "lstm", "gru"}
    full = grid_points("full", ["lstm"])
    assert len(full) == 3 * 2 * 3 * 3 and {p.k for p in full} == {10}
    assert {(p.d, p.n, p.m, p.T) for p in grid_points("small")} <= {
        (p.d, p.n, p.m, p.T) for p in full}
    with pytest.raises(ValueError):
        grid_points("nope")


# ------------------------------------------------------------------ library runs


def test_run_without_torch(monkeypatch, tmp_path):
    """Without torch, the run times rnnlab alone and says so."""
    from rnnlab.bench import runner

    monkeypatch.setattr(runner, "import_torch", lambda: None)
    config = BenchConfig(grid="tiny", models=("rnn",), vs="none", budget=0.01, warmup=1,
                         min_repeats=2, gemm_size=64, gemm_budget=0.01)
    results = run_timing(config, progress=False)
    assert results["vs"] == "none" and "alone" in results["torch_note"]
    assert all(r["ratio"] is None and r["rnnlab_median_s"] > 0 for r in results["points"])
    with pytest.raises(ImportError):
        run_timing(BenchConfig(grid="tiny", vs="torch"), progress=False)
    paths = write_results(results, tmp_path / "out")
    assert all(p.exists() for p in paths.values())


def test_cli_without_torch_times_rnnlab_alone(monkeypatch, tmp_path, capsys):
    """No torch: the command (without --vs) says so, times rnnlab alone, exits 0;
    an explicit --vs torch is a one-line user error."""
    import rnnlab.bench
    from rnnlab.bench import runner
    from rnnlab.cli import main

    monkeypatch.setattr(rnnlab.bench, "import_torch", lambda: None)
    monkeypatch.setattr(runner, "import_torch", lambda: None)
    out = tmp_path / "alone"
    code = main(["bench", "--grid", "tiny", "--models", "mlp", "--budget", "0.01",
                 "--no-progress", "--out", str(out)])
    assert code == 0
    assert "rnnlab alone" in capsys.readouterr().out
    assert json.loads((out / "bench.json").read_text())["vs"] == "none"
    assert main(["bench", "--vs", "torch", "--out", str(tmp_path / "x")]) == 2
    assert "torch does not import" in capsys.readouterr().err


def test_step_peak_memory_is_at_least_the_minimum():
    point = Point("lstm", 4, 3, 8, 5)
    row = step_peak_memory(point)
    assert row["min_bytes"] == model_bptt_memory("lstm", 4, 3, 8, 5).bytes
    assert row["peak_bytes"] >= row["min_bytes"]
    assert row["ratio"] == pytest.approx(row["peak_bytes"] / row["min_bytes"])
    assert math.isfinite(row["loss"])


# ------------------------------------------------------------------ the command, end to end


def _rnnlab(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "rnnlab", "bench", *args],
                          capture_output=True, text=True, timeout=timeout)


def test_cli_end_to_end(tmp_path):
    out = tmp_path / "run"
    proc = _rnnlab("--grid", "tiny", "--budget", "0.05", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    for name in ("bench.csv", "bench.json", "bench.md", "config.json", "bench-points.jsonl"):
        assert (out / name).is_file(), name
    assert len((out / "bench-points.jsonl").read_text().splitlines()) == len(grid_points("tiny"))
    results = json.loads((out / "bench.json").read_text())
    machine = results["machine"]
    for key in ("cpu_model", "logical_cpus", "numpy", "torch", "threads", "blas", "threadpools"):
        assert key in machine, key
    assert machine["threads"] == 2 and machine["blas"], machine
    assert results["gemm"]["peak_gflops"] > 0
    with open(out / "bench.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(grid_points("tiny")) == len(results["points"])
    config = json.loads((out / "config.json").read_text())
    assert config["grid"] == "tiny" and config["budget"] == 0.05
    assert "--grid tiny" in config["command"]
    torch_present = bench_models.import_torch() is not None
    assert results["vs"] == ("torch" if torch_present else "none")
    if torch_present:
        assert all(float(r["ratio"]) > 0 for r in rows)
        assert machine["torch_threads"] == 2
    assert "ratio" in proc.stdout or not torch_present


def test_cli_memory(tmp_path):
    out = tmp_path / "mem"
    proc = _rnnlab("--grid", "tiny", "--memory", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    for name in ("memory.csv", "memory.json", "memory.md", "config.json"):
        assert (out / name).is_file(), name
    results = json.loads((out / "memory.json").read_text())
    assert results["kind"] == "memory" and "cpu_model" in results["machine"]
    assert all(r["peak_bytes"] >= r["min_bytes"] > 0 for r in results["points"])


@pytest.mark.parametrize("args", [["--threads", "0"], ["--grid", "nope"], ["--budget", "-1"],
                                  ["--models", "mlp,tcn"]])
def test_cli_bad_arguments(args, tmp_path):
    proc = _rnnlab(*args, "--out", str(tmp_path / "x"), timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "error" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "x").exists()


def test_settle_times_follow_the_previous_sides_spin():
    """The sleep before rnnlab's block covers torch's spin, the one before torch's covers
    OpenBLAS's (with a 1.2x + 20 ms margin, at most 0.5 s); alone, rnnlab follows itself."""
    from rnnlab.bench.runner import _settle_times
    spin = {"numpy_blas": 0.13, "torch": 0.005}
    sides = ("numpy_blas", "torch")
    assert _settle_times(spin, sides) == [pytest.approx(0.026), pytest.approx(0.176)]
    assert _settle_times({"numpy_blas": 0.13}, ("numpy_blas",)) == [pytest.approx(0.176)]
    assert _settle_times({"numpy_blas": 2.0, "torch": 0.0}, sides) == [0.02, 0.5]
    # With the GEMM between them: rnnlab still follows torch, torch follows the GEMM.
    assert _settle_times(spin, ("numpy_blas", "numpy_blas", "torch")) == [
        pytest.approx(0.026), pytest.approx(0.176), pytest.approx(0.176)]


def test_min_repeats_default_per_grid():
    """The full grid asks 12 timed steps per side (its slow points get one per round); an
    explicit value is kept; zero is refused."""
    assert BenchConfig(grid="full").min_repeats == 12
    assert BenchConfig(grid="small").min_repeats == 5
    assert BenchConfig(grid="full", min_repeats=3).min_repeats == 3
    with pytest.raises(ValueError):
        BenchConfig(grid="full", min_repeats=0)


def test_largest_points_by_flops():
    from rnnlab.bench.runner import _largest_points
    points = grid_points("full")
    largest = _largest_points(points)
    assert {p.model for p in largest} == {"mlp", "rnn", "lstm", "gru"} and len(largest) == 4
    for p in largest:
        flops = model_training_flops(p.model, p.d, p.n, p.m, p.T, p.k, input_grad=False)
        assert all(model_training_flops(q.model, q.d, q.n, q.m, q.T, q.k, input_grad=False)
                   <= flops for q in points if q.model == p.model)
    assert {(p.d, p.n, p.m, p.T) for p in largest} == {(256, 64, 512, 64)}


def test_time_point_times_the_gemm_between_the_sides(monkeypatch):
    """With a GEMM, a point's rounds are rnnlab, GEMM, then every peer (each side keeps the
    callable it follows everywhere else), the GEMM does not count toward the repeats, and
    each median lands in its own column: the local shares divide by the GEMM's, and each
    peer's ratio is rnnlab's median over its own."""
    from rnnlab.bench import runner
    from rnnlab.bench.peers import Side

    steps = {name: (lambda v=v: v) for name, v in
             (("rnnlab", 1.0), ("torch", 2.0), ("jax", 3.0), ("reference", 4.0))}
    sides = [Side(name, steps[name], float,
                  "flops_rnnlab" if name in ("rnnlab", "reference") else "flops")
             for name in ("rnnlab", "torch", "jax", "reference")]
    asked = {}

    def fake_sides(point, peers, **kw):
        asked["peers"] = peers
        return [s for s in sides if s.name == "rnnlab" or s.name in peers]

    monkeypatch.setattr(runner, "build_sides", fake_sides)
    gemm_fn = lambda: None  # noqa: E731
    seconds = {steps["rnnlab"]: 0.010, gemm_fn: 0.5, steps["torch"]: 0.020,
               steps["jax"]: 0.040, steps["reference"]: 0.005}
    seen = {}

    def fake_interleave(fns, **kw):
        seen.update(fns=list(fns), **kw)
        return [[seconds[fn] * f for f in (0.9, 1.0, 1.3)] for fn in fns]

    monkeypatch.setattr(runner, "interleave", fake_interleave)
    point = Point("lstm", 4, 3, 8, 5)
    config = BenchConfig(grid="tiny", warmup=1, vs=("reference", "torch", "jax"))
    assert config.vs == ("torch", "jax", "reference")  # PEERS order, whatever was given
    row = runner._time_point(point, config, [0.026, 0.176, 0.176, 0.01, 0.02],
                             (gemm_fn, 10 ** 9))
    assert asked["peers"] == ("torch", "jax", "reference")
    assert seen["fns"] == [steps["rnnlab"], gemm_fn, steps["torch"], steps["jax"],
                           steps["reference"]]
    assert seen["counted"] == [True, False, True, True, True]
    assert seen["settle"] == [0.026, 0.176, 0.176, 0.01, 0.02]
    assert (row["rnnlab_median_s"], row["torch_median_s"], row["jax_median_s"],
            row["reference_median_s"]) == (0.010, 0.020, 0.040, 0.005)
    assert row["ratio"] == pytest.approx(0.5)
    assert row["ratio_jax"] == pytest.approx(0.25) and row["ratio_reference"] == pytest.approx(2)
    assert (row["rnnlab_loss"], row["torch_loss"], row["jax_loss"], row["reference_loss"]) == (
        1.0, 2.0, 3.0, 4.0)
    assert row["gemm_local_gflops"] == pytest.approx(2.0)  # 10^9 FLOPs in 0.5 s
    for side in ("rnnlab", "torch", "jax", "reference"):
        assert row[f"{side}_local_share"] == pytest.approx(row[f"{side}_gflops"] / 2.0)
    assert row["jax_gflops"] == pytest.approx(row["flops"] / 0.040 / 1e9)
    assert row["reference_gflops"] == pytest.approx(row["flops_rnnlab"] / 0.005 / 1e9)
    config = BenchConfig(grid="tiny", warmup=1, vs="torch")
    row = runner._time_point(point, config, [0.026, 0.176])
    assert seen["fns"] == [steps["rnnlab"], steps["torch"]] and seen["counted"] == [True, True]
    assert row["gemm_local_gflops"] is None and row["torch_local_share"] is None
    assert row["ratio"] == pytest.approx(0.5) and "ratio_jax" not in row


def test_largest_point_times_a_gemm_beside_it(monkeypatch):
    """The largest point of each model runs the sgemm in its rounds; its local share is its
    GFLOP/s over that GEMM's, in the point row and in the summary; other points have none."""
    from rnnlab.bench import runner

    monkeypatch.setattr(runner, "import_torch", lambda: None)
    config = BenchConfig(grid="tiny", models=("rnn", "mlp"), vs="none", budget=0.01, warmup=1,
                         min_repeats=2, gemm_size=64, gemm_budget=0.01)
    results = run_timing(config, progress=False)
    largest = runner._largest_points(grid_points("tiny", ("rnn", "mlp")))
    for row in results["points"]:
        point = Point(row["model"], row["d"], row["n"], row["m"], row["T"], row["k"])
        if point in largest:
            assert row["gemm_local_gflops"] > 0
            assert row["rnnlab_local_share"] == pytest.approx(
                row["rnnlab_gflops"] / row["gemm_local_gflops"])
            big = results["summary"][row["model"]]["largest"]
            assert big["rnnlab_local_share"] == row["rnnlab_local_share"]
            assert big["gemm_local_gflops"] == row["gemm_local_gflops"]
        else:
            assert row["gemm_local_gflops"] is None and row["rnnlab_local_share"] is None
        assert row["torch_local_share"] is None
    assert set(results["interleaving"]["settle_with_gemm_s"]) == {"rnnlab", "gemm"}
    from rnnlab.bench import render
    assert "%local" in render.gemm_line(results)
