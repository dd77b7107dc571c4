"""rnnlab compare: measure the claims about MLP, RNN and LSTM and write the report."""

from __future__ import annotations

from . import CommandError, output_folder

HELP = "measure MLP, RNN and LSTM (time, complexity, gradients, memory, accuracy) and write a report"


def add_arguments(parser):
    parser.add_argument("--preset", choices=["quick", "default", "full"], default="default",
                        help="quick: < 2 min, default: < 8 min, full: < 45 min on 2 cores")
    parser.add_argument("--out", metavar="DIR", default=None,
                        help="output folder (default: runs/<timestamp>/)")
    parser.add_argument("--seed", type=int, default=0, help="root random seed (default 0)")
    parser.add_argument("--threads", type=int, default=2, help="BLAS threads (default 2)")
    only = parser.add_argument("--only", metavar="NAME", nargs="+", default=None,
                               help="run only these experiments")

    def format_help(original=parser.format_help):
        # The names come from the experiments installed, imported only when help is shown.
        from ..compare import available_experiments

        only.help = f"run only these experiments (default: all): {', '.join(available_experiments())}"
        return original()

    parser.format_help = format_help


def run(args) -> int:
    from rich.console import Console

    from ..compare import run_compare, print_summary

    if args.threads < 1:
        raise CommandError(f"--threads must be at least 1, got {args.threads}")
    if args.out is not None:
        output_folder(args.out)
    console = Console(stderr=True)
    try:
        out = run_compare(args.preset, args.out, args.seed, args.threads, args.only, console)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    print_summary(out["results"], Console())
    print(f"report: {out['report']['html']}")
    print(f"        {out['report']['markdown']}")
    return 0
