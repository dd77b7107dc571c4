"""A packed training step against the padded full-length step (variable-length batches).

The batch holds d sequences whose lengths are drawn uniformly from [1, T].
Both sides train the same model (an LSTM, RNN or GRU with a Linear head on
each sequence's last hidden state, MSE loss, SGD) from the same weights on
the same data:

- "packed": ``pack_padded_sequence(x, lengths, enforce_sorted=False)``, then
  the layer's packed path, whose work follows Σ lengths (h_n holds each
  sequence's state at its own last step);
- "padded": the whole (T, d, n) array, every sequence run for T steps, as a
  layer without packing must (the default backend: ``auto``);
- "padded (numpy)": the same padded step on the NumPy reference loops, the
  style the packed loops are written in.

One training step is zero_grad, forward, loss, backward (``input_grad=False``:
the data needs no gradient) and the SGD update. The sides alternate in
blocks after a warm-up (:func:`rnnlab.bench.timing.interleave`); median, p10
and p90 per side, and the ratio of medians.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..functional.backend import use_backend
from ..nn import GRU, LSTM, RNN, Linear, MSELoss
from ..nn.utils.rnn import pack_padded_sequence
from ..optim import SGD
from .machine import loadavg, pinned_threads
from .timing import interleave, summarize

__all__ = ["PackedConfig", "run_packed_vs_padded", "packed_markdown"]

LAYERS = {"lstm": LSTM, "rnn": RNN, "gru": GRU}


@dataclass(frozen=True)
class PackedConfig:
    """The point and the timing budget (d batch, n input, m hidden, T longest, k outputs)."""

    model: str = "lstm"
    d: int = 256
    n: int = 64
    m: int = 256
    T: int = 64
    k: int = 10
    seed: int = 0
    lr: float = 0.01
    threads: int = 2
    budget: float = 20.0  # seconds of timed rounds
    warmup: int = 2
    min_repeats: int = 5
    settle: float = 0.15  # OpenBLAS spins ~0.13 s after a call (see bench.timing)

    def __post_init__(self):
        if self.model not in LAYERS:
            raise ValueError(f"model must be one of {sorted(LAYERS)}, got {self.model!r}")
        for name in ("d", "n", "m", "T", "k", "threads", "warmup", "min_repeats"):
            value = getattr(self, name)
            least = 0 if name == "warmup" else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"{name} must be an integer ≥ {least}, got {value!r}")
        if self.budget < 0 or self.settle < 0:
            raise ValueError(f"budget and settle must be ≥ 0, got {self.budget}, {self.settle}")


def _training_step(config: PackedConfig, x, lengths, y, packed: bool):
    """A closure running one training step of a fresh model (the same weights on each call
    of this function) on the padded batch x (T, d, n), packed or not."""
    rng = np.random.default_rng(config.seed)
    layer = LAYERS[config.model](config.n, config.m, rng=rng)
    head = Linear(config.m, config.k, rng=rng)
    params = layer.parameters() + head.parameters()
    optimizer, loss_fn = SGD(params, lr=config.lr), MSELoss()
    is_lstm = config.model == "lstm"

    def step():
        optimizer.zero_grad()
        inputs = pack_padded_sequence(x, lengths, enforce_sorted=False) if packed else x
        _, finals = layer(inputs)
        h_n = finals[0] if is_lstm else finals  # (1, d, m)
        loss = loss_fn(head(h_n[0]), y)
        grad_h_n = head.backward(loss_fn.backward())[None]  # (1, d, m)
        layer.backward(None, (grad_h_n, None) if is_lstm else grad_h_n, input_grad=False,
                       state_grad=False)
        optimizer.step()
        return loss

    return step


def _on_backend(fn, name):
    def run():
        with use_backend(name):
            return fn()
    return run


def run_packed_vs_padded(config: PackedConfig) -> dict:
    """Time the three steps interleaved; returns the config, the lengths' facts and, per
    side, median/p10/p90 (seconds), with the ratios packed / padded."""
    rng = np.random.default_rng(config.seed + 1)
    x = rng.standard_normal((config.T, config.d, config.n)).astype(np.float32)
    lengths = rng.integers(1, config.T + 1, size=config.d)
    y = rng.standard_normal((config.d, config.k)).astype(np.float32)
    sides = {
        "packed": _training_step(config, x, lengths, y, packed=True),
        "padded": _training_step(config, x, lengths, y, packed=False),
        "padded (numpy)": _on_backend(_training_step(config, x, lengths, y, packed=False), "numpy"),
    }
    load_before = loadavg()
    with pinned_threads(config.threads):
        samples = interleave(list(sides.values()), budget=config.budget, warmup=config.warmup,
                             min_repeats=config.min_repeats, settle=config.settle)
    stats = {name: summarize(s).as_dict() for name, s in zip(sides, samples)}
    return {
        "config": asdict(config),
        "lengths": {"sum": int(lengths.sum()), "full": config.T * config.d,
                    "share": float(lengths.sum() / (config.T * config.d))},
        "stats": stats,
        "ratio": stats["packed"]["median"] / stats["padded"]["median"],
        "ratio_numpy": stats["packed"]["median"] / stats["padded (numpy)"]["median"],
        "loadavg": {"before": load_before, "after": loadavg()},  # 1, 5, 15 min; None off Linux
    }


def packed_markdown(results: dict) -> str:
    """The results as a short Markdown table."""
    c, share = results["config"], results["lengths"]["share"]
    lines = [f"{c['model'].upper()} d={c['d']} n={c['n']} m={c['m']} T={c['T']}, lengths uniform "
             f"in [1, {c['T']}]: Σ lengths = {share:.2f} × d·T; {c['threads']} threads, float32",
             "", "| step | median ms | p10 ms | p90 ms | samples |", "|---|---:|---:|---:|---:|"]
    for name, s in results["stats"].items():
        lines.append(f"| {name} | {s['median'] * 1e3:.1f} | {s['p10'] * 1e3:.1f} | "
                     f"{s['p90'] * 1e3:.1f} | {s['n']} |")
    lines += ["", f"packed / padded = {results['ratio']:.2f}; packed / padded (numpy) = "
                  f"{results['ratio_numpy']:.2f}"]
    load = results.get("loadavg", {})
    if load.get("before") and load.get("after"):  # other work on the machine skews every side
        lines.append(f"load average (1 min) {load['before'][0]:.1f} before, "
                     f"{load['after'][0]:.1f} after")
    return "\n".join(lines) + "\n"
