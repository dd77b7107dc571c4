"""The one error that every loader raises for a file it cannot use."""


class CheckpointError(ValueError):
    """A file that cannot be loaded: unreadable, truncated, corrupted, foreign, or not
    matching the module. The message says which file and what is wrong; the objects
    the caller passed are unchanged."""
