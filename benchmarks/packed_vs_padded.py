#!/usr/bin/env python
"""A packed LSTM training step against the padded full-length step, interleaved.

At d=256 sequences, n=64 inputs, m=256 hidden units and T=64 steps, lengths
uniform in [1, T]: the packed step (pack_padded_sequence + the layer's packed
path, work ∝ Σ lengths) against the same model run over the padded batch for
all T steps (default backend, and the NumPy reference loops). Warm-up, then
interleaved blocks; median and p10/p90 per side. Target: packed ≤ 0.7× padded.

    python benchmarks/packed_vs_padded.py                 # ~20 s of timed rounds
    python benchmarks/packed_vs_padded.py --budget 60 --out runs/packed.json
    python benchmarks/packed_vs_padded.py --model gru --d 64
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

try:
    import rnnlab  # noqa: F401
except ImportError:  # a checkout that is not installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from rnnlab.allocator import reuse_freed_memory  # noqa: E402
from rnnlab.bench.packed import PackedConfig, packed_markdown, run_packed_vs_padded  # noqa: E402


def main(argv=None) -> int:
    defaults = PackedConfig()
    parser = argparse.ArgumentParser(prog="packed_vs_padded.py",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["lstm", "rnn", "gru"], default=defaults.model)
    for name in ("d", "n", "m", "T", "threads", "seed", "warmup", "min_repeats"):
        parser.add_argument(f"--{name.replace('_', '-')}", type=int,
                            default=getattr(defaults, name))
    parser.add_argument("--budget", type=float, default=defaults.budget,
                        help="seconds of timed rounds (default %(default)s)")
    parser.add_argument("--out", type=Path, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    try:
        config = PackedConfig(model=args.model, d=args.d, n=args.n, m=args.m, T=args.T,
                              threads=args.threads, seed=args.seed, warmup=args.warmup,
                              min_repeats=args.min_repeats, budget=args.budget)
    except ValueError as exc:
        parser.error(str(exc))
    reuse_freed_memory(large_blocks=True)  # as the rnnlab command does (see README)
    results = run_packed_vs_padded(config)
    print(packed_markdown(results), end="")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
