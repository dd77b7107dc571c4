"""Which path runs a recurrent step shape: timed on this machine on first use, then cached.

A fast path that wins on one CPU can lose on another (the 4 × 64 packed tile
spills on AVX2; OpenBLAS's pool threads cost more than they bring on small
steps), so no constant decides. The first time a step shape is seen
- cell ("lstm", "gru", "rnn_tanh", "rnn_relu"), batch N, hidden H, dtype, steps
T (bucketed: T itself up to 8, 9 for 9-32, 33 above, see ``T_CAP``), direction, and the
BLAS pool's thread count - every candidate path runs a forward and a backward of those
steps on
random data of that shape, and the fastest is kept:

- "numpy": the reference loops (:mod:`rnnlab.functional._loops_numpy`);
- "numba": the whole time loop compiled (:mod:`.loops_numba`);
- "fused", "fused+packed", "fused+pool", "fused+packed+pool": NumPy's GEMM and
  tanh with the rest fused (:mod:`.loops_fused`), the per-step products on a
  weight packed once or on OpenBLAS, the work on OpenBLAS's threads or not
  (the RNN's fused loops are NumPy's with packed products: only "+packed").

Timing (:mod:`.timing`, where the constants named here live): each candidate
runs two steps to warm up (compiling, packing; one that raises is left out and
named in the plan's "failed"); the reference's warm-up sets the length of a
timed run: the bucket's steps while they take under ``RUN_SECONDS``, fewer
for larger steps (down to two, or to the bucket's steps where the fused LSTM's
dh product depends on them: batch at most an eighth of the hidden size), so
that planning a large shape costs rounds of a few steps, not of nine. Runs longer than two steps are screened
first by a timed two-step run: a candidate slower than ``SCREEN_PRUNE`` times
the best leaves (the whole loop at a large step is 10x slower and would cost
most of the budget); with two-step runs the first round is the screen. After
the first round, a candidate slower than ``PRUNE`` times the best leaves. The
rest run in rounds, each run timed (a short run repeated up to 2 ms, its
fastest repeat counting), in a rotated order, until ``BUDGET_SECONDS`` of
timed work (but at least ``MIN_ROUNDS`` rounds unless they pass twice that) or
``ROUNDS`` rounds. A candidate's time is its fastest round. A path replaces
the reference only when it is at least ``MARGIN`` faster: no planned choice is
slower than the reference on the machine it was timed on (as far as a short
timing can tell).

Plans are kept per process and in ``plans.json`` of the machine's cache folder
(see :mod:`.cache`), with the timings they were chosen by (``rnnlab plan``
shows them). A plan timed while the 1-minute load average exceeded the core
count is marked busy: the next process that needs it times it again, if the
machine is less busy by then. ``RNNLAB_PLAN`` says how to get a plan for a new
shape:

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

import numpy as np

from ..functional import backend
from . import cache, timing

__all__ = ["MODES", "mode", "set_mode", "plan_for", "planned_loops", "entries", "in_use", "pin",
           "cached_plans", "forget", "plan_name"]

MODES = ("measure", "cached", "off")
# Steps of a plan's key: T itself below T_CAP; T_CAP for T_CAP <= T < T_LONG; T_LONG above.
# The buckets follow the fused LSTM backward, whose dh product changes form once a sequence
# runs 8 recurrent products (T >= 9) and, for a batch of one, 32 (T >= 33; see
# loops_fused._backward_feature_major): a plan timed at T = 8 had chosen the fused loops for
# N = 1, H = 128, which at T = 64 ran another product and lost to torch by 1.29.
T_CAP, T_LONG = 9, 33
_FILE = "plans.json"
_LOOPS = ("numpy", "numba", "fused")

_lock = threading.RLock()
_table: dict[tuple, dict] = {}  # (cell, N, H, dtype, T, reverse, threads) -> entry
_pinned: dict[str, dict] = {}  # key text -> plan, from a checkpoint
_state: dict = {}  # "mode": the setting; "disk": plans.json as read once
_dtype_text: dict = {}  # dtype -> its name


def steps_bucket(steps: int) -> int:
    """The steps of a plan's key (and of its timed runs): T below T_CAP, else T_CAP or
    T_LONG, the shortest T of its bucket."""
    return steps if steps < T_CAP else (T_CAP if steps < T_LONG else T_LONG)


def plan_name(plan: dict) -> str:
    """"numpy", "numba", "fused", "fused+packed", ... for a plan dict (see
    :func:`.timing.plan_name`; looked up at call time: importing :mod:`.timing` first
    imports rnnlab.functional, which imports this module)."""
    return timing.plan_name(plan)


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


def _key_text(key: tuple) -> str:
    cell, batch, hidden, dtype, steps, reverse, threads = key
    return (f"{cell} N={batch} H={hidden} T={steps}{'+' if steps >= T_CAP else ''} {dtype} "
            f"threads={threads} {'reverse' if reverse else 'forward'}")


def plan_for(cell: str, batch: int, hidden: int, dtype, steps: int, reverse: bool) -> dict:
    """The plan for a step shape: {"loops": ..., "packed": bool or None, "pool": bool or None}
    (None: the loops' own size rule). Found, or timed now (see the module docstring)."""
    forced = timing.forced_plan()
    if forced is not None:
        return forced
    setting = backend._current
    if setting != "auto":
        return {"loops": setting}
    if not backend.numba_available():
        return timing.REFERENCE
    from . import blas_pool
    text = _dtype_text.get(dtype)
    if text is None:  # str(dtype) costs ~1 µs, on every step otherwise
        text = _dtype_text.setdefault(dtype, str(np.dtype(dtype)))
    key = (cell, batch, hidden, text, steps_bucket(steps), bool(reverse), blas_pool.threads())
    entry = _table.get(key)
    if entry is None:
        entry = _resolve(key)
    return entry["plan"]


def planned_loops(cell, batch, hidden, dtype, steps, reverse):
    """The loops module (or a wrapper setting its knobs) that the plan of this shape runs."""
    plan = plan_for(cell, batch, hidden, dtype, steps, reverse)
    if cell == "gru" and plan.get("loops") == "fused" and backend.numba_available():
        from . import gru_fused  # the GRU's own fused loops, same knobs
        return _loops_of(plan, gru_fused)
    return _loops_of(plan)


_wrappers: dict[tuple, object] = {}


def _loops_of(plan: dict, fused=None):
    """``fused``: the module the "fused" plans run (default loops_fused; the GRU's its own)."""
    loops = plan.get("loops", "numpy")
    if loops != "numpy" and not backend.numba_available():
        loops = "numpy"  # e.g. a pinned plan from a machine with numba
    if loops == "numpy":
        from ..functional import _loops_numpy
        return _loops_numpy
    if loops == "numba":
        from . import loops_numba
        return loops_numba
    if fused is None:
        from . import loops_fused as fused
    knobs = (plan.get("packed"), plan.get("pool"))
    if knobs == (None, None):
        return fused
    key = (fused.__name__, knobs)
    if key not in _wrappers:
        _wrappers[key] = _Knobbed(fused, {"packed": knobs[0], "pool": knobs[1]})
    return _wrappers[key]


class _Knobbed:
    """A loops module whose ``*_loop`` functions run with its KNOBS set (see loops_fused)."""

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


def _measure(key: tuple) -> dict:
    """The timed plan of a new shape (see :mod:`.timing`); a seam for the tests."""
    return timing.measure(key)


def _busy(load="now") -> bool:
    """Whether the machine is (or, given a load, was) busier than its cores: other work then
    took turns with the timed runs, and a plan timed so is measured again, once the machine
    is less busy, by the next process that needs it."""
    load = _load() if load == "now" else load
    return load is not None and load > (os.cpu_count() or 1)


def _load():
    return timing.load()
