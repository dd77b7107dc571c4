"""The ``rnnlab`` command: one subcommand per module in :mod:`rnnlab.commands`.

Each command module defines ``HELP`` (one line), ``add_arguments(parser)`` and
``run(args) -> int``, and only parses arguments and calls library code. A user
error (:class:`rnnlab.commands.CommandError`, or a bad flag) prints one line
and exits 2, never a traceback; Ctrl-C exits 130, also while the commands are
still being imported (NumPy and the command modules take ~0.2-0.7 s). This module
imports nothing heavy at its top; :func:`main` holds a Ctrl-C back while it imports
(an interrupt inside a C extension's import surfaces as an ImportError or worse) and
honours it right after.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import threading

from .commands import CommandError

# name -> module; the order is the order of `rnnlab --help`.
COMMANDS = ["compare", "bench", "train", "gradcheck", "report", "plan"]


class _OneLineParser(argparse.ArgumentParser):
    """argparse that reports a usage error in one line (exit 2), without the usage block."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(prog="rnnlab", description="Learn, check and measure the MLP, "
                            "the vanilla RNN and the LSTM.")
    from . import __version__
    parser.add_argument("--version", action="version", version=f"rnnlab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_OneLineParser)
    sub.required = True
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"rnnlab.commands.{name}")
        except ModuleNotFoundError as exc:  # a command not built yet is simply not offered
            if exc.name == f"rnnlab.commands.{name}":
                continue
            raise
        command = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(command)
        command.set_defaults(run=module.run)
    return parser


class _HeldInterrupt:
    """Within ``with``: SIGINT is recorded, not raised; on leaving, a recorded one is raised."""

    def __enter__(self):
        self.seen = False
        self.active = threading.current_thread() is threading.main_thread()
        if self.active:
            self.previous = signal.signal(signal.SIGINT, self._record) or signal.default_int_handler
        return self

    def _record(self, signum, frame):
        self.seen = True

    def __exit__(self, *exc):
        if self.active:
            signal.signal(signal.SIGINT, self.previous)
        if self.seen and exc[0] is None:
            raise KeyboardInterrupt
        return False


def main(argv=None) -> int:
    command = None
    try:
        with _HeldInterrupt():
            parser = build_parser()
        args = parser.parse_args(argv)
        command = args.command
        from .allocator import reuse_freed_memory

        # Steps reuse their buffers, large ones included, instead of page-faulting (see allocator.py).
        reuse_freed_memory(large_blocks=True)
        return int(args.run(args) or 0)
    except CommandError as exc:
        print(f"rnnlab {command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"rnnlab{'' if command is None else ' ' + command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
