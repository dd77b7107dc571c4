"""Which path runs a recurrent step shape: timed on this machine on first use, then cached.

A fast path that wins on one CPU can lose on another (the 4 × 64 packed tile
spills on AVX2; OpenBLAS's pool threads cost more than they bring on small
steps), so no constant decides. The first time a step shape is seen
- cell ("lstm", "rnn_tanh", "rnn_relu"), batch N, hidden H, dtype, steps
T (up to ``T_CAP``), direction, and the BLAS pool's thread count - every
candidate path runs a forward and a backward of ``min(T, T_CAP)`` steps on
random data of that shape, and the fastest is kept:

- "numpy": the reference loops (:mod:`rnnlab.functional._loops_numpy`);
- "numba": the whole time loop compiled (:mod:`._loops_numba`);
- "fused", "fused+packed", "fused+pool", "fused+packed+pool": NumPy's GEMM and
  tanh with the rest fused (:mod:`._loops_fused`), the per-step products on a
  weight packed once or on OpenBLAS, the work on OpenBLAS's threads or not
  (the RNN's fused loops are NumPy's with packed products: only "+packed").

Each candidate runs one step to warm up (compiling, packing; one that raises
is left out and named in the plan's "failed"), then two steps
timed: a candidate slower than ``PRUNE`` times the best leaves (the whole
loop at a large step is 10x slower and would cost most of the budget). The
rest run in rounds of ``min(T, T_CAP)`` steps, each timed (a short run
repeated up to 2 ms, its fastest repeat counting), in a rotated order, until ``BUDGET_SECONDS`` of timed work (but at least ``MIN_ROUNDS``
rounds unless they pass twice that) or ``ROUNDS`` rounds. A candidate's time
is its fastest round. A path replaces the reference only when it is at least
``MARGIN`` faster: no planned choice is slower than the reference on the
machine it was timed on (as far as a short timing can tell).

Plans are kept per process and in ``plans.json`` of the machine's cache folder
(see :mod:`.cache`), with the timings they were chosen by (``rnnlab plan``
shows them). A plan timed while the 1-minute load average exceeded the core
count is marked busy: the next process that needs it times it again, if the
machine is less busy by then. ``RNNLAB_PLAN`` says how to get a plan for a new shape:

- ``measure`` (the default): from the cache, else timed now;
- ``cached``: from the cache, else the rule below, never timed;
- ``off``: the rule: the numba whole loop up to 256 batch × hidden units, the
  fused loops above, each with its built-in size thresholds (no cache).

Only the "auto" backend is planned; ``RNNLAB_BACKEND`` (or ``use_backend``)
forces loops. Paths differ by rounding only (each is tested against torch); a
plan is fixed once chosen, and :func:`pin` restores the plans a checkpoint
recorded, so a resumed run computes bit for bit what it computed before.
"""

from __future__ import annotations

import os
import threading
import time
from datetime import datetime, timezone

import numpy as np

from ..functional import backend
from . import cache

__all__ = ["MODES", "mode", "set_mode", "plan_for", "planned_loops", "candidates", "choose",
           "entries", "in_use", "pin", "cached_plans", "forget", "plan_name"]

MODES = ("measure", "cached", "off")
T_CAP = 8  # steps per timed run; shapes with T >= T_CAP share one plan
BUDGET_SECONDS = 0.25  # timed work per new shape (plus one short warm-up run per candidate)
ROUNDS = 5
MIN_ROUNDS = 2  # a burst of outside load in one round does not decide alone
MIN_SAMPLE, MAX_REPEATS = 2e-3, 20  # a sample repeats a short run (see _timed)
PRUNE = 2.0
MARGIN = 0.03
REFERENCE = {"loops": "numpy"}
_FILE = "plans.json"
_LOOPS = ("numpy", "numba", "fused")

_lock = threading.RLock()
_table: dict[tuple, dict] = {}  # (cell, N, H, dtype, T, reverse, threads) -> entry
_pinned: dict[str, dict] = {}  # key text -> plan, from a checkpoint
_state: dict = {}  # "mode": the setting; "disk": plans.json as read once
_timing = threading.local()  # .plan: the candidate this thread is timing, else absent


def mode() -> str:
    """How new shapes get a plan: ``RNNLAB_PLAN`` (read once) or :func:`set_mode`."""
    if "mode" not in _state:
        set_mode(os.environ.get("RNNLAB_PLAN", "").strip().lower() or "measure")
    return _state["mode"]


def set_mode(name: str) -> None:
    """Set the mode ("measure", "cached" or "off") for shapes not planned yet."""
    if name not in MODES:
        raise ValueError(f"RNNLAB_PLAN must be one of {MODES}, got {name!r}")
    _state["mode"] = name


def plan_name(plan: dict) -> str:
    """"numpy", "numba", "fused", "fused+packed", ... for a plan dict."""
    name = plan.get("loops", "numpy")
    if name == "fused":
        name += "+packed" * bool(plan.get("packed")) + "+pool" * bool(plan.get("pool"))
    return name


def _key_text(key: tuple) -> str:
    cell, batch, hidden, dtype, steps, reverse, threads = key
    return (f"{cell} N={batch} H={hidden} T={steps}{'+' if steps == T_CAP else ''} {dtype} "
            f"threads={threads} {'reverse' if reverse else 'forward'}")


def plan_for(cell: str, batch: int, hidden: int, dtype, steps: int, reverse: bool) -> dict:
    """The plan for a step shape: {"loops": ..., "packed": bool or None, "pool": bool or None}
    (None: the loops' own size rule). Found, or timed now (see the module docstring)."""
    forced = getattr(_timing, "plan", None)
    if forced is not None:
        return forced
    setting = backend._current
    if setting != "auto":
        return {"loops": setting}
    if not backend.numba_available():
        return REFERENCE
    from ..functional import _blas_pool
    key = (cell, batch, hidden, str(dtype), min(steps, T_CAP), bool(reverse), _blas_pool.threads())
    entry = _table.get(key)
    if entry is None:
        entry = _resolve(key)
    return entry["plan"]


def planned_loops(cell, batch, hidden, dtype, steps, reverse):
    """The loops module (or a wrapper setting its knobs) that the plan of this shape runs."""
    return _loops_of(plan_for(cell, batch, hidden, dtype, steps, reverse))


_wrappers: dict[tuple, object] = {}


def _loops_of(plan: dict):
    loops = plan.get("loops", "numpy")
    if loops != "numpy" and not backend.numba_available():
        loops = "numpy"  # e.g. a pinned plan from a machine with numba
    if loops == "numpy":
        from ..functional import _loops_numpy
        return _loops_numpy
    if loops == "numba":
        from ..functional import _loops_numba
        return _loops_numba
    from ..functional import _loops_fused
    knobs = (plan.get("packed"), plan.get("pool"))
    if knobs == (None, None):
        return _loops_fused
    if knobs not in _wrappers:
        _wrappers[knobs] = _Knobbed(_loops_fused, {"packed": knobs[0], "pool": knobs[1]})
    return _wrappers[knobs]


class _Knobbed:
    """A loops module whose ``*_loop`` functions run with its KNOBS set (see _loops_fused)."""

    def __init__(self, module, knobs: dict):
        self._module, self._knobs = module, knobs

    def __getattr__(self, name):
        value = getattr(self._module, name)
        if not name.endswith("_loop"):
            return value

        def call(*args, **kwargs):
            saved = dict(self._module.KNOBS)
            self._module.KNOBS.update(self._knobs)
            try:
                return value(*args, **kwargs)
            finally:
                self._module.KNOBS.update(saved)

        return call


def _resolve(key: tuple) -> dict:
    with _lock:
        if key in _table:
            return _table[key]
        text = _key_text(key)
        how = mode()
        if text in _pinned:
            entry = {"plan": _pinned[text], "source": "pinned"}
        elif how != "off" and _valid(_disk().get(text)) and not (
                how == "measure" and _disk()[text].get("busy") and not _busy()):
            entry = {**_disk()[text], "source": "cache"}
        elif how == "measure":
            entry = {**_measure(key), "source": "measured"}
            entry["busy"] = _busy(entry.get("load"))
            stored = {k: v for k, v in entry.items() if k != "source"}
            _disk()[text] = stored
            cache.update_json(_FILE, {text: stored})
        else:
            entry = {"plan": {"loops": backend.rule_loops(key[1], key[2])}, "source": "rule"}
        entry["key"] = text
        _table[key] = entry
        return entry


def _valid(entry) -> bool:
    if not isinstance(entry, dict) or not isinstance(entry.get("plan"), dict):
        return False
    plan = entry["plan"]
    return (plan.get("loops") in _LOOPS
            and all(plan.get(k) in (None, True, False) for k in ("packed", "pool")))


def _disk() -> dict:
    if "disk" not in _state:
        _state["disk"] = {k: v for k, v in cache.read_json(_FILE).items() if _valid(v)}
    return _state["disk"]


def cached_plans() -> dict:
    """Every plan on disk for this machine and these versions, by key text."""
    return {k: v for k, v in cache.read_json(_FILE).items() if _valid(v)}


def entries() -> list:
    """This process's plans: dicts with "key", "plan", "source" ("measured", "cache",
    "pinned", "rule") and, when timed, "chosen", "timings" (seconds per candidate run of
    "steps_timed" steps, forward and backward), "seconds", "load", "when"."""
    return [dict(entry) for entry in list(_table.values())]


def in_use() -> dict:
    """{key text: plan} of every shape planned in this process: what a checkpoint records."""
    return {entry["key"]: dict(entry["plan"]) for entry in list(_table.values())}


def pin(plans) -> None:
    """Use these plans ({key text: plan}, as :func:`in_use` gave them) for their shapes,
    whatever the cache holds or a measurement would say. Raises ValueError on a bad plan."""
    if not isinstance(plans, dict):
        raise ValueError(f"plans must be a dict of key -> plan, got {type(plans).__name__}")
    for text, plan in plans.items():
        if not isinstance(text, str) or not _valid({"plan": plan}):
            raise ValueError(f"not a plan: {text!r}: {plan!r}")
    with _lock:
        _pinned.update({text: dict(plan) for text, plan in plans.items()})
        for key in [k for k, e in _table.items() if e["key"] in plans]:
            del _table[key]


def forget() -> None:
    """Drop this process's plans, pins and mode (tests; a new cache folder)."""
    with _lock:
        _table.clear()
        _pinned.clear()
        _state.clear()


# ---------------------------------------------------------------- timing

def candidates(cell: str, batch: int, hidden: int, dtype) -> dict:
    """{name: plan} of the paths that can run this shape here, the reference first."""
    found = {"numpy": dict(REFERENCE)}
    if not backend.numba_available():
        return found
    found["numba"] = {"loops": "numba"}
    from ..functional import _blas_pool, _packed
    columns = 4 * hidden if cell == "lstm" else hidden
    packable = _packed.usable(batch, columns, dtype)
    pool = np.dtype(dtype) == np.float32 and _blas_pool.threads() > 1
    for packed in ((False, True) if packable else (False,)):
        for on_pool in ((False, True) if pool else (False,)):
            if cell != "lstm" and (not packed or (on_pool and columns < 2 * _packed.COLS)):
                continue  # the same as the reference, or as the one-thread product
            plan = {"loops": "fused", "packed": packed, "pool": on_pool}
            found[plan_name(plan)] = plan
    return found


def choose(runs: dict, clock=time.perf_counter, budget: float = BUDGET_SECONDS,
           rounds: int = ROUNDS, warm=None, screen=None):
    """(name, {name: seconds}, {name: seconds}): the fastest of ``runs`` ({name: callable},
    the reference first), its timings, and the screening times.

    ``warm`` ({name: callable}, default ``runs``) runs once each, untimed. ``screen``
    ({name: callable}: a shorter run), if given, runs once each, timed, and a candidate
    slower than PRUNE times the best leaves before the rounds of ``runs`` (else the first
    round prunes). Rounds go on until ``budget`` seconds, at least MIN_ROUNDS of them
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
        live = _survivors(names, screened)
    samples: dict[str, list] = {name: [] for name in live}
    start = clock()
    for done in range(rounds):
        for name in live[done % len(live):] + live[:done % len(live)]:
            samples[name].append(_timed(runs[name], clock))
        if done == 0 and screen is None:
            live = _survivors(live, {name: samples[name][0] for name in live})
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


def _survivors(names, seconds) -> list:
    """The names within PRUNE times the fastest, the reference (first) always among them."""
    best = min(seconds.values())
    return [n for n in names if n == names[0] or seconds[n] <= PRUNE * best]


def _runner(cell, batch, hidden, dtype, reverse):
    """run(plan, steps): a forward and backward of ``steps`` steps of this shape on random
    data, with no initial state (as in training), under ``plan``."""
    from ..functional import recurrent as R
    rng = np.random.default_rng(0)
    inputs, gates, bound = 8, 4 if cell == "lstm" else 1, 1.0 / np.sqrt(hidden)
    weights = [rng.uniform(-bound, bound, shape).astype(dtype) for shape in
               ((gates * hidden, inputs), (gates * hidden, hidden), (gates * hidden,),
                (gates * hidden,))]

    def run(plan, steps):
        x = rng.standard_normal((steps, batch, inputs)).astype(dtype)
        grad = rng.standard_normal((steps, batch, hidden)).astype(dtype)
        _timing.plan = plan
        try:
            if cell == "lstm":
                _, saved = R.lstm_forward(x, None, None, *weights, reverse=reverse)
                R.lstm_backward(saved, grad, state_grad=False)
            else:
                _, saved = R.rnn_forward(x, None, *weights, nonlinearity=cell[4:], reverse=reverse)
                R.rnn_backward(saved, grad, state_grad=False)
        finally:
            _timing.plan = None

    return run


def _nothing():
    pass


def _busy(load="now") -> bool:
    """Whether the machine is (or, given a load, was) busier than its cores: other work then
    took turns with the timed runs, and a plan timed so is measured again, once the machine
    is less busy, by the next process that needs it."""
    load = _load() if load == "now" else load
    return load is not None and load > (os.cpu_count() or 1)


def _load():
    """The 1-minute load average (other work on the machine skews the timings), or None."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def _measure(key: tuple) -> dict:
    cell, batch, hidden, dtype, steps, reverse, _ = key
    found = candidates(cell, batch, hidden, dtype)
    run = _runner(cell, batch, hidden, np.dtype(dtype), reverse)
    began = time.perf_counter()
    failed = {}
    for name, plan in list(found.items()):
        try:
            run(plan, 1)  # warm: compiles, packs, touches pages
        except Exception as exc:  # noqa: BLE001 - a path that fails here is not a candidate
            if name == "numpy":
                raise
            failed[name] = f"{type(exc).__name__}: {exc}"[:200]
            del found[name]
    runs, screen = ({name: (lambda plan=plan, k=k: run(plan, k)) for name, plan in found.items()}
                    for k in (steps, min(steps, 2)))
    chosen, timings, screened = choose(runs, warm={name: _nothing for name in runs},
                                       screen=screen)
    return {"plan": found[chosen], "chosen": chosen, "steps_timed": steps,
            "timings": {name: round(t, 7) for name, t in timings.items()},
            "screen": {name: round(t, 7) for name, t in screened.items()},
            "seconds": round(time.perf_counter() - began, 3), "load": _load(),
            **({"failed": failed} if failed else {}),
            "when": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
