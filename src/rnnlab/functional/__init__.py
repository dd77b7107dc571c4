"""Pure array functions, no state: for each op a forward and the backward under it."""

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
