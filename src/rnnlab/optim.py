"""Optimisers and gradient clipping, with torch.optim's update rules, in place.

:class:`SGD`, :class:`Adam` and :class:`RMSprop` update :class:`~rnnlab.nn.module.Parameter`
objects from their ``.grad`` with exactly the arithmetic of ``torch.optim.SGD``
and ``torch.optim.Adam`` (single-tensor path, ``maximize=False``,
``amsgrad=False``), so a model trained here follows the torch trajectory.

Performance contract: in the steady state (from the second ``step()`` on) a step
allocates nothing the size of a parameter. Every parameter owns its state
buffers (momentum buffer, or ``exp_avg`` / ``exp_avg_sq``) and one scratch
buffer of its own shape and dtype; every update is an in-place ufunc
(``out=``, ``+=``, ``*=``), a handful of NumPy calls per parameter, and
``p.data`` / ``p.grad`` keep their identity. ``step()`` never writes to
``p.grad``.

Hyperparameters are kept as Python floats so that, under NumPy's promotion
rules, float32 parameters are updated in float32 arithmetic with the constants
rounded to float32, as torch does.

State can be checkpointed: ``state_dict()`` returns plain Python values and
ndarray copies, and ``load_state_dict()`` validates before it assigns, after
which further steps are bit-identical to an uninterrupted run.
"""

from __future__ import annotations

import math
import numbers
import re
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from rnnlab.functional import _blas_pool
from rnnlab.functional.backend import lazy_kernel
from rnnlab.nn.module import Parameter

__all__ = ["Optimizer", "SGD", "Adam", "RMSprop", "clip_grad_norm_"]

_BUFFER_KEY = re.compile(r"^(0|[1-9][0-9]*)\.([A-Za-z_][A-Za-z0-9_]*)$")


# ---------------------------------------------------------------- validation
def _real(name: str, value: Any) -> float:
    """``value`` as a Python float; TypeError for a non-number (bools included)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r} "
                        f"of type {type(value).__name__}")
    return float(value)


def _non_negative(name: str, value: Any) -> float:
    value = _real(name, value)
    if not 0.0 <= value:  # also rejects NaN
        raise ValueError(f"Invalid {name}: {value!r} (expected >= 0)")
    return value


class Optimizer:
    """Base class: a flat list of parameters, per-parameter state, checkpoints.

    Subclasses set ``_buffer_names`` (the per-parameter state that a checkpoint
    holds) and implement :meth:`step`, :meth:`_validate` and
    :meth:`hyperparameters`.

    Attributes:
        params (list[Parameter]): the parameters, in the order given.
        step_count (int): number of completed ``step()`` calls.
        state (list[dict[str, ndarray]]): per-parameter state buffers, created
            lazily at the first step, each of the parameter's shape and dtype.
        lr, ... : the hyperparameters, as attributes of the constructor's names.
            ``lr`` is validated when assigned (for schedules); change the others
            only through :meth:`load_state_dict`, which validates them.
    """

    _buffer_names: tuple[str, ...] = ()

    def __init__(self, params: Iterable[Parameter]):
        if isinstance(params, Parameter):
            raise TypeError("params must be an iterable of Parameter, got a single Parameter; "
                            "wrap it in a list")
        try:
            params = list(params)
        except TypeError:
            raise TypeError(f"params must be an iterable of Parameter, "
                            f"got {type(params).__name__}") from None
        if not params:
            raise ValueError("optimizer got an empty parameter list")
        for i, p in enumerate(params):
            if not isinstance(p, Parameter):
                raise TypeError(f"params[{i}] must be a Parameter, got {type(p).__name__}")
        if len({id(p) for p in params}) != len(params):
            raise ValueError("optimizer got the same Parameter more than once; "
                             "it would be updated twice per step")
        self.params: list[Parameter] = params
        self.step_count: int = 0
        self.state: list[dict[str, np.ndarray]] = [{} for _ in params]
        # One scratch array per parameter: the only workspace step() uses.
        self._scratch: list[np.ndarray] = [np.empty_like(p.data) for p in params]

    # ------------------------------------------------------------ to override
    def hyperparameters(self) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    @staticmethod
    def _validate(**hyper) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _set_hyperparameters(self, hyper: Mapping[str, Any]) -> None:
        for name, value in hyper.items():
            object.__setattr__(self, name, value)

    def step(self, closure: Callable[[], Any] | None = None):  # pragma: no cover - abstract
        raise NotImplementedError

    # ------------------------------------------------------------ common
    @property
    def lr(self) -> float:
        """The learning rate; assignable (e.g. by a schedule), validated on set."""
        return self._lr

    @lr.setter
    def lr(self, value) -> None:
        self._lr = _non_negative("learning rate", value)

    def zero_grad(self) -> None:
        """Set every parameter's gradient to zero, in place (no reallocation; lazily, see
        :class:`rnnlab.nn.Parameter`)."""
        for p in self.params:
            p.zero_grad()

    def _check_param(self, i: int, p: Parameter) -> None:
        d, g = p.data, p.grad
        if g.shape != d.shape or g.dtype != d.dtype:
            raise ValueError(f"params[{i}].grad has shape {g.shape} and dtype {g.dtype}, "
                             f"expected {d.shape} and {d.dtype} like its data")
        s = self._scratch[i]
        if s.shape != d.shape or s.dtype != d.dtype:
            # The data array was replaced by one of another shape/dtype.
            raise ValueError(f"params[{i}] changed to shape {d.shape} and dtype {d.dtype} "
                             f"after the optimizer was built (state is {s.shape}, {s.dtype})")

    # ------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """The optimizer state as plain values, safe to keep (buffers are copies).

        Returns:
            ``{"hyperparameters": {name: value}, "step": int,
            "buffers": {"<param_index>.<buffer_name>": ndarray}}``; a buffer
            that has not been created yet (before the first step) is absent.
            Scratch space is not state and is not included.
        """
        buffers = {}
        for i, st in enumerate(self.state):
            for name in self._buffer_names:
                if name in st:
                    buffers[f"{i}.{name}"] = st[name].copy()
        return {"hyperparameters": self.hyperparameters(),
                "step": int(self.step_count),
                "buffers": buffers}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict`, after checking all of it first.

        Hyperparameters are restored too (as torch does for ``param_groups``).
        Buffers are copied, so the dict can be reused. Nothing is assigned
        unless everything passes, so a bad dict leaves the optimizer unchanged.

        Raises:
            ValueError: wrong top-level keys, unknown hyperparameter or buffer
                names, a parameter index out of range, a buffer whose shape or
                dtype differs from its parameter's, a negative step, or buffers
                inconsistent with the step count.
            TypeError: a value of the wrong type.
        """
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"state_dict must be a mapping, got {type(state_dict).__name__}")
        expected = {"hyperparameters", "step", "buffers"}
        if set(state_dict) != expected:
            raise ValueError(f"state_dict keys must be {sorted(expected)}, got {sorted(state_dict)}")

        hyper = state_dict["hyperparameters"]
        if not isinstance(hyper, Mapping):
            raise TypeError(f"state_dict['hyperparameters'] must be a mapping, "
                            f"got {type(hyper).__name__}")
        own = set(self.hyperparameters())
        if set(hyper) != own:
            raise ValueError(f"hyperparameters must be {sorted(own)}, got {sorted(hyper)}")
        hyper = self._validate(**hyper)

        step = state_dict["step"]
        if isinstance(step, (bool, np.bool_)) or not isinstance(step, numbers.Integral):
            raise TypeError(f"state_dict['step'] must be an int, got {step!r}")
        step = int(step)
        if step < 0:
            raise ValueError(f"state_dict['step'] must be >= 0, got {step}")

        buffers = state_dict["buffers"]
        if not isinstance(buffers, Mapping):
            raise TypeError(f"state_dict['buffers'] must be a mapping, got {type(buffers).__name__}")
        new_state: list[dict[str, np.ndarray]] = [{} for _ in self.params]
        for key, value in buffers.items():
            m = _BUFFER_KEY.match(key) if isinstance(key, str) else None
            if m is None or m.group(2) not in self._buffer_names:
                raise ValueError(f"unexpected buffer key {key!r}; expected '<param_index>.<name>' "
                                 f"with name in {list(self._buffer_names)}")
            i, name = int(m.group(1)), m.group(2)
            if i >= len(self.params):
                raise ValueError(f"buffer {key!r}: parameter index {i} out of range "
                                 f"(the optimizer has {len(self.params)} parameters)")
            if not isinstance(value, np.ndarray):
                raise TypeError(f"buffer {key!r} must be an ndarray, got {type(value).__name__}")
            p = self.params[i]
            if value.shape != p.data.shape or value.dtype != p.data.dtype:
                raise ValueError(f"buffer {key!r} has shape {value.shape} and dtype {value.dtype}, "
                                 f"expected {p.data.shape} and {p.data.dtype}")
            new_state[i][name] = value
        self._check_loaded_state(step, new_state)

        # Everything checked: commit. Copies keep the parameter's memory layout.
        for i, st in enumerate(new_state):
            for name, value in st.items():
                buf = np.empty_like(self.params[i].data)
                np.copyto(buf, value)
                st[name] = buf
        self._set_hyperparameters(hyper)
        self.step_count = step
        self.state = new_state

    def _check_loaded_state(self, step: int, state: list[dict[str, np.ndarray]]) -> None:
        """Subclass hook: reject buffers inconsistent with ``step``."""

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters().items())
        return f"{type(self).__name__}({len(self.params)} parameters, {args})"


# ---------------------------------------------------------------- SGD
class SGD(Optimizer):
    r"""Stochastic gradient descent, optionally with momentum, as ``torch.optim.SGD``.

    Args:
        params (iterable of Parameter): the parameters to optimise, e.g.
            ``model.parameters()``; stored as a list, must not be empty.
        lr (float): learning rate, >= 0.
        momentum (float, optional): momentum factor, >= 0. Default: 0.
        dampening (float, optional): dampening for momentum. Default: 0.
        nesterov (bool, optional): Nesterov momentum; needs ``momentum > 0``
            and ``dampening == 0``. Default: False.
        weight_decay (float, optional): L2 penalty, >= 0, added to the
            gradient. Default: 0.

    The update of each parameter ``p`` with gradient ``g`` at step ``t``
    (``t = 1, 2, ...``)::

        if weight_decay != 0:
            g = g + weight_decay * p
        if momentum != 0:
            if t == 1:                        # the buffer does not exist yet
                momentum_buffer = g           # (a copy; no dampening here)
            else:
                momentum_buffer = momentum * momentum_buffer + (1 - dampening) * g
            if nesterov:
                g = g + momentum * momentum_buffer
            else:
                g = momentum_buffer
        p = p - lr * g

    ``p.grad`` itself is never modified.

    Attributes:
        state[i]["momentum_buffer"] (ndarray): shape and dtype of ``params[i]``,
            created at the first step with ``momentum != 0``.

    Raises:
        ValueError: ``lr``, ``momentum`` or ``weight_decay`` negative or NaN;
            ``nesterov`` without positive momentum and zero dampening; an empty
            or duplicated parameter list.
        TypeError: a hyperparameter that is not a real number.
    """

    _buffer_names = ("momentum_buffer",)

    def __init__(self, params: Iterable[Parameter], lr: float, momentum: float = 0,
                 dampening: float = 0, nesterov: bool = False, weight_decay: float = 0):
        hyper = self._validate(lr=lr, momentum=momentum, dampening=dampening,
                               nesterov=nesterov, weight_decay=weight_decay)
        super().__init__(params)
        self._set_hyperparameters(hyper)

    @staticmethod
    def _validate(lr, momentum, dampening, nesterov, weight_decay) -> dict[str, Any]:
        lr = _non_negative("learning rate", lr)
        momentum = _non_negative("momentum", momentum)
        dampening = _real("dampening", dampening)
        if not math.isfinite(dampening):
            raise ValueError(f"Invalid dampening: {dampening!r} (expected a finite number)")
        weight_decay = _non_negative("weight_decay", weight_decay)
        if not isinstance(nesterov, (bool, np.bool_)):
            raise TypeError(f"nesterov must be a bool, got {nesterov!r}")
        nesterov = bool(nesterov)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError(f"Nesterov momentum requires a momentum and zero dampening, "
                             f"got momentum={momentum!r}, dampening={dampening!r}")
        return {"_lr": lr, "momentum": momentum, "dampening": dampening,
                "nesterov": nesterov, "weight_decay": weight_decay}

    def hyperparameters(self) -> dict[str, Any]:
        return {"lr": self.lr, "momentum": self.momentum, "dampening": self.dampening,
                "nesterov": self.nesterov, "weight_decay": self.weight_decay}

    def _check_loaded_state(self, step, state):
        if step == 0 and any(state):
            raise ValueError("state_dict has step 0 but holds momentum buffers")

    def step(self, closure: Callable[[], Any] | None = None):
        """One update of every parameter (see the class docstring).

        Args:
            closure (callable, optional): re-evaluates the model and returns
                the loss; called first, its result returned.
        """
        loss = closure() if closure is not None else None
        lr, momentum, dampening = self.lr, self.momentum, self.dampening
        nesterov, weight_decay = self.nesterov, self.weight_decay
        fused = _fused_sgd_kernel()
        for i, p in enumerate(self.params):
            self._check_param(i, p)
            d, g, s = p.data, p.grad, self._scratch[i]

            buf = self.state[i].get("momentum_buffer") if momentum != 0 else None
            if fused is not None and (momentum == 0 or buf is not None) \
                    and d.flags.c_contiguous and g.flags.c_contiguous \
                    and (buf is None or buf.flags.c_contiguous):  # reshape(-1) must be a view
                # One compiled pass instead of 2-6 NumPy passes over the parameter.
                c = d.dtype.type  # float32 constants keep float32 arithmetic, as NumPy does
                flat = (d.reshape(-1), g.reshape(-1), s.reshape(-1) if buf is None else buf.reshape(-1))
                hyper = (c(lr), c(momentum), c(1 - dampening), c(weight_decay))
                if not _pooled_sgd(flat, hyper, nesterov):
                    fused(*flat, *hyper, nesterov)
                continue

            if weight_decay != 0:
                np.multiply(d, weight_decay, out=s)
                s += g                                    # s = g + weight_decay * p
                g = s

            if momentum != 0:
                st = self.state[i]
                buf = st.get("momentum_buffer")
                if buf is None:                           # first step: buf = g (a copy)
                    buf = st["momentum_buffer"] = np.empty_like(d)
                    np.copyto(buf, g)
                else:
                    buf *= momentum
                    if dampening != 0:
                        # nesterov excludes dampening, so g (maybe s) is dead after this
                        np.multiply(g, 1 - dampening, out=s)
                        buf += s                          # buf = m*buf + (1-dampening)*g
                    else:
                        buf += g                          # buf = m*buf + g
                if nesterov:
                    if g is s:
                        # s holds the decayed grad and no second workspace is kept:
                        # p -= lr*g, then p -= lr*momentum*buf (same sum, two roundings).
                        s *= -lr
                        d += s
                        np.multiply(buf, -lr * momentum, out=s)
                        d += s
                        continue
                    np.multiply(buf, momentum, out=s)
                    s += g                                # s = g + momentum * buf
                    g = s
                else:
                    g = buf

            np.multiply(g, -lr, out=s)
            d += s                                        # p = p - lr * g
        self.step_count += 1
        return loss


def _build_fused_sgd():
    """The compiled one-pass SGD update (see :data:`_fused_sgd_kernel`)."""
    import numba

    @numba.njit(cache=True, nogil=True)
    def sgd_update(d, g, buf, lr, momentum, keep, weight_decay, nesterov):
        for i in range(d.size):
            gi = g[i]
            if weight_decay != 0:
                gi = gi + weight_decay * d[i]
            if momentum != 0:
                b = momentum * buf[i] + keep * gi
                buf[i] = b
                gi = gi + momentum * b if nesterov else b
            d[i] = d[i] - lr * gi

    return sgd_update


def _build_pooled_sgd():
    """Jobs (one per float dtype) running the fused SGD update over a chunk of a parameter on
    one of NumPy's BLAS threads (see rnnlab.functional._blas_pool)."""
    import numba
    from numba import carray

    from rnnlab.functional._blas_pool import job_helpers, job_signature

    pointer, chunk_range = job_helpers()
    sgd_update = _fused_sgd_kernel()

    def build(dtype):
        @numba.cfunc(job_signature(), nopython=True)
        def job(m, n, k, alpha, a, lda, b, ldb, c, ldc, sb):
            ctx = carray(c, (9,), np.int64)  # [shift, size, chunk, d, g, buf, hyper, nesterov, -]
            lo, hi = chunk_range(ctx, a, m)
            size = ctx[1]
            d = carray(pointer(ctx[3], dtype), (size,))
            g = carray(pointer(ctx[4], dtype), (size,))
            buf = carray(pointer(ctx[5], dtype), (size,))
            h = carray(pointer(ctx[6], dtype), (4,))  # lr, momentum, 1 - dampening, weight_decay
            sgd_update(d[lo:hi], g[lo:hi], buf[lo:hi], h[0], h[1], h[2], h[3], ctx[7] != 0)

        return job

    return {np.dtype(np.float32): build(np.float32), np.dtype(np.float64): build(np.float64)}


_pooled_sgd_jobs = lazy_kernel(_build_pooled_sgd)


def _pooled_sgd(flat, hyper, nesterov) -> bool:
    """The fused update of one parameter split over NumPy's BLAS threads, if it is large
    enough to pay (``MIN_ELEMENTS``) and there is a pool; False when it did not run.

    flat: (d, g, buf) C-contiguous 1-D views of one dtype; hyper: (lr, momentum,
    1 - dampening, weight_decay) scalars of that dtype. Each element is updated by the
    same compiled code as on one thread, so the result is the same bit for bit.
    """
    d = flat[0]
    hyper_array = []  # kept alive here until the jobs return

    def fields():
        hyper_array.append(np.array(hyper, dtype=d.dtype))
        return [a.ctypes.data for a in flat] + [hyper_array[0].ctypes.data, int(nesterov), 0]

    return _blas_pool.try_run_chunks(_pooled_sgd_jobs, d.dtype, d.size, d.size, fields)


# The compiled one-pass SGD update when numba is installed (and allowed), else None.
# It runs the same update as the NumPy code of SGD.step, element by element:
# g += wd*p; buf = m*buf + (1-dampening)*g; g = g + m*buf (nesterov) or buf; p -= lr*g,
# with momentum 0 as plain p -= lr*g. It is not used for the first momentum step,
# which creates the buffer.
_fused_sgd_kernel = lazy_kernel(_build_fused_sgd)


# ---------------------------------------------------------------- Adam
class Adam(Optimizer):
    r"""Adam with L2 weight decay (not AdamW), as ``torch.optim.Adam``.

    Args:
        params (iterable of Parameter): the parameters to optimise, e.g.
            ``model.parameters()``; stored as a list, must not be empty.
        lr (float, optional): learning rate, >= 0. Default: 1e-3.
        betas (tuple[float, float], optional): ``(beta1, beta2)``, the decay
            rates of the running averages of the gradient and of its square,
            each in [0, 1). Default: (0.9, 0.999).
        eps (float, optional): >= 0, added to the denominator. Default: 1e-8.
        weight_decay (float, optional): L2 penalty, >= 0, added to the
            gradient (coupled, as torch's ``Adam``; not ``AdamW``). Default: 0.

    The update of each parameter ``p`` with gradient ``g`` at step ``t``
    (``t = 1, 2, ...``; ``exp_avg`` and ``exp_avg_sq`` start at zero)::

        if weight_decay != 0:
            g = g + weight_decay * p
        exp_avg    = beta1 * exp_avg    + (1 - beta1) * g
        exp_avg_sq = beta2 * exp_avg_sq + (1 - beta2) * g * g
        bias_correction1 = 1 - beta1 ** t
        bias_correction2 = 1 - beta2 ** t
        step_size = lr / bias_correction1
        denom = sqrt(exp_avg_sq) / sqrt(bias_correction2) + eps
        p = p - step_size * exp_avg / denom

    ``eps`` is added *after* the bias-corrected square root, as in torch (so
    it is not ``eps / sqrt(bias_correction2)`` inside the uncorrected form).
    ``exp_avg`` is updated as ``g + beta1 * (exp_avg - g)``, the same value
    as torch's ``lerp_`` (within rounding). ``p.grad`` is never modified.

    Attributes:
        state[i]["exp_avg"], state[i]["exp_avg_sq"] (ndarray): shape and dtype
            of ``params[i]``, created (zero) at the first step.

    Raises:
        ValueError: ``lr``, ``eps`` or ``weight_decay`` negative or NaN; a beta
            outside [0, 1); an empty or duplicated parameter list.
        TypeError: a hyperparameter that is not a real number, or betas that
            are not a pair.
    """

    _buffer_names = ("exp_avg", "exp_avg_sq")

    def __init__(self, params: Iterable[Parameter], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0):
        hyper = self._validate(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
        super().__init__(params)
        self._set_hyperparameters(hyper)

    @staticmethod
    def _validate(lr, betas, eps, weight_decay) -> dict[str, Any]:
        lr = _non_negative("learning rate", lr)
        if isinstance(betas, (str, bytes)) or not hasattr(betas, "__len__") or len(betas) != 2:
            raise TypeError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        beta1, beta2 = _real("beta1", betas[0]), _real("beta2", betas[1])
        if not 0.0 <= beta1 < 1.0:
            raise ValueError(f"Invalid beta parameter at index 0: {beta1!r} (expected in [0, 1))")
        if not 0.0 <= beta2 < 1.0:
            raise ValueError(f"Invalid beta parameter at index 1: {beta2!r} (expected in [0, 1))")
        eps = _non_negative("epsilon value", eps)
        weight_decay = _non_negative("weight_decay", weight_decay)
        return {"_lr": lr, "betas": (beta1, beta2), "eps": eps, "weight_decay": weight_decay}

    def hyperparameters(self) -> dict[str, Any]:
        return {"lr": self.lr, "betas": tuple(self.betas), "eps": self.eps,
                "weight_decay": self.weight_decay}

    def _check_loaded_state(self, step, state):
        for i, st in enumerate(state):
            if step == 0 and st:
                raise ValueError(f"state_dict has step 0 but holds buffers for parameter {i}")
            if step > 0 and set(st) != set(self._buffer_names):
                missing = sorted(set(self._buffer_names) - set(st))
                raise ValueError(f"state_dict has step {step} but parameter {i} "
                                 f"lacks buffers {missing}")

    def step(self, closure: Callable[[], Any] | None = None):
        """One update of every parameter (see the class docstring).

        Args:
            closure (callable, optional): re-evaluates the model and returns
                the loss; called first, its result returned.
        """
        loss = closure() if closure is not None else None
        lr, (beta1, beta2), eps, weight_decay = self.lr, self.betas, self.eps, self.weight_decay
        t = self.step_count + 1
        bias_correction1 = 1 - beta1 ** t
        bias_correction2 = 1 - beta2 ** t
        step_size = lr / bias_correction1
        bias_correction2_sqrt = bias_correction2 ** 0.5
        # All Python floats: float32 parameters stay in float32 arithmetic.
        for i, p in enumerate(self.params):
            self._check_param(i, p)
            d, g, s = p.data, p.grad, self._scratch[i]
            st = self.state[i]
            if not st:
                st["exp_avg"] = np.zeros_like(d)
                st["exp_avg_sq"] = np.zeros_like(d)
            exp_avg, exp_avg_sq = st["exp_avg"], st["exp_avg_sq"]

            if weight_decay != 0:
                np.multiply(d, weight_decay, out=s)
                s += g                                    # s = g + weight_decay * p
                g = s

            exp_avg -= g
            exp_avg *= beta1
            exp_avg += g                                  # = beta1*exp_avg + (1-beta1)*g

            np.multiply(g, g, out=s)                      # g is dead after this
            s *= 1 - beta2
            exp_avg_sq *= beta2
            exp_avg_sq += s                               # = beta2*exp_avg_sq + (1-beta2)*g*g

            np.sqrt(exp_avg_sq, out=s)
            s /= bias_correction2_sqrt
            s += eps                                      # s = denom
            np.divide(exp_avg, s, out=s)
            s *= -step_size
            d += s                                        # p = p - step_size*exp_avg/denom
        self.step_count = t
        return loss


# ---------------------------------------------------------------- RMSprop
class RMSprop(Optimizer):
    r"""RMSprop (uncentered, no momentum), as ``torch.optim.RMSprop``.

    Args:
        params (iterable of Parameter): the parameters to optimise; must not be empty.
        lr (float, optional): learning rate, >= 0. Default: 1e-2 (torch's).
        alpha (float, optional): decay rate of the running average of the
            squared gradient, in [0, 1). Default: 0.99.
        eps (float, optional): >= 0, added to the denominator. Default: 1e-8.
        weight_decay (float, optional): L2 penalty, >= 0, added to the gradient. Default: 0.

    The update of each parameter ``p`` with gradient ``g`` (``square_avg`` starts at zero)::

        if weight_decay != 0:
            g = g + weight_decay * p
        square_avg = alpha * square_avg + (1 - alpha) * g * g
        p = p - lr * g / (sqrt(square_avg) + eps)

    ``p.grad`` is never modified.

    Attributes:
        state[i]["square_avg"] (ndarray): shape and dtype of ``params[i]``,
            created (zero) at the first step.

    Raises:
        ValueError: ``lr``, ``eps`` or ``weight_decay`` negative or NaN, ``alpha``
            outside [0, 1); an empty or duplicated parameter list.
        TypeError: a hyperparameter that is not a real number.
    """

    _buffer_names = ("square_avg",)

    def __init__(self, params: Iterable[Parameter], lr: float = 1e-2, alpha: float = 0.99,
                 eps: float = 1e-8, weight_decay: float = 0):
        hyper = self._validate(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay)
        super().__init__(params)
        self._set_hyperparameters(hyper)
        self._decay_scratch: dict[int, np.ndarray] = {}

    @staticmethod
    def _validate(lr, alpha, eps, weight_decay) -> dict[str, Any]:
        lr = _non_negative("learning rate", lr)
        alpha = _real("alpha", alpha)
        if not 0.0 <= alpha < 1.0:
            raise ValueError(f"Invalid alpha value: {alpha!r} (expected in [0, 1))")
        return {"_lr": lr, "alpha": alpha, "eps": _non_negative("epsilon value", eps),
                "weight_decay": _non_negative("weight_decay", weight_decay)}

    def hyperparameters(self) -> dict[str, Any]:
        return {"lr": self.lr, "alpha": self.alpha, "eps": self.eps,
                "weight_decay": self.weight_decay}

    _check_loaded_state = Adam._check_loaded_state  # buffers exist exactly from step 1 on

    def step(self, closure: Callable[[], Any] | None = None):
        """One update of every parameter (see the class docstring); returns closure()'s loss."""
        loss = closure() if closure is not None else None
        lr, alpha, eps, weight_decay = self.lr, self.alpha, self.eps, self.weight_decay
        for i, p in enumerate(self.params):
            self._check_param(i, p)
            d, g, s = p.data, p.grad, self._scratch[i]
            st = self.state[i]
            if not st:
                st["square_avg"] = np.zeros_like(d)
            square_avg = st["square_avg"]
            work = s
            if weight_decay != 0:
                np.multiply(d, weight_decay, out=s)
                s += g                                    # s = g + weight_decay * p
                g = s
                if i not in self._decay_scratch:          # a second buffer, made once
                    self._decay_scratch[i] = np.empty_like(d)
                work = self._decay_scratch[i]
            np.multiply(g, g, out=work)
            work *= 1 - alpha
            square_avg *= alpha
            square_avg += work                            # = alpha*square_avg + (1-alpha)*g*g
            np.sqrt(square_avg, out=work)
            work += eps
            np.divide(g, work, out=work)
            work *= -lr
            d += work                                     # p = p - lr * g / (sqrt(sq) + eps)
        self.step_count += 1
        return loss


# ---------------------------------------------------------------- clipping
def _sum_of_squares(g: np.ndarray) -> float:
    """sum(g**2) accumulated in float64, with no full-size temporary."""
    if g.dtype == np.float64 and g.flags.c_contiguous:
        v = g.reshape(-1)
        return float(np.dot(v, v))
    s = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"[:g.ndim]
    return float(np.einsum(f"{s},{s}->", g, g, dtype=np.float64, casting="safe"))


def clip_grad_norm_(parameters: Parameter | Iterable[Parameter], max_norm: float,
                    norm_type: float = 2.0, error_if_nonfinite: bool = False) -> float:
    r"""Scale all gradients in place so that their joint norm is at most ``max_norm``.

    As ``torch.nn.utils.clip_grad_norm_``: the norm is taken over all
    gradients as if they were concatenated into one vector, then::

        total_norm = (sum_i ||grad_i||_p ** p) ** (1/p)      # or max_i max|grad_i| for p = inf
        clip_coef  = max_norm / (total_norm + 1e-6)
        if clip_coef < 1:  grad_i *= clip_coef               # for every i

    (torch multiplies by ``min(clip_coef, 1)`` unconditionally; multiplying by
    1 is skipped here, with identical results.)

    Non-finite norm: with ``error_if_nonfinite=False`` (the default) this does
    what torch does: a NaN norm gives a NaN coefficient and every gradient
    becomes NaN; an infinite norm gives a zero coefficient, so finite entries
    become 0 and infinite ones NaN. The non-finite norm is returned. With
    ``error_if_nonfinite=True`` a ``RuntimeError`` is raised and nothing changes.

    Accuracy: the 2-norm and p-norms are accumulated in float64 whatever the
    gradient dtype (torch accumulates in the gradient's dtype), so a float32
    result can differ from torch's in the last bits. The 2-norm and inf-norm
    paths allocate no gradient-sized temporary.

    Args:
        parameters (Parameter or iterable of Parameter): whose ``.grad`` to clip.
        max_norm (float): the largest allowed norm, >= 0.
        norm_type (float, optional): p of the p-norm, > 0, or ``inf`` (also
            ``"inf"``) for the max-abs norm. Default: 2.0.
        error_if_nonfinite (bool, optional): raise instead of scaling when the
            total norm is NaN or infinite. Default: False.

    Returns:
        float: the total norm of the gradients *before* clipping (0.0 for no
        parameters).

    Raises:
        ValueError: negative or NaN ``max_norm``; ``norm_type`` not > 0 (torch
            also accepts 0 and -inf, this does not).
        RuntimeError: non-finite norm with ``error_if_nonfinite=True``.
    """
    if isinstance(parameters, Parameter):
        parameters = [parameters]
    grads = [p.grad for p in parameters]
    max_norm = _non_negative("max_norm", max_norm)
    norm_type = float(norm_type)
    if not norm_type > 0:
        raise ValueError(f"Invalid norm_type: {norm_type!r} (expected > 0 or inf)")
    if not grads:
        return 0.0

    if math.isinf(norm_type):
        # max|g| as two reductions, with no |g| temporary; NaN propagates.
        norms = [max(float(g.max()), -float(g.min())) for g in grads if g.size]
        total_norm = math.nan if any(math.isnan(n) for n in norms) else max(norms, default=0.0)
    elif norm_type == 2.0:
        total_norm = math.sqrt(sum(_sum_of_squares(g) for g in grads))
    else:
        acc = 0.0
        for g in grads:
            a = np.empty(g.shape, np.float64)  # |g|**p in float64 (a temporary)
            np.abs(g, out=a)
            np.power(a, norm_type, out=a)
            acc += float(a.sum())
        total_norm = acc ** (1.0 / norm_type)

    if error_if_nonfinite and not math.isfinite(total_norm):
        raise RuntimeError(f"The total norm of order {norm_type} for gradients is non-finite "
                           f"({total_norm}), so it cannot be clipped; set "
                           f"error_if_nonfinite=False to scale by it anyway")
    clip_coef = max_norm / (total_norm + 1e-6)
    if not clip_coef >= 1.0:  # also true for NaN, as torch.clamp(nan, max=1) is NaN
        with np.errstate(invalid="ignore"):  # inf * 0 -> NaN, as in torch, silently
            for g in grads:
                g *= clip_coef
    return total_norm
