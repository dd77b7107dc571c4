"""The experiments behind ``rnnlab compare``; see :mod:`rnnlab.experiments.base` for the contract."""
