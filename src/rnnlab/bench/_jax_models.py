"""The JAX/XLA peer of the benchmark: one training step of each model as one ``jax.jit``.

Imported only when JAX is used (``rnnlab bench --vs jax``); rnnlab never imports jax
otherwise. The step is the one of :mod:`rnnlab.bench.models`::

    loss = mean((predict(params, x) - y)²)             # torch.nn.MSELoss, mean
    g = ∂loss/∂params                                   # jax.value_and_grad
    buf = momentum·buf + g;  p = p - lr·buf             # torch.optim.SGD (momentum > 0)
    p = p - lr·g                                        # torch.optim.SGD (momentum = 0)

The models, in torch's math and gate order (W_ih, W_hh, b_ih, b_hh are the
``body.*_l0`` entries of the state_dict; h_0 = c_0 = 0):

- RNN:  h_t = tanh(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh)
- LSTM: rows of W in blocks i, f, g, o (4m); i, f, o = σ(·), g = tanh(·),
  c_t = f ⊙ c_{t-1} + i ⊙ g,  h_t = o ⊙ tanh(c_t)
- GRU:  rows of W in blocks r, z, n (3m);
  r = σ(x W_ir^T + b_ir + h W_hr^T + b_hr),  z likewise,
  n = tanh(x W_in^T + b_in + r ⊙ (h W_hn^T + b_hn)),  h' = (1 - z) ⊙ n + z ⊙ h
- prediction = h_T W_head^T + b_head, (d, k)
- MLP: the flattened sequence (d, T·n) → Linear(T·n, m) → σ → Linear(m, k)
  (state_dict keys "0.weight", "0.bias", "2.weight", "2.bias", as torch's nn.Sequential).

Fairness choices:

- Same weights and same data as the other sides: the rnnlab model's state_dict
  (copied, so XLA never writes into rnnlab's arrays) and the float32 arrays of
  :func:`rnnlab.bench.models.make_data`, put on the device once, outside the step.
  float32 throughout.
- JAX's idiomatic fast path: forward, backward and update in ONE ``jax.jit``; the
  recurrence is a ``lax.scan`` over T, with the input projection x W_ih^T + b_ih
  of all T steps computed before it in one product, as torch's CPU path and rnnlab do.
- The params and momentum buffers are donated (``donate_argnums``), so XLA may
  write the new values into the old buffers instead of allocating each step.
- The momentum buffers start at zero: momentum·0 + g = g exactly, which is
  torch's "buf = g at the first step" with one compiled function instead of two.
- JAX dispatches asynchronously, so the step blocks (``block_until_ready``) on
  the loss before it returns: a timing that does not block measures nothing.
  All outputs of one XLA execution are ready together, so the loss suffices.

Threads: XLA's CPU thread pool is sized when the CPU client is created, from the
environment (``PJRT_NPROC``, else all cores); :func:`configure_threads` sets it
and must run before jax is imported. It cannot be changed afterwards.
"""

from __future__ import annotations

import os
import sys
from typing import Callable

import numpy as np

__all__ = ["JaxStep", "configure_threads", "import_jax", "jax_step"]

_SEQUENCE_KEYS = ("body.weight_ih_l0", "body.weight_hh_l0", "body.bias_ih_l0", "body.bias_hh_l0",
                  "head.weight", "head.bias")
_MLP_KEYS = ("0.weight", "0.bias", "2.weight", "2.bias")
_GATES = {"rnn": 1, "lstm": 4, "gru": 3}


def import_jax():
    """The jax module, or None when it is not installed (or fails to import)."""
    try:
        import jax
    except Exception:  # ImportError, or a broken install
        return None
    return jax


def configure_threads(threads: int) -> str:
    """Size XLA's CPU thread pool for ``threads`` threads; call before jax is imported.

    XLA's CPU client sizes its pool when it is created, from the environment
    variable ``PJRT_NPROC`` (else ``NPROC``, else all cores). For one thread this
    also adds ``--xla_cpu_multi_thread_eigen=false`` to ``XLA_FLAGS`` (keeping any
    flags already there); on jax 0.10 that flag alone does not confine the work to
    one thread, ``PJRT_NPROC=1`` does. Nothing is set when ``threads`` reaches
    ``os.cpu_count()`` (XLA's default already uses all cores; a ``PJRT_NPROC``
    from the environment is left alone and named in the note), nor when jax is
    already imported (the setting could no longer take effect).

    Returns a one-line note of what was set, for the benchmark's log.
    """
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads <= 0:
        raise ValueError(f"threads must be a positive integer, got {threads!r}")
    threads = int(threads)
    cores = os.cpu_count() or 1
    if "jax" in sys.modules:
        return (f"jax threads: not set to {threads} (jax was already imported; "
                f"its CPU pool keeps PJRT_NPROC={os.environ.get('PJRT_NPROC', 'unset')})")
    if threads >= cores:
        outside = os.environ.get("PJRT_NPROC")
        if outside is not None:  # left alone, but the note must not claim all cores
            return f"jax threads: nothing set; PJRT_NPROC={outside} from the environment sizes the pool"
        return f"jax threads: XLA's default pool, all {cores} cores (nothing set)"
    os.environ["PJRT_NPROC"] = str(threads)
    note = f"jax threads: PJRT_NPROC={threads}"
    if threads == 1:
        flag = "--xla_cpu_multi_thread_eigen=false"
        flags = os.environ.get("XLA_FLAGS", "").split()
        if flag not in flags:
            os.environ["XLA_FLAGS"] = " ".join([*flags, flag])
        note += f", XLA_FLAGS+={flag}"
    return note


def _check_inputs(point, state_dict, x, y) -> tuple[str, ...]:
    """Validate the state_dict keys and shapes and (x, y) against the point; return the keys."""
    d, n, m, T, k = point.d, point.n, point.m, point.T, point.k
    if point.model == "mlp":
        keys = _MLP_KEYS
        shapes = {"0.weight": (m, T * n), "0.bias": (m,), "2.weight": (k, m), "2.bias": (k,)}
        x_shape = (d, T * n)
    else:
        keys, G = _SEQUENCE_KEYS, _GATES[point.model]
        shapes = dict(zip(keys, [(G * m, n), (G * m, m), (G * m,), (G * m,), (k, m), (k,)]))
        x_shape = (T, d, n)
    if set(state_dict) != set(keys):
        raise ValueError(f"state_dict of a {point.model} point: expected keys {sorted(keys)}, "
                         f"got {sorted(state_dict)}")
    for key in keys:
        got = np.shape(state_dict[key])
        if got != shapes[key]:
            raise ValueError(f"state_dict[{key!r}]: expected shape {shapes[key]}, got {got}")
    for name, arr, shape in (("x", x, x_shape), ("y", y, (d, k))):
        if not isinstance(arr, np.ndarray) or arr.dtype != np.float32:
            raise TypeError(f"{name}: expected a float32 ndarray, got "
                            f"{getattr(arr, 'dtype', type(arr).__name__)}")
        if arr.shape != shape:
            raise ValueError(f"{name}: expected shape {shape}, got {arr.shape}")
    return keys


def _predict_fn(model: str) -> Callable:
    """predict(params, x) -> (d, k) for a model; params is the tuple of its keys' arrays."""
    import jax
    import jax.numpy as jnp
    from jax import lax

    sigmoid = jax.nn.sigmoid

    if model == "mlp":
        def predict(params, x):                                   # x (d, T·n)
            w1, b1, w2, b2 = params
            return sigmoid(x @ w1.T + b1) @ w2.T + b2             # (d, k)
        return predict

    def rnn_cell(carry, xw_t, w_hh, b_hh):
        (h,) = carry
        return (jnp.tanh(xw_t + h @ w_hh.T + b_hh),)

    def lstm_cell(carry, xw_t, w_hh, b_hh):
        h, c = carry
        i, f, g, o = jnp.split(xw_t + h @ w_hh.T + b_hh, 4, axis=-1)  # each (d, m)
        c = sigmoid(f) * c + sigmoid(i) * jnp.tanh(g)
        return sigmoid(o) * jnp.tanh(c), c

    def gru_cell(carry, xw_t, w_hh, b_hh):
        (h,) = carry
        x_r, x_z, x_n = jnp.split(xw_t, 3, axis=-1)               # each (d, m)
        h_r, h_z, h_n = jnp.split(h @ w_hh.T + b_hh, 3, axis=-1)
        r, z = sigmoid(x_r + h_r), sigmoid(x_z + h_z)
        n = jnp.tanh(x_n + r * h_n)
        return ((1 - z) * n + z * h,)

    cell = {"rnn": rnn_cell, "lstm": lstm_cell, "gru": gru_cell}[model]
    n_states = 2 if model == "lstm" else 1

    def predict(params, x):                                       # x (T, d, n)
        w_ih, w_hh, b_ih, b_hh, w_head, b_head = params
        xw = x @ w_ih.T + b_ih                                    # (T, d, G·m), all T at once
        h0 = jnp.zeros((x.shape[1], w_hh.shape[1]), x.dtype)      # (d, m)

        def body(carry, xw_t):
            return cell(carry, xw_t, w_hh, b_hh), None

        carry, _ = lax.scan(body, (h0,) * n_states, xw)
        return carry[0] @ w_head.T + b_head                       # (d, k) from h_T
    return predict


class JaxStep:
    """One JAX training step per call; it keeps the updated params between calls.

    ``step()`` runs forward, backward and the SGD update as one compiled XLA
    computation and returns the loss, a 0-d float32 ``jax.Array`` already computed
    (blocked on). ``step.params()`` reads the current params back as a dict of
    float32 ndarrays with the state_dict's keys.
    """

    def __init__(self, fn, keys, params, buffers, x, y):
        self._fn, self._keys = fn, keys
        self._params, self._buffers, self._x, self._y = params, buffers, x, y

    def __call__(self):
        self._params, self._buffers, loss = self._fn(self._params, self._buffers, self._x, self._y)
        return loss.block_until_ready()

    def params(self) -> dict[str, np.ndarray]:
        """The current params, copied to host: {state_dict key: float32 ndarray}."""
        return {key: np.array(p) for key, p in zip(self._keys, self._params)}


def jax_step(point, state_dict, x, y, *, lr: float = 0.01, momentum: float = 0.0) -> JaxStep:
    """The JAX training step of a point, from the rnnlab model's weights.

    Args:
        point: a :class:`rnnlab.bench.models.Point` (model "mlp", "rnn", "lstm" or "gru").
        state_dict: the rnnlab model's state_dict (the torch twin's keys), copied here.
        x: float32 (T, d, n), or (d, T·n) for the MLP; y: float32 (d, k).
        lr, momentum: torch.optim.SGD's (no dampening, no Nesterov, no weight decay).

    Returns:
        a :class:`JaxStep`; each call runs one step and returns the loss.

    Raises:
        ImportError: jax is not installed. ValueError/TypeError: keys, shapes or
        dtypes that do not fit the point, or a negative lr or momentum.
    """
    if import_jax() is None:
        raise ImportError("jax is not installed (pip install 'rnnlab[jax]')")
    import jax
    import jax.numpy as jnp

    for name, value in (("lr", lr), ("momentum", momentum)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
            raise ValueError(f"{name} must be a non-negative number, got {value!r}")
    keys = _check_inputs(point, state_dict, x, y)
    predict = _predict_fn(point.model)

    def loss_fn(params, x, y):
        return jnp.mean(jnp.square(predict(params, x) - y))      # torch.nn.MSELoss()

    def train_step(params, buffers, x, y):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        if momentum:
            buffers = tuple(momentum * b + g for b, g in zip(buffers, grads))
            grads = buffers
        params = tuple(p - lr * g for p, g in zip(params, grads))
        return params, buffers, loss

    fn = jax.jit(train_step, donate_argnums=(0, 1))
    # Fresh float32 copies: donation may recycle these buffers, never rnnlab's arrays.
    params = tuple(jnp.array(np.array(state_dict[key], dtype=np.float32)) for key in keys)
    buffers = tuple(jnp.zeros_like(p) for p in params) if momentum else ()
    return JaxStep(fn, keys, params, buffers, jnp.asarray(x), jnp.asarray(y))
