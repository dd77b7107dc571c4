"""Pure array functions, no state: for each op a forward and the backward under it.

What a learner finds here is the math: the equations in the docstrings of
:mod:`.linear`, :mod:`.activations`, :mod:`.losses`, :mod:`.recurrent` (Elman RNN,
LSTM), :mod:`.gru` and :mod:`.packed_recurrent` (variable-length batches), and
the time loops that run them in plain NumPy (:mod:`._loops_numpy`, the readable
reference every other path is tested against). :mod:`.backend` says which loops
run. The compiled and threaded paths (numba loops, the packed GEMM, OpenBLAS's
thread pool) live in :mod:`rnnlab.kernels`, behind its planner: they compute the
same equations, faster on some machines, and change no result beyond rounding.
"""

from .activations import (ACTIVATIONS, relu, relu_backward, sigmoid, sigmoid_backward,
                          tanh, tanh_backward)
from .linear import linear_backward, linear_forward, outer_sum
from .gru import gru_backward, gru_forward
from .losses import cross_entropy, mse
from .recurrent import lstm_backward, lstm_forward, rnn_backward, rnn_forward

__all__ = [
    "ACTIVATIONS", "sigmoid", "sigmoid_backward", "tanh", "tanh_backward", "relu",
    "relu_backward", "linear_forward", "linear_backward", "outer_sum", "mse",
    "cross_entropy", "rnn_forward", "rnn_backward", "lstm_forward", "lstm_backward",
    "gru_forward", "gru_backward",
]
