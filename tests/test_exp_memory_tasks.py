"""The long-term-memory experiment: result dict, training loop, verdicts, tables and plots."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest

from rnnlab.data import adding_baseline_mse, adding_problem, copy_baseline_cross_entropy
from rnnlab.experiments import memory_tasks as mt
from rnnlab.experiments.base import VERDICTS, Claim, Progress, Table
from rnnlab.models import SequenceModel
from rnnlab.optim import SGD

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

TINY = {"tasks": ["adding", "copy"], "T": [3, 6], "hidden": 8, "batch": 8, "lr": 0.01,
        "max_norm": 1.0, "eval_batch": 16, "n_symbols": 8, "copy_length": 10,
        "blas_threads": 1, "steps": 7, "log_every": 3}


@pytest.fixture(scope="module")
def result():
    return mt.run(TINY, rng=np.random.default_rng(0), progress=Progress(None))


def test_result_keys_and_shapes(result):
    assert result["config"] == TINY
    assert list(result["runs"]) == ["adding", "copy"]
    for task, runs in result["runs"].items():
        assert [r["T"] for r in runs] == TINY["T"]
        for r in runs:
            expected = (adding_baseline_mse() if task == "adding"
                        else copy_baseline_cross_entropy(r["T"], 8, 10))
            assert r["baseline"] == pytest.approx(expected)
            assert set(r["models"]) == {"lstm", "gru", "rnn"}
            for m in r["models"].values():
                # one entry per logged step: every 3 steps, and the last one
                assert m["curve"]["steps"] == [3, 6, 7]
                assert len(m["curve"]["loss"]) == 3
                assert all(math.isfinite(v) for v in m["curve"]["loss"])
                assert math.isfinite(m["final_loss"]) and m["stopped"] is None
                assert m["ratio"] == pytest.approx(m["final_loss"] / r["baseline"])
                if task == "copy":
                    assert 0 <= m["recall_accuracy"] <= 1
    json.dumps(result, allow_nan=False)


def test_copy_baseline_value():
    assert copy_baseline_cross_entropy(100) == pytest.approx(10 * math.log(8) / 120)


def test_fit_logs_windows_and_uses_the_same_batches():
    def train(seed):
        model = SequenceModel("rnn", 2, 4, 1, rng=np.random.default_rng(1))
        rng = np.random.default_rng(seed)
        return mt.fit(model, lambda: adding_problem(4, 5, rng=rng), mt.adding_loss,
                      SGD(model.parameters(), lr=0.1), 8, max_norm=0.5, log_every=3)

    run = train(2)
    assert run["steps"] == [3, 6, 8] and run["steps_run"] == 8 and run["stopped"] is None
    assert len(run["all_loss"]) == len(run["all_grad_norm"]) == 8
    assert run["loss"][0] == pytest.approx(np.mean(run["all_loss"][:3]))
    assert run["loss"][2] == pytest.approx(np.mean(run["all_loss"][6:]))
    assert run["grad_norm"][1] == pytest.approx(max(run["all_grad_norm"][3:6]))
    assert train(2)["all_loss"] == run["all_loss"]  # same seeds, same run
    assert train(3)["all_loss"] != run["all_loss"]


def test_fit_stops_at_a_non_finite_loss():
    model = SequenceModel("rnn", 2, 4, 1, rng=np.random.default_rng(1))
    model.head.bias.data[...] = np.inf
    rng = np.random.default_rng(0)
    run = mt.fit(model, lambda: adding_problem(4, 5, rng=rng), mt.adding_loss,
                 SGD(model.parameters(), lr=0.1), 6, log_every=2)
    assert run["stopped"] == 1 and run["steps_run"] == 1
    assert run["steps"] == [1] and run["loss"] == [None]
    json.dumps(run, allow_nan=False)


def test_copy_loss_is_the_mean_per_step_cross_entropy():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(4, 3, 5))
    y = rng.integers(0, 5, size=(4, 3))
    loss, grad = mt.copy_loss(logits, y)
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    expected = -np.mean(np.take_along_axis(log_p, y[..., None], -1))
    assert loss == pytest.approx(expected)
    assert grad.shape == logits.shape


# ------------------------------------------------------------------ verdicts


def test_memory_verdict_flips():
    assert mt.memory_verdict(0.05, 0.95) == "supported"
    assert mt.memory_verdict(0.95, 0.05) == "not supported"
    assert mt.memory_verdict(0.05, 0.05) == "nuanced"  # both solve it
    assert mt.memory_verdict(1.0, 1.0) == "nuanced"  # both fail
    assert mt.memory_verdict(None, 0.3) == "not supported"  # the LSTM diverged
    assert mt.memory_verdict(0.6, None) == "nuanced"  # RNN diverged, LSTM only half-way
    assert mt.memory_verdict(0.1, None) == "supported"


def _fake(ratios, steps=10):
    """A result dict with the given (lstm, rnn) ratio per T, for every task."""
    runs = {}
    for task in mt.TASKS:
        runs[task] = []
        for T, (lstm, rnn) in ratios.items():
            baseline = adding_baseline_mse() if task == "adding" else copy_baseline_cross_entropy(T)
            models = {}
            for kind, ratio in (("lstm", lstm), ("rnn", rnn)):
                curve = {"steps": [5, 10], "loss": [baseline, baseline * ratio]}
                models[kind] = {"curve": curve, "final_loss": baseline * ratio, "ratio": ratio,
                                "stopped": None, "seconds": 0.1}
            runs[task].append({"T": T, "baseline": baseline,
                               "metric": "MSE" if task == "adding" else "cross-entropy",
                               "models": models})
    config = {**TINY, "steps": steps}
    return {"config": config, "runs": runs, "seconds": 1.0}


def test_claims_follow_the_numbers():
    verdicts = lambda r: {c.key: c.verdict for c in mt.claims(r)}  # noqa: E731
    keys = ["lstm-long-memory-adding", "lstm-long-memory-copy"]
    # Only the longest T decides: short-T numbers that disagree must not matter.
    supported = _fake({10: (0.9, 0.01), 100: (0.02, 0.99)})
    assert verdicts(supported) == dict.fromkeys(keys, "supported")
    contrary = _fake({10: (0.01, 0.01), 100: (0.99, 0.02)})  # the RNN solves it, the LSTM fails
    assert verdicts(contrary) == dict.fromkeys(keys, "not supported")
    both_fail = _fake({10: (0.01, 0.01), 100: (1.0, 1.01)})
    assert verdicts(both_fail) == dict.fromkeys(keys, "nuanced")
    claim = mt.claims(supported)[0]
    assert "0.020" in claim.evidence and "0.990" in claim.evidence and "T=100" in claim.evidence


def test_claims_tables_on_the_run(result):
    out = mt.claims(result)
    assert [c.key for c in out] == ["lstm-long-memory-adding", "lstm-long-memory-copy"]
    for c in out:
        assert isinstance(c, Claim) and c.verdict in VERDICTS and "T=6" in c.evidence
    (table,) = mt.tables(result)
    assert isinstance(table, Table) and len(table.rows) == 4
    assert all(len(row) == len(table.columns) for row in table.rows)
    assert {"LSTM ratio", "GRU ratio", "RNN ratio"} <= set(table.columns)


def test_plots_are_png(result, tmp_path):
    paths = mt.plots(result, tmp_path)
    assert len(paths) == 2
    for path in paths:
        assert path.parent == tmp_path and path.read_bytes()[:8] == PNG_MAGIC


def test_report_survives_a_diverged_model(tmp_path):
    fake = _fake({10: (0.5, 1.0), 30: (0.2, 1.0)})
    m = fake["runs"]["adding"][1]["models"]["lstm"]
    m.update(final_loss=None, ratio=None, stopped=4)
    m["curve"] = {"steps": [4], "loss": [None]}
    fake = json.loads(json.dumps(copy.deepcopy(fake), allow_nan=False))
    assert all(p.read_bytes()[:8] == PNG_MAGIC for p in mt.plots(fake, tmp_path))
    claim = mt.claims(fake)[0]
    assert claim.verdict == "nuanced" and "diverged" in claim.evidence
    assert "diverged" in mt.tables(fake)[0].rows[1]
    # a result from before the GRU joined (LSTM and RNN only) still reports
    assert "GRU ratio" not in mt.tables(fake)[0].columns


def test_presets_are_plain_json():
    for cfg in mt.PRESETS.values():
        assert json.loads(json.dumps(cfg)) == cfg
    assert mt.PRESETS["quick"]["T"] == [10, 30]
    assert mt.PRESETS["default"]["T"] == [10, 50, 100]
    assert mt.PRESETS["full"]["T"] == [10, 50, 100, 200]
