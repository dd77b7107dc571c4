"""rnnlab plan: which paths this machine runs, and the timings and checks they were chosen by."""

from __future__ import annotations

import re
import shutil

from . import CommandError

HELP = "show (or measure now) the planned paths of recurrent steps on this machine"

_SHAPE = re.compile(r"^(lstm|gru|rnn_tanh|rnn_relu):(\d+):(\d+):(\d+)(:reverse)?$")


def add_arguments(parser):
    parser.add_argument("--measure", metavar="CELL:N:H:T", nargs="+", default=[],
                        help="plan these step shapes now (cell lstm, gru, rnn_tanh or rnn_relu; "
                             "batch N, hidden H, steps T; add :reverse for the backward "
                             "direction), e.g. lstm:64:512:16")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32",
                        help="dtype of the measured shapes [float32]")
    parser.add_argument("--threads", type=int, default=None,
                        help="BLAS threads while measuring [as set: all cores]")
    parser.add_argument("--clear", action="store_true",
                        help="forget this machine's probe verdicts, plans and crossovers first")


def _shapes(specs):
    shapes = []
    for spec in specs:
        match = _SHAPE.match(spec)
        if match is None or min(int(match.group(k)) for k in (2, 3, 4)) < 1:
            raise CommandError(f"--measure: expected CELL:N:H:T (e.g. lstm:64:512:16, "
                               f"positive sizes), got {spec!r}")
        cell, n, h, t, reverse = match.groups()
        shapes.append((cell, int(n), int(h), int(t), bool(reverse)))
    return shapes


def _show_entry(key, entry):
    chosen = entry.get("chosen") or entry.get("plan", {}).get("loops", "?")
    where = entry.get("source", "cache")
    facts = ", ".join(f"{name} {entry[name]}" for name in ("when", "load") if entry.get(name))
    if entry.get("busy"):
        facts += " (busier than its cores: timed again when the machine is quieter)"
    print(f"  {key}\n    -> {chosen}  ({where}{'; ' + facts if facts else ''})")
    timings = entry.get("timings") or {}
    if timings:
        steps = entry.get("steps_timed", "?")
        print(f"    ms per forward+backward of {steps} steps: " + ", ".join(
            f"{name} {1e3 * seconds:.3g}" for name, seconds in
            sorted(timings.items(), key=lambda item: item[1])))
    dropped = {name: t for name, t in (entry.get("screen") or {}).items() if name not in timings}
    if dropped:
        print("    left after a 2-step screening run (ms): " + ", ".join(
            f"{name} {1e3 * seconds:.3g}" for name, seconds in dropped.items()))


def run(args) -> int:
    import numpy as np

    from ..functional import backend
    from ..kernels import cache, calibrate, crossover, planner, probes

    shapes = _shapes(args.measure)
    if args.threads is not None and args.threads < 1:
        raise CommandError(f"--threads must be at least 1, got {args.threads}")
    folder = cache.machine_dir()
    if args.clear:
        shutil.rmtree(folder, ignore_errors=True)
        probes.forget()
        planner.forget()
        calibrate._memo.clear()
        crossover._memo.clear()
        print(f"cleared {folder}")
    key = cache.machine_key()
    print(f"machine: {key['cpu']} ({key['cpu_count']} CPUs), {key['blas']} "
          f"{key.get('blas_version') or ''} {key.get('blas_kernel') or ''}".rstrip())
    print(f"versions: Python {key['python']}, NumPy {key['numpy']}, numba {key['numba']}, "
          f"llvmlite {key['llvmlite']}, rnnlab {key['rnnlab']}")
    print(f"cache: {folder}")
    print(f"RNNLAB_PLAN: {planner.mode()}; backend: {backend.get_backend()}"
          + ("" if backend.numba_available() else " (numba does not import here)"))
    if shapes:
        from threadpoolctl import threadpool_limits
        planner.set_mode("measure")
        with backend.use_backend("auto"), threadpool_limits(args.threads):
            for cell, n, h, t, reverse in shapes:
                planner.plan_for(cell, n, h, np.dtype(args.dtype), t, reverse)
        print("measured now:")
        if not backend.numba_available():
            for cell, n, h, t, reverse in shapes:
                print(f"  {cell} N={n} H={h} T={t} {args.dtype}: numpy (the only path here)")
        for entry in planner.entries():
            _show_entry(entry["key"], entry)
    print("probes (a hook into another library's internals, checked in a child process):")
    found = probes.verdicts()
    for name in probes.PROBES:
        verdict = found.get(name)
        state = ("not run yet" if verdict is None else
                 "passed" if verdict.get("ok") else "FAILED: path disabled")
        detail = f" - {verdict['detail']}" if verdict and verdict.get("detail") else ""
        print(f"  {name}: {state}{detail}")
    for key, found in sorted(cache.read_json("calibration.json").items()):
        start = found.get("min_elements")
        print(f"{key}: from {start} elements" if start != calibrate.NEVER else f"{key}: never")
    plans = planner.cached_plans()
    print(f"cached plans ({len(plans)}):" if plans else "cached plans: none yet "
          "(a step shape is planned on its first use; or use --measure)")
    for text in sorted(plans):
        _show_entry(text, plans[text])
    return 0
