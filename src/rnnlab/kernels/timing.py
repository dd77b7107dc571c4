"""Timing the candidate paths of a step shape, for :mod:`.planner`.

:func:`measure` builds the candidates that can run the shape here
(:func:`candidates`), runs each on random data of that shape, and
:func:`choose` keeps the fastest, as :mod:`.planner`'s docstring says. The
clock, the runs and the budget are parameters, so that tests drive it with a
fake clock and fake candidates.
"""

from __future__ import annotations

import os
import threading
import time
from datetime import datetime, timezone

import numpy as np

from ..functional import backend

__all__ = ["BUDGET_SECONDS", "MARGIN", "candidates", "choose", "measure", "forced_plan"]

BUDGET_SECONDS = 0.25  # timed work per new shape (plus one short warm-up run per candidate)
# A timed run holds the key's steps while the reference's step is short, and fewer (down
# to 2, below which the packed products do not pack) once its steps add up past this: at
# LSTM N=256 H=512 a run of 8 steps took 0.3-2 s per candidate, and planning the shape 9 s.
RUN_SECONDS = 0.02
ROUNDS = 5
MIN_ROUNDS = 2  # a burst of outside load in one round does not decide alone
MIN_SAMPLE, MAX_REPEATS = 2e-3, 20  # a sample repeats a short run (see _timed)
PRUNE = 1.5  # after the first full round: the reference always stays, so this only drops
# paths that lose to the best by half (never the plan's safety against the reference)
# The 2-step screen is more lenient: a path that packs W_hh once per sequence pays that
# over 2 steps there, not over min(T, 8), and must not leave for it.
SCREEN_PRUNE = 4.0
MARGIN = 0.03
REFERENCE = {"loops": "numpy"}

_local = threading.local()  # .plan: the candidate this thread is timing, else absent


def forced_plan():
    """The plan this thread is timing now, or None."""
    return getattr(_local, "plan", None)


def plan_name(plan: dict) -> str:
    """"numpy", "numba", "fused", "fused+packed", ... for a plan dict."""
    name = plan.get("loops", "numpy")
    if name == "fused":
        name += "+packed" * bool(plan.get("packed")) + "+pool" * bool(plan.get("pool"))
    return name


def candidates(cell: str, batch: int, hidden: int, dtype) -> dict:
    """{name: plan} of the paths that can run this shape here, the reference first."""
    found = {"numpy": dict(REFERENCE)}
    if not backend.numba_available():
        return found
    found["numba"] = {"loops": "numba"}
    from . import blas_pool, packed_gemm
    if cell == "gru":  # its fused loops: a compiled backward, the products packed or not
        found["fused"] = {"loops": "fused", "packed": False, "pool": False}
        if packed_gemm.usable(batch, hidden, dtype) and packed_gemm.usable(batch, 3 * hidden, dtype):
            for on_pool in (False, True) if blas_pool.threads() > 1 else (False,):
                plan = {"loops": "fused", "packed": True, "pool": on_pool}
                found[plan_name(plan)] = plan
        return found
    columns = 4 * hidden if cell == "lstm" else hidden
    packable = packed_gemm.usable(batch, columns, dtype)
    pool = np.dtype(dtype) == np.float32 and blas_pool.threads() > 1
    for packed in ((False, True) if packable else (False,)):
        for on_pool in ((False, True) if pool else (False,)):
            if cell != "lstm" and (not packed or (on_pool and columns < 2 * packed_gemm.COLS)):
                continue  # the same as the reference, or as the one-thread product
            plan = {"loops": "fused", "packed": packed, "pool": on_pool}
            found[plan_name(plan)] = plan
    return found


def choose(runs: dict, clock=time.perf_counter, budget: float = BUDGET_SECONDS,
           rounds: int = ROUNDS, warm=None, screen=None, first_prune: float = PRUNE):
    """(name, {name: seconds}, {name: seconds}): the fastest of ``runs`` ({name: callable},
    the reference first), its timings, and the screening times.

    ``warm`` ({name: callable}, default ``runs``) runs once each, untimed. ``screen``
    ({name: callable}: a shorter run), if given, runs once each, timed, and a candidate
    slower than SCREEN_PRUNE times the best leaves before the rounds of ``runs``; after
    the first round, one slower than ``first_prune`` times the best (PRUNE; SCREEN_PRUNE
    when the runs are as short as a screen and no screen ran). Rounds go on until ``budget`` seconds, at least MIN_ROUNDS of them
    unless they pass twice the budget, at most ``rounds``; each round in a rotated order.
    A candidate's time is its fastest round; the reference stays unless beaten by MARGIN.
    """
    names = list(runs)
    for name in names:
        (warm or runs)[name]()
    screened = {}
    live = names
    if screen is not None:
        for name in names:
            screened[name] = _timed(screen[name], clock)
        live = _survivors(names, screened, SCREEN_PRUNE)
    samples: dict[str, list] = {name: [] for name in live}
    start = clock()
    for done in range(rounds):
        for name in live[done % len(live):] + live[:done % len(live)]:
            samples[name].append(_timed(runs[name], clock))
        if done == 0:
            live = _survivors(live, {name: samples[name][0] for name in live}, first_prune)
        spent = clock() - start
        if spent >= budget and (done + 1 >= MIN_ROUNDS or spent >= 2 * budget):
            break
    timings = {name: min(times) for name, times in samples.items()}
    chosen = min(timings, key=lambda n: timings[n])
    if timings[chosen] > (1 - MARGIN) * timings[names[0]]:
        chosen = names[0]
    return chosen, timings, screened


def _timed(run, clock) -> float:
    """The fastest of repeated runs, repeated while they add up to less than MIN_SAMPLE
    seconds (at most MAX_REPEATS): a sub-millisecond run timed once is at the mercy of
    one context switch on a busy machine."""
    best, total = float("inf"), 0.0
    for _ in range(MAX_REPEATS):
        began = clock()
        run()
        took = clock() - began
        best, total = min(best, took), total + took
        if total >= MIN_SAMPLE:
            break
    return best


def _survivors(names, seconds, factor) -> list:
    """The names within ``factor`` times the fastest, the reference (first) always among them."""
    best = min(seconds.values())
    return [n for n in names if n == names[0] or seconds[n] <= factor * best]


def _runner(cell, batch, hidden, dtype, reverse):
    """run(plan, steps): a forward and backward of ``steps`` steps of this shape on random
    data, with no initial state (as in training), under ``plan``."""
    from ..functional import gru as G, recurrent as R
    rng = np.random.default_rng(0)
    inputs, bound = 8, 1.0 / np.sqrt(hidden)
    gates = {"lstm": 4, "gru": 3}.get(cell, 1)
    weights = [rng.uniform(-bound, bound, shape).astype(dtype) for shape in
               ((gates * hidden, inputs), (gates * hidden, hidden), (gates * hidden,),
                (gates * hidden,))]

    def run(plan, steps):
        x = rng.standard_normal((steps, batch, inputs)).astype(dtype)
        grad = rng.standard_normal((steps, batch, hidden)).astype(dtype)
        _local.plan = plan
        try:
            if cell == "lstm":
                _, saved = R.lstm_forward(x, None, None, *weights, reverse=reverse)
                R.lstm_backward(saved, grad, state_grad=False)
            elif cell == "gru":
                _, saved = G.gru_forward(x, None, *weights, reverse=reverse)
                G.gru_backward(saved, grad, state_grad=False)
            else:
                _, saved = R.rnn_forward(x, None, *weights, nonlinearity=cell[4:], reverse=reverse)
                R.rnn_backward(saved, grad, state_grad=False)
        finally:
            _local.plan = None

    return run



def _nothing():
    pass


def _shortest_run(cell: str, batch: int, hidden: int, steps: int) -> int:
    """The fewest steps a timed run may hold and still run the path that ``steps`` steps
    run: 2 (below, the packed products do not pack), or ``steps`` itself for an LSTM whose
    fused backward switches its dh product by the number of steps (8 · batch <= hidden)."""
    from .loops_fused import _feature_major_product
    if cell == "lstm" and _feature_major_product(batch, hidden):
        return steps
    return min(steps, 2)


def _run_length(steps: int, step_seconds: float, shortest: int) -> int:
    """Steps per timed run: ``steps`` (the key's, bucketed already) while they
    take under RUN_SECONDS at ``step_seconds`` each, fewer for longer steps, never fewer
    than ``shortest``."""
    fit = int(RUN_SECONDS / step_seconds) if step_seconds > 0 else steps
    return max(shortest, min(steps, fit))


def load():
    """The 1-minute load average (other work on the machine skews the timings), or None."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def measure(key: tuple) -> dict:
    """The plan entry of a step shape key (see planner._key_text): the chosen plan, its
    name, the timings, the screening times, the failed candidates, the load."""
    cell, batch, hidden, dtype, steps, reverse, _ = key
    found = candidates(cell, batch, hidden, dtype)
    run = _runner(cell, batch, hidden, np.dtype(dtype), reverse)
    began = time.perf_counter()
    failed = {}
    reference_seconds = None
    for name, plan in list(found.items()):
        try:
            warm_began = time.perf_counter()
            run(plan, min(steps, 2))  # warm: compiles, packs (from 2 steps), touches pages
            if name == "numpy":  # the reference compiles nothing: its run sets the length
                reference_seconds = (time.perf_counter() - warm_began) / min(steps, 2)
        except Exception as exc:  # noqa: BLE001 - a path that fails here is not a candidate
            if name == "numpy":
                raise
            failed[name] = f"{type(exc).__name__}: {exc}"[:200]
            del found[name]
    steps_timed = _run_length(steps, reference_seconds, _shortest_run(cell, batch, hidden, steps))
    runs = {name: (lambda plan=plan: run(plan, steps_timed)) for name, plan in found.items()}
    screen = None  # a run of 2 steps is the screen itself: no separate one
    if steps_timed > min(steps, 2):
        screen = {name: (lambda plan=plan: run(plan, min(steps, 2))) for name, plan in found.items()}
    chosen, timings, screened = choose(runs, budget=BUDGET_SECONDS, screen=screen,
                                       warm={name: _nothing for name in runs},
                                       first_prune=PRUNE if screen is not None else SCREEN_PRUNE)
    return {"plan": found[chosen], "chosen": chosen, "steps_timed": steps_timed,
            "timings": {name: round(t, 7) for name, t in timings.items()},
            "screen": {name: round(t, 7) for name, t in screened.items()},
            "seconds": round(time.perf_counter() - began, 3), "load": load(),
            **({"failed": failed} if failed else {}),
            "when": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}

