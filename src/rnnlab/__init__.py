"""rnnlab: the MLP, the vanilla RNN and the LSTM in NumPy, with exact gradients."""

__version__ = "0.1.0"
