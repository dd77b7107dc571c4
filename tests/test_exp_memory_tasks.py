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
from rnnlab.stats import fmt_interval

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

TINY = {"tasks": ["adding", "copy"], "T": [3, 6], "hidden": 8, "batch": 8, "lr": 0.01,
        "max_norm": 1.0, "eval_batch": 16, "n_symbols": 8, "copy_length": 10,
        "blas_threads": 1, "steps": 7, "log_every": 3}


@pytest.fixture(scope="module")
def result():
    return mt.combine(TINY, [{"seed": s, **mt.run_seed(TINY, 7 + s)} for s in range(2)])


def test_one_seed_run_is_combined():
    one = mt.run(TINY, rng=np.random.default_rng(0), progress=Progress(None))
    assert one["seeds"] == [0] and one["summary"]["adding"][0]["lstm"]["ratio"]["low"] is None


def test_result_keys_and_shapes(result):
    assert result["config"] == TINY and result["seeds"] == [0, 1]
    first = result["per_seed"][0]
    assert list(first["runs"]) == ["adding", "copy"]
    for task, runs in first["runs"].items():
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
    for task, entries in result["summary"].items():
        for i, e in enumerate(entries):
            values = [s["runs"][task][i]["models"]["lstm"]["ratio"] for s in result["per_seed"]]
            assert e["lstm"]["ratio"]["values"] == values
            assert e["lstm"]["ratio"]["low"] < e["lstm"]["ratio"]["mean"] < e["lstm"]["ratio"]["high"]
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
    lo, hi, mid = [0.05, 0.06, 0.04], [0.95, 0.97, 0.96], [0.6, 0.65, 0.62]
    assert mt.memory_verdict(lo, hi) == "supported"
    assert mt.memory_verdict(hi, lo) == "not supported"
    assert mt.memory_verdict(lo, [0.04, 0.05, 0.06]) == "not supported"  # both solve it
    assert mt.memory_verdict(hi, [0.96, 0.95, 0.97]) == "undecided"  # both fail: the budget
    assert mt.memory_verdict(mid, hi) == "nuanced"  # the LSTM better, half-way
    assert mt.memory_verdict([0.05, 0.9, 0.04], hi) == "undecided"  # one seed failed: wide


SEED_JITTER = (0.0, 0.01, -0.01)


def _fake(ratios, steps=10):
    """A result with the given (lstm, rnn) or (lstm, rnn, gru) ratios per T, for every task, over
    three seeds whose ratios differ by SEED_JITTER (without a GRU ratio: a result from before
    the GRU joined)."""
    per_seed = []
    for seed, jitter in enumerate(SEED_JITTER):
        runs = {}
        for task in mt.TASKS:
            runs[task] = []
            for T, by_model in ratios.items():
                baseline = (adding_baseline_mse() if task == "adding"
                            else copy_baseline_cross_entropy(T))
                models = {}
                for kind, ratio in zip(("lstm", "rnn", "gru"), by_model):
                    ratio = ratio + jitter
                    curve = {"steps": [5, 10], "loss": [baseline, baseline * ratio]}
                    models[kind] = {"curve": curve, "final_loss": baseline * ratio,
                                    "ratio": ratio, "stopped": None, "seconds": 0.1}
                runs[task].append({"T": T, "baseline": baseline,
                                   "metric": "MSE" if task == "adding" else "cross-entropy",
                                   "models": models})
        per_seed.append({"seed": seed, "runs": runs, "seconds": 1.0})
    return mt.combine({**TINY, "steps": steps}, per_seed)


def test_claims_follow_the_numbers():
    verdicts = lambda r: {c.key: c.verdict for c in mt.claims(r)}  # noqa: E731
    keys = ["lstm-long-memory-adding", "lstm-long-memory-copy"]
    # Only the longest T decides: short-T numbers that disagree must not matter.
    supported = _fake({10: (0.9, 0.05), 100: (0.05, 0.95)})
    assert verdicts(supported) == dict.fromkeys(keys, "supported")
    contrary = _fake({10: (0.05, 0.05), 100: (0.95, 0.05)})  # the RNN solves it, the LSTM fails
    assert verdicts(contrary) == dict.fromkeys(keys, "not supported")
    both_fail = _fake({10: (0.05, 0.05), 100: (1.0, 1.01)})
    assert verdicts(both_fail) == dict.fromkeys(keys, "undecided")
    claim = mt.claims(supported)[0]
    assert "0.050 [" in claim.evidence and "0.950 [" in claim.evidence and "T=100" in claim.evidence
    assert "GRU" not in claim.evidence  # a result from before the GRU joined


def test_the_gru_stands_beside_the_claims():
    """The claims are about the LSTM and the RNN: the GRU's numbers are reported, not judged."""
    verdicts = lambda r: {c.key: c.verdict for c in mt.claims(r)}  # noqa: E731
    for gru in (0.02, 0.97):  # the GRU solves it, or fails
        supported = _fake({10: (0.9, 0.05, 0.5), 100: (0.05, 0.95, gru)})
        assert set(verdicts(supported).values()) == {"supported"}
        claim = mt.claims(supported)[0]
        assert f"GRU {gru + 0:.3f} [" in claim.evidence
    table = mt.tables(supported)[0]
    assert table.columns == ["task", "T", "loss", "baseline", "LSTM ratio", "LSTM diverged",
                             "GRU ratio", "GRU diverged", "RNN ratio", "RNN diverged",
                             "recall acc. LSTM / GRU / RNN"]
    old = mt.tables(_fake({10: (0.9, 0.05), 100: (0.05, 0.95)}))[0]
    assert "GRU ratio" not in old.columns and all(len(r) == len(old.columns) for r in old.rows)


def test_claims_tables_on_the_run(result):
    out = mt.claims(result)
    assert [c.key for c in out] == ["lstm-long-memory-adding", "lstm-long-memory-copy"]
    for c in out:
        assert isinstance(c, Claim) and c.verdict in VERDICTS and "T=6" in c.evidence
    (table,) = mt.tables(result)
    assert isinstance(table, Table) and len(table.rows) == 4
    assert table.rows[0][4] == fmt_interval(result["summary"]["adding"][0]["lstm"]["ratio"])
    assert table.rows[0][6] == fmt_interval(result["summary"]["adding"][0]["gru"]["ratio"])
    assert all(len(row) == len(table.columns) for row in table.rows)


def test_plots_are_png(result, tmp_path):
    paths = mt.plots(result, tmp_path)
    assert len(paths) == 2
    for path in paths:
        assert path.parent == tmp_path and path.read_bytes()[:8] == PNG_MAGIC


def test_report_survives_a_diverged_model(tmp_path):
    fake = _fake({10: (0.5, 1.0), 30: (0.2, 1.0)})
    m = fake["per_seed"][1]["runs"]["adding"][1]["models"]["lstm"]
    m.update(final_loss=None, ratio=None, stopped=4)
    m["curve"] = {"steps": [4], "loss": [None]}
    fake = mt.combine(fake["config"], fake["per_seed"])
    fake = json.loads(json.dumps(copy.deepcopy(fake), allow_nan=False))
    assert all(p.read_bytes()[:8] == PNG_MAGIC for p in mt.plots(fake, tmp_path))
    # the diverged seed counts as remembering nothing (ratio 1): the LSTM's interval widens
    assert fake["summary"]["adding"][1]["lstm"]["ratio"]["values"][1] == 1.0
    assert mt.claims(fake)[0].verdict == "undecided"
    assert mt.tables(fake)[0].rows[1][5] == "1"  # one diverged seed


def test_presets_are_plain_json():
    for cfg in mt.PRESETS.values():
        assert json.loads(json.dumps(cfg)) == cfg
    assert mt.PRESETS["quick"]["T"] == [10, 30]
    assert mt.PRESETS["default"]["T"] == [10, 50, 100]
    assert mt.PRESETS["full"]["T"] == [10, 50, 100, 200]
    copy_full = mt.task_config(mt.PRESETS["full"], "copy")  # the anchor's settings
    assert (copy_full["optimizer"], copy_full["lr"], copy_full["batch"], copy_full["hidden"]) == (
        "rmsprop", 1e-3, 20, 128)
