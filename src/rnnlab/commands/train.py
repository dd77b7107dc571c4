"""rnnlab train: train one model on one task, with checkpoints, exact resume and Ctrl-C.

Exit codes: 0 done; 2 a user error (bad flag or value, --out already holds a
run or is in use by another, --resume folder missing/unreadable/with nothing to
resume, a corrupted checkpoint, sizes that cannot fit in memory, a full disk);
3 training diverged (non-finite loss, gradient or weight; the last good
checkpoint is kept); 130 interrupted by Ctrl-C (a checkpoint of the current
step was written; continue with --resume).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from . import CommandError

HELP = "train an MLP, RNN, LSTM or GRU on a task, with checkpoints, exact resume and Ctrl-C"

EXIT_DIVERGED = 3
EXIT_INTERRUPTED = 130

EPILOG = """\
examples:
  rnnlab train --model lstm --task adding --seq-len 50 --steps 2000 --out runs/add
  rnnlab train --resume runs/add                 # after Ctrl-C: continue to step 2000
  rnnlab train --resume runs/add --steps 4000    # or train on further

exit codes: 0 done, 2 usage or input error, 3 training diverged (NaN/inf),
130 interrupted (a checkpoint was saved; continue with --resume)."""

# Options that define the model, task and data: a resumed run keeps them, so on
# the command line they may only repeat the saved values.
_FIXED = ("model", "task", "seq_len", "n_symbols", "copy_length", "noise", "hidden", "layers",
          "activation", "optimizer", "momentum", "weight_decay", "batch", "seed", "dtype")
_OVERRIDES = ("steps", "lr", "clip", "every", "keep")


def _int_at_least(minimum):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value
    return parse


def _float(positive):
    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not (value > 0 if positive else value >= 0) or value == float("inf"):
            raise argparse.ArgumentTypeError(
                f"must be a finite number {'> 0' if positive else '>= 0'}, got {text}")
        return value
    return parse


def add_arguments(parser):
    from ..models import KINDS
    from ..train import ACTIVATIONS, DTYPES, OPTIMIZERS, TASKS

    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    what = parser.add_argument_group("model and task (fixed for a run)")
    what.add_argument("--model", choices=KINDS, default=None, help="default lstm")
    what.add_argument("--task", choices=TASKS, default=None, help="default adding")
    what.add_argument("--seq-len", type=_int_at_least(1), default=None, metavar="T",
                      help="adding/sine: sequence length (default 50); copy: the delay (default 20)")
    what.add_argument("--n-symbols", type=_int_at_least(1), default=None, metavar="K",
                      help="copy: alphabet size (default 8)")
    what.add_argument("--copy-length", type=_int_at_least(1), default=None, metavar="L",
                      help="copy: symbols to recall (default 10)")
    what.add_argument("--noise", type=_float(False), default=None,
                      help="sine: input noise std (default 0)")
    what.add_argument("--hidden", type=_int_at_least(1), default=None, metavar="H",
                      help="hidden units (default 32)")
    what.add_argument("--layers", type=_int_at_least(1), default=None,
                      help="stacked recurrent layers, or MLP hidden layers (default 1)")
    what.add_argument("--activation", choices=ACTIVATIONS, default=None,
                      help="MLP activation or RNN nonlinearity (default tanh)")
    what.add_argument("--dtype", choices=DTYPES, default=None, help="default float32")
    what.add_argument("--batch", type=_int_at_least(1), default=None, metavar="N",
                      help="sequences per step (default 32)")
    what.add_argument("--seed", type=_int_at_least(0), default=None,
                      help="root seed of init, data and split (default 0)")

    how = parser.add_argument_group("optimisation")
    how.add_argument("--optimizer", choices=OPTIMIZERS, default=None, help="default adam")
    how.add_argument("--lr", type=_float(True), default=None,
                     help="learning rate (default 1e-3 for adam, 1e-2 for sgd)")
    how.add_argument("--momentum", type=_float(False), default=None, help="sgd only (default 0.9)")
    how.add_argument("--weight-decay", type=_float(False), default=None, help="L2 (default 0)")
    how.add_argument("--clip", type=_float(True), default=None, metavar="MAX_NORM",
                     help="clip the gradient norm (default: no clipping)")
    how.add_argument("--steps", type=_int_at_least(1), default=None,
                     help="total steps of the run, counted across resumes (default 1000)")

    files = parser.add_argument_group("files")
    files.add_argument("--out", metavar="DIR", default=None,
                       help="run folder (default runs/train-<model>-<task>-<time>)")
    files.add_argument("--every", type=_int_at_least(1), default=None, metavar="K",
                       help="checkpoint every K steps (default 100)")
    files.add_argument("--keep", type=_int_at_least(1), default=None, metavar="N",
                       help="keep the newest N checkpoints (default 3)")
    files.add_argument("--resume", metavar="DIR", default=None,
                       help="continue the run in DIR from its newest checkpoint")
    files.add_argument("--no-progress", action="store_true",
                       help="no progress bar (it is shown only on a terminal anyway)")


def _trainer(args):
    from ..train import TrainConfig, Trainer

    progress = False if args.no_progress else None
    if args.resume is not None:
        if args.out is not None and Path(args.out).resolve() != Path(args.resume).resolve():
            raise CommandError(f"--out {args.out} and --resume {args.resume} name different "
                               f"folders; a resumed run continues in its own folder")
        return Trainer.resume(args.resume, progress=progress,
                              expect={k: getattr(args, k) for k in _FIXED},
                              **{k: getattr(args, k) for k in _OVERRIDES})
    given = {k: getattr(args, k) for k in _FIXED + _OVERRIDES if getattr(args, k) is not None}
    config = TrainConfig(**given)
    out = args.out
    if out is None:
        out = Path("runs") / (f"train-{config.model}-{config.task}-"
                              f"{time.strftime('%Y%m%d-%H%M%S')}")
    return Trainer(config, out, progress=progress)


def run(args) -> int:
    from ..io import CheckpointError
    from ..memory_guard import MemoryBudgetError
    from ..train import TrainError, TrainingDiverged

    trainer = None
    try:
        trainer = _trainer(args)
        result = trainer.run()
    except (TrainError, CheckpointError, MemoryBudgetError) as exc:
        raise CommandError(str(exc)) from None
    except TrainingDiverged as exc:
        print(f"rnnlab train: error: {exc}", file=sys.stderr)
        return EXIT_DIVERGED
    except OSError as exc:  # e.g. --out not writable, disk full
        where = f"{exc.filename}: " if exc.filename else ""
        then = ("" if trainer is None or trainer.step == 0 and trainer.last_checkpoint is None
                else f"; the run stopped at step {trainer.step}")
        again = "" if trainer is None else (f"; free space or fix the folder, then continue with "
                                            f"rnnlab train --resume {trainer.out_dir}")
        raise CommandError(f"{where}{exc.strerror or exc}{then}{again}") from None

    steps = trainer.config.steps
    if result.status == "interrupted":
        print(f"rnnlab train: interrupted at step {result.step}/{steps}; checkpoint saved to "
              f"{result.checkpoint}; continue with: rnnlab train --resume {trainer.out_dir}",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    loss = "n/a" if result.loss is None else f"{result.loss:.6g}"
    best = "" if result.best_loss is None else f" (best {result.best_loss:.6g} at step {result.best_step})"
    print(f"rnnlab train: done, step {result.step}/{steps}, loss {loss}{best}, "
          f"{result.seconds:.1f} s of training; checkpoint {result.checkpoint}")
    return 0
