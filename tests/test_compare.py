"""rnnlab compare: experiments at tiny sizes, verdicts that follow the numbers, the report."""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import numpy as np
import pytest

from rnnlab.experiments import digits, training_time
from rnnlab.experiments.base import Progress, log_slope

TINY_DIGITS = {"hidden": 16, "batch": 32, "steps": 40, "lr": 0.01, "warmup": 5, "eval_every": 10,
               "target_accuracy": 0.5, "missing_fractions": [0.0, 0.5]}
TINY_TIME = {"d": 4, "n": 3, "m": 8, "T": 5, "k": 2, "seeds": 2, "warmup": 2, "repeats": 6,
             "lr": 0.01}


@pytest.fixture(scope="module")
def digits_result():
    return digits.combine(TINY_DIGITS, [{"seed": s, **digits.run_seed(TINY_DIGITS, 10 + s)}
                                        for s in range(3)])


@pytest.fixture(scope="module")
def time_result():
    return training_time.run(TINY_TIME, rng=np.random.default_rng(0), progress=Progress())


def test_digits_numbers_are_sane(digits_result):
    assert digits_result["seeds"] == [0, 1, 2]
    summary = digits_result["summary"]["lstm"]["test_accuracy"]
    per_seed = [s["models"]["lstm"]["test_accuracy"] for s in digits_result["per_seed"]]
    assert summary["values"] == per_seed and summary["mean"] == pytest.approx(np.mean(per_seed))
    models = digits_result["per_seed"][0]["models"]
    assert set(models) == {"mlp", "rnn", "lstm"}
    for kind, m in models.items():
        assert 0.0 <= m["test_accuracy"] <= 1.0
        assert m["test_accuracy"] > 0.3, f"{kind} did not learn at all"  # chance is 0.1
        st = m["step_time"]
        assert st["n"] == TINY_DIGITS["steps"] - TINY_DIGITS["warmup"]
        assert 0 < st["p10"] <= st["median"] <= st["p90"]
        assert [p["step"] for p in m["curve"]] == list(range(10, 41, 10))
    # The analytic parameter count of an LSTM layer: 4(m·n + m² + 2m), plus the head.
    H, F = TINY_DIGITS["hidden"], 8
    assert models["lstm"]["parameters"] == 4 * (H * F + H * H + 2 * H) + H * 10 + 10


def _with_accuracies(result, accs):
    """A copy of a digits result whose seed k has test accuracy accs[kind][k], recombined."""
    fake = copy.deepcopy(result)
    for kind, values in accs.items():
        for seed, value in zip(fake["per_seed"], values):
            seed["models"][kind]["test_accuracy"] = value
    return digits.combine(fake["config"], fake["per_seed"])


def test_digits_verdicts_follow_the_numbers(digits_result):
    mlp, rnn = [0.80, 0.82, 0.81], [0.85, 0.86, 0.84]
    verdict = lambda lstm: digits.claims(  # noqa: E731
        _with_accuracies(digits_result, {"mlp": mlp, "rnn": rnn, "lstm": lstm}))[0].verdict
    assert verdict([0.97, 0.96, 0.98]) == "supported"
    assert verdict([0.50, 0.52, 0.51]) == "not supported"
    assert verdict([0.851, 0.861, 0.841]) == "nuanced"  # tied with the RNN, above the MLP
    assert verdict([0.97, 0.60, 0.98]) == "undecided"  # one bad seed: the interval holds 0

    fake = copy.deepcopy(digits_result)
    for seed, jitter in zip(fake["per_seed"], (0.0, 0.01, -0.01)):
        for kind, drop in (("mlp", 0.5), ("rnn", 0.1), ("lstm", 0.1)):
            seed["models"][kind]["robustness"] = {"0.0": 0.9, "0.5": 0.9 - drop - jitter}
    assert digits.claims(digits.combine(fake["config"], fake["per_seed"]))[1].verdict == "supported"
    for seed in fake["per_seed"]:
        seed["models"]["mlp"]["robustness"]["0.5"] = 0.9
    assert digits.claims(digits.combine(fake["config"], fake["per_seed"]))[1].verdict == "not supported"


def test_training_time_numbers_are_sane(time_result):
    for kind, m in time_result["models"].items():
        assert len(m["seeds"]) == TINY_TIME["seeds"]
        for run in m["seeds"]:
            for phase in training_time.PHASES:
                assert run[phase]["n"] == TINY_TIME["repeats"]
                assert run[phase]["median"] > 0
            # forward + backward + update are timed inside the step, so they cannot exceed it
            parts = sum(run[p]["median"] for p in ("forward", "backward", "update"))
            assert parts <= run["step"]["p90"] * 1.5
        assert np.isfinite(m["between_seed_spread"]) and np.isfinite(m["within_seed_spread"])


def test_training_time_verdict_flips(time_result):
    fake = copy.deepcopy(time_result)
    for m in fake["models"].values():
        m["other_load_cores"] = 0.0  # a quiet machine: the verdict follows the spreads
    for m in fake["models"].values():
        m["between_seed_spread"], m["within_seed_spread"] = 0.5, 0.05
    assert training_time.claims(fake)[0].verdict == "supported"
    for m in fake["models"].values():
        m["between_seed_spread"], m["within_seed_spread"] = 0.01, 0.2
    assert training_time.claims(fake)[0].verdict == "not supported"


def test_training_time_claims_are_undecided_on_a_busy_machine(time_result):
    fake = copy.deepcopy(time_result)
    fake.update(threads=2, cpus=2)
    for m in fake["models"].values():
        m["between_seed_spread"], m["within_seed_spread"], m["first5_mean_error"] = 0.01, 0.2, 0.5
        m["other_load_cores"] = 0.1
    quiet = training_time.claims(fake)
    assert [c.verdict for c in quiet] == ["not supported", "not supported"]
    assert not any(c.headline.startswith("machine busy") for c in quiet)
    fake["models"]["rnn"]["other_load_cores"] = 1.2  # another process held a core
    out = training_time.claims(fake)
    assert [c.verdict for c in out] == ["undecided", "undecided"]
    assert all(c.evidence.startswith("Machine busy") for c in out)
    # The claims table's headline says why too, and keeps the number as measured.
    assert [c.headline.split(";")[0] for c in out] == ["machine busy", "machine busy"]
    assert [c.headline.split("as measured ")[1] for c in out] == [c.headline for c in quiet]


def test_log_slope_recovers_a_known_exponent():
    rng = np.random.default_rng(0)
    x = np.geomspace(1, 1000, 12)
    y = 3 * x ** 1.7 * np.exp(rng.normal(0, 0.05, x.size))
    fit = log_slope(x, y)
    assert fit["ci_low"] < 1.7 < fit["ci_high"]
    assert fit["ci_high"] - fit["ci_low"] < 0.2


def test_report_builds_from_results_json_alone(tmp_path, digits_result, time_result):
    results = {"config": {"preset": "test", "seed": 0},
               "experiments": {"digits": digits_result, "training_time": time_result},
               "machine": {"cpu_model": "test cpu"}}
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results))
    out = tmp_path / "report"
    proc = subprocess.run([sys.executable, "-m", "rnnlab", "report", str(path), "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    md = (out / "report.md").read_text()
    claims = digits.claims(digits_result) + training_time.claims(time_result)
    for claim in claims:  # every claim and its computed verdict is in the summary
        assert claim.claim in md and claim.evidence in md
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 2  # self-contained: plots embedded
    assert (out / "digits.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("argv,message", [
    (["compare", "--preset", "huge"], "invalid choice: 'huge'"),
    (["compare", "--only", "nope"], "unknown experiment(s) ['nope']"),
    (["compare", "--threads", "0"], "--threads must be at least 1"),
    (["report", "/nonexistent/results.json"], "cannot read results"),
])
def test_cli_user_errors_are_one_line(argv, message, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "rnnlab", *argv, *(["--out", str(tmp_path)]
                          if argv[0] == "compare" else [])],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_compare_quick_runs_end_to_end(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "rnnlab", "compare", "--preset", "quick",
                           "--out", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["config"]["preset"] == "quick"
    assert json.loads((tmp_path / "config.json").read_text()) == results["config"]
    assert "report.html" in proc.stdout
    assert results["machine"]["threads"] == 2
    for name in results["config"]["experiments"]:
        assert name in results["experiments"]
