"""rnnlab compare: measure the claims about MLP, RNN and LSTM and write the report."""

from __future__ import annotations

import os
import sys

from . import CommandError, output_folder

HELP = "measure MLP, RNN and LSTM (time, complexity, gradients, memory, accuracy) and write a report"


def add_arguments(parser):
    parser.add_argument("--preset", choices=["quick", "default", "full"], default=None,
                        help="quick (2 seeds, minutes), default (5 seeds) or full (10 seeds, "
                             "hours); default: default")
    parser.add_argument("--out", metavar="DIR", default=None,
                        help="output folder (default: runs/<timestamp>/)")
    parser.add_argument("--seed", type=int, default=None,
                        help="first seed; the k-th of --seeds is seed + k (default 0)")
    parser.add_argument("--seeds", metavar="K", type=int, default=None,
                        help="seeds of every learned experiment, reported as mean and 95 %% "
                             "interval (default: quick 2, default 5, full 10)")
    parser.add_argument("--threads", type=int, default=2,
                        help="BLAS threads of the timing experiments (default 2)")
    parser.add_argument("--task-threads", type=int, default=1,
                        help="BLAS threads of each (experiment, seed) task (default 1)")
    parser.add_argument("--workers", metavar="N", type=int, default=None,
                        help="local processes running (experiment, seed) tasks "
                             "(default: cores // task threads)")
    parser.add_argument("--ray", metavar="ADDRESS", nargs="?", const="", default=None,
                        help="run the tasks on a Ray cluster: ADDRESS, RAY_ADDRESS when none is "
                             "given, or 'local' to start one here (pip install 'rnnlab[ray]')")
    parser.add_argument("--resume", metavar="DIR", default=None,
                        help="continue a compare in DIR: run its missing tasks, rebuild the report")
    only = parser.add_argument("--only", metavar="NAME", nargs="+", default=None,
                               help="run only these experiments")

    def format_help(original=parser.format_help):
        # The names come from the experiments installed, imported only when help is shown.
        from ..compare import available_experiments

        only.help = f"run only these experiments (default: all): {', '.join(available_experiments())}"
        return original()

    parser.format_help = format_help


def _ray_address(value):
    if value is None or value:
        return value
    address = os.environ.get("RAY_ADDRESS", "")
    if not address:
        raise CommandError("--ray without an address needs RAY_ADDRESS set (or use --ray local)")
    return address


def run(args) -> int:
    from rich.console import Console

    from ..compare import TaskFailures, run_compare, print_summary

    for name in ("threads", "task_threads", "workers", "seeds"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise CommandError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    if args.ray is not None and args.workers is not None:
        raise CommandError("--workers and --ray exclude each other: Ray places the tasks itself")
    if args.resume is not None:
        given = [f"--{n}" for n in ("preset", "seed", "seeds", "only", "out")
                 if getattr(args, n) is not None]
        if given:
            raise CommandError(f"--resume uses the saved config; drop {', '.join(given)}")
    if args.out is not None:
        output_folder(args.out)
    ray = _ray_address(args.ray)
    # A live bar on a terminal, one plain line per finished task otherwise.
    console, log = (Console(stderr=True), None) if sys.stdout.isatty() else (
        None, lambda line: print(line, flush=True))
    try:
        out = run_compare(args.preset or "default", args.out, args.seed or 0, args.threads,
                          args.only, console, seeds=args.seeds, workers=args.workers, ray=ray,
                          task_threads=args.task_threads, resume=args.resume, log=log)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    except TaskFailures as exc:
        print(f"rnnlab compare: {exc}", file=sys.stderr)
        return 1
    print_summary(out["results"], Console())
    print(f"report: {out['report']['html']}")
    print(f"        {out['report']['markdown']}")
    return 0
