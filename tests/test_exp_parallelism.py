"""The parallelism experiment: result shape, finite fits, verdicts that follow the numbers, plots.

Speed is never asserted.
"""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest

from rnnlab.experiments import parallelism as P
from rnnlab.experiments import scaling as S
from rnnlab.experiments.base import VERDICTS, Claim, Progress, Table

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

TINY = {
    "models": ["mlp", "rnn", "lstm"], "k": 3, "threads": [1, 2], "backend": "numpy",
    "n": 3, "m": 8,
    "batch": {"T": 3, "d": [2, 4, 8]},
    "length": {"d": 4, "T": [2, 4, 8]},
    "budget": 0.0, "warmup": 0, "min_repeats": 2, "max_repeats": 2, "retry_budget": 0.0,
    "time_cap": 1.0,
}


@pytest.fixture(scope="module")
def result():
    return P.run(TINY, rng=np.random.default_rng(0), progress=Progress(None))


def _fit(slope, half=0.05):
    return {"slope": slope, "ci_low": slope - half, "ci_high": slope + half, "intercept": 0.0}


def _claim(result, key) -> Claim:
    (claim,) = [c for c in P.claims(result) if c.key == key]
    return claim


def _quiet(r):
    """The same result, as if nothing else had run on this 2-core machine."""
    r["machine"]["usable_cpus"] = 2
    for sweep in (r["batch"], r["length"]):
        for t in sweep["other_load_cores"]:
            sweep["other_load_cores"][t] = [0.0] * len(sweep["values"])
    return r


def test_result_has_the_expected_keys_and_is_json(result):
    for key in ("config", "seed", "threads", "machine", "batch", "length", "retries", "elapsed_s"):
        assert key in result
    assert result["threads"] == [1, 2]
    for key, var in (("batch", "d"), ("length", "T")):
        sweep = result[key]
        assert sweep["var"] == var and sweep["values"] == TINY[key][var]
        assert set(sweep["other_load_cores"]) == {"1", "2"}
        for entry in sweep["models"].values():
            assert set(entry["threads"]) == {"1", "2"}
            assert len(entry["speedup"]) == 3
            for per in entry["threads"].values():
                assert len(per["median_s"]) == len(per["samples_per_s"]) == 3
    json.loads(json.dumps(result))


def test_fits_and_throughputs_are_finite(result):
    for key in ("batch", "length"):
        for entry in result[key]["models"].values():
            assert all(math.isfinite(s) and s > 0 for s in entry["speedup"])
            for per in entry["threads"].values():
                assert all(math.isfinite(v) and v > 0 for v in per["samples_per_s"])
                assert all(math.isfinite(per["fit"][k]) for k in ("slope", "ci_low", "ci_high"))
    # samples/s is d / median time
    per = result["batch"]["models"]["rnn"]["threads"]["1"]
    assert per["samples_per_s"][0] == pytest.approx(2 / per["median_s"][0])


def test_claims_have_computed_verdicts(result):
    cl = P.claims(result)
    assert {c.key for c in cl} == {"parallel-mlp-vs-rnn", "parallel-rnn-linear-T",
                                   "parallel-batch-throughput", "parallel-T-adds-steps-not-width"}
    for c in cl:
        assert c.verdict in VERDICTS and c.evidence


def test_mlp_vs_rnn_verdict_flips(result):
    r = _quiet(copy.deepcopy(result))
    sp = {"mlp": 1.8, "rnn": 1.2, "lstm": 1.3}
    for m, s in sp.items():
        r["batch"]["models"][m]["speedup"][-1] = s
    assert _claim(r, "parallel-mlp-vs-rnn").verdict == "supported"
    r["batch"]["models"]["mlp"]["speedup"][-1] = 1.0
    assert _claim(r, "parallel-mlp-vs-rnn").verdict == "not supported"
    r["batch"]["models"]["mlp"]["speedup"][-1] = 1.25
    assert _claim(r, "parallel-mlp-vs-rnn").verdict == "nuanced"
    # the same numbers measured while another process held a core say nothing
    r["batch"]["models"]["mlp"]["speedup"][-1] = 1.8
    r["batch"]["other_load_cores"]["2"][-1] = 1.0
    c = _claim(r, "parallel-mlp-vs-rnn")
    assert c.verdict == "nuanced" and "contention" in c.evidence


def test_single_thread_config_is_not_testable(result):
    r = _quiet(copy.deepcopy(result))
    r["threads"] = [1]
    assert _claim(r, "parallel-mlp-vs-rnn").verdict == "nuanced"


def test_T_slope_verdict_flips(result):
    r = copy.deepcopy(result)
    for m in ("rnn", "lstm"):
        r["length"]["models"][m]["threads"]["1"]["fit"] = _fit(1.0)
    assert _claim(r, "parallel-rnn-linear-T").verdict == "supported"
    r["length"]["models"]["rnn"]["threads"]["1"]["fit"] = _fit(0.75)
    assert _claim(r, "parallel-rnn-linear-T").verdict == "nuanced"
    r["length"]["models"]["rnn"]["threads"]["1"]["fit"] = _fit(0.3)
    assert _claim(r, "parallel-rnn-linear-T").verdict == "not supported"


def test_T_claim_mentions_subnormal_gradients(result):
    r = copy.deepcopy(result)
    assert "subnormal" not in _claim(r, "parallel-rnn-linear-T").evidence  # T = 8 is far from underflow
    r["length"]["models"]["rnn"]["underflow"][-1]["subnormal_fraction"] = 0.2
    assert "subnormal" in _claim(r, "parallel-rnn-linear-T").evidence


def test_batch_throughput_verdict_flips(result):
    r = copy.deepcopy(result)
    for m in ("rnn", "lstm"):
        for per in r["batch"]["models"][m]["threads"].values():
            per["samples_per_s"] = [100.0, 300.0, 1000.0]
    assert _claim(r, "parallel-batch-throughput").verdict == "supported"
    for per in r["batch"]["models"]["lstm"]["threads"].values():
        per["samples_per_s"] = [100.0, 120.0, 150.0]
    assert _claim(r, "parallel-batch-throughput").verdict == "nuanced"
    for per in r["batch"]["models"]["lstm"]["threads"].values():
        per["samples_per_s"] = [100.0, 100.0, 100.0]
    assert _claim(r, "parallel-batch-throughput").verdict == "not supported"


def test_T_speedup_verdict_flips(result):
    r = _quiet(copy.deepcopy(result))
    r["length"]["models"]["mlp"]["speedup"] = [1.1, 1.4, 1.8]
    r["length"]["models"]["rnn"]["speedup"] = [1.2, 1.2, 1.2]
    assert _claim(r, "parallel-T-adds-steps-not-width").verdict == "supported"
    r["length"]["models"]["rnn"]["speedup"] = [1.0, 1.5, 1.7]
    assert _claim(r, "parallel-T-adds-steps-not-width").verdict == "nuanced"
    r["length"]["models"]["mlp"]["speedup"] = [1.2, 1.2, 1.2]
    assert _claim(r, "parallel-T-adds-steps-not-width").verdict == "not supported"


def test_tables(result):
    tabs = P.tables(result)
    assert len(tabs) == 3
    for t in tabs:
        assert isinstance(t, Table) and t.rows
        assert all(len(row) == len(t.columns) for row in t.rows)


def test_plots_are_png(result, tmp_path):
    paths = P.plots(result, tmp_path)
    assert paths and all(p.read_bytes()[:8] == PNG_MAGIC for p in paths)


def test_presets_are_complete():
    assert set(P.PRESETS) == {"quick", "default", "full"}
    for cfg in P.PRESETS.values():
        assert set(cfg) == set(TINY)
        assert len(cfg["batch"]["d"]) >= 3 and len(cfg["length"]["T"]) >= 3
        assert cfg["batch"]["d"] == sorted(cfg["batch"]["d"]) and 2 in cfg["threads"]
        json.dumps(cfg)


def test_disturbed_measurements_are_retried(monkeypatch):
    """A measurement during which other processes held a core is redone while the retry budget lasts."""
    loads = iter([1.6, 0.0] + [0.0] * 100)  # the first measurement is disturbed, the rest are quiet

    class FakeLoad:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.cores = next(loads)
            return False

    monkeypatch.setattr(S, "OtherLoad", FakeLoad)
    monkeypatch.setattr(S, "RETRY_PAUSE_S", 0.0)
    monkeypatch.setattr(S, "usable_cpus", lambda: 2)
    cfg = {**TINY, "batch": {"T": 2, "d": [2, 3, 4]}, "length": {"d": 2, "T": [2, 3, 4]},
           "models": ["rnn"], "retry_budget": 5.0}
    r = P.run(cfg, rng=0)
    assert r["retries"] == 1
    assert r["batch"]["attempts"]["1"][0] == 2 and r["batch"]["other_load_cores"]["1"][0] == 0.0
    assert sum(sum(a) for a in r["batch"]["attempts"].values()) == 2 * 3 + 1

    loads = iter([1.6] * 100)  # always disturbed, no budget: one attempt each, the load is reported
    r = P.run({**cfg, "retry_budget": 0.0}, rng=0)
    assert r["retries"] == 0 and r["batch"]["other_load_cores"]["2"] == [1.6] * 3

    loads = iter([1.6] * 100)  # always disturbed, ample budget: at most MAX_RETRIES more attempts
    r = P.run({**cfg, "retry_budget": 100.0}, rng=0)
    assert r["batch"]["attempts"]["1"] == [S.MAX_RETRIES + 1] * 3


def test_disturbed_depends_on_the_threads():
    assert not S.disturbed(1.0, 1, 2)  # one core left for one thread
    assert S.disturbed(1.0, 2, 2)  # one core left for two threads
    assert not S.disturbed(0.2, 2, 2) and not S.disturbed(None, 2, 2)


def test_time_cap_times_fewer_rounds_of_a_slow_step():
    cfg = {**TINY, "models": ["lstm"], "batch": {"T": 2, "d": [2, 3, 4]}, "length": {"d": 2, "T": [2, 3, 4]},
           "budget": 10.0, "min_repeats": 50, "max_repeats": None, "time_cap": 1e-9}
    r = P.run(cfg, rng=0)  # without the cap: 50 rounds and a 10 s budget per measurement
    for sweep in (r["batch"], r["length"]):
        for per in sweep["models"]["lstm"]["threads"].values():
            assert all(st["n"] == 2 for st in per["stats"])
