"""Intervals over seeds and the verdict helpers, on synthetic numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rnnlab.stats import (classify_against, classify_difference, fmt_interval, geometric_interval,
                          mean_interval, paired_difference, t_quantile)

# Student t 97.5 % quantiles from printed tables (e.g. any statistics textbook), 3 decimals.
T975 = {1: 12.706, 2: 4.303, 4: 2.776, 9: 2.262, 30: 2.042}


@pytest.mark.parametrize("dof", sorted(T975))
def test_t_quantile_matches_the_table(dof):
    assert t_quantile(0.975, dof) == pytest.approx(T975[dof], abs=5e-4)


@pytest.mark.parametrize("dof", [1, 2, 3, 5, 8, 13, 50, 200])
@pytest.mark.parametrize("p", [0.6, 0.9, 0.975, 0.995])
def test_t_quantile_matches_scipy(dof, p):
    stats = pytest.importorskip("scipy.stats")
    assert t_quantile(p, dof) == pytest.approx(float(stats.t.ppf(p, dof)), rel=1e-10)


def test_mean_interval_is_the_t_interval():
    rng = np.random.default_rng(0)
    x = rng.normal(0.9, 0.02, size=7)
    iv = mean_interval(x)
    half = t_quantile(0.975, 6) * x.std(ddof=1) / math.sqrt(7)
    assert iv["mean"] == pytest.approx(x.mean(), rel=1e-14)
    assert (iv["low"], iv["high"]) == pytest.approx((x.mean() - half, x.mean() + half), rel=1e-13)
    assert iv["values"] == list(x) and iv["n"] == 7


def test_geometric_interval_is_the_t_interval_of_the_logs():
    x = [1.0, 2.0, 4.0]
    iv = geometric_interval(x)
    half = t_quantile(0.975, 2) * 1.0 * math.log(2.0) / math.sqrt(3)  # logs 0, ln2, 2ln2: s = ln2
    assert iv["mean"] == pytest.approx(2.0, rel=1e-14)
    assert (iv["low"], iv["high"]) == pytest.approx((2.0 * math.exp(-half), 2.0 * math.exp(half)),
                                                    rel=1e-12)
    assert iv["low"] > 0 and iv["values"] == x
    with pytest.raises(ValueError, match="positive"):
        geometric_interval([1.0, 0.0])


def test_one_seed_has_no_interval():
    iv = mean_interval([0.5])
    assert iv["low"] is None and iv["high"] is None
    assert classify_difference(iv, 0.1) == "unclear" and classify_against(iv, 0.3) == "unclear"
    assert fmt_interval(iv) == "0.500 (1 seed)"


def test_bad_values_are_rejected():
    with pytest.raises(ValueError, match="at least one"):
        mean_interval([])
    with pytest.raises(ValueError, match="finite"):
        mean_interval([1.0, float("nan")])
    with pytest.raises(ValueError, match="same seeds"):
        paired_difference([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="dof"):
        t_quantile(0.975, 0)


def test_pairing_removes_what_the_seed_does_to_both():
    seed_effect = np.array([0.0, 0.3, -0.2, 0.1])  # large, shared by both models
    a, b = 0.9 + seed_effect + [0.011, 0.012, 0.010, 0.011], 0.9 + seed_effect
    assert classify_difference(mean_interval(a - b), 0.005) == "above"
    unpaired = mean_interval(a)["low"] - mean_interval(b)["high"]
    assert unpaired < 0  # separate intervals overlap: without pairing nothing is decided
    assert classify_difference(paired_difference(a, b), 0.005) == "above"


@pytest.mark.parametrize("diffs,band,expected", [
    ([0.05, 0.06, 0.04], 0.01, "above"),
    ([-0.05, -0.06, -0.04], 0.01, "below"),
    ([0.002, -0.001, 0.001], 0.01, "tie"),  # inside the band, whatever its sign
    ([0.004, 0.005, 0.006], 0.01, "tie"),  # above 0 but practically equal
    ([0.05, -0.04, 0.01], 0.01, "unclear"),  # holds 0 and leaves the band
])
def test_classify_difference_flips_with_the_numbers(diffs, band, expected):
    assert classify_difference(mean_interval(diffs), band) == expected


def test_classify_against_a_threshold():
    assert classify_against(mean_interval([0.1, 0.12, 0.11]), 0.5) == "below"
    assert classify_against(mean_interval([0.9, 0.92, 0.91]), 0.5) == "above"
    assert classify_against(mean_interval([0.1, 0.9, 0.5]), 0.5) == "unclear"
