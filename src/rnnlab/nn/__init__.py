"""Stateful modules that hold Parameters and call rnnlab.functional."""

from .gru import GRU, GRUCell
from .linear import MLP, Linear, ReLU, Sequential, Sigmoid, Tanh
from .losses import CrossEntropyLoss, MSELoss
from .module import BackwardBeforeForwardError, Module, Parameter
from .recurrent import LSTM, RNN, LSTMCell, RNNCell

__all__ = [
    "Module", "Parameter", "BackwardBeforeForwardError", "Linear", "Sigmoid", "Tanh", "ReLU",
    "Sequential", "MLP", "RNNCell", "LSTMCell", "GRUCell", "RNN", "LSTM",
    "GRU", "MSELoss", "CrossEntropyLoss",
]
