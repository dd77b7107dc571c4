"""Analysis: analytic complexity of the networks (complexity), and the exact per-step
gradients that the gradient-flow experiment measures (gradient_flow)."""

from .complexity import (
    MODELS,
    Flops,
    Memory,
    gru_bptt_memory,
    gru_forward_flops,
    gru_params,
    gru_training_flops,
    linear_forward_flops,
    linear_params,
    lstm_bptt_memory,
    lstm_forward_flops,
    lstm_params,
    lstm_training_flops,
    mlp_activation_memory,
    mlp_forward_flops,
    mlp_params,
    mlp_training_flops,
    model_bptt_memory,
    model_forward_flops,
    model_params,
    model_training_flops,
    rnn_bptt_memory,
    rnn_forward_flops,
    rnn_params,
    rnn_training_flops,
)

__all__ = [
    "MODELS", "Flops", "Memory",
    "linear_params", "mlp_params", "rnn_params", "lstm_params", "gru_params",
    "linear_forward_flops", "mlp_forward_flops", "rnn_forward_flops", "lstm_forward_flops",
    "gru_forward_flops",
    "mlp_training_flops", "rnn_training_flops", "lstm_training_flops", "gru_training_flops",
    "mlp_activation_memory", "rnn_bptt_memory", "lstm_bptt_memory", "gru_bptt_memory",
    "model_params", "model_forward_flops", "model_training_flops", "model_bptt_memory",
]
