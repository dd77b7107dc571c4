"""What every experiment of ``rnnlab compare`` provides, and the pieces they share.

An experiment is a module in :mod:`rnnlab.experiments` with:

- ``NAME``: a short key, used in results.json (``results["experiments"][NAME]``);
- ``TITLE``: a heading for the report;
- ``PRESETS``: ``{"quick": cfg, "default": cfg, "full": cfg}``, plain JSON dicts;
- either, for an experiment whose numbers are learned (they change with the
  seed), the per-seed unit that ``rnnlab compare`` runs as independent tasks,
  one per seed, in parallel on a process pool or a Ray cluster:

  - ``run_seed(config, seed) -> dict``: one seed's measurements, a
    JSON-serialisable dict; ``seed`` is an int that alone determines every
    random draw (weights, data, batch order), so the dict is the same whoever
    runs it;
  - ``combine(config, per_seed) -> dict``: the result from the list of
    ``{"seed": s, **run_seed(...)}`` dicts, in seed order: means with 95 %
    intervals over the seeds (:mod:`rnnlab.stats`), the per-seed values kept;

- or, for an experiment that measures time (``TIMING = True``): ``run(config, *,
  rng, progress) -> dict``, run once, alone on the machine (after the parallel
  tasks), since another task beside it would change what it measures;
- ``claims(result) -> list[Claim]``: the claims this experiment tests, each
  with a verdict *computed from* ``result`` (never fixed text: feed it other
  numbers and the verdict changes);
- ``tables(result) -> list[Table]`` and ``plots(result, out_dir) -> list[Path]``
  (PNG files written with :func:`rnnlab.report.style.save`, which stores each
  figure's one-line caption; colours and markers per model come from
  :mod:`rnnlab.report.style`).

Either way the result holds every number the report needs (and the config it
ran with, under "config"). ``claims``, ``tables`` and ``plots`` read only the
result dict, so a report can be rebuilt from a saved results.json without
rerunning anything.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from ..bench.timing import summarize

# "undecided": the measurements cannot decide (an interval holds the threshold, or the
# machine was busy during a timing); the evidence says which.
VERDICTS = ("supported", "not supported", "nuanced", "undecided")


@dataclass
class Claim:
    """One claim and the verdict the numbers give it.

    Attributes:
        key: a stable identifier, e.g. "rnn-vanishing".
        claim: the claim in one sentence, as courses state it.
        verdict: "supported", "not supported", "nuanced" or "undecided" (the
            evidence then starts with the reason, e.g. "machine busy").
        evidence: one sentence with the number(s) that decided the verdict.
        headline: the one number a reader needs, short, for the report's claims
            table, e.g. "LSTM 0.989 vs RNN 0.973" ("" when there is none).
    """

    key: str
    claim: str
    verdict: str
    evidence: str
    headline: str = ""

    def __post_init__(self):
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")

    def as_dict(self):
        return asdict(self)


@dataclass
class Table:
    """A table for the report: a title, column names and rows of cells (str or numbers)."""

    title: str
    columns: list
    rows: list = field(default_factory=list)

    def as_dict(self):
        return asdict(self)


class Progress:
    """Progress reporting for experiments: a rich progress bar, or silence.

    ``track(iterable, description, total)`` yields the items and advances a
    bar; experiments use nothing else, so tests can pass ``Progress(None)``.
    """

    def __init__(self, rich_progress=None):
        self._progress = rich_progress

    def track(self, iterable, description: str, total: int | None = None):
        if self._progress is None:
            yield from iterable
            return
        if total is None and hasattr(iterable, "__len__"):
            total = len(iterable)
        task = self._progress.add_task(description, total=total)
        try:
            for item in iterable:
                yield item
                self._progress.advance(task)
        finally:
            self._progress.remove_task(task)


def time_stats(samples) -> dict:
    """Median, p10, p90 (and n, mean, min, max) of times in seconds, as a plain dict."""
    return summarize(samples).as_dict()


def log_slope(x, y):
    """Least-squares slope of log y on log x with a 95 % confidence interval.

    Returns dict(slope, ci_low, ci_high, intercept); the interval is
    slope ± t(0.975, n-2) · SE(slope), for n >= 3 points.
    """
    lx, ly = np.log(np.asarray(x, dtype=float)), np.log(np.asarray(y, dtype=float))
    n = len(lx)
    if n < 3:
        raise ValueError(f"log_slope needs at least 3 points, got {n}")
    A = np.vstack([lx, np.ones(n)]).T
    (slope, intercept), residuals, *_ = np.linalg.lstsq(A, ly, rcond=None)
    dof = n - 2
    resid = ly - (slope * lx + intercept)
    s2 = float(resid @ resid) / dof if dof > 0 else 0.0
    se = np.sqrt(s2 / float(((lx - lx.mean()) ** 2).sum()))
    t = _t975(dof)
    return {"slope": float(slope), "ci_low": float(slope - t * se), "ci_high": float(slope + t * se),
            "intercept": float(intercept)}


def _t975(dof: int) -> float:
    """Student's t 97.5 % quantile."""
    from ..stats import t_quantile

    return t_quantile(0.975, dof)


def schedule_note(results: dict) -> str:
    """One sentence for the report: seeds, the interval, who ran the tasks, what ran alone."""
    config, schedule = results.get("config", {}), results.get("schedule")
    seeds = config.get("seeds")
    if not seeds or schedule is None:
        return ""
    timing = schedule.get("timing_alone") or []
    alone = (f" The timing experiments ({', '.join(timing)}) ran alone on the driver after the "
             f"parallel part, {config.get('threads', '?')} BLAS threads." if timing else "")
    return (f"Learned numbers: mean and 95 % Student t interval over {len(seeds)} seeds "
            f"({seeds[0]}..{seeds[-1]}), each (experiment, seed) task on "
            f"{schedule.get('runner', '?')} with {config.get('task_threads', '?')} BLAS thread(s)."
            + alone)


def plt():
    """matplotlib.pyplot on the Agg backend (no display needed), with the report's figure style
    (fonts, grid; see :mod:`rnnlab.report.style`)."""
    from ..report.style import pyplot

    return pyplot()
