"""The scaling experiment: its result shape, the analytic checks, the slope fit and the verdicts.

Speed is never asserted: the timings of a tiny config only have to exist and be finite.
"""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest

from rnnlab.analysis import complexity as cx
from rnnlab.experiments import scaling as S
from rnnlab.experiments.base import VERDICTS, Claim, Progress, Table, log_slope
from rnnlab.models import SequenceModel

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

TINY = {
    "models": ["mlp", "rnn", "lstm"], "k": 3, "threads": 1, "backend": "numpy",
    "base": {"d": 4, "n": 3, "m": 8, "T": 3},
    "sweeps": {"d": [2, 4, 8], "n": [2, 3, 6], "m": [4, 8, 16], "T": [2, 3, 6]},
    "budget": 0.0, "warmup": 0, "min_repeats": 2, "max_repeats": 2, "retry_budget": 0.0,
    "loss_scale_log2": 64,
    "reference": {"d": 3, "n": 5, "m": 7, "T": 4},
    "memory": {"models": ["rnn", "lstm"], "d": 4, "n": 3, "m": 8, "T": [2, 4, 8]},
    "gemm": {"size": 32, "budget": 0.0},
}


@pytest.fixture(scope="module")
def result():
    return S.run(TINY, rng=np.random.default_rng(0), progress=Progress(None))


def _fit(slope, half=0.05):
    return {"slope": slope, "ci_low": slope - half, "ci_high": slope + half, "intercept": 0.0}


def _quiet(r):
    """The same result, as if nothing else had run on this 2-core machine."""
    r["machine"]["usable_cpus"] = 2
    for sweep in r["sweeps"].values():
        sweep["other_load_cores"] = [0.0] * len(sweep["values"])
    return r


def _claim(result, key) -> Claim:
    (claim,) = [c for c in S.claims(result) if c.key == key]
    return claim


# ----------------------------------------------------------------------------- run


def test_result_has_the_expected_keys_and_is_json(result):
    for key in ("config", "machine", "analytic", "gemm", "sweeps", "lstm_rnn_time", "memory",
                "param_checks", "params_all_equal", "elapsed_s"):
        assert key in result
    assert result["config"] == TINY
    assert set(result["sweeps"]) == set(S.VARIABLES)
    for var, sweep in result["sweeps"].items():
        assert sweep["values"] == TINY["sweeps"][var]
        assert set(sweep["models"]) == {"mlp", "rnn", "lstm"}
        for s in sweep["models"].values():
            assert len(s["median_s"]) == len(s["stats"]) == len(s["training_flops"]) == 3
            assert s["regime"]
    assert set(result["memory"]["models"]) == {"rnn", "lstm"}
    json.loads(json.dumps(result))  # plain JSON values only


def test_fitted_slopes_are_finite(result):
    for sweep in result["sweeps"].values():
        for s in sweep["models"].values():
            fit = s["fit"]
            assert all(math.isfinite(fit[k]) for k in ("slope", "ci_low", "ci_high", "intercept"))
            assert fit["ci_low"] <= fit["slope"] <= fit["ci_high"]
            assert math.isfinite(s["predicted_exponent"]) and math.isfinite(s["end_slope"])
            assert all(t > 0 for t in s["median_s"])
    for mm in result["memory"]["models"].values():
        assert math.isfinite(mm["fit"]["slope"])
        assert all(p > 0 for p in mm["peak_bytes"])
        # the BPTT minimum is linear in T by construction
        assert mm["min_fit"]["slope"] == pytest.approx(1.0)


def test_analytic_parameter_counts_equal_the_counted_arrays(result):
    checks = result["param_checks"]
    # the reference point and every sweep point, for the three models
    assert len(checks) == 3 * (1 + sum(len(v) for v in TINY["sweeps"].values()))
    assert result["params_all_equal"]
    for c in checks:
        assert c["formula"] == c["counted"], c
    a = result["analytic"]["models"]
    assert a["lstm"]["params"]["body"] == 4 * a["rnn"]["params"]["body"]
    assert result["analytic"]["lstm_rnn"]["training_flops"] == pytest.approx(4.0, rel=0.05)


@pytest.mark.parametrize("kind", ["mlp", "rnn", "lstm"])
def test_parameter_formula_matches_sequence_model(kind):
    """The same formula holds for rnnlab.models.SequenceModel (body + head)."""
    rng = np.random.default_rng(1)
    for _ in range(4):
        n, m, T, k = (int(v) for v in rng.integers(1, 12, size=4))
        model = SequenceModel(kind, n, m, k, seq_len=T, rng=0)
        counted = sum(p.data.size for p in model.parameters())
        assert counted == sum(cx.model_params(kind, n, m, T, k).values())


def test_log_slope_recovers_a_known_exponent():
    rng = np.random.default_rng(42)
    x = np.geomspace(2, 2000, 12)
    y = 3e-4 * x ** 1.7 * np.exp(rng.normal(0, 0.05, x.size))
    fit = log_slope(x, y)
    assert fit["ci_low"] < 1.7 < fit["ci_high"]
    assert fit["ci_high"] - fit["ci_low"] < 0.1
    assert S.consistent(fit, 1.7) and not S.consistent(fit, 2.0)


def test_consistent_ignores_an_uninformative_interval():
    wide = {"slope": 0.4, "ci_low": -2.0, "ci_high": 3.0}
    assert not S.consistent(wide, 1.0)  # the CI holds 1, but it holds everything
    assert S.consistent({"slope": 0.95, "ci_low": -2.0, "ci_high": 3.0}, 1.0)  # within SLOPE_TOL


def test_local_exponent_of_the_formulas():
    base = {"d": 8, "n": 4, "m": 64, "T": 8}
    assert S.local_exponent("mlp", "d", [2, 64], base, 1) == pytest.approx(1.0)
    assert S.local_exponent("rnn", "T", [2, 64], base, 1) == pytest.approx(1.0, abs=0.02)
    # RNN against m: ≈ 2 when m ≫ n, ≈ 1 when n ≫ m
    assert S.local_exponent("rnn", "m", [256, 1024], {**base, "n": 2}, 1) > 1.95
    assert S.local_exponent("rnn", "m", [2, 8], {**base, "n": 4096}, 1) < 1.05


# ----------------------------------------------------------------------------- claims


def test_claims_have_computed_verdicts(result):
    cl = S.claims(result)
    assert {c.key for c in cl} == {"scaling-batch-linear", "scaling-rnn-m2", "scaling-lstm-4x",
                                   "scaling-T-linear", "scaling-param-counts"}
    for c in cl:
        assert c.verdict in VERDICTS and c.evidence


def test_batch_verdict_flips(result):
    r = _quiet(copy.deepcopy(result))
    for s in r["sweeps"]["d"]["models"].values():
        s["fit"] = _fit(1.0)
    assert _claim(r, "scaling-batch-linear").verdict == "supported"
    for s in r["sweeps"]["d"]["models"].values():
        s["fit"] = _fit(0.6)
    c = _claim(r, "scaling-batch-linear")
    assert c.verdict == "nuanced" and "0.60" in c.evidence and "overhead" in c.evidence
    r["sweeps"]["d"]["models"]["rnn"]["fit"] = _fit(0.02)
    assert _claim(r, "scaling-batch-linear").verdict == "not supported"


def test_m2_verdict_flips(result):
    r = _quiet(copy.deepcopy(result))
    rnn = r["sweeps"]["m"]["models"]["rnn"]
    rnn["fit"] = _fit(1.98)
    assert _claim(r, "scaling-rnn-m2").verdict == "supported"
    rnn["fit"] = _fit(1.5)
    assert _claim(r, "scaling-rnn-m2").verdict == "nuanced"
    rnn["fit"] = _fit(0.4)
    assert _claim(r, "scaling-rnn-m2").verdict == "not supported"


@pytest.mark.parametrize("ratio, verdict", [(4.1, "supported"), (2.5, "nuanced"), (1.1, "not supported"),
                                            (9.0, "not supported")])
def test_lstm_ratio_verdict_flips(result, ratio, verdict):
    r = _quiet(copy.deepcopy(result))
    r["lstm_rnn_time"]["largest"]["ratio"] = ratio
    c = _claim(r, "scaling-lstm-4x")
    assert c.verdict == verdict and f"{ratio:.2f}" in c.evidence


def test_T_verdict_flips(result):
    r = _quiet(copy.deepcopy(result))
    for s in r["sweeps"]["T"]["models"].values():
        s["fit"] = _fit(1.02)
    for mm in r["memory"]["models"].values():
        mm["fit"] = _fit(0.97)
    assert _claim(r, "scaling-T-linear").verdict == "supported"
    r["memory"]["models"]["lstm"]["fit"] = _fit(0.8)
    assert _claim(r, "scaling-T-linear").verdict == "nuanced"
    r["sweeps"]["T"]["models"]["rnn"]["fit"] = _fit(0.1)
    assert _claim(r, "scaling-T-linear").verdict == "not supported"


def test_T_verdict_uses_the_loss_scaled_control(result):
    r = _quiet(copy.deepcopy(result))
    for s in r["sweeps"]["T"]["models"].values():
        s["fit"] = _fit(1.0)
        if "loss_scaled" in s:
            s["loss_scaled"]["fit"] = _fit(1.0)
    for mm in r["memory"]["models"].values():
        mm["fit"] = _fit(1.0)
    rnn = r["sweeps"]["T"]["models"]["rnn"]
    rnn["fit"] = _fit(2.0)  # super-linear plain steps ...
    c = _claim(r, "scaling-T-linear")
    assert c.verdict == "nuanced" and "loss scaling" in c.evidence  # ... linear once loss-scaled
    rnn["loss_scaled"]["fit"] = _fit(2.0)  # super-linear either way
    assert _claim(r, "scaling-T-linear").verdict == "not supported"


def test_loss_scaled_step_is_the_same_arithmetic():
    from rnnlab.bench.models import Point, make_pair

    point = Point("rnn", 3, 2, 5, 6, 2)
    plain = make_pair(point, seed=3, with_torch=False)
    scaled = S.loss_scaled_step(point, 3, 64)
    for _ in range(3):
        assert plain.rnnlab_step() == scaled()


def test_gradient_underflow_sees_a_vanished_gradient():
    from rnnlab.bench.models import Point

    short = S.gradient_underflow(Point("rnn", 4, 8, 32, 4), 0)
    long = S.gradient_underflow(Point("rnn", 4, 8, 32, 400), 0)
    assert short["subnormal_fraction"] == short["zero_fraction"] == 0 and short["first_step_scale"] > 1e-10
    assert long["first_step_scale"] < np.finfo(np.float32).tiny
    assert long["subnormal_fraction"] + long["zero_fraction"] > 0


def test_param_verdict_flips(result):
    assert _claim(result, "scaling-param-counts").verdict == "supported"
    r = _quiet(copy.deepcopy(result))
    r["param_checks"][0]["equal"] = False
    assert _claim(r, "scaling-param-counts").verdict == "not supported"


# ----------------------------------------------------------------------------- report pieces


def test_tables(result):
    tabs = S.tables(result)
    assert len(tabs) == 6
    for t in tabs:
        assert isinstance(t, Table) and t.rows
        assert all(len(row) == len(t.columns) for row in t.rows)


def test_plots_are_png(result, tmp_path):
    paths = S.plots(result, tmp_path)
    assert [p.name for p in paths] == ["scaling_time.png", "scaling_memory.png"]
    for p in paths:
        assert p.read_bytes()[:8] == PNG_MAGIC


def test_presets_are_complete():
    assert set(S.PRESETS) == {"quick", "default", "full"}
    for cfg in S.PRESETS.values():
        assert set(cfg) == set(TINY)
        for var in S.VARIABLES:
            values = cfg["sweeps"][var]
            assert len(values) >= 3 and values == sorted(values) and cfg["base"][var] > 0
        assert len(cfg["memory"]["T"]) >= 3
        json.dumps(cfg)


def test_disturbed_timings_cap_the_verdict(result):
    r = _quiet(copy.deepcopy(result))
    for s in r["sweeps"]["d"]["models"].values():
        s["fit"] = _fit(1.0)
    assert _claim(r, "scaling-batch-linear").verdict == "supported"
    r["sweeps"]["d"]["other_load_cores"][1] = 1.8  # a 1-thread run left with 0.2 of a core
    c = _claim(r, "scaling-batch-linear")
    assert c.verdict == "nuanced" and "contention" in c.evidence
    r["sweeps"]["d"]["other_load_cores"][1] = 1.0  # one core left for one thread: fine
    assert _claim(r, "scaling-batch-linear").verdict == "supported"
