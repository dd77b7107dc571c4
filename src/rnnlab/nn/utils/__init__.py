"""Utilities around the layers; :mod:`rnnlab.nn.utils.rnn` packs variable-length batches."""

from . import rnn

__all__ = ["rnn"]
