"""Subcommands of the ``rnnlab`` CLI: argument parsing only, the work is in the library."""


class CommandError(Exception):
    """A user error on the command line: printed as one line, exit code 2."""
