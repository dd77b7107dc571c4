"""``rnnlab bench``: time a training step against torch (or trace its memory)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..functional.backend import BACKENDS
from . import CommandError

HELP = "time one training step of the MLP, RNN, LSTM and GRU against torch, or trace its memory"

_MODELS = ("mlp", "rnn", "lstm", "gru")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def _models(text: str) -> tuple:
    names = tuple(s.strip() for s in text.split(",") if s.strip())
    bad = [n for n in names if n not in _MODELS]
    if not names or bad:
        raise argparse.ArgumentTypeError(
            f"expected a comma-separated subset of {','.join(_MODELS)}, got {text!r}")
    return tuple(dict.fromkeys(names))


def _command_line() -> str:
    """The command as typed (for config.json and the Markdown table)."""
    import shlex
    import sys

    return "rnnlab " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--grid", choices=("tiny", "small", "full"), default="small",
                        help="grid of (d, n, m, T) points: tiny (tests, seconds), small "
                             "(under a minute), full (3·2·3·3 points per model) [small]")
    parser.add_argument("--models", type=_models, default=_MODELS, metavar="LIST",
                        help="comma-separated models among mlp,rnn,lstm,gru [all]")
    parser.add_argument("--vs", nargs="+", choices=("torch", "jax", "reference", "none"),
                        default=None, metavar="PEER",
                        help="peers timed beside rnnlab, interleaved: torch, jax (the same "
                             "step under jax.jit and lax.scan; pip install 'rnnlab[jax]'), "
                             "reference (rnnlab on its NumPy reference loops), or none "
                             "(rnnlab alone) [torch when it imports, else none]")
    parser.add_argument("--threads", type=_positive_int, default=2,
                        help="threads for NumPy's BLAS and for torch [2]")
    parser.add_argument("--budget", type=_positive_float, default=None, metavar="SECONDS",
                        help="seconds of timed repeats per point [tiny 0.05, small 0.3, full 1]")
    parser.add_argument("--warmup", type=_non_negative_int, default=3,
                        help="untimed steps per side before timing [3]")
    parser.add_argument("--min-repeats", type=_positive_int, default=None,
                        help="timed steps per side even past the budget [full 12, else 5]")
    parser.add_argument("--settle", type=_non_negative_float, default=None, metavar="SECONDS",
                        help="sleep before each block of one side's steps, so that the other "
                             "side's idle threads stop spinning [measured per side: the other "
                             "library's spin + a margin]; --settle 0 --block 0 is strict "
                             "per-step A B A B")
    parser.add_argument("--block", type=_non_negative_float, default=0.05, metavar="SECONDS",
                        help="seconds of back-to-back timed steps of one side per round [0.05]")
    parser.add_argument("--retries", type=_non_negative_int, default=None,
                        help="measure a point again when other processes kept the CPUs busy "
                             "meanwhile, after waiting for quiet [tiny 0, else 2]")
    parser.add_argument("--quiet-wait", type=_non_negative_float, default=20.0, metavar="SECONDS",
                        help="longest wait for a quiet machine before a retry [20]")
    parser.add_argument("--gemm-size", type=_positive_int, default=None, metavar="N",
                        help="side of the square sgemm that measures the peak, at the start "
                             "and end, and in the rounds of each model's largest point "
                             "[tiny 256, else 2048]")
    parser.add_argument("--backend", choices=BACKENDS, default=None,
                        help="rnnlab's recurrent time loops [as set: auto when numba imports, "
                             "else numpy]")
    parser.add_argument("--seed", type=int, default=0, help="weights and data [0]")
    parser.add_argument("--memory", action="store_true",
                        help="trace the peak memory of an rnnlab training step (tracemalloc) "
                             "against the BPTT minimum, instead of timing")
    parser.add_argument("--packed", action="store_true",
                        help="time a packed LSTM step against the padded full-length step "
                             "(d=256, n=64, m=256, T=64, lengths uniform in [1, T]; "
                             "benchmarks/packed_vs_padded.py) instead of the grid")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="output folder for CSV, JSON and config [runs/bench-<timestamp>/]")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args) -> int:
    from rich.console import Console

    from ..bench import (BenchConfig, backend, render_memory, render_timing, run_memory,
                         run_timing, write_results)

    console = Console() if Console().is_terminal else Console(width=200)
    if args.packed:
        return _run_packed(args, console)
    vs = _peers(args, console)
    try:
        config = BenchConfig(grid=args.grid, models=args.models, vs=vs,
                             threads=args.threads, budget=args.budget, warmup=args.warmup,
                             min_repeats=args.min_repeats, settle=args.settle,
                             block=args.block, retries=args.retries,
                             quiet_wait=args.quiet_wait,
                             gemm_size=args.gemm_size,
                             seed=args.seed, memory=args.memory, backend=args.backend)
        with backend(args.backend):  # unavailable backends fail here, before the run
            pass
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    out = _output_folder(args.out)
    progress_console = Console(stderr=True)
    if args.memory:
        results = run_memory(config, console=progress_console, progress=not args.no_progress)
        render_memory(results, console)
    else:
        partial = out / "bench-points.jsonl"  # each point as it finishes: a long run keeps them
        partial.write_text("", encoding="utf-8")

        def keep(row):
            with open(partial, "a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")

        try:
            results = run_timing(config, console=progress_console,
                                 progress=not args.no_progress, on_point=keep)
        except ImportError as exc:  # a peer found on the path that does not import
            raise CommandError(f"--vs: {exc}") from None
        render_timing(results, console)
    try:
        paths = write_results(results, out, command=_command_line())
    except OSError as exc:
        raise CommandError(f"cannot write to {out}: {exc.strerror or exc}") from None
    console.print(f"wrote {', '.join(str(p) for p in paths.values())}")
    return 0


def _peers(args, console) -> tuple:
    """The peers of ``--vs``, checked before the run: torch imports, jax is installed (it is
    imported only by the run, after its thread setting), "none" stands alone."""
    import importlib.util

    from ..bench import import_torch

    if args.memory:
        return ()
    if args.vs is None:
        if import_torch() is None:
            console.print("[yellow]torch does not import: timing rnnlab alone[/]")
            return ()
        return ("torch",)
    if "none" in args.vs:
        if len(args.vs) > 1:
            raise CommandError(f"--vs none stands alone, got --vs {' '.join(args.vs)}")
        return ()
    if "torch" in args.vs and import_torch() is None:
        raise CommandError("--vs torch: torch does not import; install it or use --vs none")
    if "jax" in args.vs and importlib.util.find_spec("jax") is None:
        raise CommandError("--vs jax: jax is not installed; pip install 'rnnlab[jax]'")
    return tuple(dict.fromkeys(args.vs))


def _output_folder(path):
    """The output folder (``--out``, else runs/bench-<timestamp>/), created now: a bad path
    fails before a long run, not after it."""
    from ..bench import default_out_dir

    out = Path(path) if path is not None else default_out_dir()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CommandError(f"cannot create the output folder {out}: {exc.strerror or exc}") from None
    return out


def _run_packed(args, console) -> int:
    """``--packed``: :func:`rnnlab.bench.packed.run_packed_vs_padded` at the issue's point;
    writes packed.json and packed.md to the output folder."""
    from ..bench import backend
    from ..bench.packed import PackedConfig, packed_markdown, run_packed_vs_padded

    if args.memory:
        raise CommandError("--packed times a step and --memory traces one: choose one")
    try:
        config = PackedConfig(threads=args.threads, budget=args.budget or 20.0,
                              warmup=args.warmup, min_repeats=args.min_repeats or 5,
                              seed=args.seed)
        with backend(args.backend):  # unavailable backends fail here, before the run
            pass
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    out = _output_folder(args.out)
    with backend(args.backend):
        results = run_packed_vs_padded(config)
    markdown = packed_markdown(results)
    console.print(markdown, markup=False, highlight=False)
    try:
        (out / "packed.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
        (out / "packed.md").write_text(f"`{_command_line()}`\n\n{markdown}", encoding="utf-8")
    except OSError as exc:
        raise CommandError(f"cannot write to {out}: {exc.strerror or exc}") from None
    console.print(f"wrote {out / 'packed.json'}, {out / 'packed.md'}")
    return 0
