"""Parameter and Module: the state that the functional ops do not hold.

A :class:`Module` owns :class:`Parameter` objects and child modules, found by
attribute assignment as in torch. ``module(x)`` calls ``forward``; ``backward``
takes the gradient of the loss with respect to the forward's outputs, returns
the gradient with respect to its inputs, and *adds* every parameter gradient
into ``param.grad``.
"""

from __future__ import annotations

from collections import OrderedDict
from contextlib import contextmanager
from typing import Iterator, NamedTuple

import numpy as np


class Parameter:
    """A trainable array and the gradient accumulated for it.

    Attributes:
        data: the value, an ndarray (float32 or float64).
        grad: same shape and dtype as ``data``; backward passes add into it,
            ``zero_grad()`` sets it to zero. The array keeps its identity.

    ``zero_grad`` is lazy: it only marks the gradient as zero, and the first
    reader of ``grad`` gets the array filled with zeros. A layer's backward
    takes the array through :meth:`grad_sink` instead, and when the gradient
    is marked zero it *writes* its gradient instead of adding it. On a large
    weight this saves two passes over memory per training step (the fill and
    the add), which is what a step of a small batch spends its time on.
    """

    __slots__ = ("data", "_grad", "_grad_zeroed")

    def __init__(self, data: np.ndarray):
        if not isinstance(data, np.ndarray) or data.dtype.kind != "f":
            raise TypeError(f"Parameter data must be a float ndarray, got {type(data).__name__}"
                            f"{'' if not isinstance(data, np.ndarray) else ' of dtype ' + str(data.dtype)}")
        self.data = data
        self._grad = np.zeros_like(data)
        self._grad_zeroed = False  # True: _grad's contents are stale and stand for zero

    @property
    def grad(self) -> np.ndarray:
        if self._grad_zeroed:
            self._grad.fill(0)
            self._grad_zeroed = False
        return self._grad

    @grad.setter
    def grad(self, value: np.ndarray) -> None:
        self._grad = value
        self._grad_zeroed = False

    def zero_grad(self) -> None:
        """Set the gradient to zero (lazily: see the class docstring)."""
        self._grad_zeroed = True

    def grad_sink(self) -> tuple[np.ndarray, bool]:
        """``(grad, overwrite)`` for a backward pass that adds its gradient in.

        With ``overwrite`` True the array's contents are stale and stand for
        zero: the caller must write every element of it (``grad[...] = g``),
        not add into it. Either way the array holds the gradient afterwards.
        """
        overwrite, self._grad_zeroed = self._grad_zeroed, False
        return self._grad, overwrite

    def restore_zeroed(self, overwrite: bool) -> None:
        """Undo :meth:`grad_sink` for a backward that failed before writing (``overwrite`` as it returned)."""
        if overwrite:
            self._grad_zeroed = True

    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    def __repr__(self):
        return f"Parameter(shape={self.data.shape}, dtype={self.data.dtype})"


@contextmanager
def grad_sinks(params):
    """The gradient arrays of ``params`` (None entries stay None) for a backward to add into.

    Yields ``(arrays, overwrite)``, two tuples with one entry per parameter;
    see :meth:`Parameter.grad_sink`. If the block raises, gradients that were
    marked zero are marked zero again, so a failed backward leaves no stale
    values behind.
    """
    sinks = [(None, False) if p is None else p.grad_sink() for p in params]
    try:
        yield tuple(a for a, _ in sinks), tuple(f for _, f in sinks)
    except BaseException:
        for p, (_, overwrite) in zip(params, sinks):
            if p is not None:
                p.restore_zeroed(overwrite)
        raise


class BackwardBeforeForwardError(ValueError, RuntimeError):
    """``backward`` was called with no forward pass to differentiate."""


class IncompatibleKeys(NamedTuple):
    missing_keys: list
    unexpected_keys: list


def _to_numpy(value) -> np.ndarray:
    """An ndarray from an ndarray or a torch tensor (duck-typed: torch is not imported)."""
    if isinstance(value, np.ndarray):
        return value
    if hasattr(value, "detach") and hasattr(value, "numpy"):
        return value.detach().cpu().numpy()
    return np.asarray(value)


class Module:
    """Base class of every layer, loss-free model and container."""

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())

    def __setattr__(self, name, value):
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        object.__setattr__(self, name, value)

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def forward(self, *args, **kwargs):  # pragma: no cover - abstract
        raise NotImplementedError

    def backward(self, *args, **kwargs):  # pragma: no cover - abstract
        raise NotImplementedError

    # ---------------------------------------------------------------- parameters
    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        """Yield ``(dotted_name, parameter)`` in registration order, children after own."""
        for name, param in self._parameters.items():
            yield prefix + name, param
        for child_name, child in self._modules.items():
            yield from child.named_parameters(prefix + child_name + ".")

    def parameters(self) -> list[Parameter]:
        """All parameters, in the order of :meth:`named_parameters`."""
        return [p for _, p in self.named_parameters()]

    def zero_grad(self) -> None:
        """Set every parameter's gradient to zero, in place (lazily: see :class:`Parameter`)."""
        for p in self.parameters():
            p.zero_grad()

    # ---------------------------------------------------------------- state dict
    def state_dict(self) -> "OrderedDict[str, np.ndarray]":
        """A copy of every parameter, keyed by the torch-compatible dotted name."""
        return OrderedDict((name, p.data.copy()) for name, p in self.named_parameters())

    def load_state_dict(self, state_dict, strict: bool = True) -> IncompatibleKeys:
        """Copy values into the parameters, after checking all of them first.

        Values may be ndarrays or torch tensors; they are cast to each
        parameter's dtype, as torch does. Nothing is assigned unless every key
        passes, so a bad dict leaves the module unchanged.

        Raises:
            ValueError: a missing or unexpected key (with ``strict``), a shape
                mismatch, or a non-finite value.
            TypeError: a value that is not a floating-point array.
        """
        own = dict(self.named_parameters())
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        if strict and (missing or unexpected):
            raise ValueError(f"load_state_dict for {type(self).__name__}: "
                             f"missing keys {missing}, unexpected keys {unexpected}")
        checked = []
        for name, param in own.items():
            if name not in state_dict:
                continue
            value = _to_numpy(state_dict[name])
            if value.dtype.kind != "f":
                raise TypeError(f"load_state_dict: {name!r} expected a floating-point array, "
                                f"got dtype {value.dtype}")
            if value.shape != param.shape:
                raise ValueError(f"load_state_dict: {name!r} expected shape {param.shape}, "
                                 f"got {value.shape}")
            if not np.isfinite(value).all():
                raise ValueError(f"load_state_dict: {name!r} contains NaN or inf")
            checked.append((param, value))
        for param, value in checked:
            param.data[...] = value
        return IncompatibleKeys(missing, unexpected)

    # ---------------------------------------------------------------- display
    def extra_repr(self) -> str:
        return ""

    def __repr__(self):
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        if self._modules:
            for name, child in self._modules.items():
                child_repr = repr(child).replace("\n", "\n  ")
                lines.append(f"\n  ({name}): {child_repr}")
            lines.append("\n")
        return "".join(lines) + ")"
