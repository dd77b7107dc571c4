"""The planner (rnnlab.kernels.planner): the choice follows the timings (a fake clock and
fake candidates, never real speed), plans are cached per machine and versions, pinned
plans win, a plan's knobs reach the loops, and a planned step computes what the
reference does."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import assert_close
from rnnlab.functional import backend
from rnnlab.kernels import cache, planner, timing


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def _fakes(clock, seconds):
    """{name: run} advancing the fake clock by seconds[name] per call, and the call counts."""
    calls = {name: 0 for name in seconds}

    def make(name):
        def run():
            calls[name] += 1
            clock.now += seconds[name]
        return run

    return {name: make(name) for name in seconds}, calls


def test_the_fastest_candidate_is_chosen_by_its_best_round():
    clock = FakeClock()
    runs, calls = _fakes(clock, {"numpy": 0.010, "numba": 0.004, "fused": 0.006})
    chosen, timings, _ = timing.choose(runs, clock=clock, budget=1.0, rounds=3)
    assert chosen == "numba"
    assert timings == pytest.approx({"numpy": 0.010, "numba": 0.004, "fused": 0.006})
    assert calls == {"numpy": 4, "numba": 4, "fused": 4}  # a warm-up and 3 rounds each


def test_the_reference_stays_unless_a_path_beats_it_by_the_margin():
    clock = FakeClock()
    almost = 0.010 * (1 - timing.MARGIN / 2)
    runs, _ = _fakes(clock, {"numpy": 0.010, "fused": almost})
    assert timing.choose(runs, clock=clock, budget=1.0)[0] == "numpy"
    runs, _ = _fakes(clock, {"numpy": 0.010, "fused": 0.010 * (1 - 2 * timing.MARGIN)})
    assert timing.choose(runs, clock=clock, budget=1.0)[0] == "fused"


def test_slow_candidates_leave_and_the_budget_bounds_the_rounds():
    clock = FakeClock()
    runs, calls = _fakes(clock, {"numpy": 0.010, "numba": 0.100, "fused": 0.005})
    warm = {name: (lambda: None) for name in runs}  # untimed, as the real warm-up is
    chosen, timings, _ = timing.choose(runs, clock=clock, budget=0.06, rounds=10, warm=warm)
    assert chosen == "fused" and set(timings) == {"numpy", "numba", "fused"}
    assert calls["numba"] == 1  # 20x the best: the first round only
    # round 1 takes 0.115 s > budget, but under twice the budget: a second round
    assert calls["numpy"] == calls["fused"] == timing.MIN_ROUNDS == 2
    runs, calls = _fakes(clock, {"numpy": 0.010, "numba": 0.100, "fused": 0.005})
    timing.choose(runs, clock=clock, budget=0.05, rounds=10, warm=warm)
    assert calls == {"numpy": 1, "numba": 1, "fused": 1}  # 0.115 s > twice 0.05: one round
    runs, calls = _fakes(clock, {"numpy": 0.010, "fused": 0.005})
    timing.choose(runs, clock=clock, budget=0.04, rounds=10, warm=warm)
    assert calls == {"numpy": 3, "fused": 3}  # 0.015 s a round: the third crosses 0.04


def test_a_short_run_is_repeated_and_its_fastest_repeat_counts():
    clock = FakeClock()
    times = iter([0.0009, 0.0003, 0.0004, 0.0002, 0.0004])  # adds up past 2 ms at the 5th

    def run():
        clock.now += next(times)

    assert timing._timed(run, clock) == pytest.approx(0.0002)
    assert next(times, None) is None


def test_a_short_screening_run_drops_slow_candidates_before_the_rounds():
    clock = FakeClock()
    runs, calls = _fakes(clock, {"numpy": 0.010, "numba": 0.100, "fused": 0.005})
    screen, screened_calls = _fakes(clock, {"numpy": 0.004, "numba": 0.030, "fused": 0.003})
    warm = {name: (lambda: None) for name in runs}
    chosen, timings, screened = timing.choose(runs, clock=clock, budget=1.0, rounds=2,
                                               warm=warm, screen=screen)
    assert chosen == "fused" and set(timings) == {"numpy", "fused"}
    assert calls == {"numpy": 2, "numba": 0, "fused": 2}
    assert screened == pytest.approx({"numpy": 0.004, "numba": 0.030, "fused": 0.003})
    assert screened_calls == {"numpy": 1, "numba": 1, "fused": 1}


@pytest.fixture
def planning(monkeypatch, tmp_path):
    """A fresh cache folder and planner state, the auto backend, measure mode, and a fake
    measurement that counts its calls and picks "fused" with made-up timings."""
    if not backend.numba_available():
        pytest.skip("without numba there is nothing to choose")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(planner, "_table", {})
    monkeypatch.setattr(planner, "_pinned", {})
    monkeypatch.setattr(planner, "_state", {})
    calls = []

    def fake_measure(key):
        calls.append(key)
        return {"plan": {"loops": "fused", "packed": False, "pool": False},
                "chosen": "fused", "timings": {"numpy": 2e-3, "fused": 1e-3}}

    monkeypatch.setattr(planner, "_measure", fake_measure)
    planner.set_mode("measure")
    with backend.use_backend("auto"):
        yield calls


def _forget_process(monkeypatch):
    """As a new process would start: no plans in memory, only the disk."""
    monkeypatch.setattr(planner, "_table", {})
    planner._state.pop("disk", None)


def test_a_plan_is_measured_once_then_read_from_disk(planning, monkeypatch):
    args = ("lstm", 8, 64, np.dtype(np.float32), 20, False)
    assert planner.plan_for(*args) == {"loops": "fused", "packed": False, "pool": False}
    assert planner.plan_for(*args)["loops"] == "fused" and len(planning) == 1
    _forget_process(monkeypatch)
    assert planner.plan_for(*args)["loops"] == "fused" and len(planning) == 1
    (text, stored), = planner.cached_plans().items()
    assert text.startswith("lstm N=8 H=64 T=9+ float32") and stored["timings"]["fused"] == 1e-3
    planner.plan_for("lstm", 8, 64, np.dtype(np.float32), 3, False)  # another T: a new shape
    planner.plan_for("lstm", 9, 64, np.dtype(np.float32), 20, False)  # another N
    assert len(planning) == 3


def test_a_version_change_measures_again(planning, monkeypatch):
    args = ("rnn_tanh", 4, 128, np.dtype(np.float32), 16, True)
    planner.plan_for(*args)
    key = dict(cache.machine_key(), numba="0.0.fake")
    monkeypatch.setattr(cache, "machine_key", lambda: key)
    _forget_process(monkeypatch)
    planner.plan_for(*args)
    assert len(planning) == 2


def test_cached_and_off_modes_never_measure(planning, monkeypatch):
    planner.set_mode("cached")
    plan = planner.plan_for("lstm", 8, 512, np.dtype(np.float32), 16, False)
    assert plan == {"loops": backend.rule_loops(8, 512)} and not planning
    planner.set_mode("measure")
    planner.plan_for("lstm", 2, 32, np.dtype(np.float32), 16, False)
    _forget_process(monkeypatch)
    planner.set_mode("off")  # the rule, even where the cache holds a plan
    assert planner.plan_for("lstm", 2, 32, np.dtype(np.float32), 16, False) == {
        "loops": backend.rule_loops(2, 32)}
    assert len(planning) == 1
    with pytest.raises(ValueError, match="RNNLAB_PLAN must be one of"):
        planner.set_mode("fast")


def test_a_pinned_plan_wins_over_the_cache_and_is_reported(planning, monkeypatch):
    args = ("lstm", 8, 64, np.dtype(np.float32), 20, False)
    planner.plan_for(*args)
    (text, _), = planner.in_use().items()
    pinned = {"loops": "numba"}
    planner.pin({text: pinned})
    assert planner.plan_for(*args) == pinned
    assert planner.in_use() == {text: pinned} and len(planning) == 1
    with pytest.raises(ValueError, match="not a plan"):
        planner.pin({text: {"loops": "cuda"}})


def test_a_forced_backend_is_not_planned(planning):
    with backend.use_backend("numpy"):
        plan = planner.plan_for("lstm", 8, 64, np.dtype(np.float32), 20, False)
    assert plan == {"loops": "numpy"}
    assert not planning


def test_the_knobs_reach_the_fused_loops_and_are_restored(monkeypatch):
    if not backend.numba_available():
        pytest.skip("the fused loops are compiled")
    from rnnlab.kernels import blas_pool, loops_fused, packed_gemm
    seen = []
    monkeypatch.setattr(loops_fused, "lstm_forward_loop",
                        lambda *a, **k: seen.append(dict(loops_fused.KNOBS)))
    planner._loops_of({"loops": "fused", "packed": True, "pool": False}).lstm_forward_loop()
    assert seen == [{"packed": True, "pool": False}]
    assert loops_fused.KNOBS == {"packed": None, "pool": None}
    assert planner._loops_of({"loops": "fused"}) is loops_fused  # the rules: no wrapper
    if not packed_gemm.usable(8, 2048, np.float32):
        return
    big = (64, 512, 4 * 512, np.float32)  # past the one-core rule, PACKED_MAX_UNITS
    monkeypatch.setitem(loops_fused.KNOBS, "pool", False)
    monkeypatch.setitem(loops_fused.KNOBS, "packed", True)
    assert loops_fused._product_threads(*big) == 1
    monkeypatch.setitem(loops_fused.KNOBS, "packed", False)
    assert loops_fused._product_threads(8, 64, 256, np.float32) == 0
    monkeypatch.setitem(loops_fused.KNOBS, "packed", True)
    monkeypatch.setitem(loops_fused.KNOBS, "pool", True)
    small = (4, 64, 256, np.float32)  # far below POOL_MIN_MACS
    assert loops_fused._product_threads(*small) == blas_pool.threads()
    assert loops_fused._row_threads(4, 64, np.float32) == blas_pool.threads()


@pytest.mark.parametrize("cell", ["lstm", "rnn_tanh", "rnn_relu", "gru"])
def test_a_measured_plan_computes_what_the_reference_does(monkeypatch, tmp_path, cell):
    """A real (tiny) measurement in float64, then a step on the chosen path against the
    NumPy loops; the plan is one of the candidates and carries its timings."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(planner, "_table", {})
    monkeypatch.setattr(planner, "_state", {})
    monkeypatch.setattr(timing, "BUDGET_SECONDS", 0.01)
    planner.set_mode("measure")
    from rnnlab.functional import gru as GRU, recurrent as R
    rng = np.random.default_rng(5)
    T, N, I, H = 5, 3, 4, 8
    G = {"lstm": 4, "gru": 3}.get(cell, 1)
    x = rng.standard_normal((T, N, I))
    weights = [rng.uniform(-0.5, 0.5, s) for s in ((G * H, I), (G * H, H), (G * H,), (G * H,))]
    grad = rng.standard_normal((T, N, H))

    def step():
        if cell == "lstm":
            (out, _, _), saved = R.lstm_forward(x, None, None, *weights)
            grad_x, _, _, grads = R.lstm_backward(saved, grad, state_grad=False)
        elif cell == "gru":
            (out, _), saved = GRU.gru_forward(x, None, *weights)
            grad_x, _, grads = GRU.gru_backward(saved, grad, state_grad=False)
        else:
            (out, _), saved = R.rnn_forward(x, None, *weights, nonlinearity=cell[4:])
            grad_x, _, grads = R.rnn_backward(saved, grad, state_grad=False)
        return [out.copy(), grad_x, *grads]

    with backend.use_backend("auto"):
        planned = step()
    with backend.use_backend("numpy"):
        reference = step()
    for got, want in zip(planned, reference):
        assert_close(got, want, np.float64)
    if not backend.numba_available():
        return  # the reference is all there is
    (entry,) = planner._table.values()
    names = timing.candidates(cell, N, H, np.float64)
    assert entry["source"] == "measured" and entry["chosen"] in names
    # a separate 2-step screen runs only when the timed runs are longer than it
    assert set(entry["screen"]) == (set(names) if entry["steps_timed"] > 2 else set())
    assert set(entry["timings"]) <= set(names)
    assert entry["plan"] == names[entry["chosen"]]


def test_a_resumed_run_uses_the_plans_its_checkpoint_recorded(planning, monkeypatch, tmp_path):
    """The first run plans "fused"; the resumed process would plan "numba" (another
    rounding), but takes the checkpoint's plan and ends bit for bit where one whole run
    ends."""
    from dataclasses import replace

    from rnnlab.train import TrainConfig, Trainer
    config = TrainConfig(model="lstm", optimizer="sgd", lr=0.05, steps=6, task="adding",
                         seq_len=6, hidden=5, batch=3, every=1000, keep=3)
    whole = Trainer(config, tmp_path / "whole", progress=False)
    whole.run()
    Trainer(replace(config, steps=3), tmp_path / "split", progress=False).run()
    measured = len(planning)

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "another-cache"))
    _forget_process(monkeypatch)
    monkeypatch.setattr(planner, "_measure", lambda key: planning.append(key) or {
        "plan": {"loops": "numba"}, "chosen": "numba", "timings": {"numba": 1e-3}})
    resumed = Trainer.resume(tmp_path / "split", steps=6, progress=False)
    resumed.run()
    assert len(planning) == measured  # no shape of the run was planned again
    assert all(plan["loops"] == "fused" for plan in planner.in_use().values())
    for name, value in whole.model.state_dict().items():
        assert np.array_equal(resumed.model.state_dict()[name], value), name


def test_the_plan_command_measures_and_shows_plans(monkeypatch, tmp_path, capsys):
    from rnnlab.cli import main
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(planner, "_table", {})
    monkeypatch.setattr(planner, "_state", {})
    monkeypatch.setattr(timing, "BUDGET_SECONDS", 0.01)
    assert main(["plan", "--measure", "rnn_relu:4:16:3", "--dtype", "float64"]) == 0
    out = capsys.readouterr().out
    assert "rnn_relu N=4 H=16 T=3 float64" in out and str(cache.machine_dir()) in out
    if backend.numba_available():
        assert "measured" in out and "cached plans (1)" in out
    assert main(["plan", "--clear"]) == 0
    assert "cached plans: none yet" in capsys.readouterr().out
    with pytest.raises(SystemExit) as bad:
        main(["plan", "--bogus"])
    assert bad.value.code == 2
    capsys.readouterr()
    assert main(["plan", "--measure", "lstm:8"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "expected CELL:N:H:T" in err[0]


def test_a_plan_timed_on_a_busy_machine_is_timed_again_when_it_is_quieter(planning, monkeypatch):
    args = ("lstm", 8, 64, np.dtype(np.float32), 20, False)
    load = [99.0]
    monkeypatch.setattr(planner, "_load", lambda: load[0])
    measure = planner._measure
    monkeypatch.setattr(planner, "_measure", lambda key: {**measure(key), "load": load[0]})
    planner.plan_for(*args)
    assert next(iter(planner.cached_plans().values()))["busy"] is True
    _forget_process(monkeypatch)
    planner.plan_for(*args)  # still busy: the cached plan serves
    assert len(planning) == 1
    load[0] = 0.5
    _forget_process(monkeypatch)
    planner.plan_for(*args)  # quieter now: timed again, and no longer marked
    _forget_process(monkeypatch)
    planner.plan_for(*args)
    assert len(planning) == 2
    assert next(iter(planner.cached_plans().values()))["busy"] is False


def test_a_candidate_that_fails_is_left_out_and_named(monkeypatch, tmp_path):
    if not backend.numba_available():
        pytest.skip("without numba there is nothing to choose")
    from rnnlab.kernels import loops_numba
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(planner, "_table", {})
    monkeypatch.setattr(planner, "_state", {})
    monkeypatch.setattr(timing, "BUDGET_SECONDS", 0.01)

    def broken(*args, **kwargs):
        raise RuntimeError("no such kernel")

    monkeypatch.setattr(loops_numba, "rnn_forward_loop", broken)
    entry = timing.measure(("rnn_tanh", 4, 8, "float64", 3, False, 1))
    assert entry["failed"] == {"numba": "RuntimeError: no such kernel"}
    assert "numba" not in entry["timings"] and entry["chosen"] != "numba"


@pytest.mark.parametrize("steps, step_seconds, expected", [
    (8, 1e-4, 8),  # short steps: the whole capped run
    (8, 5e-3, 4),  # 4 steps make RUN_SECONDS (0.02 s)
    (8, 0.05, 2),  # long steps: two, the shortest run that packs W_hh
    (1, 0.05, 1),  # a shape of one step times one step
    (8, 0.0, 8),   # a clock too coarse to see the step
])
def test_run_length_shrinks_for_long_steps(steps, step_seconds, expected):
    assert timing.RUN_SECONDS == 0.02
    assert timing._run_length(steps, step_seconds, min(steps, 2)) == expected


def test_timing_module_imports_first():
    """Importing rnnlab.kernels.timing before anything else works (it imports
    rnnlab.functional, which imports the planner, which needs timing)."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", "from rnnlab.kernels import timing, planner; "
                           "print(planner.plan_name({'loops': 'fused', 'packed': True}))"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "fused+packed"


def test_steps_buckets_follow_the_fused_backward():
    """T below 9 is its own key; 9-32 share one, 33 and up another: the fused LSTM backward's
    dh product changes form at 8 recurrent products (T >= 9) and, for one row, 32 (T >= 33),
    so a plan timed at a bucket's T runs the path every T of the bucket runs."""
    assert [planner.steps_bucket(t) for t in (1, 8, 9, 32, 33, 500)] == [1, 8, 9, 9, 33, 33]
    key = ("lstm", 1, 128, "float32", 33, False, 2)
    assert planner._key_text(key).startswith("lstm N=1 H=128 T=33+ float32")
    if not backend.numba_available():
        return  # the fused loops (and so their switch) need numba
    from rnnlab.kernels import loops_fused

    for batch in (1, 2, 32):
        for t in (9, 32, 33, 64):
            planned = planner.steps_bucket(t)
            assert (loops_fused._backward_feature_major(batch, 256, planned - 1)
                    == loops_fused._backward_feature_major(batch, 256, t - 1)), (batch, t)
    # a timed run is never cut below the bucket where the form depends on it
    assert timing._shortest_run("lstm", 1, 128, 33) == 33
    assert timing._shortest_run("lstm", 256, 512, 33) == 2
    assert timing._shortest_run("gru", 1, 128, 33) == 2
