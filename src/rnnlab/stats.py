"""Intervals over seeds, and verdicts decided by them.

A learned number (an accuracy, a loss ratio, a gradient ratio) changes with
the seed; ``rnnlab compare --seeds K`` measures it once per seed and reports
the mean with a 95 % **Student t interval**::

    mean ± t(0.975, K-1) · s / √K,    s² = Σ (x_k - mean)² / (K-1)

A comparison between two models is a **paired** difference: both are trained
on the same seed (same data, batches, initial draws), so the interval is
taken over d_k = a_k - b_k, which removes what the seed does to both alike.

A difference is then classified against a practical band ±``band`` stated by
the claim: "tie" when its interval lies inside the band (the models are equal
for practical purposes, significant or not), "above"/"below" when it lies
above/below 0, "unclear" otherwise (more seeds would decide). With one seed
there is no interval (low = high = None) and everything is "unclear".

The t quantile is computed here (no SciPy): the t distribution's two-sided
probability for an integer ν has a closed form (a finite trigonometric sum
in θ = atan(t/√ν)), inverted by bisection.
"""

from __future__ import annotations

import math

__all__ = ["t_quantile", "mean_interval", "geometric_interval", "paired_difference",
           "classify_difference", "classify_against", "fmt_interval"]


def _t_two_sided(t: float, dof: int) -> float:
    """P(|T| < t) for Student's T with ``dof`` degrees of freedom, t >= 0.

    With θ = atan(t/√ν), c = cos θ:
        ν odd:  (2/π) (θ + sin θ (c + (2/3) c³ + (2·4)/(3·5) c⁵ + ... up to c^(ν-2)))
        ν even: sin θ (1 + (1/2) c² + (1·3)/(2·4) c⁴ + ... up to c^(ν-2))
    """
    theta = math.atan(t / math.sqrt(dof))
    c, s = math.cos(theta), math.sin(theta)
    if dof % 2 == 1:
        total, term = 0.0, c  # term = (2·4···(2j))/(3·5···(2j+1)) c^(2j+1)
        for j in range(1, (dof - 1) // 2 + 1):
            total += term
            term *= c * c * (2 * j) / (2 * j + 1)
        return 2.0 / math.pi * (theta + s * total)
    total, term = 0.0, 1.0  # term = (1·3···(2j-1))/(2·4···(2j)) c^(2j)
    for j in range(0, dof // 2):
        total += term
        term *= c * c * (2 * j + 1) / (2 * j + 2)
    return s * total


def t_quantile(p: float, dof: int) -> float:
    """The ``p`` quantile (0.5 < p < 1) of Student's t with ``dof`` >= 1 degrees of freedom.

    E.g. t_quantile(0.975, 4) = 2.776...: the half-width factor of a 95 % interval from 5 values.
    """
    if not isinstance(dof, int) or dof < 1:
        raise ValueError(f"dof must be an int >= 1, got {dof!r}")
    if not 0.5 < p < 1.0:
        raise ValueError(f"p must be in (0.5, 1), got {p!r}")
    target = 2.0 * p - 1.0  # P(|T| < t)
    lo, hi = 0.0, 1.0
    while _t_two_sided(hi, dof) < target:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if _t_two_sided(mid, dof) < target:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-12 * hi:
            break
    return 0.5 * (lo + hi)


def mean_interval(values, level: float = 0.95) -> dict:
    """Mean of per-seed ``values`` with a two-sided t interval at ``level``.

    Returns dict(mean, low, high, n, values): ``values`` the floats as given (one
    per seed, in seed order), low/high None when n < 2. Raises ValueError for an
    empty list or a non-finite value (callers decide what a diverged run counts as).
    """
    xs = [float(v) for v in values]
    n = len(xs)
    if n == 0:
        raise ValueError("mean_interval needs at least one value, got none")
    if not all(math.isfinite(x) for x in xs):
        raise ValueError(f"mean_interval needs finite values, got {xs}")
    mean = math.fsum(xs) / n
    if n < 2:
        return {"mean": mean, "low": None, "high": None, "n": n, "values": xs}
    var = math.fsum((x - mean) ** 2 for x in xs) / (n - 1)
    half = t_quantile(0.5 + level / 2, n - 1) * math.sqrt(var / n)
    return {"mean": mean, "low": mean - half, "high": mean + half, "n": n, "values": xs}


def geometric_interval(values, level: float = 0.95) -> dict:
    """For positive values that multiply (times, ratios): the t interval of their logs, taken
    back with exp. Returns dict(mean (the geometric mean), low, high, n, values); one slow
    outlier widens it without pushing it below 0."""
    xs = [float(v) for v in values]
    if any(not x > 0 for x in xs):
        raise ValueError(f"geometric_interval needs positive values, got {xs}")
    iv = mean_interval([math.log(x) for x in xs], level)
    back = {k: None if iv[k] is None else math.exp(iv[k]) for k in ("mean", "low", "high")}
    return {**back, "n": iv["n"], "values": xs}


def paired_difference(a, b, level: float = 0.95) -> dict:
    """The t interval of a_k - b_k over seeds k (a and b measured on the same seeds)."""
    a, b = list(a), list(b)
    if len(a) != len(b):
        raise ValueError(f"paired values need the same seeds: got {len(a)} and {len(b)} values")
    return mean_interval([x - y for x, y in zip(a, b)], level)


def classify_difference(interval: dict, band: float) -> str:
    """"tie" (interval inside ±band), "above" (low > 0), "below" (high < 0) or "unclear"."""
    low, high = interval["low"], interval["high"]
    if low is None:
        return "unclear"
    if -band <= low and high <= band:
        return "tie"
    if low > 0:
        return "above"
    if high < 0:
        return "below"
    return "unclear"


def classify_against(interval: dict, threshold: float) -> str:
    """Where an interval lies against one threshold: "below", "above" or "unclear" (holds it)."""
    low, high = interval["low"], interval["high"]
    if low is None:
        return "unclear"
    if high < threshold:
        return "below"
    if low > threshold:
        return "above"
    return "unclear"


def fmt_interval(interval: dict, fmt: str = ".3f") -> str:
    """'0.982 [0.975, 0.989]', or '0.982 (1 seed)' without an interval."""
    mean = format(interval["mean"], fmt)
    if interval["low"] is None:
        return f"{mean} (1 seed)"
    return f"{mean} [{format(interval['low'], fmt)}, {format(interval['high'], fmt)}]"
