#!/usr/bin/env python
"""One training step of rnnlab against torch.nn, side by side in one run.

The same benchmark as ``rnnlab bench --vs torch`` (same flags), runnable from a
checkout: it times zero-grad, forward over the sequence, MSE loss, backward and
an SGD update, for the MLP, the RNN and the LSTM, over a grid of (d, n, m, T),
rnnlab and torch interleaved A B A B with the same weights, data and thread
count. It prints the table and writes CSV, JSON, Markdown and config.json.

    python benchmarks/step_vs_torch.py --grid small
    python benchmarks/step_vs_torch.py --grid full --threads 2 --out runs/full

torch is required here (``rnnlab bench --vs none`` times rnnlab alone).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

try:
    import rnnlab  # noqa: F401
except ImportError:  # a checkout that is not installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from rnnlab.commands import CommandError, bench  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="step_vs_torch.py", description=__doc__.splitlines()[0])
    bench.add_arguments(parser)
    parser.set_defaults(vs="torch")
    args = parser.parse_args(argv)
    if args.memory:
        parser.error("--memory traces rnnlab alone: use `rnnlab bench --memory`")
    if args.vs != "torch":
        parser.error("this script compares with torch; use `rnnlab bench --vs none` for rnnlab alone")
    try:
        return bench.run(args)
    except CommandError as exc:
        print(f"step_vs_torch.py: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
